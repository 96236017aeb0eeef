"""An alert rule's condition parameters become one `params` object, declared by the conditions that take them
(notifications.events), instead of a column per parameter: `score_below` and `expiry_days` move into it."""

from django.db import migrations, models

COLUMNS = ("score_below", "expiry_days")


def into_params(apps, schema_editor) -> None:
    AlertRule = apps.get_model("notifications", "AlertRule")
    for rule in AlertRule.objects.all():
        rule.params = {**(rule.params or {}), **{name: getattr(rule, name) for name in COLUMNS}}
        rule.save(update_fields=["params"])


def out_of_params(apps, schema_editor) -> None:
    AlertRule = apps.get_model("notifications", "AlertRule")
    for rule in AlertRule.objects.all():
        for name in COLUMNS:
            if name in (rule.params or {}):
                setattr(rule, name, rule.params[name])
        rule.save(update_fields=list(COLUMNS))


class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='alertrule',
            name='params',
            field=models.JSONField(blank=True, default=dict,
                                   help_text="The conditions' declared parameters (notifications.events), by name"),
        ),
        migrations.RunPython(into_params, out_of_params),
        migrations.RemoveField(
            model_name='alertrule',
            name='expiry_days',
        ),
        migrations.RemoveField(
            model_name='alertrule',
            name='score_below',
        ),
    ]
