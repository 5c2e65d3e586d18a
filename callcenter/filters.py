"""The API's filter backend (DEFAULT_FILTER_BACKENDS): a module of its own, since DRF reads
that setting while its views load, before callcenter.api can be imported."""

from __future__ import annotations

from functools import cache
from typing import Any

from django import forms
from django.db import models
from django_filters.rest_framework import DjangoFilterBackend

from callcenter.access import partner_of
from campaigns.models import Partner


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
            # ModelMultipleChoiceField too; a queryset is set on every field of a filterset
            if isinstance(field, forms.ModelChoiceField) and field.queryset is not None:
                model: type[models.Model] = field.queryset.model
                path = partner_path(model)
                if path is not None:
                    field.queryset = field.queryset.filter(**{path: partner.pk})
        return filterset


@cache
def partner_path(model: type[models.Model], depth: int = 3) -> str | None:
    """The lookup from ``model`` to the partner that owns its rows (``"campaign__partner"``),
    along foreign keys; None for a model no partner owns."""
    if issubclass(model, Partner):
        return "pk"
    if depth == 0:
        return None
    for field in model._meta.get_fields():
        if isinstance(field, models.ForeignKey) and field.related_model is Partner:
            return field.name
    for field in model._meta.get_fields():
        if isinstance(field, models.ForeignKey) and field.related_model is not model:
            inner = partner_path(field.related_model, depth - 1)
            if inner is not None:
                return field.name if inner == "pk" else f"{field.name}__{inner}"
    return None
