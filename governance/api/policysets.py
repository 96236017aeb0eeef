"""`/api/v1/policy-sets/`: named baselines (viewers read; operators create, change, delete their own sets and apply
any set to a group; enforce mode is for admins), through governance.policysets like the pages."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from foundation.web import client_ip
from governance import policysets
from governance.choices import Mode
from governance.models import PolicySet
from inventory.models import ClusterGroup


class PolicySetItemSerializer(serializers.Serializer):
    rule = serializers.CharField(max_length=64)
    params = serializers.DictField(required=False)


class PolicySetSerializer(serializers.ModelSerializer):
    items = PolicySetItemSerializer(many=True)  # at most one per rule of the catalog: the service checks

    class Meta:
        model = PolicySet
        fields = ("name", "title", "description", "items", "built_in", "created_at", "updated_at")
        read_only_fields = ("built_in", "created_at", "updated_at")
        extra_kwargs: dict = {"name": {"validators": []}}  # the service checks (409 when taken)


class ApplySerializer(serializers.Serializer):
    group = serializers.SlugRelatedField(slug_field="name", queryset=ClusterGroup.objects.all())
    mode = serializers.ChoiceField(choices=Mode.choices, default=Mode.AUDIT)
    dry_run = serializers.BooleanField(default=False, help_text="Answer the plan and change nothing.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["group"].queryset = ClusterGroup.objects.visible_to(request.user)  # type: ignore[attr-defined]


class StepSerializer(serializers.Serializer):
    rule = serializers.CharField()
    title = serializers.CharField()
    action = serializers.ChoiceField(choices=["add", "raise", "keep"])
    mode = serializers.CharField()
    before = serializers.CharField()
    params = serializers.DictField()
    note = serializers.CharField()


class PolicySetViewSet(viewsets.ModelViewSet):
    """Policy sets by name. Built-in sets are read-only."""

    serializer_class = PolicySetSerializer
    lookup_field = "name"
    lookup_value_regex = "[-a-z0-9]+"
    ordering = ["-built_in", "title"]
    ordering_fields = ["name", "title"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet:
        return PolicySet.objects.all()

    def perform_create(self, serializer) -> None:
        d = serializer.validated_data
        serializer.instance = policysets.save_set(
            user=self.request.user, name=d["name"], title=d["title"], description=d.get("description", ""),
            items=[dict(i) for i in d["items"]], source_ip=client_ip(self.request))

    def perform_update(self, serializer) -> None:
        d, instance = serializer.validated_data, serializer.instance
        if d.get("name", instance.name) != instance.name:
            raise serializers.ValidationError({"name": ["A set's name cannot change."]})
        serializer.instance = policysets.save_set(
            user=self.request.user, name=instance.name, title=d.get("title", instance.title),
            description=d.get("description", instance.description),
            items=[dict(i) for i in d["items"]] if "items" in d else instance.items, policy_set=instance,
            source_ip=client_ip(self.request))

    def perform_destroy(self, instance) -> None:
        policysets.delete_set(instance, user=self.request.user, source_ip=client_ip(self.request))

    @extend_schema(request=ApplySerializer, responses={200: StepSerializer(many=True)})
    @action(detail=True, methods=["post"])
    def apply(self, request, name: str | None = None) -> Response:
        """Apply the set to a group in a mode (all or nothing), or with `dry_run` only say what it would do."""
        policy_set = self.get_object()
        serializer = ApplySerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        d = serializer.validated_data
        if d["dry_run"]:
            policysets.check_apply(request.user)
            steps = policysets.plan(policy_set, d["group"], d["mode"])
        else:
            steps = policysets.apply_set(policy_set=policy_set, group=d["group"], mode=d["mode"], user=request.user,
                                         source_ip=client_ip(request))
        return Response([s.as_dict() for s in steps], status=status.HTTP_200_OK)
