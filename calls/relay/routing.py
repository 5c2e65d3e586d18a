"""The WebSocket routes of the ASGI application (``callcenter.asgi``): ConversationRelay's
socket for each relay call, at the URL ``calls.links.relay_url`` gives Twilio."""

from __future__ import annotations

from django.urls import path

from calls.relay.consumer import RelayConsumer

websocket_urlpatterns = [
    path("relay/<int:call_id>/", RelayConsumer.as_asgi(), name="relay"),
]
