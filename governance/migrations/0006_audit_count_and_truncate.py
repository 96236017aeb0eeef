"""The audit log: failed logins aggregated per username, address and minute (only `count` may grow), and TRUNCATE
refused by a statement-level trigger.

The test suite's flush between transactional tests truncates every table; it sets the session setting
`fleetweb.allow_audit_truncate = on`, which nothing else does (the runtime role has no TRUNCATE privilege at all).
"""

from django.db import migrations, models

FORWARD = """
CREATE OR REPLACE FUNCTION governance_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.action = 'auth.login_failed' AND NEW.count > OLD.count
       AND (to_jsonb(NEW) - 'count') = (to_jsonb(OLD) - 'count') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only: % on governance_auditevent refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION governance_auditevent_no_truncate() RETURNS trigger AS $$
BEGIN
    IF current_setting('fleetweb.allow_audit_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only: TRUNCATE on governance_auditevent refused'
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER governance_auditevent_no_truncate
    BEFORE TRUNCATE ON governance_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION governance_auditevent_no_truncate();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS governance_auditevent_no_truncate ON governance_auditevent;
DROP FUNCTION IF EXISTS governance_auditevent_no_truncate();
CREATE OR REPLACE FUNCTION governance_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on governance_auditevent refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


class Migration(migrations.Migration):
    dependencies = [("governance", "0005_policy_results")]
    operations = [
        migrations.AddField(
            model_name="auditevent", name="count",
            field=models.PositiveIntegerField(default=1, help_text="Failed logins of one username and address within "
                                              "a minute share a row; the only column that may grow")),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
