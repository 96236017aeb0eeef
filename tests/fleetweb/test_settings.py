"""Settings read from the environment: typed helpers, docker-compose's variables, .env.example."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from foundation import env

ROOT = Path(__file__).resolve().parents[2]


def test_env_bool_and_int_fail_loudly(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(env.ConfigError, match="X_FLAG='maybe' is not a boolean"):
        env.env_bool("X_FLAG")
    monkeypatch.setenv("X_FLAG", "Yes")
    assert env.env_bool("X_FLAG") is True
    monkeypatch.setenv("X_NUM", "ten")
    with pytest.raises(env.ConfigError, match="X_NUM='ten' is not an integer"):
        env.env_int("X_NUM", 1)
    monkeypatch.setenv("X_NUM", "2")
    with pytest.raises(env.ConfigError, match="X_NUM=2 must be at least 5"):
        env.env_int("X_NUM", 10, minimum=5)


def test_secrets_from_files(monkeypatch, tmp_path):
    (tmp_path / "key").write_text("from-a-file\n")
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "key"))
    assert env.env_str("X_SECRET") == "from-a-file"
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(env.ConfigError, match="cannot be read"):
        env.env_str("X_SECRET")


def test_database_urls():
    tcp = env.parse_database_url("postgres://u:p%40ss@db.example.com:5433/fleet?sslmode=require")
    assert (tcp["HOST"], tcp["PORT"], tcp["NAME"], tcp["USER"], tcp["PASSWORD"]) == (
        "db.example.com", "5433", "fleet", "u", "p@ss")
    assert tcp["OPTIONS"] == {"sslmode": "require"}
    socket_url = env.parse_database_url("postgresql://postgres:@/fleetweb?host=/tmp/pg")
    assert socket_url["HOST"] == "/tmp/pg" and socket_url["OPTIONS"] == {}
    with pytest.raises(env.ConfigError, match="PostgreSQL is the only database"):
        env.parse_database_url("sqlite:///db.sqlite3")
    with pytest.raises(env.ConfigError, match="names no database"):
        env.parse_database_url("postgres://u@host:5432/")


def test_celery_broker_url_for_unix_sockets():
    assert env.celery_broker_url("unix:///tmp/r.sock") == "redis+socket:///tmp/r.sock"
    assert env.celery_broker_url("redis://r:6379/0") == "redis://r:6379/0"


# compose requires the runtime role's password and Redis's too
DB = {"FLEETWEB_DB_PASSWORD": "runtime-pw", "FLEETWEB_REDIS_PASSWORD": "redis-pw"}


def _compose_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment docker compose gives the app containers, with ${VAR:-default} resolved."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    resolved = {}
    for key, value in compose["x-fleetweb-env"].items():
        def sub(match):
            name, op, arg = match.group(1), match.group(2), match.group(3)
            if name in extra:
                return extra[name]
            if op == ":?":
                raise KeyError(f"compose requires {name}: {arg}")
            return arg or ""
        resolved[key] = re.sub(r"\$\{(\w+)(:-|:\?)?([^}]*)\}", sub, str(value))
    for service in ("web", "agents", "worker", "beat"):
        assert compose["services"][service]["environment"] == compose["x-fleetweb-env"]
    # Only the one-shot migrate service knows the owner role; the long-running ones cannot alter the record.
    assert "FLEETWEB_MIGRATE_DATABASE_URL" in compose["services"]["migrate"]["environment"]
    return resolved


def _import_settings(environment: dict[str, str]) -> subprocess.CompletedProcess:
    code = ("import os; os.environ['DJANGO_SETTINGS_MODULE']='fleetweb.settings'; import django; django.setup(); "
            "from django.conf import settings as s; "
            "print(s.DATABASES['default']['HOST'], s.CELERY_BROKER_URL, s.ALLOWED_HOSTS, s.FLEETWEB_SYNC_INTERVAL, "
            "s.STATIC_ROOT)")
    env_vars = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **environment}
    return subprocess.run([sys.executable, "-c", code], env=env_vars, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_settings_accept_exactly_what_docker_compose_sets():
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    environment = _compose_env({"FLEETWEB_SECRET_KEY": "k" * 50, "FLEETWEB_ENCRYPTION_KEYS": key, **DB})
    result = _import_settings(environment)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == ["postgres", "redis://:redis-pw@redis:6379/0"]
    assert "/app/staticfiles" in result.stdout


def test_check_deploy_with_the_compose_environment_gives_no_warning():
    import secrets

    from cryptography.fernet import Fernet

    environment = _compose_env({"FLEETWEB_SECRET_KEY": secrets.token_urlsafe(50),
                                "FLEETWEB_ENCRYPTION_KEYS": Fernet.generate_key().decode(), **DB})
    env_vars = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **environment}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            env=env_vars, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_compose_redis_requires_its_password():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    redis = compose["services"]["redis"]
    assert "--requirepass" in " ".join(redis["command"])
    assert "FLEETWEB_REDIS_PASSWORD:?" in redis["environment"]["REDIS_PASSWORD"]
    with pytest.raises(KeyError, match="FLEETWEB_REDIS_PASSWORD"):
        _compose_env({"FLEETWEB_DB_PASSWORD": "x", "FLEETWEB_SECRET_KEY": "x", "FLEETWEB_ENCRYPTION_KEYS": "y"})


def test_compose_without_keys_is_refused_with_a_clear_message():
    environment = _compose_env({"FLEETWEB_SECRET_KEY": "k" * 50, "FLEETWEB_ENCRYPTION_KEYS": "", **DB})
    result = _import_settings(environment)
    assert result.returncode != 0
    assert "FLEETWEB_ENCRYPTION_KEYS must be set when DATABASE_URL is set" in result.stderr


def test_every_variable_the_code_reads_is_in_env_example():
    read = set()
    pattern = re.compile(r"""(?:env_(?:str|bool|int|list)\(|os\.environ(?:\.get)?\(?\[?|environ\.get\()"""
                         r"""\s*["']([A-Z][A-Z0-9_]+)["']""")
    for folder in ("fleetweb", "foundation", "inventory", "notifications", "governance", "rollouts", "localfleet"):
        for path in (ROOT / folder).rglob("*.py"):
            read |= set(pattern.findall(path.read_text()))
    assert {"DATABASE_URL", "FLEETWEB_SYNC_INTERVAL", "LOCALFLEET_STATE_DIR", "FLEETWEB_ADMIN_PASSWORD"} <= read
    documented = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
                  if re.match(r"^[A-Z][A-Z0-9_]+=", line)}
    not_fleetweb = {"DJANGO_SETTINGS_MODULE", "CI", "HOME", "PATH"}
    missing = read - documented - not_fleetweb
    assert not missing, f"read by the code but not in .env.example: {sorted(missing)}"
    compose_vars = set(_compose_env({"FLEETWEB_SECRET_KEY": "x", "FLEETWEB_ENCRYPTION_KEYS": "y", **DB}))
    assert compose_vars <= documented
