"""Filtered, paginated list pages (clusters, workloads, violations, the audit log): one way to read a filterset."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from django.core.paginator import Paginator
from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)


def filtered(filterset) -> QuerySet:
    """The filterset's rows when its input is valid, else all it may show (its errors are shown beside)."""
    return filterset.qs if filterset.is_bound and filterset.is_valid() else filterset.queryset


def filtered_page(request, filterset, *, queryset: QuerySet | None = None, page_size: int = 50) -> dict:
    """Context of a list page: the page of `queryset` (default: the filterset's rows), the filters, the query
    string without `page` (for pager and export links), and the filter errors."""
    rows = filtered(filterset) if queryset is None else queryset
    page = Paginator(rows, page_size).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return {"filterset": filterset, "page": page, "query": query.urlencode(),
            "errors": filterset.errors if filterset.is_bound else {}}


class Counted(Generic[M]):
    """`queryset` for a paginator, with its number of rows when the caller knows it already (an aggregate it made
    anyway, counters kept by the writes): the paginator then asks no COUNT of its own. `count` is a number or a
    function called once, when the paginator asks; None: the queryset's COUNT."""

    def __init__(self, queryset: QuerySet[M], *, count: int | Callable[[], int] | None = None) -> None:
        self.queryset = queryset
        self._count = count

    def count(self) -> int:
        if self._count is None:
            return self.queryset.count()
        return self._count() if callable(self._count) else self._count

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[M]:
        return iter(self.queryset)

    @overload
    def __getitem__(self, index: int, /) -> M: ...

    @overload
    def __getitem__(self, index: slice, /) -> list[M]: ...

    def __getitem__(self, index: int | slice, /) -> M | list[M]:
        return self.queryset[index]  # type: ignore[return-value]


class KeysFirst(Counted[M]):
    """`queryset` for a paginator, read in two steps: the page's primary keys by a query that selects nothing but
    what it filters and orders by, then those rows, whole (`count` as for `Counted`).

    For wide rows ordered over a join: PostgreSQL carries every selected column of every joined row through the
    hash join and the sort before the LIMIT keeps 50 of them. The Upgrade plan's rows (JSON of blockers and warnings,
    ~550 bytes) made its first page of 10,000 clusters a 5.7 MB hash and 15 ms; the keys alone take 5 ms. A row
    removed between the two queries is left out of the page.

    `keys`: (the rows, their primary keys) when the caller read the keys of the page it is about to show already
    (with its count, in one statement: `governance.upgrades.tally`); a page of those rows asks no key query, any
    other page asks its own."""

    def __init__(self, queryset: QuerySet[M], *, count: int | Callable[[], int] | None = None,
                 keys: tuple[slice, list] | None = None) -> None:
        super().__init__(queryset, count=count)
        self._keys = keys

    @overload
    def __getitem__(self, index: int, /) -> M: ...

    @overload
    def __getitem__(self, index: slice, /) -> list[M]: ...

    def __getitem__(self, index: int | slice, /) -> M | list[M]:
        if not isinstance(index, slice):
            return self[index:index + 1][0]
        keys = self._known(index)
        if keys is None:
            keys = list(self.queryset.values_list("pk", flat=True)[index])
        rows = {row.pk: row for row in self.queryset.order_by().filter(pk__in=keys)}
        return [rows[key] for key in keys if key in rows]

    def _known(self, index: slice) -> list | None:
        """The keys of `index` when they are within those the caller gave (a paginator cuts the last page short)."""
        if self._keys is None or index.step is not None:
            return None
        (given, keys), start = self._keys, index.start or 0
        if start != (given.start or 0) or index.stop is None or index.stop > given.stop:
            return None
        return keys[:index.stop - start]


def page_rows(number, per_page: int) -> slice:
    """The rows `Paginator.get_page(number)` shows when that page exists (page 1 for no number or one not a
    number): to read a page's keys with its count, before the paginator knows whether the page is there."""
    try:
        wanted = max(int(number), 1)
    except (TypeError, ValueError):
        wanted = 1
    # A number past any list (`?page=99999999999999999999`) still makes an OFFSET PostgreSQL takes (a bigint); the
    # paginator then shows the last page (or the API answers 404) as it would have.
    wanted = min(wanted, MAX_PAGE)
    return slice((wanted - 1) * per_page, wanted * per_page)


MAX_PAGE = 2**31
