"""ASGI entry point: uvicorn serves the site, the API and Twilio's webhooks from here, and
the WebSockets of ConversationRelay calls (Django Channels, ``calls.relay``)."""

from __future__ import annotations

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.settings")
# Requests run in threads of their own here: they share a pool of database connections
# (see DATABASE_POOL in settings.py) rather than each keeping one open.
os.environ.setdefault("DATABASE_POOL", "true")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application() does

# These need the settings configured above.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from callcenter.bodies import LimitBodyASGI  # noqa: E402
from callcenter.exposure import LoopbackOnlyWithPublishedKey  # noqa: E402
from callcenter.warmup import warm_up  # noqa: E402
from calls.middleware import WebhookASGIHandler  # noqa: E402
from calls.relay.routing import websocket_urlpatterns  # noqa: E402

# HTTP: Django's handler, with a shorter way for Twilio's webhooks, and around it what must
# be decided before Django reads a byte of the body. WebSockets: the relay calls' sockets,
# each checking Twilio's signature before it is accepted. Around both, the refusal to
# serve beyond loopback with a published secret key.
application = LoopbackOnlyWithPublishedKey(
    ProtocolTypeRouter(
        {
            # django-stubs types the handler's scope as a dict, the ASGI spec as a mapping.
            "http": LimitBodyASGI(WebhookASGIHandler()),  # type: ignore[arg-type]
            "websocket": URLRouter(websocket_urlpatterns),
        }
    ),
    key=settings.SECRET_KEY,
    published=settings.PUBLISHED_SECRET_KEYS,
)
warm_up()
# What start-up made (Django, the project, the clients) lives as long as the process: kept
# out of the garbage collector's full collections, which otherwise scan it all and stop
# every request of this worker meanwhile (docs/decisions/0002-gc-freeze.md).
gc.freeze()
