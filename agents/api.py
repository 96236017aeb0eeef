"""/api/v1/registrations/: for automation, what the 'Register a cluster' and 'Registrations' pages do. GET lists
registrations; POST creates a bootstrap token and answers with its manifest and apply line (the token is shown in
that answer only); accept and reject decide a pending one. Global admins only, through agents.services."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from agents import manifests, services
from agents.models import Registration
from foundation.roles import ADMIN
from foundation.web import client_ip
from inventory.choices import Environment


class RegistrationSerializer(serializers.ModelSerializer):
    cluster: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="name", read_only=True)
    decided_by: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Registration
        fields = ["id", "name", "environment", "state", "ca_fingerprint", "kube_system_uid", "kubernetes_version",
                  "node_count", "server", "agent_version", "source_ip", "created_at", "decided_at", "decided_by",
                  "cluster"]
        read_only_fields = fields


class NewTokenSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=63)
    environment = serializers.ChoiceField(choices=Environment.choices, default=Environment.DEV)
    ttl = serializers.IntegerField(min_value=60, max_value=7 * 86400, required=False,
                                   help_text="Seconds the token lasts (FLEETWEB_AGENT_BOOTSTRAP_TTL by default)")


class NewTokenAnswerSerializer(serializers.Serializer):
    name = serializers.CharField()
    expires_at = serializers.DateTimeField()
    bootstrap_token = serializers.CharField(help_text="Shown in this answer only")
    command = serializers.CharField(help_text="The one `kubectl apply` line to run against the member")
    manifest = serializers.CharField()


class RegistrationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = RegistrationSerializer
    required_role = ADMIN
    filterset_fields = ["state", "environment"]
    ordering = ["-created_at"]
    ordering_fields = ["created_at", "name", "state"]

    def get_queryset(self) -> QuerySet:
        return Registration.objects.select_related("cluster", "decided_by")

    @extend_schema(request=NewTokenSerializer, responses={201: NewTokenAnswerSerializer})
    def create(self, request) -> Response:
        """A single-use bootstrap token for the cluster `name`, its manifest and its apply line."""
        given = NewTokenSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        d = given.validated_data
        token, secret = services.create_bootstrap_token(user=request.user, name=d["name"],
                                                        environment=d["environment"], ttl=d.get("ttl"),
                                                        source_ip=client_ip(request))
        hub = manifests.hub_url(request)
        return Response({"name": token.name, "expires_at": token.expires_at, "bootstrap_token": secret,
                         "command": manifests.apply_command(hub_url=hub, bootstrap_token=secret),
                         "manifest": manifests.agent_manifest(hub_url=hub, bootstrap_token=secret)}, status=201)

    @extend_schema(request=None, responses=RegistrationSerializer)
    @action(detail=True, methods=["post"])
    def accept(self, request, pk=None) -> Response:
        """Accept: the cluster becomes a member reached through its agent."""
        registration = services.decide(self.get_object(), accept=True, user=request.user,
                                       source_ip=client_ip(request))
        return Response(RegistrationSerializer(registration).data)

    @extend_schema(request=None, responses=RegistrationSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None) -> Response:
        registration = services.decide(self.get_object(), accept=False, user=request.user,
                                       source_ip=client_ip(request))
        return Response(RegistrationSerializer(registration).data)


router = DefaultRouter()
router.register("registrations", RegistrationViewSet, basename="registration")
app_name = "agents-api"
urlpatterns: list = [*router.urls]

