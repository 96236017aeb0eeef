"""`{% can "sync" cluster as may_sync %}`: the page asks the same permission check as the service behind the
button (inventory.teams.can), so a button shows exactly when pressing it would be allowed."""

from django import template

from inventory.teams import can as _can

register = template.Library()


@register.simple_tag(takes_context=True)
def can(context, action: str, obj=None) -> bool:
    request = context.get("request")
    return request is not None and _can(request.user, action, obj)
