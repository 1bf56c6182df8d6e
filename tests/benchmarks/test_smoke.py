"""The benchmarks still run: each with tiny sizes, checked for its rows (never for speed)."""

from __future__ import annotations

import math
from pathlib import Path

import anyio
import pytest

from benchmarks import b7_fleet
from benchmarks.__main__ import main
from benchmarks.report import Row, render
from benchmarks.runner import NAMES, run_all
from benchmarks.sizes import SMOKE

EXPECTED_ROWS = {"B1": 9, "B2": 2, "B3": 5, "B4": 2, "B5": 5, "B6": 2, "B7": 6}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_each_benchmark_runs_and_gives_its_rows(name: str, tmp_path: Path) -> None:
    if name == "B7":
        why = anyio.run(b7_fleet.unavailable)
        if why is not None:
            pytest.skip(why)
    rows = run_all(SMOKE, [name], workdir=tmp_path)
    assert len(rows) == EXPECTED_ROWS[name]
    for row in rows:
        assert row.bench.startswith(name)
        assert math.isfinite(row.value) and row.value >= 0
        if row.ratio is not None:
            assert row.baseline is not None and row.baseline > 0 and row.ratio > 0
    assert list(tmp_path.iterdir()) == [], "the databases' directory was left behind"


def test_the_peers_give_a_row_per_peer_and_workload_or_say_why_not(tmp_path: Path) -> None:
    rows = run_all(SMOKE, [], workdir=tmp_path, with_peers=True)
    assert len(rows) == 6  # huey in memory and on SQLite, dramatiq; no-op and drain
    for row in rows:
        assert row.bench == "peers"
        if "skipped" in row.measure:
            assert "pip install" in row.measure
        else:
            assert row.value > 0 and row.baseline is not None and row.baseline > 0
            assert row.ratio is not None and row.ratio > 0
    assert list(tmp_path.iterdir()) == []


def test_the_table_has_a_header_a_rule_and_one_line_per_row() -> None:
    rows = [
        Row("B1", "engine", 2.0, "items/s", baseline=1.0, ratio=2.0, target="≥ 1x", ok=True),
        Row("B3", "latency", 5.0, "ms", text="1 / 2 / 5 ms"),
    ]
    lines = render(rows).splitlines()
    assert lines[0].split("|")[1].strip() == "bench"
    assert set(lines[1]) <= {"|", "-"}
    assert [line.split("|")[3].strip() for line in lines[2:]] == ["2.00 items/s", "1 / 2 / 5 ms"]
    assert lines[2].split("|")[5].strip() == "2.00" and lines[2].split("|")[7].strip() == "yes"


@pytest.mark.slow
def test_the_command_prints_one_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--only", "B6", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + EXPECTED_ROWS["B6"]
    assert "novaconsole --help" in out


def test_an_unknown_benchmark_is_refused() -> None:
    with pytest.raises(ValueError, match="B9"):
        run_all(SMOKE, ["B9"])
