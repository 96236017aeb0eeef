"""Rollouts over the API. Every action calls the same service as the pages; refusals say why (403/409/400)."""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from foundation.roles import VIEWER
from foundation.web import client_ip
from inventory.models import Cluster, ClusterGroup
from rollouts import approvals, calendar, corrections, placement, plans, receipts, services, sourcing
from rollouts.api import serializers
from rollouts.choices import StageState
from rollouts.filtersets import DriftFilterSet, RolloutFilterSet
from rollouts.models import (
    Application,
    ChangeWindow,
    Drift,
    NamespaceHold,
    Rollout,
    RolloutPlan,
    Source,
    SourceCredential,
    SourceTest,
)


def _source_fields(request) -> dict:
    """The fields of a source in the request's body, checked by its serializer (the service checks them again)."""
    serializer = serializers.SourceSerializer(data=request.data, context={"request": request})
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data
    return {"kind": data["kind"], "url": data["url"], "ref": data.get("ref", ""), "path": data.get("path", ""),
            "chart": data.get("chart", ""), "version": data.get("version", ""), "values": data.get("values", ""),
            "credential": data.get("credential"), "poll_interval": data.get("poll_interval", 300),
            "plan": data.get("plan")}


def _call(fn, **kwargs):
    """Run a service; its refusals (RolloutError) become 400, 403 or 409 in foundation.api.exception_handler."""
    return fn(**kwargs)


class ApplicationViewSet(viewsets.ModelViewSet):
    """Applications; every edit of the manifests is a new immutable revision (`POST …/revisions/`)."""

    serializer_class = serializers.ApplicationSerializer
    team_roles = True  # team operators write their team's applications: the services check which
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet:
        return Application.objects.visible_to(self.request.user).prefetch_related("overrides__group")

    def perform_create(self, serializer) -> None:
        data = serializer.validated_data
        serializer.instance = _call(services.create_application, name=data["name"], namespace=data["namespace"],
                                    owner=data.get("owner", ""), description=data.get("description", ""),
                                    manifests_text=data["manifests"], message=data.get("message", ""),
                                    user=self.request.user,
                                    owner_team=data.get("owner_team"), approver_team=data.get("approver_team"),
                                    correct_drift=data.get("correct_drift", False),
                                    drift_ignore=data.get("drift_ignore"), source_ip=client_ip(self.request))
        if data.get("approval_ttl") is not None:  # a setting of its own, with its own check
            serializer.instance = _call(services.update_application, app=serializer.instance, user=self.request.user,
                                        source_ip=client_ip(self.request), approval_ttl=data["approval_ttl"])

    def perform_update(self, serializer) -> None:
        serializer.instance = _call(services.update_application, app=serializer.instance, user=self.request.user,
                                    source_ip=client_ip(self.request), **serializer.validated_data)

    def perform_destroy(self, instance) -> None:
        _call(services.delete_application, app=instance, user=self.request.user, source_ip=client_ip(self.request))

    @extend_schema(request=serializers.RevisionSerializer, responses=serializers.RevisionSerializer(many=True))
    @action(detail=True, methods=["get", "post"])
    def revisions(self, request, pk=None) -> Response:
        """List revisions (newest first) or create one from `manifests` (+ `message`)."""
        app = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(app.revisions.select_related("author").order_by("-number"))
            data = serializers.RevisionSerializer(page, many=True, context={"request": request}).data
            return self.get_paginated_response(data)
        serializer = serializers.RevisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        revision = _call(services.create_revision, app=app, manifests_text=serializer.validated_data["manifests"],
                         message=serializer.validated_data.get("message", ""), user=request.user,
                         source_ip=client_ip(request))
        return Response(serializers.RevisionSerializer(revision, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=serializers.SourceSerializer, responses=serializers.SourceSerializer)
    @action(detail=True, methods=["get", "put"])
    def source(self, request, pk=None) -> Response:
        """Where the application's revisions come from: a Git repository, a Helm chart repository or an OCI
        registry (404: pasted YAML only). PUT sets it; a worker checks it at once, and every poll_interval."""
        app = self.get_object()
        if request.method == "GET":
            found = Source.objects.filter(application=app).select_related("credential").first()
            if found is None:
                raise NotFound("This application has no source: its revisions are pasted.")
            return Response(serializers.SourceSerializer(found, context={"request": request}).data)
        data = _source_fields(request)
        found = _call(sourcing.set_source, app=app, user=request.user, source_ip=client_ip(request), **data)
        return Response(serializers.SourceSerializer(found, context={"request": request}).data)

    @extend_schema(request=None, responses={201: None})
    @action(detail=True, methods=["post"], url_path="source/webhook")
    def source_webhook(self, request, pk=None) -> Response:
        """A new push webhook for the source: its URL and secret, shown this once (the previous pair stops working).
        Give both to GitHub, GitLab or Gitea (content type application/json, push events)."""
        app = self.get_object()
        path, secret = _call(sourcing.issue_webhook, app=app, user=request.user, source_ip=client_ip(request))
        return Response({"url": request.build_absolute_uri(path), "secret": secret}, status=status.HTTP_201_CREATED)

    @extend_schema(request=serializers.SourceSerializer, responses={202: serializers.SourceTestSerializer})
    @action(detail=True, methods=["post"], url_path="source/test")
    def test_source(self, request, pk=None) -> Response:
        """Test a source as given (the body of a PUT to `source/`), without saving it: a worker fetches and renders
        it; read the answer at `source/tests/{id}/` (state queued | running | done, then result or error)."""
        app = self.get_object()
        data = _source_fields(request)
        del data["poll_interval"], data["plan"]  # a test saves neither
        test = _call(sourcing.request_test, app=app, user=request.user, source_ip=client_ip(request), **data)
        return Response(serializers.SourceTestSerializer(test).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=serializers.SourceTestSerializer)
    @action(detail=True, methods=["get"], url_path=r"source/tests/(?P<test_id>[0-9a-f-]{36})")
    def source_test(self, request, pk=None, test_id=None) -> Response:
        """One's own source test: its state, then what the worker found or why it failed."""
        found = SourceTest.objects.filter(application=self.get_object(), requested_by=request.user,
                                          pk=test_id).first()
        if found is None:
            raise NotFound("No such test of yours (tests are kept an hour).")
        return Response(serializers.SourceTestSerializer(found).data)

    @extend_schema(request=None, responses={202: None})
    @action(detail=True, methods=["post"], url_path="source/check")
    def check_source(self, request, pk=None) -> Response:
        """Check the source now (in a worker): its result is on the source (seen, error) and, when new, a revision."""
        found = Source.objects.filter(application=self.get_object()).select_related("application").first()
        if found is None:
            raise NotFound("This application has no source: its revisions are pasted.")
        _call(sourcing.request_check, source=found, user=request.user)
        return Response({"detail": "The check is queued."}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=serializers.PlacementSerializer(many=True))
    @action(detail=True, methods=["get"])
    def clusters(self, request, pk=None) -> Response:
        """Where the application runs: per cluster the revision, the rollout it came from, workload health."""
        rows = placement.where_it_runs(self.get_object())
        return Response(serializers.PlacementSerializer(rows, many=True).data)

    @extend_schema(request=serializers.OverrideSerializer, responses=serializers.OverrideSerializer)
    @action(detail=True, methods=["put"], url_path=r"overrides/(?P<group>[-a-z0-9_]+)")
    def override(self, request, pk=None, group=None) -> Response:
        """Set the per-group patch (`replicas`, `image_tags`, `labels`, and for an application read from a chart
        `values`: Helm values YAML, rendered into the next revision; absent keeps them); all empty removes it."""
        app = self.get_object()
        group_obj = ClusterGroup.objects.visible_to(request.user).filter(name=group).first()
        if group_obj is None:
            raise NotFound(f"No group named '{group}'.")
        body = request.data
        if not isinstance(body, dict):
            raise ValidationError({"non_field_errors": ["The body must be an object with replicas, image_tags, "
                                                        "labels and values."]})
        override = _call(services.set_override, app=app, group=group_obj, user=request.user,
                         replicas=body.get("replicas"), image_tags=body.get("image_tags"),
                         labels=body.get("labels"), values=body.get("values"), source_ip=client_ip(request))
        if override is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(serializers.OverrideSerializer(override).data)


class RolloutPlanViewSet(viewsets.ModelViewSet):
    serializer_class = serializers.RolloutPlanSerializer
    ordering = ["name"]

    def get_queryset(self) -> QuerySet:
        return RolloutPlan.objects.visible_to(self.request.user)

    def perform_create(self, serializer) -> None:
        data = serializer.validated_data
        serializer.instance = _call(plans.create_plan, name=data["name"], stages=data.get("stages"),
                                    description=data.get("description", ""), user=self.request.user,
                                    source_ip=client_ip(self.request))

    def perform_update(self, serializer) -> None:
        data = dict(serializer.validated_data)
        if "name" in data and data["name"] == serializer.instance.name:
            data.pop("name")
        serializer.instance = _call(plans.update_plan, plan=serializer.instance, user=self.request.user,
                                    source_ip=client_ip(self.request), **data)

    def perform_destroy(self, instance) -> None:
        _call(plans.delete_plan, plan=instance, user=self.request.user, source_ip=client_ip(self.request))


class RolloutViewSet(viewsets.ModelViewSet):
    """Rollouts. Actions answer with the new state, or 409 saying why it is not allowed now."""

    serializer_class = serializers.RolloutSerializer
    ordering_fields = ["created_at", "state"]
    ordering = ["-created_at"]
    filterset_class = RolloutFilterSet
    http_method_names = ["get", "post", "head", "options"]

    def get_queryset(self) -> QuerySet:
        return (Rollout.objects.visible_to(self.request.user)
                .select_related("application", "revision", "requested_by")
                .prefetch_related("stages__group", "stages__targets__cluster", "stages__targets__applied_revision",
                                  "stages__targets__previous_revision", "stages__approvals__user",
                                  "stages__approvals__revision"))

    def perform_create(self, serializer) -> None:
        data = serializer.validated_data
        if not data.get("plan") and data.get("stages") is None:
            raise ValidationError({"stages": ["Give a plan or inline stages."]})
        serializer.instance = _call(services.create_rollout, revision=data["revision"], plan=data.get("plan"),
                                    stages=data.get("stages"), user=self.request.user,
                                    source_ip=client_ip(self.request))

    def _state(self, rollout) -> Response:
        rollout = self.get_queryset().get(pk=rollout.pk)
        return Response({"id": rollout.pk, "state": rollout.state, "message": rollout.message,
                         "stages": [{"index": s.index, "name": s.name, "state": s.state} for s in
                                    rollout.stages.all()]})

    def _stage(self, rollout, index):
        stages = rollout.stages.all()
        if index is None:
            stage = next((s for s in stages if s.state == StageState.AWAITING_APPROVAL), None)
            if stage is None:
                raise services.RolloutError("No stage of this rollout is awaiting approval.", status=409)
            return stage
        stage = next((s for s in stages if s.index == index), None)
        if stage is None:
            raise NotFound(f"This rollout has no stage {index}.")
        return stage

    def _action(self, request, fn, *, decision: bool = False):
        rollout = self.get_object()
        if decision:
            body = serializers.DecisionSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            stage = _call(self._stage, rollout=rollout, index=body.validated_data.get("stage"))
            extra = {"conditions": body.validated_data["conditions"]} if fn is approvals.approve_stage else {}
            _call(fn, stage=stage, user=request.user, comment=body.validated_data["comment"],
                  seen_digest=body.validated_data.get("stage_digest", ""), source_ip=client_ip(request), **extra)
        else:
            _call(fn, rollout=rollout, user=request.user, source_ip=client_ip(request))
        return self._state(rollout)

    team_roles = True  # team operators act on their applications' rollouts: the services check which

    def get_permissions(self) -> Sequence:
        # Approvers are not operators: deciding needs only a role; the service says who may decide.
        self.required_role = VIEWER if self.action in ("approve", "reject") else None
        return super().get_permissions()

    @extend_schema(request=serializers.DecisionSerializer, responses={200: dict, 403: dict, 409: dict})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None) -> Response:
        """Approve the stage awaiting approval (approvers only, never the requester)."""
        return self._action(request, approvals.approve_stage, decision=True)

    @extend_schema(request=serializers.DecisionSerializer, responses={200: dict, 403: dict, 409: dict})
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None) -> Response:
        """Reject it with a comment: the rollout stops."""
        return self._action(request, approvals.reject_stage, decision=True)

    @extend_schema(request=None, responses={200: dict, 409: dict})
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None) -> Response:
        return self._action(request, services.pause_rollout)

    @extend_schema(request=None, responses={200: dict, 409: dict})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None) -> Response:
        return self._action(request, services.resume_rollout)

    @extend_schema(request=None, responses={200: dict, 409: dict})
    @action(detail=True, methods=["post"])
    def abort(self, request, pk=None) -> Response:
        return self._action(request, services.abort_rollout)

    @extend_schema(request=None, responses={200: dict, 409: dict})
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None) -> Response:
        return self._action(request, services.rollback_rollout)

    @extend_schema(request=None, responses={200: dict}, parameters=[OpenApiParameter(
        "signed", bool, description="1: the receipt signed with Fleetweb's receipt key (`/api/v1/receipt-key/`)")])
    @action(detail=True, methods=["get"])
    def receipt(self, request, pk=None) -> Response:
        """Every cluster the rollout reached with its evidence: digest sent, approved and read back from the
        cluster, whether they match, the health seen when verified, when, and the approvals that covered it."""
        data = receipts.receipt(self.get_object())
        return Response(receipts.sign(data) if request.query_params.get("signed") in ("1", "true") else data)

    @extend_schema(request=serializers.WindowOverrideSerializer, responses={200: dict, 403: dict, 409: dict})
    @action(detail=True, methods=["post"], url_path="override-window")
    def override_window(self, request, pk=None) -> Response:
        """Emergency: the stage's change windows no longer hold it (admins only, with a reason; audited and
        announced). A busy cluster still holds it, and every other gate still applies."""
        rollout = self.get_object()
        body = serializers.WindowOverrideSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        stage = self._stage(rollout, body.validated_data["stage"])
        calendar.override_stage(stage, user=request.user, reason=body.validated_data["reason"],
                                source_ip=client_ip(request))
        return self._state(rollout)



class DriftViewSet(viewsets.ReadOnlyModelViewSet):
    """Drift of every deployment the user may see: per application and cluster, in sync, drifted (the fields,
    applied → live, and the field managers that changed them), missing or unknown. `POST {id}/check/` checks
    now; `POST {id}/reapply/` re-applies the deployed revision as deployed (operators; audited)."""

    serializer_class = serializers.DriftSerializer
    filterset_class = DriftFilterSet
    team_roles = True
    ordering_fields = ["checked_at", "state"]
    ordering = ["deployed__application__name", "deployed__cluster__name"]
    lookup_field = "deployed"  # its primary key: the deployment's id
    lookup_url_kwarg = "id"

    def get_queryset(self) -> QuerySet:
        user = self.request.user
        return (Drift.objects.visible_to(user)
                .filter(deployed__cluster__in=Cluster.objects.visible_to(user))
                .select_related("deployed__application__owner_team", "deployed__cluster", "deployed__revision"))

    @extend_schema(request=None, responses={202: serializers.DriftSerializer})
    @action(detail=True, methods=["post"])
    def check(self, request, id=None) -> Response:  # noqa: A002 - the route's name for it
        drift = self.get_object()
        _call(corrections.request_drift_check, app=drift.deployed.application, cluster=drift.deployed.cluster,
              user=request.user)
        return Response(serializers.DriftSerializer(drift).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: serializers.DriftSerializer})
    @action(detail=True, methods=["post"])
    def reapply(self, request, id=None) -> Response:  # noqa: A002 - the route's name for it
        drift = self.get_object()
        _call(corrections.request_reapply, deployed=drift.deployed, user=request.user, via="api",
              source_ip=client_ip(request))
        drift.refresh_from_db()
        return Response(serializers.DriftSerializer(drift).data, status=status.HTTP_202_ACCEPTED)


class NamespaceHoldViewSet(viewsets.ModelViewSet):
    """Who holds which namespace on which member (on the clusters the user may see). `POST {cluster, name, team}`
    hands a namespace to a team, or to the platform with `team: null` (admins; audited)."""

    serializer_class = serializers.NamespaceHoldSerializer
    team_roles = True
    http_method_names = ["get", "post", "head", "options"]
    ordering_fields = ["name", "at"]
    ordering = ["cluster__name", "name"]

    def get_queryset(self) -> QuerySet:
        return NamespaceHold.objects.visible_to(self.request.user).select_related("cluster", "team")

    def perform_create(self, serializer) -> None:
        data = serializer.validated_data
        serializer.instance = _call(services.hold_namespace, cluster=data["cluster"], name=data["name"],
                                    team=data.get("team"), user=self.request.user, source_ip=client_ip(self.request))


class ReceiptKeyViewSet(viewsets.ViewSet):
    """The public half of the key rollout receipts are signed with: check a signed receipt with it, anywhere."""

    team_roles = True

    @extend_schema(responses={200: dict})
    def list(self, request) -> Response:
        public = receipts.public_key()
        return Response({"alg": "Ed25519", "public_key": public, "key_id": receipts.key_id(public)})


class ChangeWindowViewSet(viewsets.ModelViewSet):
    """Change windows and freezes (`rollouts.windows`): the platform's (admins) and teams' (their operators; they hold
    only the team's clusters). A team member reads its teams' windows and the platform windows that hold one of its
    clusters. Every write goes through `calendar.save_window` / `delete_window`; audited."""

    serializer_class = serializers.ChangeWindowSerializer
    team_roles = True  # team operators manage their team's windows: the service checks which
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    pagination_class = None

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # the schema generator, with no user and no database
            return ChangeWindow.objects.none()
        ids = [w.pk for w in calendar.visible_windows(self.request.user)]
        return (ChangeWindow.objects.filter(pk__in=ids).select_related("team").prefetch_related("groups")
                .order_by("name", "pk"))

    def _fields(self, data: dict) -> dict:
        return {k: data[k] for k in calendar.FIELDS if k in data}

    def perform_create(self, serializer) -> None:
        data = dict(serializer.validated_data)
        serializer.instance = calendar.save_window(user=self.request.user, team=data.get("team"),
                                                   groups=data.get("groups", []), source_ip=client_ip(self.request),
                                                   **self._fields(data))

    def perform_update(self, serializer) -> None:
        window = serializer.instance
        data = dict(serializer.validated_data)
        if "team" in data and data["team"] != window.team:
            raise ValidationError({"team": ["A window's team cannot change; delete it and make another."]})
        current = {k: getattr(window, k) for k in calendar.FIELDS}
        serializer.instance = calendar.save_window(
            user=self.request.user, window=window, groups=data.get("groups", list(window.groups.all())),
            source_ip=client_ip(self.request), **{**current, **self._fields(data)})

    def perform_destroy(self, instance) -> None:
        calendar.delete_window(instance, user=self.request.user, source_ip=client_ip(self.request))


class SourceCredentialViewSet(viewsets.ModelViewSet):
    """Credentials for application sources: listed by name and team (never the secret), created, deleted."""

    serializer_class = serializers.SourceCredentialSerializer
    team_roles = True  # team operators store their team's: the service checks which
    http_method_names = ["get", "post", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet:
        return SourceCredential.objects.visible_to(self.request.user).select_related("owner_team")

    def perform_create(self, serializer) -> None:
        data = serializer.validated_data
        serializer.instance = _call(sourcing.create_credential, user=self.request.user, name=data["name"],
                                    secret=data.get("secret", ""), username=data.get("username", ""),
                                    owner_team=data.get("owner_team"), kind=data.get("kind", "token"),
                                    host_key=data.get("host_key", ""), generate=data.get("generate", False),
                                    source_ip=client_ip(self.request))

    def perform_destroy(self, instance) -> None:
        _call(sourcing.delete_credential, credential=instance, user=self.request.user,
              source_ip=client_ip(self.request))
