"""The nightly purge of expired data (calls.tasks.purge_expired_data_task) as a periodic
task operators may retime in the admin ("Periodic tasks"), like voices/0003's: a daily
calendar job, not one of beat's ticks. A row that already exists (retimed, disabled) is
left alone.
"""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

NAME = "purge-expired-data"


def create_periodic_task(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")

    if not PeriodicTask.objects.filter(name=NAME).exists():
        at_four, _ = CrontabSchedule.objects.get_or_create(
            minute="0",
            hour="4",
            day_of_week="*",
            day_of_month="*",
            month_of_year="*",
            timezone=settings.TIME_ZONE,
        )
        PeriodicTask.objects.create(
            name=NAME,
            task="calls.tasks.purge_expired_data_task",
            crontab=at_four,
            description="Delete each partner's transcripts, recordings, outcomes and uploaded "
            "files older than its retention periods.",
        )
    # A running beat reloads its schedule when this changes (model signals do not fire on
    # the historical models a migration uses).
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def delete_periodic_task(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("calls", "0014_call_recording_after_announcement"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_periodic_task, delete_periodic_task)]
