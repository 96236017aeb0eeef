"""Filters shared by the apps' filtersets, checked so that bad input is a 400 naming the field, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField


class UTCIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 datetime, handed to the database in UTC: PostgreSQL refuses offsets beyond ±15:59
    ("time zone displacement out of range"), and a year-1 date with a negative offset leaves the calendar."""

    def to_python(self, value) -> datetime | None:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except (OverflowError, ValueError):
            raise forms.ValidationError("Enter a date and time within years 1 to 9999.", code="invalid") from None


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCIsoDateTimeField
