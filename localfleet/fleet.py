"""A fleet of local member clusters under one state folder: up, status, down, scale."""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import time
from pathlib import Path

from localfleet import binaries, seed
from localfleet.member import Member, MemberError


def default_state_dir() -> Path:
    """`LOCALFLEET_STATE_DIR`, else `<FLEETWEB_STATE_DIR or repo/.fleetweb>/localfleet`."""
    if os.environ.get("LOCALFLEET_STATE_DIR"):
        return Path(os.environ["LOCALFLEET_STATE_DIR"])
    base = os.environ.get("FLEETWEB_STATE_DIR") or Path(__file__).resolve().parent.parent / ".fleetweb"
    return Path(base) / "localfleet"


class Fleet:
    """The members recorded under a state folder."""

    def __init__(self, state_dir: Path | None = None, *, out=sys.stderr):
        self.state_dir = Path(state_dir or default_state_dir())
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.out = out

    def say(self, message: str) -> None:
        self.out.write(f"localfleet: {message}\n")
        self.out.flush()

    def members(self) -> list[Member]:
        found = []
        for path in sorted(self.state_dir.glob("*/member.json")):
            found.append(Member.load(self.state_dir, path.parent.name))
        return found

    def member(self, name: str) -> Member:
        if not (self.state_dir / name / "member.json").exists():
            known = ", ".join(m.name for m in self.members()) or "none"
            raise KeyError(f"no member cluster named {name!r} (known: {known})")
        return Member.load(self.state_dir, name)

    @staticmethod
    def profile_for(index: int) -> dict:
        profile = dict(seed.PROFILES[index % len(seed.PROFILES)])
        name = profile["key"] if index < len(seed.PROFILES) else f"{profile['key']}-{index // len(seed.PROFILES) + 1}"
        profile["name"] = name
        return profile

    def up(self, clusters: int = 3, nodes: int = 5, *, timeout: float = 240, first: int = 0,
           address: str = "127.0.0.1") -> list[Member]:
        """Start (or restart) `clusters` members with `nodes` KWOK nodes each, seed them, wait until Ready; `first`:
        the index of the first one's profile; `address`: the loopback address their API servers listen on."""
        started = time.monotonic()
        binaries.ensure_all(out=self.out)
        members = []
        for index in range(first, first + clusters):
            profile = self.profile_for(index)
            try:
                member = self.member(profile["name"])
            except KeyError:
                member = Member(name=profile["name"], state_dir=self.state_dir, apiserver_version=profile["apiserver"])
            # A member kept from an earlier run follows its profile's release (a dev fleet, not one to upgrade
            # minor by minor) and its extra API versions.
            member.apiserver_version = profile["apiserver"]
            member.profile = {**member.profile, "index": index, "nodes": max(nodes, member.profile.get("nodes", 0)),
                              "runtime_config": profile.get("runtime_config", ""), "address": address}
            members.append(member)
        try:
            # Start one at a time (each start is CPU-bound on 2 cores), then seed and wait in parallel.
            for member in members:
                t0 = time.monotonic()
                self._stop_stale(member)
                member.start()
                member.profile["start_seconds"] = round(time.monotonic() - t0, 1)
                member.save()
                self.say(f"{member.name}: control plane up in {member.profile['start_seconds']}s ({member.server}, "
                         f"kube-apiserver {member.apiserver_version})")
            with concurrent.futures.ThreadPoolExecutor(len(members)) as pool:
                list(pool.map(lambda m: self._seed(m, timeout=timeout), members))
        except BaseException:
            self.say("start failed or interrupted: stopping what was started")
            for member in members:
                member.stop()
            raise
        self.say(f"{len(members)} member clusters ready in {time.monotonic() - started:.0f}s")
        return members

    def _stop_stale(self, member: Member) -> None:
        """Processes of a crashed earlier run (recorded pids still alive): stop them before starting."""
        stale = [c for c in list(member.pids) if member.is_running(c)]
        if stale and member.state() != "running":
            self.say(f"{member.name}: stopping stale processes from an earlier run: {', '.join(stale)}")
            member.stop()

    def _seed(self, member: Member, *, timeout: float) -> None:
        profile = self.profile_for(member.profile["index"])
        api = seed.api_client(member.kubeconfig("admin"))
        try:
            refused = seed.seed(api, profile, cluster=member.name, nodes=member.profile["nodes"])
            if refused:
                self.say(f"{member.name}: {len(refused)} demo object(s) refused by the member's admission policies "
                         f"and left out: {', '.join(refused[:5])}{' …' if len(refused) > 5 else ''}")
            token = seed.install_reader(api)
            member.file("reader.token").write_text(token)
            member.file("reader.token").chmod(0o600)
            try:
                state = seed.wait_ready(api, nodes=member.profile["nodes"], timeout=timeout)
            except TimeoutError as exc:  # pods an enforced policy refuses never come up: say so, start anyway
                self.say(f"{member.name}: {exc}; starting anyway")
                state = {"nodes_ready": "?", "nodes": member.profile["nodes"]}
        finally:
            api.close()
        member.profile["environment"] = profile["environment"]
        member.profile["region"] = profile["region"]
        member.save()
        self.say(f"{member.name}: {state['nodes_ready']}/{state['nodes']} nodes Ready, workloads running")

    def down(self) -> None:
        for member in self.members():
            member.stop()
            self.say(f"{member.name}: stopped")

    def status(self) -> list[dict]:
        rows = []
        for member in self.members():
            state = member.state()
            version = ""
            if state == "running":
                code, body = member.get("/version")
                if code == 200:
                    version = json.loads(body).get("gitVersion", "")
            rows.append({"name": member.name, "state": state, "version": version, "server": member.server,
                         "nodes": member.profile.get("nodes", 0), "rss_mib": round(member.rss_bytes() / 2**20),
                         "environment": member.profile.get("environment", ""),
                         "region": member.profile.get("region", ""),
                         "kubeconfig": str(member.file("admin.kubeconfig")),
                         "reader_token_file": str(member.file("reader.token"))})
        return rows

    def scale(self, name: str, *, nodes: int, pods: int, workers: int = 32) -> dict:
        """Grow a member to `nodes` nodes and add pods bound to them (spec.nodeName), for benchmarks."""
        from localfleet import scale as scale_mod

        member = self.member(name)
        if member.state() != "running":
            raise MemberError(f"{name} is not running (state: {member.state()}); run `up` first")
        return scale_mod.scale(member, self.profile_for(member.profile.get("index", 0)), nodes=nodes, pods=pods,
                               workers=workers, say=self.say)
