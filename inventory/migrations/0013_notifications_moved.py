"""The notification models moved to the notifications app (its 0001 took over their state; the tables stay as
they are), and their content types with them, so permissions and admin history follow."""

from django.db import migrations


MOVED = ("channel", "alertrule", "alert", "delivery")


def _relabel(apps, old: str, new: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MOVED:
        if not ContentType.objects.filter(app_label=new, model=model).exists():
            ContentType.objects.filter(app_label=old, model=model).update(app_label=new)


def move_content_types(apps, schema_editor) -> None:
    _relabel(apps, "inventory", "notifications")


def move_content_types_back(apps, schema_editor) -> None:
    _relabel(apps, "notifications", "inventory")


class Migration(migrations.Migration):

    dependencies = [
        ('inventory', '0012_upgrade_readiness'),
        ('notifications', '0001_initial'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
                migrations.RemoveField(
                    model_name='alertrule',
                    name='channel',
                ),
                migrations.RemoveField(
                    model_name='alertrule',
                    name='created_by',
                ),
                migrations.RemoveField(
                    model_name='alertrule',
                    name='team',
                ),
                migrations.RemoveField(
                    model_name='delivery',
                    name='rule',
                ),
                migrations.RemoveField(
                    model_name='channel',
                    name='created_by',
                ),
                migrations.RemoveField(
                    model_name='channel',
                    name='team',
                ),
                migrations.RemoveField(
                    model_name='delivery',
                    name='channel',
                ),
                migrations.DeleteModel(
                    name='Alert',
                ),
                migrations.DeleteModel(
                    name='AlertRule',
                ),
                migrations.DeleteModel(
                    name='Channel',
                ),
                migrations.DeleteModel(
                    name='Delivery',
                ),
        ], database_operations=[]),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
