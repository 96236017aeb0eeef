"""The audit log's model now lives in fleetweb (fleetweb migration 0002): state only, the table stays."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("governance", "0006_audit_count_and_truncate"), ("fleetweb", "0002_auditevent")]
    operations = [
        migrations.SeparateDatabaseAndState(database_operations=[],
                                            state_operations=[migrations.DeleteModel(name="AuditEvent")]),
    ]
