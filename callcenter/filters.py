"""The API's filter backend (DEFAULT_FILTER_BACKENDS): a module of its own, since DRF reads
that setting while its views load, before callcenter.api can be imported."""

from __future__ import annotations

import datetime
from functools import cache
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_filters.rest_framework import DjangoFilterBackend

from callcenter.access import partner_model, partner_of


class PartnerScopedFilterBackend(DjangoFilterBackend):
    """django-filter's backend, but a filter naming an object (``?campaign=7``) chooses
    among the request's partner's objects only.

    A filter on the whole table found another partner's campaign, filtered the partner's
    rows by it and answered 200 with an empty page, while an id that does not exist
    answered 400: the difference told a partner which ids exist. Now both are unknown ids,
    answered alike (400, the same message). Objects of no partner (voices) are shared.
    """

    def get_filterset(self, request: Any, queryset: Any, view: Any) -> Any:
        filterset = super().get_filterset(request, queryset, view)
        partner = partner_of(request) if filterset is not None else None
        if partner is None:
            return filterset  # staff see every partner's objects
        for field in filterset.form.fields.values():
            if isinstance(field, forms.ModelChoiceField):  # and ModelMultipleChoiceField
                choices: Any = field.queryset  # a filter's choices always have a queryset
                path = partner_path(choices.model)
                if path is not None:
                    field.queryset = choices.filter(**{path: partner.pk})
        return filterset


@cache
def partner_path(model: type[models.Model], depth: int = 3) -> str | None:
    """The lookup from ``model`` to the partner that owns its rows (``"campaign__partner"``),
    along foreign keys; None for a model no partner owns."""
    partner = partner_model()
    if issubclass(model, partner):
        return "pk"
    if depth == 0:
        return None
    for field in model._meta.get_fields():
        if isinstance(field, models.ForeignKey) and field.related_model is partner:
            return field.name
    for field in model._meta.get_fields():
        if isinstance(field, models.ForeignKey) and field.related_model is not model:
            inner = partner_path(field.related_model, depth - 1)
            if inner is not None:
                return field.name if inner == "pk" else f"{field.name}__{inner}"
    return None


class UtcIsoDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO 8601 moment, turned to UTC: PostgreSQL refuses offsets beyond ±16 hours,
    which ISO 8601 allows (``+23:05``)."""

    def to_python(self, value: Any) -> datetime.datetime | None:
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(datetime.UTC)
        except OverflowError:
            raise ValidationError(
                _("This moment is outside the dates that can be stored."), code="out_of_range"
            ) from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField
