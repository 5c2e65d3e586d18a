"""The schedules operators may retime in the admin ("Periodic tasks"), as database rows.

Beat's ticks stay in code (CELERY_BEAT_SCHEDULE). These two are slow, calendar-like jobs
whose time is an operator's choice: the nightly voice sync (03:30 in TIME_ZONE) and the
hourly purge of idempotency keys. Both live here, in one app, so that one migration depends
on django-celery-beat's; a row that already exists (retimed, or disabled) is left alone.
"""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

VOICE_SYNC = "sync-voices"
PURGE = "purge-idempotency-keys"


def create_periodic_tasks(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")

    if not PeriodicTask.objects.filter(name=VOICE_SYNC).exists():
        at_half_past_three, _ = CrontabSchedule.objects.get_or_create(
            minute="30",
            hour="3",
            day_of_week="*",
            day_of_month="*",
            month_of_year="*",
            timezone=settings.TIME_ZONE,
        )
        PeriodicTask.objects.create(
            name=VOICE_SYNC,
            task="voices.tasks.sync_voices_task",
            crontab=at_half_past_three,
            description="Sync the voice catalogue from ElevenLabs (skipped without an API key).",
        )
    if not PeriodicTask.objects.filter(name=PURGE).exists():
        hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
        PeriodicTask.objects.create(
            name=PURGE,
            task="callcenter.tasks.purge_idempotency_keys_task",
            interval=hourly,
            description="Forget kept answers of idempotent API requests older than "
            "IDEMPOTENCY_KEY_HOURS.",
        )
    # A running beat reloads its schedule when this changes (model signals do not fire on
    # the historical models a migration uses).
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def delete_periodic_tasks(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[VOICE_SYNC, PURGE]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("voices", "0002_speech_clips"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_periodic_tasks, delete_periodic_tasks)]
