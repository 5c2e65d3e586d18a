"""The Celery application: configured from Django settings (``CELERY_*``)."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

from callcenter.logging import bind_task_context, unbind_task_context

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.settings")

app = Celery("callcenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The project's own tasks live in callcenter/tasks.py; callcenter is not an app.
app.autodiscover_tasks(["callcenter"])

# A task's logs carry its id as their request id, as a web request's carry its own.
task_prerun.connect(bind_task_context, weak=False)
task_postrun.connect(unbind_task_context, weak=False)
