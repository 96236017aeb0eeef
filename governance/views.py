"""Pages of governance: the audit log (admins)."""

import csv

from django.core.paginator import Paginator
from django.http import StreamingHttpResponse

from fleetweb.decorators import role_required
from fleetweb.htmx import htmx_partial
from fleetweb.roles import ADMIN
from governance.filtersets import AuditEventFilterSet
from governance.models import AuditEvent


def _filtered(request):
    filterset = AuditEventFilterSet(request.GET or None, queryset=AuditEvent.objects.visible_to(request.user))
    queryset = filterset.qs if filterset.is_bound and filterset.is_valid() else filterset.queryset
    return filterset, queryset


@role_required(ADMIN)
def audit_list(request):
    filterset, queryset = _filtered(request)
    page = Paginator(queryset.order_by("-at", "-id"), 100).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return htmx_partial(request, "governance/audit_list.html", "governance/partials/_audit_table.html",
                        {"filterset": filterset, "page": page, "query": query.urlencode()})


class _Echo:
    def write(self, value):
        return value


@role_required(ADMIN)
def audit_export(request):
    """The filtered audit log as CSV, streamed."""
    _, queryset = _filtered(request)
    writer = csv.writer(_Echo())
    header = ["at", "actor", "source_ip", "action", "target_type", "target_name", "before", "after", "message"]

    def rows():
        yield writer.writerow(header)
        for e in queryset.order_by("at", "id").iterator(chunk_size=2000):
            yield writer.writerow([e.at.isoformat(), e.actor_name, e.source_ip or "", e.action, e.target_type,
                                   e.target_name, e.before or "", e.after or "", e.message])

    response = StreamingHttpResponse(rows(), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="fleetweb-audit.csv"'
    return response
