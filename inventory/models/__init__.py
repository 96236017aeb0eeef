"""Clusters, their encrypted credentials and the inventory the collector stores for them, and the teams that see
them: one models package of the inventory app, a module per part."""

from inventory.models.clusters import (
    AttachDraft,
    Cluster,
    ClusterCredential,
    ClusterEvent,
    ClusterGroup,
    SelectorMixin,
    SyncRun,
    member_counts,
)
from inventory.models.inventoried import (
    ClusterAddon,
    CustomResourceDefinition,
    DeprecatedAPIRequest,
    InventoryModel,
    Namespace,
    Node,
    ProblemPod,
    Workload,
)
from inventory.models.people import RoleMapping, SsoIdentity, Team, TeamMember

__all__ = [
    "AttachDraft", "Cluster", "ClusterAddon", "ClusterCredential", "ClusterEvent", "ClusterGroup",
    "CustomResourceDefinition", "DeprecatedAPIRequest", "InventoryModel", "Namespace", "Node", "ProblemPod",
    "RoleMapping", "SelectorMixin", "SsoIdentity", "SyncRun", "Team", "TeamMember", "Workload",
    "member_counts",
]
