"""Where the apps above inventory add to its pages without inventory importing them (layers point one way).
Governance registers its compliance tab, group scores and group-member compliance in `GovernanceConfig.ready`.

- `cluster_tabs[name] = builder(cluster, page_number, user) -> template context`: an extra tab on the cluster page
  (`user`: who looks, for what they may see of other apps' objects),
  rendered from `inventory/partials/_tab_<name>.html`; shown before "syncs".
- `group_scores = fn(groups, *, user) -> {group pk: fields}`: extra fields of each row of the group list.
- `group_detail = fn(group, members) -> {"members": {cluster pk: fields}, **context}`: extra fields of each
  member row of a group's page, and extra context.
- `overview_cards`: `fn(user) -> [{"value", "label", "url", "id"}]` functions, each adding stat cards to the
  overview (governance: the fleet score and open violations; rollouts: active rollouts, approvals waiting).
- `attention`: `fn(user, clusters, team) -> [{"subject", "url", "badge", "tone", "why", "at", "rank"}]` functions,
  each adding rows to the overview's "Needs attention" (rollouts: drifted applications, failed rollouts, stages
  awaiting approval; governance: critical violations), over `clusters` (the user's, narrowed to `team` when the
  team switcher is on), each a bounded number of rows, ranked 1 or more: clusters not connected rank below 1, and
  when they fill the list these functions are not called.
- `cluster_panels`: `fn(cluster, user) -> {"template", **context} | None` functions, each adding a panel under the
  cluster page's header (agents: how the cluster's agent is doing), refreshed with it.
- `namespace_holders = fn(cluster, names) -> {name: who holds it}`: the "Held by" column of a cluster's namespaces
  (rollouts: which team's applications may deploy there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

cluster_tabs: dict[str, Callable[[Any, Any, Any], dict]] = {}
overview_cards: list[Callable[[Any], list[dict]]] = []
attention: list[Callable[[Any, Any, str], list[dict]]] = []
cluster_panels: list[Callable[[Any, Any], dict | None]] = []


def _no_scores(groups, *, user=None) -> dict[int, dict]:
    return {g.pk: {} for g in groups}


def _no_detail(group, members) -> dict:
    return {"members": {}}


def _no_holders(cluster, names) -> dict[str, str]:
    return {}


group_scores: Callable[..., dict[int, dict]] = _no_scores
group_detail: Callable[[Any, list], dict] = _no_detail
namespace_holders: Callable[[Any, list[str]], dict[str, str]] = _no_holders


def register(*, tab: tuple[str, Callable] | None = None, scores: Callable | None = None,
             detail: Callable | None = None, cards: Callable | None = None, holders: Callable | None = None,
             panel: Callable | None = None, needs_attention: Callable | None = None) -> None:
    global group_scores, group_detail, namespace_holders
    if needs_attention is not None and needs_attention not in attention:
        attention.append(needs_attention)
    if panel is not None and panel not in cluster_panels:
        cluster_panels.append(panel)
    if holders is not None:
        namespace_holders = holders
    if cards is not None and cards not in overview_cards:
        overview_cards.append(cards)
    if tab is not None:
        cluster_tabs[tab[0]] = tab[1]
    if scores is not None:
        group_scores = scores
    if detail is not None:
        group_detail = detail
