"""The CLI's garbage-collector tuning (``[process] tune_gc``): on by default in the service
process, off on request, and restored when the block ends."""

from __future__ import annotations

import gc
import json
import textwrap

import pytest

from novaconsole.gc_tuning import YOUNG_THRESHOLD, tuned_gc

PROBE = textwrap.dedent('''
    import gc
    import json
    from pathlib import Path


    class Probe:
        """Writes what the collector looks like while an item runs."""

        def __init__(self, ctx):
            self.out = Path(ctx.options["out"])

        async def fetch_next(self, max_items):
            return [{"id": 1}]

        async def process(self, item):
            seen = {"young": gc.get_threshold()[0], "frozen": gc.get_freeze_count()}
            self.out.write_text(json.dumps(seen))
''')


@pytest.fixture
def probe(project):
    (project.root / "handlers" / "probe.py").write_text(PROBE)
    out = project.root / "gc.json"

    def write_config(process: str = "") -> None:
        project.write_config(
            f"{process}\n"
            '[[handlers]]\nname = "Probe"\nfactory = "handlers.probe:Probe"\n'
            f'[handlers.options]\nout = "{out}"\n'
        )

    return write_config, out


def test_the_service_process_runs_with_startup_frozen_and_fewer_young_collections(
    project, cli, probe
):
    write_config, out = probe
    write_config()
    result = cli.run("--no-ui", "--once", "--db", project.db_url)
    assert result.returncode == 0, result.stderr
    seen = json.loads(out.read_text())
    assert seen["young"] == YOUNG_THRESHOLD
    assert seen["frozen"] > 10_000  # the modules, classes and compiled SQL of start-up


def test_tune_gc_false_keeps_cpythons_collector_as_it_is(project, cli, probe):
    write_config, out = probe
    write_config("[process]\ntune_gc = false\n")
    result = cli.run("--no-ui", "--once", "--db", project.db_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == {"young": 700, "frozen": 0}


def test_a_bad_tune_gc_is_one_line_naming_the_key(project, cli, probe):
    write_config, _ = probe
    write_config('[process]\ntune_gc = "sometimes"\n')
    result = cli.run("--no-ui", "--once", "--db", project.db_url)
    assert result.returncode == 2
    assert "process.tune_gc" in result.stderr
    assert "Traceback" not in result.stderr


def test_tuned_gc_restores_thresholds_and_unfreezes_on_leaving():
    before = gc.get_threshold()
    with tuned_gc():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_tuned_gc_restores_even_when_the_block_raises():
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), tuned_gc():
        raise RuntimeError("the service failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_tuned_gc_disabled_changes_nothing():
    before = gc.get_threshold()
    with tuned_gc(enabled=False):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0
