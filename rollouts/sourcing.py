"""Revisions read from an application's source (`rollouts.models.Source`): look for a new commit or chart version
(cheap: the remote ref, or the index's entry, compared with what the last check saw), and when there is one, fetch it
into a temporary folder, render it there, boxed (`rollouts.sources`), and save the rendered objects as a revision
that pins everything it came from: URL, commit (subject, author, date), path, chart, version and digest, values
digest, tool and tool version. The revision goes through `rollouts.services.create_revision` like pasted YAML, so
its dry run, its audit event and every later approval are the same.

The workers call this (`rollouts.tasks.check_due_sources` by beat, `check_source` per source); a person's "Check
now" calls it with their user, after the same permission check as any change to the application. A source's
credential is decrypted only here, in the worker, and never logged, stored elsewhere or put in a task's arguments.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from foundation import crypto, outbound, queueing
from foundation.audit import record
from foundation.queueing import enqueue_after_commit
from inventory.people.access import can
from inventory.validators import dns_label_problem
from rollouts import manifests
from rollouts.errors import RolloutError, check_change
from rollouts.models import Application, Override, Revision, RolloutPlan, Source, SourceCredential, SourceTest
from rollouts.services import (
    create_revision,
    create_rollout,
    parse_variants,
    queue_source_check,
    variants_digest,
)
from rollouts.sources import charts, git, render, ssh
from rollouts.sources.tree import SourceError, folder

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Credentials and sources: what people set (pages, API and commands call these)


def create_credential(*, user, name: str, secret: str = "", username: str = "", owner_team=None,
                      kind: str = SourceCredential.Kind.TOKEN, host_key: str = "", generate: bool = False,
                      source_ip: str = "") -> SourceCredential:
    """Store credentials for sources (encrypted; never shown, logged or returned again): a token or password, or an
    SSH deploy key (the private key given, or generated here when `generate`: its public half is what people add to
    the repository) with the Git server's host key, pinned."""
    if user is not None and not can(user, "manage_source_credential", owner_team):
        raise RolloutError("Storing source credentials for this team needs its operator role.", status=403)
    errors: dict[str, str] = {}
    if problem := dns_label_problem(name, "credential name"):
        errors["name"] = problem
    if len(username) > 200:
        errors["username"] = "At most 200 characters."
    public = pinned = ""
    if kind == SourceCredential.Kind.SSH:
        if generate and secret:
            errors["secret"] = "Give a private key or let Fleetweb generate one, not both."
        elif generate:
            secret, public = ssh.generate()
        else:
            try:
                public = ssh.public_of(secret)
            except SourceError as exc:
                errors["secret"] = str(exc)
        try:
            pinned = ssh.host_key(host_key)
        except SourceError as exc:
            errors["host_key"] = str(exc)
    elif kind == SourceCredential.Kind.TOKEN:
        if generate or host_key:
            errors["kind"] = "Only SSH credentials are generated or carry a host key."
        if not secret or len(secret) > 4096:
            errors["secret"] = "Give the token or password (at most 4,096 characters)."
    else:
        errors["kind"] = "Choose token or ssh."
    if errors:
        raise RolloutError(errors)
    if SourceCredential.objects.filter(name=name).exists():
        raise RolloutError({"name": f"A credential named '{name}' exists already."}, conflict=True)
    with transaction.atomic():
        credential = SourceCredential.objects.create(name=name, owner_team=owner_team, kind=kind, username=username,
                                                     ciphertext=SourceCredential.seal(secret), public_key=public,
                                                     host_key=pinned,
                                                     created_by=user if getattr(user, "pk", None) else None)
        record(user=user, action="source_credential.create", target=credential, source_ip=source_ip,
               after={"name": name, "team": owner_team.name if owner_team else "", "username": username,
                      "kind": kind, "public_key": public, "host_key": pinned, "generated": bool(generate)})
    return credential


def delete_credential(*, credential: SourceCredential, user, source_ip: str = "") -> None:
    """Forget credentials no source uses any more."""
    if user is not None and not can(user, "manage_source_credential", credential.owner_team):
        raise RolloutError("Deleting these source credentials needs the operator role in their team.", status=403)
    with transaction.atomic():
        used = list(Source.objects.filter(credential=credential).values_list("application__name", flat=True)[:5])
        if used:
            raise RolloutError(f"These credentials are in use by {', '.join(used)}.", conflict=True)
        record(user=user, action="source_credential.delete", target=credential, source_ip=source_ip,
               before={"name": credential.name})
        credential.delete()


SOURCE_FIELDS = ("kind", "url", "ref", "path", "chart", "version", "values", "poll_interval", "plan")


def _validated(app: Application, *, user, kind: str, url: str, ref: str, path: str, chart: str, version: str,
               values: str, credential: SourceCredential | None, poll_interval: int,
               plan: RolloutPlan | None) -> dict:
    """The source's fields as stored, each checked whatever door it came through; RolloutError naming each bad one
    (403 for another team's credentials)."""
    errors: dict[str, str] = {}
    if kind not in Source.Kind.values:
        errors["kind"] = "Choose git, helm or oci."
    url = (url or "").strip()
    try:
        if kind == Source.Kind.GIT:
            git.remote(url)  # HTTPS, or SSH with a deploy key
        else:
            checked = "{}/v2/{}".format(*charts.oci_parts(url)) if kind == Source.Kind.OCI else url
            outbound.check_and_resolve(checked, schemes=git.schemes(), what="source URL", purpose="source")
    except outbound.OutboundRefused as exc:
        if exc.kind != "dns":  # a name that does not resolve yet is the check's to report
            errors["url"] = str(exc)
    except SourceError as exc:
        errors["url"] = str(exc)
    if kind == Source.Kind.HELM and not chart.strip():
        errors["chart"] = "Name the chart."
    if kind in (Source.Kind.HELM, Source.Kind.OCI) and version.strip():
        try:
            charts.pick([], version)
        except SourceError as exc:
            if "not a version" in str(exc):
                errors["version"] = str(exc)
    if any(part == ".." for part in path.split("/")) or path.startswith("/") or len(path) > 500:
        errors["path"] = "A folder of the repository, relative to its top, without '..'."
    if problem := manifests.values_problem(values):
        errors["values"] = problem
    if not 30 <= int(poll_interval) <= 86400:
        errors["poll_interval"] = "Between 30 seconds and a day."
    if credential is not None:
        if user is not None and not can(user, "use_source_credential", credential):
            raise RolloutError("These credentials belong to another team.", status=403)
        if credential.owner_team_id not in (None, app.owner_team_id):
            errors["credential"] = "These credentials belong to another team than the application's."
        elif credential.kind == SourceCredential.Kind.SSH and not (kind == Source.Kind.GIT and git.is_ssh(url)):
            errors["credential"] = "An SSH deploy key reads Git over SSH only: give an ssh:// or git@host:path URL."
    if kind == Source.Kind.GIT and git.is_ssh(url) and (credential is None
                                                        or credential.kind != SourceCredential.Kind.SSH):
        errors.setdefault("credential", "Git over SSH needs SSH credentials (a deploy key).")
    if errors:
        raise RolloutError(errors)
    return {"kind": kind, "url": url, "ref": ref.strip()[:255], "path": path.strip("/"), "chart": chart.strip(),
            "version": version.strip(), "values": values, "poll_interval": int(poll_interval),
            "credential": credential, "plan": plan}


def set_source(app: Application, *, user, kind: str, url: str, ref: str = "", path: str = "", chart: str = "",
               version: str = "", values: str = "", credential: SourceCredential | None = None,
               poll_interval: int = 300, plan: RolloutPlan | None = None, source_ip: str = "") -> Source:
    """Read the application's revisions from a source from now on (or change where from); checked at once by a
    worker. Every field is validated here, whichever door it came through."""
    check_change(user, app)
    fields = _validated(app, user=user, kind=kind, url=url, ref=ref, path=path, chart=chart, version=version,
                        values=values, credential=credential, poll_interval=poll_interval, plan=plan)
    with transaction.atomic():
        before = Source.objects.filter(application=app).values(*SOURCE_FIELDS, "credential__name",
                                                               "plan__name").first()
        source, _ = Source.objects.update_or_create(application=app, defaults={**fields, "seen": "", "error": "",
                                                                                "next_check_at": timezone.now()})
        record(user=user, action="application.source", target=app, source_ip=source_ip, before=before,
               after={**{k: v for k, v in fields.items() if k not in ("credential", "plan")},
                      "credential__name": credential.name if credential else None,
                      "plan__name": plan.name if plan else None})
        queue_source_check(source.pk, after_commit=True)
    return source


# ---------------------------------------------------------------------------------------------
# "Test source": what the form holds, fetched and rendered by a worker, nothing saved

TEST_FIELDS = ("kind", "url", "ref", "path", "chart", "version", "values")
TEST_KEPT = timedelta(hours=1)


def request_test(app: Application, *, user, kind: str, url: str, ref: str = "", path: str = "", chart: str = "",
                 version: str = "", values: str = "", credential: SourceCredential | None = None,
                 source_ip: str = "") -> SourceTest:
    """Queue a test of a source as given (not saved): a worker fetches and renders it as a check would and keeps what
    it found on the test (`run_test`); the same permission and field checks as saving it. The fields are sealed in
    the test (values may hold secrets); the task gets the test's id only."""
    check_change(user, app)
    fields = _validated(app, user=user, kind=kind, url=url, ref=ref, path=path, chart=chart, version=version,
                        values=values, credential=credential, poll_interval=300, plan=None)
    with transaction.atomic():
        test = SourceTest.objects.create(application=app, requested_by=user if getattr(user, "pk", None) else None,
                                         credential=credential,
                                         ciphertext=crypto.encrypt_json({k: fields[k] for k in TEST_FIELDS}))
        record(user=user, action="application.source_test", target=app, source_ip=source_ip,
               after={**{k: fields[k] for k in TEST_FIELDS if k != "values"},
                      "values_digest": manifests.values_digest(fields["values"]),
                      "credential__name": credential.name if credential else None, "test": str(test.pk)})
        enqueue_after_commit("rollouts.tasks.test_source", str(test.pk), what=f"test of a source of {app.name}")
    return test


def run_test(test_id: str) -> str:
    """In a worker: fetch and render what the test holds, as a check would (limits, boxes, the outbound policy),
    and keep what was found or why not, in Fleetweb's words; nothing else is saved. Never raises for the source."""
    test = SourceTest.objects.select_related("application", "credential", "requested_by").filter(
        pk=test_id, state__in=[SourceTest.State.QUEUED, SourceTest.State.RUNNING]).first()
    if test is None:
        return "gone"
    SourceTest.objects.filter(pk=test.pk).update(state=SourceTest.State.RUNNING)
    app = test.application
    result: dict = {}
    error = kind = ""
    try:
        if test.requested_by is not None:  # asked again: a role may have been taken away since
            check_change(test.requested_by, app)
            if test.credential is not None and not can(test.requested_by, "use_source_credential", test.credential):
                raise RolloutError("These credentials belong to another team.", status=403)
        source = Source(application=app, credential=test.credential, **crypto.decrypt_json(test.ciphertext))
        auth = _auth(source)
        seen = _seen(source, auth)
        pins, _text, variants, parsed, _ = _rendered(source, seen, auth)
        result = {**{k: pins[k] for k in ("commit", "subject", "author", "date", "chart", "version", "tool",
                                          "tool_version") if pins.get(k)},
                  "objects": parsed.summary[:100], "object_count": len(parsed.summary),
                  "groups": sorted(v["group"] for v in variants.values())}
    except FAILURES as exc:
        kind, error = _failure(exc)
    except RolloutError as exc:
        kind, error = "refused", str(exc)
    except Exception as exc:  # a bug must not leave the test running forever; its text may carry a secret
        log.exception("test of a source of %s failed", app.name)
        kind, error = "internal", f"internal error ({type(exc).__name__}); the worker's log has the details"
    SourceTest.objects.filter(pk=test.pk).update(state=SourceTest.State.DONE, result=result, error=error[:500],
                                                 error_kind=kind[:16], finished_at=timezone.now())
    return "done"


def forget_old_tests(*, now=None) -> int:
    """Delete the tests older than TEST_KEPT (their sealed fields with them)."""
    return SourceTest.objects.filter(requested_at__lt=(now or timezone.now()) - TEST_KEPT).delete()[0]


def request_check(source: Source, *, user) -> None:
    """Check now (a person's "Check now", any door): queued for a worker, whose result shows on the source."""
    check_change(user, source.application)
    queue_source_check(source.pk)


# ---------------------------------------------------------------------------------------------
# Checking a source


def _auth(source: Source) -> git.Auth | None:
    if source.credential is None:
        return None
    if source.credential.kind == SourceCredential.Kind.SSH:
        return git.Auth(ssh_key=source.credential.open(), host_key=source.credential.host_key)
    return git.Auth(username=source.credential.username, password=source.credential.open())


def _seen(source: Source, auth: git.Auth | None) -> str:
    """What the source names now, cheaply: a commit's sha, or a chart version (and its index digest)."""
    if source.kind == Source.Kind.GIT:
        return git.resolve(source.url, source.ref, auth)
    if source.kind == Source.Kind.HELM:
        by_version, _index = charts.repository_versions(source.url, source.chart, auth)
        version = charts.pick(list(by_version), source.version)
        return f"{version}@{by_version[version].get('digest') or ''}"
    return charts.pick(charts.oci_versions(source.url, auth), source.version) \
        if not charts.parse_version(source.version.strip() or "x") else source.version.strip()


def check(source: Source, *, user=None, source_ip: str = "", force: bool = False) -> Revision | None:
    """Check the source; the new revision when it names something new that renders to new objects, else None. A
    failure is kept on the source (`error`, `error_kind`), in Fleetweb's words, and raised to a person who asked."""
    app = source.application
    check_change(user, app)
    now = timezone.now()
    try:
        auth = _auth(source)
        seen = _seen(source, auth)
        if seen == source.seen and not force and app.revisions.filter(source__url=source.url).exists():
            _checked(source, seen=seen, now=now)  # nothing new: one request to the remote, nothing fetched
            return None
        pins, text, variants, parsed, digest = _rendered(source, seen, auth)
    except FAILURES as exc:
        kind, message = _failure(exc)
        _checked(source, seen=source.seen, now=now, error=message, kind=kind)
        if user is not None:
            raise RolloutError({"source": message}) from None
        return None
    latest = app.latest_revision
    if latest is not None and latest.digest == digest:  # a new commit that renders the same objects
        _checked(source, seen=seen, now=now)
        return None
    subject = pins.get("subject") or f"{pins.get('chart', '')} {pins.get('version', '')}".strip()
    try:
        revision = create_revision(app, manifests_text=text, user=user, source_ip=source_ip, source=pins,
                                   message=f"{source.get_kind_display()}: {subject}"[:500], variants=variants)
    except RolloutError as exc:  # e.g. a check running at the same time saved these objects first
        _checked(source, seen=source.seen, now=now, error=str(exc)[:500], kind="invalid")
        if user is not None:
            raise
        return None
    _checked(source, seen=seen, now=now)
    if source.plan_id is not None:
        _start_plan(source, revision)
    return revision


# What a source may fail with, each said in Fleetweb's words (`_failure`).
FAILURES = (SourceError, render.RenderError, manifests.ManifestError)


def _failure(exc: Exception) -> tuple[str, str]:
    """(kind, message) of one of FAILURES: kind as the pages and the API classify it."""
    kind = getattr(exc, "kind", "render" if isinstance(exc, render.RenderError) else "invalid")
    message = "; ".join(exc.errors) if isinstance(exc, manifests.ManifestError) else str(exc)
    return kind, message


def _rendered(source: Source, seen: str, auth: git.Auth | None) -> tuple[dict, str, dict[str, dict],
                                                                         manifests.Parsed, str]:
    """What `seen` renders to, validated as a revision would be: (pins, manifests, the groups' renderings, the parsed
    manifests, the revision's digest). A check saves it; a test only reports it."""
    pins, text, variants = _fetch_and_render(source, seen, auth)
    parsed = manifests.parse(text, namespace=source.application.namespace, sourced=True)
    digest = variants_digest(parsed.digest, parse_variants(variants, namespace=source.application.namespace))
    return pins, text, variants, parsed, digest


def _start_plan(source: Source, revision: Revision) -> None:
    """Roll the new revision out with the source's plan, as the system: it runs up to its first approval gate (a
    stage reaching prod always has one). When it cannot start, the revision stays and the source says why."""
    try:
        create_rollout(revision=revision, user=None, plan=source.plan)
    except RolloutError as exc:
        message = f"revision {revision.number} was made, but plan {source.plan} did not start: {exc}"
        Source.objects.filter(pk=source.pk).update(error=message[:500], error_kind="rollout")
        source.error, source.error_kind = message[:500], "rollout"


def _fetch_and_render(source: Source, seen: str, auth: git.Auth | None) -> tuple[dict, str, dict[str, dict]]:
    """(what the revision pins, the rendered manifests, the variants of the groups whose override carries Helm values)
    of what `_seen` found."""
    app = source.application
    values = [source.values] if source.values.strip() else []
    groups = list(Override.objects.filter(application=app).exclude(values="").select_related("group")
                  .order_by("group__name"))
    pins: dict = {"kind": source.kind, "url": source.url, "values_digest": manifests.values_digest(source.values)}
    with folder() as scratch:
        if source.kind == Source.Kind.GIT:
            commit = git.checkout(source.url, seen, scratch / "checkout", auth)
            root = scratch / "checkout" / source.path.strip("/") if source.path.strip("/") else scratch / "checkout"

            def rendered(more: list[str]) -> render.Rendered:
                return render.render(root, release=app.name, namespace=app.namespace, values=values + more,
                                     checkout=scratch / "checkout")

            pins.update(ref=source.ref or "HEAD", commit=commit.sha, path=source.path, subject=commit.subject,
                        author=commit.author, date=commit.date.isoformat())
        else:
            if source.kind == Source.Kind.HELM:
                chart = charts.from_repository(source.url, source.chart, seen.split("@", 1)[0], scratch, auth)
            else:
                chart = charts.from_oci(source.url, seen, scratch, auth)

            def rendered(more: list[str]) -> render.Rendered:
                return render.render(chart.folder, release=app.name, namespace=app.namespace, values=values + more)

            pins.update(chart=chart.name, version=chart.version, chart_digest=chart.digest)
        done = rendered([])
        variants: dict[str, dict] = {}
        for override in groups:  # each group with values of its own: the chart rendered again with them last
            if done.tool != render.HELM:
                raise SourceError(f"group {override.group.name}'s override carries Helm values, and this source "
                                  f"renders with {done.tool}, not Helm: remove them or point the source at a chart",
                                  kind="invalid")
            try:
                text = rendered([override.values]).text
            except render.RenderError as exc:
                raise render.RenderError(f"with group {override.group.name}'s values: {exc}") from None
            variants[str(override.group_id)] = {"group": override.group.name, "manifests": text,
                                                "values_digest": manifests.values_digest(override.values)}
        pins.update(tool=done.tool, tool_version=done.tool_version)
        if variants:
            pins["group_values"] = {v["group"]: v["values_digest"] for v in variants.values()}
    return pins, done.text, variants


def _checked(source: Source, *, seen: str, now, error: str = "", kind: str = "") -> None:
    """What the check found, and when the next one is due (a failure keeps what was seen before)."""
    Source.objects.filter(pk=source.pk).update(
        seen=seen[:200], checked_at=now, next_check_at=now + timedelta(seconds=source.poll_interval),
        error=error[:500], error_kind=kind[:16], updated_at=now)
    source.seen, source.checked_at, source.error, source.error_kind = seen[:200], now, error[:500], kind[:16]


def claim_due(*, now=None, limit: int = 200) -> list[int]:
    """Sources whose check is due, their next check moved forward (two beats never claim one source twice)."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(Source.objects.filter(Q(next_check_at__lte=now) | Q(next_check_at__isnull=True))
                   .order_by("next_check_at").select_for_update(skip_locked=True)
                   .values_list("pk", "poll_interval")[:limit])
        for pk, interval in due:
            Source.objects.filter(pk=pk).update(next_check_at=now + timedelta(seconds=interval))
    return [pk for pk, _ in due]


# ---------------------------------------------------------------------------------------------
# Push webhooks: a push makes the check happen now instead of at the next interval

WEBHOOK_MAX_BYTES = 1_000_000
WEBHOOK_COALESCE_SECONDS = 5


def issue_webhook(app: Application, *, user, source_ip: str = "") -> tuple[str, str]:
    """A new address and secret for the source's push webhook, shown once: (the path, the secret). The previous
    ones stop working."""
    check_change(user, app)
    source = Source.objects.filter(application=app).first()
    if source is None:
        raise RolloutError("This application has no source to be told about pushes.", conflict=True)
    hook_id, secret = secrets.token_urlsafe(18)[:24], secrets.token_urlsafe(32)
    with transaction.atomic():
        Source.objects.filter(pk=source.pk).update(webhook_id=hook_id,
                                                   webhook_ciphertext=crypto.encrypt_json({"secret": secret}))
        record(user=user, action="application.source_webhook", target=app, source_ip=source_ip,
               after={"webhook": f"/hooks/sources/{hook_id}/", "replaced": bool(source.webhook_id)})
    return f"/hooks/sources/{hook_id}/", secret


class WebhookRefused(Exception):
    """A webhook call refused: `status` and a short reason that tells the caller nothing it did not send."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def receive_webhook(hook_id: str, *, headers: dict[str, str], body: bytes) -> bool:
    """A push announced by GitHub (X-Hub-Signature-256: HMAC-SHA256 of the body), Gitea or Forgejo
    (X-Gitea-Signature: the same, hex) or GitLab (X-Gitlab-Token: the shared secret itself, which is how GitLab
    signs): the source's check is queued, unless one was queued in the last few seconds. The payload is not
    trusted beyond "something was pushed": the check reads the remote itself. True when a check was queued."""
    if len(body) > WEBHOOK_MAX_BYTES:
        raise WebhookRefused(413, "The payload is too large.")
    source = Source.objects.filter(webhook_id=hook_id).exclude(webhook_id="").first() if hook_id else None
    secret = source.webhook_secret() if source is not None else ""
    if source is None or not secret or not _signed(headers, body, secret):
        raise WebhookRefused(403, "The signature does not match.")  # the same answer for an unknown address
    event = headers.get("x-github-event") or headers.get("x-gitea-event") or headers.get("x-gitlab-event") or ""
    if event.lower() in ("ping",):
        return False
    if not queueing.once(f"source-webhook:{source.pk}", seconds=WEBHOOK_COALESCE_SECONDS):
        return False  # a burst of pushes is one check
    queue_source_check(source.pk)
    return True


def _signed(headers: dict[str, str], body: bytes, secret: str) -> bool:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    github = headers.get("x-hub-signature-256", "")
    if github:
        return hmac.compare_digest(github, f"sha256={digest}")
    gitea = headers.get("x-gitea-signature", "") or headers.get("x-forgejo-signature", "")
    if gitea:
        return hmac.compare_digest(gitea, digest)
    gitlab = headers.get("x-gitlab-token", "")
    if gitlab:
        return hmac.compare_digest(gitlab.encode(), secret.encode())
    return False
