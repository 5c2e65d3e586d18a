"""Events: recorded once (by key) with one delivery per subscribed endpoint, queued after
commit."""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from campaigns.models import (
    Partner,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from campaigns.tasks import deliver_webhook_task

# The namespace of the event ids derived from a key (see ``emit_event``).
EVENT_ID_NAMESPACE = uuid.UUID("6f1c1f8e-2b7a-4c55-9a43-52cf4c1d0b9e")


# --- Events ---------------------------------------------------------------------------------


def emit_event(
    *,
    partner: Partner,
    event_type: str,
    payload: dict[str, Any],
    key: str = "",
    now: datetime.datetime | None = None,
) -> int:
    """Record ``event_type`` (its ``data`` is ``payload``) for every active endpoint of
    ``partner`` subscribed to it and queue each delivery after commit; returns how many.

    ``key`` names the event for idempotency: the same type and key give the same event id,
    so emitting again (a task run twice) records nothing new. Without it every call is a
    new event.
    """
    if event_type not in WebhookEvent.values:
        raise ValueError(f"unknown webhook event {event_type!r}")
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.for_partner(partner).active()
        if event_type in endpoint.events
    ]
    if not endpoints:
        return 0
    now = now or timezone.now()
    event_id = uuid.uuid5(EVENT_ID_NAMESPACE, f"{event_type}:{key}") if key else uuid.uuid4()
    # Stored as it is sent, so that every attempt sends the same body; through Django's
    # encoder so that payloads may hold datetimes, decimals and UUIDs.
    envelope = json.loads(
        json.dumps(
            {"id": event_id, "type": event_type, "created_at": now, "data": payload},
            cls=DjangoJSONEncoder,
        )
    )
    created = 0
    with transaction.atomic():
        for endpoint in endpoints:
            delivery, is_new = WebhookDelivery.objects.get_or_create(
                endpoint=endpoint,
                event_id=event_id,
                defaults={"event_type": event_type, "payload": envelope, "next_attempt_at": now},
            )
            if is_new:
                created += 1
                # celery-types predates delay_on_commit (Celery 5.4).
                deliver_webhook_task.delay_on_commit(delivery.pk)  # type: ignore[attr-defined]
    return created
