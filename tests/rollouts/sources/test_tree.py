"""What reaches the disk from a source: names that stay inside, links that stay inside, files and bytes capped, a
chart archive's bomb stopped at the cap; nothing left behind."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from rollouts.sources import tree
from rollouts.sources.tree import SourceError, Tree


def _archive(members: list[tuple[str, bytes | None, str]]) -> bytes:
    """A .tgz of (name, data, link target) members: data None and a target make a symbolic link."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@pytest.mark.parametrize("name", ["/etc/passwd", "../up", "a/../../up", ".git/config", "a\\b", "", "a/\0b"])
def test_a_name_that_could_leave_the_folder_is_refused(tmp_path, name):
    with pytest.raises(SourceError) as refused:
        Tree(tmp_path).add_file(name, b"x")
    assert refused.value.kind == "refused"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside", "sub/../../../x"])
def test_a_link_out_of_the_source_is_refused(tmp_path, target):
    root = tmp_path / "root"
    root.mkdir()
    writing = Tree(root)
    writing.add_file("sub/deploy.yaml", b"kind: ConfigMap\n")
    writing.add_link("sub/leak.yaml", target)
    with pytest.raises(SourceError, match="symbolic link out of the source") as refused:
        writing.finish()
    assert refused.value.kind == "refused"
    assert not (root / "sub/leak.yaml").exists()


def test_a_link_inside_the_source_is_kept(tmp_path):
    writing = Tree(tmp_path)
    writing.add_file("base/deploy.yaml", b"kind: ConfigMap\n")
    writing.add_link("overlay/deploy.yaml", "../base/deploy.yaml")
    writing.finish()
    assert (tmp_path / "overlay/deploy.yaml").read_bytes() == b"kind: ConfigMap\n"


def test_a_chain_of_links_that_ends_outside_is_refused(tmp_path):
    writing = Tree(tmp_path / "root")
    (tmp_path / "root").mkdir()
    writing.add_link("a", "b")
    writing.add_link("b", "../secret")
    with pytest.raises(SourceError, match="out of the source"):
        writing.finish()


def test_files_bytes_and_one_files_size_are_capped(tmp_path, settings):
    settings.FLEETWEB_SOURCE_MAX_FILES = 10
    writing = Tree(tmp_path / "a")
    with pytest.raises(SourceError, match="more than 10 files") as refused:
        for index in range(11):
            writing.add_file(f"f{index}.yaml", b"x")
    assert refused.value.kind == "limit"
    settings.FLEETWEB_SOURCE_MAX_FILE_BYTES = 2**16
    with pytest.raises(SourceError, match="larger than 64 KiB"):
        Tree(tmp_path / "b").add_file("big.yaml", b"x" * (2**16 + 1))
    settings.FLEETWEB_SOURCE_MAX_FILE_BYTES = 2**20
    settings.FLEETWEB_SOURCE_MAX_BYTES = 2**20
    writing = Tree(tmp_path / "c")
    with pytest.raises(SourceError, match="source is larger than 1 MiB"):
        for index in range(3):
            writing.add_file(f"part{index}", b"x" * (2**19))


def test_a_compressed_bomb_stops_at_the_cap_without_being_inflated(tmp_path, settings):
    settings.FLEETWEB_SOURCE_MAX_BYTES = 2**20
    settings.FLEETWEB_SOURCE_MAX_FILE_BYTES = 2**20
    bomb = _archive([("chart/Chart.yaml", b"name: bomb\nversion: 1.0.0\n", ""),
                     ("chart/templates/zeros.yaml", b"\0" * (64 * 2**20), "")])
    assert len(bomb) < 200_000, "64 MiB of zeros compress to very little"
    with pytest.raises(SourceError, match="larger than 1 MiB") as refused:
        tree.extract_chart(bomb, tmp_path)
    assert refused.value.kind == "limit"
    assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) <= 2**20 + 2**16


def test_a_chart_archive_with_a_link_to_a_host_file_is_refused(tmp_path):
    archive = _archive([("chart/Chart.yaml", b"name: c\nversion: 1.0.0\n", ""),
                        ("chart/templates/x.yaml", None, "/etc/passwd")])
    with pytest.raises(SourceError, match="symbolic link out of the source"):
        tree.extract_chart(archive, tmp_path)


def test_a_chart_archive_is_one_chart_folder(tmp_path):
    chart = tree.extract_chart(_archive([("web/Chart.yaml", b"name: web\nversion: 1.0.0\n", ""),
                                         ("web/values.yaml", b"replicas: 2\n", "")]), tmp_path)
    assert chart == tmp_path / "web" and (chart / "values.yaml").read_text() == "replicas: 2\n"
    with pytest.raises(SourceError, match="exactly one chart folder"):
        tree.extract_chart(_archive([("a/Chart.yaml", b"x", ""), ("b/Chart.yaml", b"x", "")]), tmp_path / "two")
    with pytest.raises(SourceError, match="could not be read"):
        tree.extract_chart(gzip.compress(b"not a tar"), tmp_path / "bad")


def test_the_temporary_folder_goes_whatever_happens():
    with pytest.raises(SourceError), tree.folder() as path:
        (path / "x").write_text("y")
        raise SourceError("boom")
    assert not path.exists()


def test_text_quoted_in_a_message_is_one_printable_line_of_bounded_length():
    assert tree.shown("a\nb\tc\x1b[31md") == "a b c?[31md"
    assert tree.shown("x" * 500, 10) == "x" * 9 + "…"
