"""The audit log's model moves from governance to fleetweb (the bottom layer every app writes it through).

State only: the table `governance_auditevent`, its rows, indexes and append-only triggers stay exactly as they
are (governance migrations 0001-0006); the model keeps that table name.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("fleetweb", "0001_roles"),
        ("governance", "0006_audit_count_and_truncate"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]
    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="AuditEvent",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                                   verbose_name="ID")),
                        ("at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        ("actor_name", models.CharField(blank=True, help_text="Username at the time, kept if the "
                                                                              "user goes", max_length=150)),
                        ("source_ip", models.GenericIPAddressField(blank=True, null=True)),
                        ("action", models.CharField(db_index=True, max_length=64)),
                        ("target_type", models.CharField(blank=True, max_length=64)),
                        ("target_id", models.CharField(blank=True, max_length=64)),
                        ("target_name", models.CharField(blank=True, max_length=255)),
                        ("before", models.JSONField(blank=True, null=True)),
                        ("after", models.JSONField(blank=True, null=True)),
                        ("message", models.TextField(blank=True)),
                        ("count", models.PositiveIntegerField(default=1, help_text="Failed logins of one username and "
                                                              "address within a minute share a row; the only column "
                                                              "that may grow")),
                        ("actor", models.ForeignKey(blank=True, db_constraint=False, null=True,
                                                    on_delete=django.db.models.deletion.DO_NOTHING, related_name="+",
                                                    to=settings.AUTH_USER_MODEL)),
                    ],
                    options={"ordering": ["-at", "-id"], "db_table": "governance_auditevent"},
                ),
            ],
        ),
    ]
