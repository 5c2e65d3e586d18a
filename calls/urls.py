from __future__ import annotations

from django.urls import path

from calls import webhooks

app_name = "calls"

urlpatterns = [
    path("twilio/calls/<int:call_id>/status", webhooks.call_status, name="status"),
]
