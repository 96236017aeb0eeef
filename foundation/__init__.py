"""Fleetweb's foundation, below every app: the audit log, roles, the one error type, the outbound address policy,
leases, queueing by task name, encryption, declared parameters, env readers, request helpers, exports, the API's
error shape and metrics registry. It imports no app; the roof (the `fleetweb` package: settings, URLs, the Celery
app, the launcher) sits above every app.

Its Django app keeps the label `fleetweb` (tables, migrations and content types were made under that name)."""
