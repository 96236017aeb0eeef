"""Writing a fetched source's files to a temporary folder, within limits: the one way a Git tree or a chart archive
reaches the disk, so every source gets the same checks.

- at most FLEETWEB_SOURCE_MAX_FILES files and FLEETWEB_SOURCE_MAX_BYTES bytes in all (as written, after any
  decompression: a compressed bomb stops at the cap), no file over FLEETWEB_SOURCE_MAX_FILE_BYTES;
- names are relative and stay inside the folder: no absolute path, no `..`, no `.git`, nothing a Windows-style
  separator could smuggle;
- a symbolic link is kept only when its target, resolved inside the folder, stays inside it; one pointing out
  (to a host file, `/etc/passwd`, `../../..`) is refused with its name, and nothing of the source stays on disk.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings


class SourceError(ValueError):
    """A source Fleetweb refuses or cannot read; the message says why in Fleetweb's words. `kind` classifies it for
    pages and the API: auth, host_key (an SSH server other than the pinned one), not_found, refused (policy), limit,
    invalid, network, render."""

    def __init__(self, message: str, *, kind: str = "invalid"):
        super().__init__(message)
        self.kind = kind


class Tree:
    """A folder being filled with a source's files, counted against the limits."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.files = 0
        self.bytes = 0
        self.links: list[tuple[Path, str]] = []

    def _target(self, name: str) -> Path:
        clean = clean_name(name)
        return self.root / clean

    def _count(self, size: int, name: str) -> None:
        if size > settings.FLEETWEB_SOURCE_MAX_FILE_BYTES:
            raise SourceError(f"{shown(name)} is larger than {size_text(settings.FLEETWEB_SOURCE_MAX_FILE_BYTES)}",
                              kind="limit")
        self.files += 1
        self.bytes += size
        if self.files > settings.FLEETWEB_SOURCE_MAX_FILES:
            raise SourceError(f"the source holds more than {settings.FLEETWEB_SOURCE_MAX_FILES} files", kind="limit")
        if self.bytes > settings.FLEETWEB_SOURCE_MAX_BYTES:
            raise _too_large()

    def add_file(self, name: str, data: bytes) -> None:
        self._count(len(data), name)
        target = self._target(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            raise SourceError(f"{shown(name)} appears twice in the source")
        target.write_bytes(data)
        target.chmod(0o644)  # never executable: nothing of a source is run

    def add_stream(self, name: str, stream: io.BufferedIOBase) -> None:
        """A file read from a stream in chunks (a chart archive's member): the caps hold before it is all read."""
        target = self._target(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            raise SourceError(f"{shown(name)} appears twice in the source")
        written = 0
        with target.open("wb") as out:
            for chunk in iter(lambda: stream.read(65536), b""):
                written += len(chunk)
                if written > settings.FLEETWEB_SOURCE_MAX_FILE_BYTES:
                    raise SourceError(f"{shown(name)} is larger than "
                                      f"{size_text(settings.FLEETWEB_SOURCE_MAX_FILE_BYTES)}", kind="limit")
                if self.bytes + written > settings.FLEETWEB_SOURCE_MAX_BYTES:
                    raise _too_large()
                out.write(chunk)
        self._count(written, name)
        target.chmod(0o644)

    def add_link(self, name: str, target: str) -> None:
        """A symbolic link, made once every file is written (`finish`), if it stays inside the folder."""
        self._count(0, name)
        self.links.append((self._target(name), target))

    def finish(self) -> None:
        for path, target in self.links:
            if posixpath.isabs(target) or "\\" in target or "\0" in target:
                raise SourceError(f"{shown(str(path.relative_to(self.root)))} is a symbolic link out of the source "
                                  f"(to {shown(target)})", kind="refused")
            resolved = (path.parent / target).resolve()
            if not resolved.is_relative_to(self.root):
                raise SourceError(f"{shown(str(path.relative_to(self.root)))} is a symbolic link out of the source "
                                  f"(to {shown(target)})", kind="refused")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(target)
        # A link may point at a link: resolve every one again now that all exist.
        for path, target in self.links:
            if not path.resolve().is_relative_to(self.root):
                raise SourceError(f"{shown(str(path.relative_to(self.root)))} is a symbolic link out of the source "
                                  f"(to {shown(target)})", kind="refused")


def clean_name(name: str) -> str:
    """A source's file name as a relative path inside the folder; SourceError when it could leave it."""
    if not name or "\0" in name or "\\" in name or name.startswith("/"):
        raise SourceError(f"the source names a file '{shown(name)}' Fleetweb does not write", kind="refused")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or any(part == ".." for part in parts) or parts[0] == ".git":
        raise SourceError(f"the source names a file '{shown(name)}' Fleetweb does not write", kind="refused")
    return "/".join(parts)


@contextlib.contextmanager
def folder(prefix: str = "fleetweb-source-") -> Iterator[Path]:
    """A temporary folder for one fetch and render, removed afterwards whatever happened."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def extract_chart(archive: bytes, into: Path) -> Path:
    """A chart archive (`.tgz`) written under `into` within the limits; the chart's folder (the archive's one top
    folder, as `helm package` makes it)."""
    tree = Tree(into)
    tops = set()
    try:
        with tarfile.open(fileobj=io.BytesIO(_gunzip(archive)), mode="r|") as tar:
            for member in tar:
                name = clean_name(member.name)
                tops.add(name.split("/")[0])
                if member.isdir():
                    continue
                if member.issym():
                    tree.add_link(name, member.linkname)
                elif member.isfile():
                    stream = tar.extractfile(member)
                    if stream is not None:
                        tree.add_stream(name, stream)  # type: ignore[arg-type]
                else:  # hard links, devices, fifos
                    raise SourceError(f"the chart archive holds {shown(name)}, which is not a file or a folder",
                                      kind="refused")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise SourceError(f"the chart archive could not be read ({type(exc).__name__})") from None
    tree.finish()
    if len(tops) != 1:
        raise SourceError("the chart archive does not hold exactly one chart folder")
    chart = into / tops.pop()
    if not (chart / "Chart.yaml").is_file():
        raise SourceError("the chart archive holds no Chart.yaml")
    return chart


def _too_large() -> SourceError:
    return SourceError(f"the source is larger than {size_text(settings.FLEETWEB_SOURCE_MAX_BYTES)}", kind="limit")


def _gunzip(archive: bytes) -> bytes:
    """The archive decompressed, a slice at a time, stopped once it outgrows the source's cap (and the tar headers'
    room): a compressed bomb is never inflated. (tarfile's own streaming reader cannot skip the gzip header's extra
    field that `helm package` writes.)"""
    cap = settings.FLEETWEB_SOURCE_MAX_BYTES + 8 * 2**20
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    pending = archive
    while True:
        chunk = inflate.decompress(pending, 2**16)
        out += chunk
        if len(out) > cap:
            raise _too_large()
        pending = inflate.unconsumed_tail
        if inflate.eof or (not chunk and not pending):
            return bytes(out)


def shown(text: str, limit: int = 120) -> str:
    """Text from a source or a tool as a message may quote it: one line (whitespace as spaces, other unprintable
    characters as '?'), at most `limit` characters."""
    text = "".join(ch if ch.isprintable() else " " if ch.isspace() else "?" for ch in text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def size_text(count: int) -> str:
    """A byte count as the limits' messages give it (64 MiB, 512 KiB)."""
    return f"{count / 2**20:.0f} MiB" if count >= 2**20 else f"{count // 1024} KiB"
