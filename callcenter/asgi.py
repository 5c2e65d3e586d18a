"""ASGI entry point: uvicorn serves the site, the API and Twilio's webhooks from here."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.settings")
application = get_asgi_application()
