"""`/api/v1/users/`: people's accounts for platform admins, through the same services as the People pages
(inventory.people.accounts for accounts, inventory.people.services for team roles). A set-password link is in the
answer that made it, once; nothing reads it back."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import Prefetch, Q, QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from foundation.roles import ADMIN, ROLES
from foundation.web import client_ip
from inventory.choices import TeamRole
from inventory.models import Team, TeamMember
from inventory.people import accounts
from inventory.people import services as team_services


class TeamRoleSerializer(serializers.ModelSerializer):
    team = serializers.SlugRelatedField(slug_field="name", queryset=Team.objects.all())
    role = serializers.ChoiceField(choices=TeamRole.choices)

    class Meta:
        model = TeamMember
        fields = ("id", "team", "role", "source")
        read_only_fields = ("id", "source")


class PasswordLinkSerializer(serializers.Serializer):
    url = serializers.CharField(help_text="The one-time set-password link; shown in this answer only.")
    expires_at = serializers.DateTimeField()
    mailed_to = serializers.CharField(help_text="The address it was mailed to; empty when not mailed.")
    mail_problem = serializers.CharField()


class UserSerializer(serializers.ModelSerializer):
    """An account: who it is, how it signs in, its global roles (`roles`, as given, not implied) and team roles."""

    roles = serializers.ListField(child=serializers.ChoiceField(choices=ROLES), required=False, max_length=4)
    kind = serializers.SerializerMethodField(help_text="local (password), sso or service (a service account)")
    team_roles = TeamRoleSerializer(many=True, read_only=True)
    has_password = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields: tuple[str, ...] = ("id", "username", "first_name", "last_name", "email", "is_active", "roles",
                                   "kind", "has_password", "team_roles", "last_login", "date_joined")
        read_only_fields = ("id", "last_login", "date_joined")
        extra_kwargs: dict = {"username": {"validators": []}}  # the service checks (case-insensitive, 409 when taken)

    def get_kind(self, account: User) -> str:
        return accounts.kind_of(account)

    def get_has_password(self, account: User) -> bool:
        return account.has_usable_password()

    def to_representation(self, account: User) -> dict:
        data = super().to_representation(account)
        data["roles"] = accounts.roles_held(account)
        return data


class CreatedUserSerializer(UserSerializer):
    password_link = PasswordLinkSerializer(read_only=True)

    class Meta(UserSerializer.Meta):
        fields = (*UserSerializer.Meta.fields, "password_link")


def _link(link: accounts.PasswordLink) -> dict:
    return {"url": link.url, "expires_at": link.expires_at, "mailed_to": link.mailed_to,
            "mail_problem": link.mail_problem}


@extend_schema_view(list=extend_schema(parameters=[
    OpenApiParameter("q", str, description="Part of a username, name or email"), OpenApiParameter("is_active", bool)]))
class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                  mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """People's accounts (platform admins). Accounts are deactivated, never deleted: their history stays."""

    serializer_class = UserSerializer
    required_role = ADMIN
    lookup_field = "username"
    lookup_value_regex = r"[\w.@+-]+"
    ordering = ["username"]
    ordering_fields = ["username", "last_login", "date_joined"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet:
        return User.objects.select_related("service_account", "sso_identity").prefetch_related(
            "groups", Prefetch("team_roles", queryset=TeamMember.objects.select_related("team")))

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        people = super().filter_queryset(queryset)
        if self.action != "list":
            return people
        q = self.request.query_params.get("q", "").strip()[:150]
        if q:
            people = people.filter(Q(username__icontains=q) | Q(email__icontains=q) | Q(first_name__icontains=q)
                                   | Q(last_name__icontains=q))
        active = self.request.query_params.get("is_active", "").lower()
        if active in ("true", "false"):
            people = people.filter(is_active=active == "true")
        return people

    def _base_url(self) -> str:
        return self.request.build_absolute_uri("/").rstrip("/")

    @extend_schema(responses={201: CreatedUserSerializer})
    def create(self, request, *args, **kwargs) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        d = serializer.validated_data
        account, link = accounts.create_account(
            user=request.user, username=d["username"], email=d.get("email", ""), first_name=d.get("first_name", ""),
            last_name=d.get("last_name", ""), roles=d.get("roles", []), base_url=self._base_url(),
            source_ip=client_ip(request))
        data = dict(UserSerializer(self.get_queryset().get(pk=account.pk), context=self.get_serializer_context()).data)
        return Response({**data, "password_link": _link(link)}, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs) -> Response:
        account = self.get_object()
        serializer = self.get_serializer(account, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        d = serializer.validated_data
        if "username" in d and d["username"] != account.username:
            raise serializers.ValidationError({"username": ["A username cannot change."]})
        accounts.update_account(account, user=request.user, email=d.get("email"), first_name=d.get("first_name"),
                                last_name=d.get("last_name"), roles=d.get("roles"), is_active=d.get("is_active"),
                                source_ip=client_ip(request))
        return Response(self.get_serializer(self.get_queryset().get(pk=account.pk)).data)

    @extend_schema(request=None, responses={201: PasswordLinkSerializer})
    @action(detail=True, methods=["post"], url_path="password-link")
    def password_link(self, request, username: str | None = None) -> Response:
        """Take the password away now and answer a one-time link to set a new one (mailed when mail is set up)."""
        link = accounts.issue_password_link(self.get_object(), user=request.user, base_url=self._base_url(),
                                            source_ip=client_ip(request))
        return Response(_link(link), status=status.HTTP_201_CREATED)

    @extend_schema(request=TeamRoleSerializer, responses={201: TeamRoleSerializer})
    @action(detail=True, methods=["post"], url_path="team-roles")
    def team_roles(self, request, username: str | None = None) -> Response:
        account = self.get_object()
        serializer = TeamRoleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        grant = team_services.add_member(serializer.validated_data["team"], member=account,
                                         role=serializer.validated_data["role"], user=request.user,
                                         source_ip=client_ip(request))
        return Response(TeamRoleSerializer(grant).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["delete"], url_path=r"team-roles/(?P<grant>[0-9]+)")
    def team_role_remove(self, request, username: str | None = None, grant: str | None = None) -> Response:
        account = self.get_object()
        held = TeamMember.objects.select_related("team", "user").filter(user=account, pk=int(grant or 0)).first()
        if held is None:
            return Response({"detail": "No such team role of this account.", "errors": {}},
                            status=status.HTTP_404_NOT_FOUND)
        team_services.remove_member(held, user=request.user, source_ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
