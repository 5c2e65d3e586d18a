"""The product's metrics move when their events happen; alerts and dashboard use them."""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.db import DatabaseError
from django.urls import reverse
from django.utils import timezone
from prometheus_client import REGISTRY

from callcenter.metrics import ScrapeGauge
from calls import telephony
from calls.callbacks import record_call_status
from calls.dispatcher import dispatch
from calls.models import Call
from campaigns.models import Campaign, Contact
from tests.factories import CallFactory, ContactFactory, SpeechClipFactory, VoiceFactory
from tests.fakes.elevenlabs import BELLA_ID
from voices.clips import clip_key, render_clip
from voices.models import SpeechClip, Voice

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "callcenter.json"

SID = "CA" + "0" * 32
# A Wednesday at noon in Madrid: inside every profile's calling window.
NOON = datetime.datetime(2026, 11, 25, 11, 0, tzinfo=datetime.UTC)

pytestmark = pytest.mark.django_db


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def callback(status: str, sequence: int, **extra: str) -> dict[str, str]:
    return {"CallSid": SID, "CallStatus": status, "SequenceNumber": str(sequence), **extra}


# --- Calls ----------------------------------------------------------------------------------


def test_record_call_status_counts_a_move_once_when_committed(
    campaign, django_capture_on_commit_callbacks
) -> None:
    # given
    call = CallFactory(dialing=True, contact__campaign=campaign, provider_sid=SID)
    before = sample("callcenter_call_status_changes_total", status="ringing")

    # when the same move arrives twice, and a step back after it
    with django_capture_on_commit_callbacks(execute=True):
        record_call_status(call_id=call.pk, params=callback("ringing", 1))
        record_call_status(call_id=call.pk, params=callback("ringing", 1))
        record_call_status(call_id=call.pk, params=callback("queued", 0))

    # then
    assert sample("callcenter_call_status_changes_total", status="ringing") == before + 1


def test_record_call_status_counts_nothing_before_commit(campaign) -> None:
    call = CallFactory(dialing=True, contact__campaign=campaign, provider_sid=SID)
    before = sample("callcenter_call_status_changes_total", status="ringing")

    record_call_status(call_id=call.pk, params=callback("ringing", 1))

    assert sample("callcenter_call_status_changes_total", status="ringing") == before


@pytest.mark.parametrize(
    ("params", "outcome", "state"),
    [
        ({"CallStatus": "completed", "AnsweredBy": "human"}, "answered", "done"),
        ({"CallStatus": "completed", "AnsweredBy": "machine_end_beep"}, "voicemail", "retry"),
        ({"CallStatus": "busy"}, "busy", "retry"),
        ({"CallStatus": "failed", "ErrorCode": "21211"}, "rejected", "failed"),
    ],
)
def test_finish_call_counts_the_outcome_and_the_contact_state(
    campaign, django_capture_on_commit_callbacks, params, outcome, state
) -> None:
    # given
    call = CallFactory(dialing=True, contact__campaign=campaign, provider_sid=SID)
    finished = sample("callcenter_calls_finished_total", outcome=outcome)
    moved = sample("callcenter_contacts_state_total", state=state)

    # when
    with django_capture_on_commit_callbacks(execute=True):
        record_call_status(
            call_id=call.pk, params={"CallSid": SID, "SequenceNumber": "3", **params}
        )

    # then
    assert sample("callcenter_calls_finished_total", outcome=outcome) == finished + 1
    assert sample("callcenter_contacts_state_total", state=state) == moved + 1


def test_finish_call_counts_no_state_for_a_contact_already_moved_on(
    campaign, django_capture_on_commit_callbacks
) -> None:
    call = CallFactory(dialing=True, contact__campaign=campaign, provider_sid=SID)
    Contact.objects.filter(pk=call.contact_id).update(state=Contact.State.OPTED_OUT)
    finished = sample("callcenter_calls_finished_total", outcome="busy")
    retried = sample("callcenter_contacts_state_total", state="retry")

    with django_capture_on_commit_callbacks(execute=True):
        record_call_status(call_id=call.pk, params=callback("busy", 3))

    assert sample("callcenter_calls_finished_total", outcome="busy") == finished + 1
    assert sample("callcenter_contacts_state_total", state="retry") == retried


# --- Dialling -------------------------------------------------------------------------------


def dial(**overrides: object) -> telephony.ProviderCall:
    app = "https://callcenter.example.com"
    arguments: dict[str, object] = {
        "to": "+34600000001",
        "url": f"{app}/twilio/calls/7/answer",
        "fallback_url": f"{app}/twilio/calls/7/fallback",
        "status_callback": f"{app}/twilio/calls/7/status",
        "async_amd_callback": f"{app}/twilio/calls/7/amd",
        "timeout": 25,
        "time_limit": 600,
        "record": False,
        **overrides,
    }
    return telephony.create_call(**arguments)


@pytest.mark.parametrize(
    ("status", "code", "label", "error"),
    [
        (400, 21211, "21211", telephony.TelephonyRejected),
        (401, 20003, "20003", telephony.TelephonyRejected),
        (403, None, "http_403", telephony.TelephonyRejected),
        (503, None, "unavailable", telephony.TelephonyUnavailable),
    ],
)
def test_create_call_counts_dial_errors_by_code(fake_twilio, status, code, label, error) -> None:
    before = sample("callcenter_dial_errors_total", code=label)
    fake_twilio.fail_next(status, code=code, message="no")

    with pytest.raises(error):
        dial()

    assert sample("callcenter_dial_errors_total", code=label) == before + 1


def test_create_call_counts_a_missing_caller_number(fake_twilio, settings) -> None:
    settings.TWILIO_PHONE_NUMBER = ""
    before = sample("callcenter_dial_errors_total", code="not_configured")

    with pytest.raises(telephony.TelephonyNotConfigured):
        dial()

    assert sample("callcenter_dial_errors_total", code="not_configured") == before + 1


def test_fetch_call_errors_are_not_dial_errors(fake_twilio) -> None:
    before = sample("callcenter_dial_errors_total", code="20404")
    fake_twilio.fail_next(404, code=20404, message="not found")

    with pytest.raises(telephony.TelephonyRejected):
        telephony.fetch_call(sid=SID)

    assert sample("callcenter_dial_errors_total", code="20404") == before


# --- Webhooks -------------------------------------------------------------------------------


def test_twilio_webhook_times_every_request_refused_ones_too(client, campaign, settings) -> None:
    # given
    settings.APP_URL = "https://calls.example.com"
    call = CallFactory(dialing=True, contact__campaign=campaign, provider_sid=SID)
    path = reverse("calls:status", kwargs={"call_id": call.pk})
    params = callback("ringing", 1)
    signature = telephony.sign_request(url=settings.APP_URL + path, params=params)
    before = sample("callcenter_webhook_seconds_count", view="call_status")

    # when
    assert client.post(path, params, headers={"x-twilio-signature": signature}).status_code == 204
    assert client.post(path, params).status_code == 403

    # then
    assert sample("callcenter_webhook_seconds_count", view="call_status") == before + 2
    assert sample("callcenter_webhook_seconds_bucket", view="call_status", le="2.5") >= 2


# --- Speech ---------------------------------------------------------------------------------


@pytest.fixture
def bella(db) -> Voice:
    return VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")


def lookups(result: str) -> float:
    return sample("callcenter_speech_clip_lookups_total", result=result)


def test_render_clip_counts_a_miss_then_hits(fake_elevenlabs, bella) -> None:
    miss, hit = lookups("miss"), lookups("hit")

    render_clip(text="Hola.", voice=bella)
    render_clip(text="Hola.", voice=bella)
    render_clip(text="Hola.", voice=bella)

    assert (lookups("miss"), lookups("hit")) == (miss + 1, hit + 2)


def test_render_clip_counts_a_wait_for_another_renderer(
    fake_elevenlabs, bella, monkeypatch
) -> None:
    # given a line another process is rendering, ready after one poll
    text = "Buenos días."
    clip = SpeechClipFactory(
        key=clip_key(
            text=text,
            voice_id=BELLA_ID,
            model_id="eleven_multilingual_v2",
            voice_settings={},
            output_format="mp3_22050_32",
        ),
        text=text,
        voice=bella,
        model_id="eleven_multilingual_v2",
        output_format="mp3_22050_32",
        rendering_started_at=timezone.now(),
    )

    def other_process_finishes(seconds: float) -> None:
        SpeechClip.objects.filter(pk=clip.pk).update(
            status=SpeechClip.Status.READY, audio=f"clips/{clip.token}.mp3"
        )

    monkeypatch.setattr("voices.clips.time.sleep", other_process_finishes)
    wait, hit, miss = lookups("wait"), lookups("hit"), lookups("miss")

    # when
    got = render_clip(text=text, voice=bella, model_id="eleven_multilingual_v2")

    # then
    assert got.pk == clip.pk
    assert (lookups("wait"), lookups("hit"), lookups("miss")) == (wait + 1, hit, miss)
    assert fake_elevenlabs.requests_to("/v1/text-to-speech") == []


# --- Dispatch -------------------------------------------------------------------------------


@pytest.fixture
def running(campaign, settings, tmp_path) -> Campaign:
    settings.TWILIO_MAX_CPS = 100
    settings.DATA_DIR = tmp_path  # full pacing buckets on the file backend
    if settings.REDIS_URL:
        from django_redis import get_redis_connection

        redis = get_redis_connection("default")
        for key in redis.scan_iter("callcenter:pacing:*"):
            redis.delete(key)
    campaign.state = Campaign.State.RUNNING
    campaign.state_changed_at = NOON - datetime.timedelta(seconds=5)
    campaign.compliance_profile = "es"
    campaign.caller_number = "+34910000000"
    campaign.max_concurrent_calls = 100
    campaign.calls_per_second = 100
    campaign.save()
    return campaign


def test_dispatch_counts_calls_created_and_how_long_contacts_waited(
    running, django_capture_on_commit_callbacks
) -> None:
    # given a first call (added before the campaign started 5 s ago) and a retry due 30 s ago
    first = ContactFactory(
        campaign=running,
        phone="+34910000001",
        time_zone="Europe/Madrid",
        variables={"first_name": "Ana"},
    )
    Contact.objects.filter(pk=first.pk).update(created_at=NOON - datetime.timedelta(hours=1))
    ContactFactory(
        campaign=running,
        phone="+34910000002",
        time_zone="Europe/Madrid",
        variables={"first_name": "Eva"},
        state=Contact.State.RETRY,
        attempts=1,
        next_attempt_at=NOON - datetime.timedelta(seconds=30),
    )
    created = sample("callcenter_dispatch_calls_created_total")
    count = sample("callcenter_dispatch_lag_seconds_count")
    total = sample("callcenter_dispatch_lag_seconds_sum")

    # when
    with django_capture_on_commit_callbacks(execute=True):
        result = dispatch(now=NOON)

    # then
    assert len(result.created) == 2
    assert sample("callcenter_dispatch_calls_created_total") == created + 2
    assert sample("callcenter_dispatch_lag_seconds_count") == count + 2
    assert sample("callcenter_dispatch_lag_seconds_sum") == pytest.approx(total + 35)


# --- Live calls, read at scrape time --------------------------------------------------------


def live_calls(text: str) -> dict[str, float]:
    return {
        state: float(value)
        for state, value in re.findall(
            r'^callcenter_live_calls\{campaign_state="([a-z]+)"\} (\S+)$', text, re.MULTILINE
        )
    }


def test_metrics_reports_live_calls_by_campaign_state_at_scrape_time(client, campaign) -> None:
    # given two live calls and an ended one in a running campaign
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    CallFactory(dialing=True, contact__campaign=campaign, placed=True)
    CallFactory(dialing=True, contact__campaign=campaign, placed=True, status="ringing")
    CallFactory(dialing=True, contact__campaign=campaign, placed=True, status="completed")

    # when
    first = live_calls(client.get("/metrics").content.decode())
    Call.objects.filter(status="ringing").update(status="completed")
    second = live_calls(client.get("/metrics").content.decode())

    # then
    assert first["running"] == 2 and first["paused"] == 0
    assert set(first) == set(Campaign.State.values)
    assert second["running"] == 1


def test_metrics_reports_live_calls_in_multiprocess_mode(
    client, campaign, monkeypatch, tmp_path
) -> None:
    # given gunicorn's setting: metrics added up from the workers' files
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    CallFactory(dialing=True, contact__campaign=campaign, provider_sid=SID)

    # when
    text = client.get("/metrics").content.decode()

    # then
    assert live_calls(text)["draft"] == 1


# --- Alert rules and dashboard --------------------------------------------------------------

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
PROMQL_WORDS |= {"and", "or", "unless", "offset", "inf", "nan"}
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (functions, labels, keywords aside)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = re.findall(r"(?<![\w.$])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    return {name for name in names if name.lower() not in PROMQL_WORDS}


def known_series(client) -> set[str]:
    """Series /metrics may serve: the project's from callcenter.metrics, django_* ones."""
    client.get("/health")  # django_prometheus registers its HTTP metrics on first request
    names = {"up"}
    for family in REGISTRY.collect():
        if family.name.startswith("callcenter_") or family.name.startswith("django_"):
            suffixes = SAMPLE_SUFFIXES.get(family.type, ("",))
            names |= {family.name + suffix for suffix in suffixes}
    return names


def test_metric_names_reads_the_selectors_of_an_expression() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, view) (rate(a_bucket{view=~"x|y"}[5m]))) > 1'
        " and on (job) up == 0 / clamp_min(sum(rate(b_total[$__rate_interval])), 0.001)"
    )

    assert metric_names(expr) == {"a_bucket", "up", "b_total"}


def test_project_metrics_are_all_defined_in_callcenter_metrics() -> None:
    import callcenter.metrics

    defined = set()
    for value in vars(callcenter.metrics).values():
        describe = getattr(value, "describe", None)
        if callable(describe) and not isinstance(value, type):
            defined |= {family.name for family in describe()}
    served = {f.name for f in REGISTRY.collect() if f.name.startswith("callcenter_")}

    assert served == defined


def test_alert_rules_are_complete_and_use_known_metrics(client) -> None:
    known = known_series(client)
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]

    assert len(rules) >= 7
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert metric_names(rule["expr"]) <= known, rule["alert"]


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed")
def test_alert_rules_pass_promtool() -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_panels_query_known_metrics(client) -> None:
    known = known_series(client)
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]

    assert dashboard["schemaVersion"] >= 39
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["DS_PROMETHEUS"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert metric_names(target["expr"]) <= known, panel["title"]
    queried = {name for p in panels for t in p["targets"] for name in metric_names(t["expr"])}
    assert "callcenter_live_calls" in queried


def test_scrape_gauge_reports_nothing_until_an_app_gives_it_a_reader() -> None:
    gauge = ScrapeGauge("callcenter_test_gauge", "A gauge no app reads.", "state")

    assert list(gauge.collect()) == []
    assert [family.name for family in gauge.describe()] == ["callcenter_test_gauge"]


def test_scrape_gauge_reports_nothing_when_the_database_cannot_be_read(caplog) -> None:
    # given
    gauge = ScrapeGauge("callcenter_test_gauge", "A gauge whose reads fail.", "state")

    def unreadable() -> dict[str, float]:
        raise DatabaseError("connection refused")

    gauge.read_by(unreadable)

    # when
    families = list(gauge.collect())

    # then
    assert families == []
    assert "callcenter_test_gauge left out" in caplog.text


def test_scrape_gauge_reports_each_value_its_reader_gives() -> None:
    gauge = ScrapeGauge("callcenter_test_gauge", "A gauge.", "state")
    gauge.read_by(lambda: {"running": 2, "paused": 0})

    (family,) = gauge.collect()

    assert {(s.labels["state"], s.value) for s in family.samples} == {("running", 2), ("paused", 0)}
