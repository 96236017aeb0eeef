"""localfleet.suite (`make test`): both parts' counts add up on the last line, and the exit code fails when either
part failed."""

from __future__ import annotations

from localfleet import suite


def test_counts_come_from_each_sessions_summary_line(tmp_path, capsys):
    probe = tmp_path / "test_probe.py"
    probe.write_text("import pytest\n"
                     "def test_a(): pass\n"
                     "def test_b(): pass\n"
                     "def test_c(): assert 1 == 2\n"
                     "@pytest.mark.skip\n"
                     "def test_d(): pass\n")
    totals: dict[str, int] = {}
    code = suite._run_pytest([str(probe), "-q", "-p", "no:cacheprovider", "-p", "no:django", "--rootdir",
                              str(tmp_path), "-c", "/dev/null"], totals)
    assert code == 1
    assert totals == {"passed": 2, "failed": 1, "skipped": 1}
    assert "1 failed, 2 passed, 1 skipped" in capsys.readouterr().out, "pytest's own output is passed through"


def test_the_exit_code_fails_when_either_part_failed():
    assert suite.combined_exit(0, 0) == 0
    assert suite.combined_exit(1, 0) == 1 and suite.combined_exit(0, 2) == 2
    assert suite.combined_exit(5, 0) == 0, "a part with no test is fine when the other ran some"
    assert suite.combined_exit(5, 5) == 5, "no test at all is not a pass"
