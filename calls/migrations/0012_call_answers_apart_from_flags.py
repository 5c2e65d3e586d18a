"""A call's outcome kept in two fields: the partner's answers apart from the platform's
flags. ``outcome`` becomes ``flags``; the keys that are no flag move to ``answers``."""

from django.db import migrations, models

# calls.models.CALL_OUTCOME_KEYS as it stood when the fields were split (a migration keeps
# its own copy: the model's set may grow later).
FLAG_KEYS = [
    "callback",
    "callback_at",
    "callback_note",
    "do_not_call",
    "extraction_error",
    "extraction_failed",
    "extraction_raw",
    "opted_out",
    "transfer_failed",
    "transfer_status",
    "transferred",
]


def split_outcomes(apps, schema_editor):
    """Each call's answers out of its old outcome (now ``flags``), which keeps the flags."""
    Call = apps.get_model("calls", "Call")
    calls = Call.objects.using(schema_editor.connection.alias).exclude(flags={})
    batch = []
    for call in calls.only("pk", "flags").iterator(chunk_size=2000):
        outcome = call.flags if isinstance(call.flags, dict) else {}
        call.answers = {key: value for key, value in outcome.items() if key not in FLAG_KEYS}
        call.flags = {key: value for key, value in outcome.items() if key in FLAG_KEYS}
        batch.append(call)
        if len(batch) == 2000:
            Call.objects.bulk_update(batch, ["answers", "flags"])
            batch = []
    Call.objects.bulk_update(batch, ["answers", "flags"])


def merge_outcomes(apps, schema_editor):
    """Back to one outcome: the answers folded into the flags (``outcome`` once renamed)."""
    Call = apps.get_model("calls", "Call")
    calls = Call.objects.using(schema_editor.connection.alias).exclude(answers={})
    batch = []
    for call in calls.only("pk", "answers", "flags").iterator(chunk_size=2000):
        answers = call.answers if isinstance(call.answers, dict) else {}
        flags = call.flags if isinstance(call.flags, dict) else {}
        call.flags = {**answers, **flags}
        batch.append(call)
        if len(batch) == 2000:
            Call.objects.bulk_update(batch, ["flags"])
            batch = []
    Call.objects.bulk_update(batch, ["flags"])


class Migration(migrations.Migration):

    dependencies = [
        ("calls", "0011_call_direction_inbound"),
    ]

    operations = [
        migrations.RenameField(model_name="call", old_name="outcome", new_name="flags"),
        migrations.AlterField(
            model_name="call",
            name="flags",
            field=models.JSONField(blank=True, default=dict, verbose_name="flags"),
        ),
        migrations.AddField(
            model_name="call",
            name="answers",
            field=models.JSONField(blank=True, default=dict, verbose_name="answers"),
        ),
        migrations.RunPython(split_outcomes, merge_outcomes),
    ]
