"""Staff and API actions on objects, in the audit trail: who created, changed or deleted
what, when and from where.

Any admin records its additions, changes and deletions by taking ``AuditedAdminMixin``
before ``admin.ModelAdmin``; any API viewset its creates, updates and deletes by taking
``AuditedViewSetMixin`` before its DRF base. Entries name the object by type
(``app_label.model``) and id, and what changed by field names only: never an object's
text, which for a contact or a do-not-call entry is a person's name or number.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework.request import Request

from audit.models import Action
from audit.services import Actor, Event, record_many
from callcenter.filters import partner_path

# Where the admin's form leaves the names of the fields a save changed (on the request:
# the ModelAdmin is shared by every request).
_CHANGED = "_audit_changed_fields"


def object_type(obj: models.Model) -> str:
    """``"campaigns.campaign"``: the trail's name for ``obj``'s model."""
    return obj._meta.label_lower


def object_id(obj: models.Model) -> str:
    """``obj``'s id as the trail keeps it (64 characters at most). A partner API key's id
    is "prefix.hash" (djangorestframework-api-key): its prefix names it, and the hash of a
    secret has no place in the trail."""
    pk = str(obj.pk)
    if len(pk) > 64 and "." in pk:
        pk = pk.partition(".")[0]
    return pk[:64]


def partner_id_of(obj: models.Model) -> int | None:
    """The id of the partner that owns ``obj`` (along its foreign keys); None when no
    partner owns it (a user, a voice, a global do-not-call entry)."""
    path = partner_path(type(obj))
    if path is None:
        return None
    if path == "pk":
        return int(obj.pk)
    *hops, last = path.split("__")
    owner: Any = obj
    for hop in hops:
        owner = getattr(owner, hop, None)
        if owner is None:
            return None
    value = getattr(owner, f"{last}_id", None)
    return int(value) if value is not None else None


def object_events(
    action: str, objects: Iterable[models.Model], *, actor: Actor, changed: list[str] | None
) -> list[Event]:
    """One entry per object, each with its partner and the names of the fields set; an
    object that is a number (a contact, a do-not-call entry) has it as the entry's subject,
    hashed, so that a data-subject export finds what staff and partners did with it."""
    return [
        Event(
            action,
            partner_id_of(obj),
            subject_phone=str(getattr(obj, "phone", "") or ""),
            object_type=object_type(obj),
            object_id=object_id(obj),
            actor=actor,
            details={} if changed is None else {"changed": changed},
        )
        for obj in objects
    ]


def record_object(
    action: str,
    obj: models.Model,
    *,
    request: HttpRequest | Request,
    changed: Iterable[str] | None = None,
) -> None:
    """Record ``action`` on ``obj`` by whoever made ``request``: for writes the mixins
    below do not see (an API action of its own, a view's custom create)."""
    actor = Actor.from_request(request)
    names = None if changed is None else sorted(changed)
    record_many(object_events(action, [obj], actor=actor, changed=names))


class AuditedAdminMixin:
    """Admin additions, changes and deletions recorded in the audit trail, by the staff
    user and from the address that made them (beside Django's own admin log)."""

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> Any:
        # The fields the form changed, and the inlines whose rows were added, changed or
        # deleted ("campaigns.partnermember"), read here where the forms are at hand.
        changed = list(getattr(form, "changed_data", []))
        for formset in formsets or []:
            if formset.new_objects or formset.changed_objects or formset.deleted_objects:
                changed.append(object_type(formset.model))
        setattr(request, _CHANGED, changed)
        return super().construct_change_message(request, form, formsets, add)  # type: ignore[misc]

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        self._record(request, Action.OBJECT_CREATED, [obj], changed=_changed(request))
        return super().log_addition(request, obj, message)  # type: ignore[misc]

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        self._record(request, Action.OBJECT_CHANGED, [obj], changed=_changed(request))
        return super().log_change(request, obj, message)  # type: ignore[misc]

    def log_deletions(self, request: HttpRequest, queryset: QuerySet | list) -> Any:
        # Called before the objects are deleted: their ids and partners are still there.
        self._record(request, Action.OBJECT_DELETED, list(queryset), changed=None)
        return super().log_deletions(request, queryset)  # type: ignore[misc]

    def _record(
        self,
        request: HttpRequest,
        action: str,
        objects: list[models.Model],
        *,
        changed: list[str] | None,
    ) -> None:
        record_many(
            object_events(action, objects, actor=Actor.from_request(request), changed=changed)
        )


def _changed(request: HttpRequest) -> list[str]:
    return list(getattr(request, _CHANGED, []))


class AuditedViewSetMixin:
    """API creates, updates and deletes recorded in the audit trail, by the partner's key
    or user (or staff) and from the address that made them, in the same transaction.

    The viewset's ``perform_create``, ``perform_update`` and ``perform_destroy`` are
    wrapped when the class is made, whether DRF's or the viewset's own (most call a
    service), so one line in the class's bases is all a viewset needs."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, action in _PERFORMED.items():
            method = getattr(cls, name, None)
            if method is not None and not getattr(method, "audited", False):
                setattr(cls, name, _audited(method, action))


_PERFORMED = {
    "perform_create": Action.OBJECT_CREATED,
    "perform_update": Action.OBJECT_CHANGED,
    "perform_destroy": Action.OBJECT_DELETED,
}


def _audited(method: Callable[[Any, Any], None], action: str) -> Callable[[Any, Any], None]:
    @functools.wraps(method)
    def perform(view: Any, target: Any) -> None:
        # A subclass's own perform_* calling its parent's: the outermost records, once.
        if getattr(view, "_audit_busy", False):
            method(view, target)
            return
        view._audit_busy = True
        try:
            with transaction.atomic():
                if action == Action.OBJECT_DELETED:
                    # First, while the object still has its id and partner; rolled back
                    # with the deletion when that is refused.
                    record_object(action, target, request=view.request)
                    method(view, target)
                    return
                method(view, target)
                if isinstance(target.instance, models.Model):
                    changed = getattr(target, "validated_data", None) or {}
                    record_object(action, target.instance, request=view.request, changed=changed)
        finally:
            view._audit_busy = False

    perform.audited = True  # type: ignore[attr-defined]
    return perform
