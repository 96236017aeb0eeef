"""`{% can "sync" cluster as may_sync %}`: the page asks the same permission check as the service behind the
button (inventory.teams.can), so a button shows exactly when pressing it would be allowed."""

from django import template

from inventory.models import Team
from inventory.people.access import can as _can

register = template.Library()


@register.simple_tag(takes_context=True)
def can(context, action: str, obj=None) -> bool:
    request = context.get("request")
    return request is not None and _can(request.user, action, obj)


@register.inclusion_tag("fleetweb/partials/_team_switcher.html", takes_context=True)
def team_switcher(context, inline: bool = False) -> dict:
    """A GET form narrowing the page to one of the teams the user may see (`?team=`); hidden with none."""

    request = context.get("request")
    if request is None:
        return {"teams": []}
    teams = list(Team.objects.visible_to(request.user).values_list("name", flat=True))
    return {"teams": teams, "current": request.GET.get("team", ""), "path": request.path, "inline": inline}
