from __future__ import annotations

from django.urls import path

from calls import telephony, views, webhooks

app_name = "calls"

# Twilio's webhooks, one set per call. Their absolute URLs (calls.links.webhook_url) are
# what Twilio signs, so these paths are part of every call in flight: change with care.
urlpatterns = [
    path("twilio/calls/<int:call_id>/answer", webhooks.answer, name="answer"),
    path("twilio/calls/<int:call_id>/turn", webhooks.turn, name="turn"),
    path("twilio/calls/<int:call_id>/continue", webhooks.continue_reply, name="continue"),
    path("twilio/calls/<int:call_id>/voicemail", webhooks.voicemail, name="voicemail"),
    path("twilio/calls/<int:call_id>/amd", webhooks.machine_detection, name="amd"),
    path("twilio/calls/<int:call_id>/recording", webhooks.recording, name="recording"),
    path("twilio/calls/<int:call_id>/status", webhooks.call_status, name="status"),
    path(
        "twilio/calls/<int:call_id>/transfer-ended",
        webhooks.transfer_ended,
        name="transfer-ended",
    ),
    path("twilio/calls/<int:call_id>/relay-ended", webhooks.relay_ended, name="relay-ended"),
    path("twilio/calls/<int:call_id>/fallback", webhooks.fallback, name="fallback"),
    path(
        "twilio/calls/<int:call_id>/fallback/opt-out",
        webhooks.fallback_opt_out,
        name="fallback-opt-out",
    ),
]

# The numbers' own webhooks, for the calls they receive (calls.inbound): each of the
# account's numbers is pointed at them (preflight --configure-numbers).
urlpatterns += [
    path("twilio/inbound", webhooks.inbound_call, name="inbound"),
    path("twilio/inbound/status", webhooks.inbound_status, name="inbound-status"),
    path("twilio/inbound/opt-out", webhooks.inbound_opt_out, name="inbound-opt-out"),
    path("twilio/inbound/fallback", webhooks.inbound_fallback, name="inbound-fallback"),
]

# Staff only: a call's recording, fetched from Twilio on demand.
urlpatterns += [path("calls/<int:call_id>/recording", views.recording, name="recording-audio")]

# The telephony backend's own routes (the sandbox carrier's recordings, RecordingUrl of a
# sandbox call): a deployment on Twilio serves nothing of the simulated carrier. URLs are
# built once per process, from the settings it started with.
urlpatterns += telephony.backend().urlpatterns()
