"""Rollback re-applies what was deployed and verified (frozen on the target); deployments say whether an approval
covered them; a target that left its scope (or became prod without an approval) is skipped."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("rollouts", "0007_drift_ignore")]

    operations = [
        migrations.AddField(
            model_name="target", name="previous_objects",
            field=models.JSONField(blank=True, default=list, help_text=(
                "The objects deployed and verified for previous_revision, frozen when the rollout was created: what "
                "a rollback re-applies"))),
        migrations.AddField(
            model_name="target", name="previous_approved",
            field=models.BooleanField(default=False, help_text="Whether an approval covered previous_objects")),
        migrations.AddField(
            model_name="deployed", name="approved",
            field=models.BooleanField(default=False, help_text=(
                "An approval covered these objects (a stage that needed one): only such objects are re-applied to a "
                "prod cluster"))),
        migrations.AlterField(
            model_name="target", name="state",
            field=models.CharField(choices=[
                ("pending", "pending"), ("applying", "applying"), ("verifying", "verifying"), ("ready", "ready"),
                ("failed", "failed"), ("skipped", "skipped"), ("rolling_back", "rolling back"),
                ("rollback_verifying", "verifying rollback"), ("rolled_back", "rolled back"),
                ("rollback_failed", "rollback failed")], default="pending", max_length=20)),
    ]
