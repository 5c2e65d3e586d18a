"""The sandbox carrier's Celery task: a queued call's simulation.

Found by the worker through `app.autodiscover_tasks(["calls.telephony.sandbox"])`
(callcenter/celery.py), as the apps' tasks.py modules are.
"""

from __future__ import annotations

from celery import shared_task

from calls.telephony.sandbox.simulation import run_call


# The name it had in calls/sandbox.py: tasks already queued under it still run.
@shared_task(name="calls.sandbox.run_sandbox_call_task", soft_time_limit=3600, time_limit=3660)
def run_sandbox_call_task(sid: str) -> None:
    """Play the sandbox call `sid`; running it again does nothing."""
    run_call(sid)
