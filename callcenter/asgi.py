"""ASGI entry point: uvicorn serves the site, the API and Twilio's webhooks from here."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.settings")
# Requests run in threads of their own here: they share a pool of database connections
# (see DATABASE_POOL in settings.py) rather than each keeping one open.
os.environ.setdefault("DATABASE_POOL", "true")
application = get_asgi_application()

from callcenter.warmup import warm_up  # noqa: E402 - needs the settings configured above

warm_up()
