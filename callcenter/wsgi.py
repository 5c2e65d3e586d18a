"""WSGI entry point (management tools and any WSGI server)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from callcenter.bodies import LimitBodyWSGI

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.settings")
# Bodies over their limit are refused by Content-Length before Django reads them.

application = LimitBodyWSGI(get_wsgi_application())
