"""Per-partner telephony limits (campaigns/limits.py). Existing partners keep the caller
and transfer numbers their campaigns already use, so that nothing they run stops on the
upgrade; they get the default caps (the dialer clamps campaigns above them) and the
profiles with calling-hour rules only: a campaign on "none" is paused by the dialer until
staff allow "none" for its partner or change its profile."""

import campaigns.models
import django.core.validators
from decimal import Decimal
from django.db import migrations, models



def keep_numbers_in_use(apps, schema_editor):
    Partner = apps.get_model("campaigns", "Partner")
    Campaign = apps.get_model("campaigns", "Campaign")
    for partner in Partner.objects.all():
        campaigns = Campaign.objects.filter(partner=partner).order_by("pk")
        partner.caller_numbers = list(
            dict.fromkeys(campaigns.exclude(caller_number="").values_list("caller_number", flat=True))
        )
        partner.transfer_numbers = list(
            dict.fromkeys(
                campaigns.exclude(transfer_number="").values_list("transfer_number", flat=True)
            )
        )
        partner.save(update_fields=["caller_numbers", "transfer_numbers"])


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0017_roles_token_versions'),
    ]

    operations = [
        migrations.AddField(
            model_name='partner',
            name='caller_numbers',
            field=models.JSONField(blank=True, default=list, help_text='The numbers its campaigns may call from, in E.164, besides TWILIO_PHONE_NUMBER (a campaign without a caller number of its own), which is always allowed.', validators=[campaigns.models.validate_phone_list], verbose_name='caller numbers'),
        ),
        migrations.AddField(
            model_name='partner',
            name='calls_per_second_cap',
            field=models.DecimalField(decimal_places=2, default=Decimal('1'), help_text='Calls started per second, across all its campaigns.', max_digits=5, validators=[django.core.validators.MinValueValidator(Decimal('0.01'))], verbose_name='calls per second cap'),
        ),
        migrations.AddField(
            model_name='partner',
            name='compliance_profiles',
            field=models.JSONField(blank=True, default=campaigns.models.default_compliance_profiles, help_text='The compliance profiles its campaigns may choose among "us", "es" and "none" (no calling-hour rules: grant it only to a partner who answers for its own).', validators=[campaigns.models.validate_compliance_profiles], verbose_name='compliance profiles'),
        ),
        migrations.AddField(
            model_name='partner',
            name='max_attempts_cap',
            field=models.PositiveIntegerField(default=3, help_text='Calls to one contact of a campaign at most.', validators=[django.core.validators.MinValueValidator(1)], verbose_name='attempts cap'),
        ),
        migrations.AddField(
            model_name='partner',
            name='max_concurrent_calls_cap',
            field=models.PositiveIntegerField(default=5, help_text='Calls going on at once, across all its campaigns.', validators=[django.core.validators.MinValueValidator(1)], verbose_name='concurrent calls cap'),
        ),
        migrations.AddField(
            model_name='partner',
            name='transfer_numbers',
            field=models.JSONField(blank=True, default=list, help_text='The numbers its campaigns may put callees through to, in E.164. Empty: its campaigns cannot transfer calls.', validators=[campaigns.models.validate_phone_list], verbose_name='transfer numbers'),
        ),
        migrations.AddConstraint(
            model_name='partner',
            constraint=models.CheckConstraint(condition=models.Q(('calls_per_second_cap__gt', 0), ('max_attempts_cap__gte', 1), ('max_concurrent_calls_cap__gte', 1)), name='partner_caps_positive'),
        ),
        migrations.RunPython(keep_numbers_in_use, migrations.RunPython.noop),
]
