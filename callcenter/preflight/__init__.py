"""The go-live checks behind `manage.py preflight`.

An operator runs them with the real credentials before the first campaign. Each check is
a function of the seconds any one request may take, returning one `Result`: its status
(OK, WARN, FAIL or SKIP), what it found and, unless OK, what to do. The checks change
nothing: they read the database and the cache, ask the vendors through the project's own
adapters (the clients, base URLs and request shapes production uses), and fetch APP_URL's
/health; the media storage's line writes a small file under preflight/ and deletes it.
Only `configure_numbers` (`preflight --configure-numbers`) changes something: it points
the numbers people ring back at this app's inbound webhooks.

The package, by topic: ``base`` (what a check is, and the registry), then the checks of
``infrastructure`` (database, Redis, worker and beat, APP_URL), ``storage`` (the media
folder or bucket), ``carrier`` (Twilio), ``voice`` (ElevenLabs) and ``model`` (OpenAI).
Import from ``callcenter.preflight``.
"""

from __future__ import annotations

from collections.abc import Iterator

# Each module registers its checks as it is imported: this order is the order they run
# and print in (run_checks), so the imports are kept in it.
from callcenter.preflight.base import CHECKS as CHECKS
from callcenter.preflight.base import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from callcenter.preflight.base import DIALLING_STATES as DIALLING_STATES
from callcenter.preflight.base import HEARTBEAT_DEAD_SECONDS as HEARTBEAT_DEAD_SECONDS
from callcenter.preflight.base import HEARTBEAT_LATE_SECONDS as HEARTBEAT_LATE_SECONDS
from callcenter.preflight.base import LOW_CHARACTERS_SHARE as LOW_CHARACTERS_SHARE
from callcenter.preflight.base import NAMES_SHOWN as NAMES_SHOWN
from callcenter.preflight.base import Check as Check
from callcenter.preflight.base import Finding as Finding
from callcenter.preflight.base import Result as Result
from callcenter.preflight.base import Status as Status

# isort: split
from callcenter.preflight.infrastructure import check_app_health as check_app_health
from callcenter.preflight.infrastructure import check_app_url as check_app_url
from callcenter.preflight.infrastructure import check_database as check_database
from callcenter.preflight.infrastructure import check_redis as check_redis
from callcenter.preflight.infrastructure import check_relay_socket as check_relay_socket
from callcenter.preflight.infrastructure import check_worker_and_beat as check_worker_and_beat

# isort: split
from callcenter.preflight.storage import check_media_storage as check_media_storage

# isort: split
from callcenter.preflight.carrier import check_caller_numbers as check_caller_numbers
from callcenter.preflight.carrier import check_inbound_numbers as check_inbound_numbers
from callcenter.preflight.carrier import check_twilio_account as check_twilio_account
from callcenter.preflight.carrier import configure_numbers as configure_numbers
from callcenter.preflight.carrier import inbound_webhooks as inbound_webhooks
from callcenter.preflight.carrier import numbers_rung_back as numbers_rung_back

# isort: split
from callcenter.preflight.voice import check_default_voice as check_default_voice
from callcenter.preflight.voice import check_elevenlabs as check_elevenlabs

# isort: split
from callcenter.preflight.model import check_model_extraction as check_model_extraction
from callcenter.preflight.model import check_model_turn as check_model_turn

# --- All of them -----------------------------------------------------------------------


def run_checks(*, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Result]:
    """Every check's result, in order (what the product runs on, then its address, then
    the vendors), each as soon as it is known."""
    for check in CHECKS:
        yield check(timeout=timeout)
