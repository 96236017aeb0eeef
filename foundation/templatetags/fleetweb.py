"""Template helpers: compliance scores as coloured badges and trends as inline SVG (no chart library)."""

from __future__ import annotations

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

register = template.Library()


def score_class(score: float | None) -> str:
    if score is None:
        return "none"
    if score >= 90:
        return "good"
    if score >= 70:
        return "fair"
    return "poor"


@register.simple_tag
def score(value: float | None) -> str:
    """A score badge: 'n/a' when nothing is assigned."""
    if value is None:
        return mark_safe('<span class="score none" title="no policy applies">n/a</span>')  # noqa: S308 - constant
    return format_html('<span class="score {}" data-score="{}">{}%</span>', score_class(value), value,
                       f"{value:.0f}" if value == int(value) else f"{value:.1f}")


@register.simple_tag
def trend(points: list[dict], width: int = 640, height: int = 120) -> str:
    """An SVG line of score (0-100) over time; points are {at, score} oldest first."""
    points = [p for p in points if p.get("score") is not None]
    if len(points) < 2:
        return format_html('<p class="muted small trend-empty">Not enough history for a trend yet ({} point{}).</p>',
                           len(points), "" if len(points) == 1 else "s")
    start, end = points[0]["at"].timestamp(), points[-1]["at"].timestamp()
    span = max(end - start, 1)
    pad = 24

    def xy(p):
        x = pad + (p["at"].timestamp() - start) / span * (width - 2 * pad)
        y = pad / 2 + (100 - p["score"]) / 100 * (height - pad)
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(p) for p in points)
    last = points[-1]
    grid = format_html_join("", '<line x1="{}" x2="{}" y1="{}" y2="{}" class="grid"/><text x="2" y="{}">{}</text>',
                            ((pad, width - pad, y, y, y + 4, label) for label, y in
                             ((100, pad / 2), (50, pad / 2 + (height - pad) / 2), (0, height - pad / 2))))
    return format_html(
        '<svg class="trend" viewBox="0 0 {w} {h}" width="100%" height="{h}" role="img" '
        'aria-label="compliance trend from {a} to {b}, now {s}%">{grid}<polyline points="{line}"/>'
        '<text class="dates" x="{pad}" y="{h}">{a}</text><text class="dates end" x="{r}" y="{h}">{b}</text></svg>',
        w=width, h=height, grid=grid, line=line, pad=pad, r=width - pad,
        a=points[0]["at"].strftime("%Y-%m-%d %H:%M"), b=last["at"].strftime("%Y-%m-%d %H:%M"), s=last["score"])


@register.filter
def get_item(mapping, key) -> object:
    """`{{ d|get_item:k }}`: a dict's value for a key held in a variable (None when absent or not a dict)."""
    return mapping.get(key) if isinstance(mapping, dict) else None
