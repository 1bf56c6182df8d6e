"""The console's presentation rules, without Textual."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, timedelta

import pytest

from novaconsole.console.view_models import (
    ResultFilter,
    attempt_rows,
    distinct_failed,
    filter_results,
    filter_title,
    fit,
    format_ago,
    format_seconds,
    handler_rows,
    log_line,
    next_batch_size,
    queue_view,
    result_columns,
    result_row,
    status_view,
)
from novaconsole.engine.handler import HandlerPurpose
from novaconsole.engine.operator import PauseInfo
from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.engine.snapshot import Snapshot
from tests.console.support import FIXED_OUTCOMES, T0, fixed_snapshot


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.0004, "400 µs"),
        (0.012, "12 ms"),
        (1.5, "1.5 s"),
        (42, "42 s"),
        (125, "2m 05s"),
        (7300, "2h 01m"),
    ],
)
def test_format_seconds(seconds: float | None, text: str) -> None:
    assert format_seconds(seconds) == text


def test_format_ago_uses_the_given_now() -> None:
    assert format_ago(None, T0) == "never"
    assert format_ago(T0, T0) == "just now"
    assert format_ago(T0 - timedelta(seconds=42), T0) == "42 s ago"


def test_status_view_states() -> None:
    snap = fixed_snapshot()
    assert status_view(snap).state == "running"
    assert status_view(snap).next_poll == "4m 18s"
    paused = replace(snap, paused=True, state="paused")
    assert status_view(paused).state == "paused"
    assert status_view(paused).next_poll == "paused"
    draining = status_view(snap, quitting=True)
    assert draining.state == "draining"
    assert draining.label == "draining…"
    assert status_view(replace(snap, concurrency=9)).concurrency == "9*"
    assert dict(status_view(snap).fields)["worker"] == "worker-1"


LONG_REASON = "db maintenance: vacuum of the results table after the 2.3 migration"


def _paused_with_reasons() -> Snapshot:
    """Everything paused 3 min before T0 for 10 min with a long reason, and CatalogueImport
    paused for an hour with a short one."""
    snap = fixed_snapshot()
    everything = PauseInfo(
        by="cli@ops1",
        at=T0 - timedelta(minutes=3),
        reason=LONG_REASON,
        resumes_at=T0 + timedelta(minutes=7),
    )
    one = PauseInfo(
        by="cli@ops1", at=T0, reason="vendor fixing the feed", resumes_at=T0 + timedelta(hours=1)
    )
    handlers = dict(snap.handlers)
    handlers["CatalogueImport"] = replace(handlers["CatalogueImport"], paused=True, pause=one)
    return replace(snap, paused=True, state="paused", pause=everything, handlers=handlers)


def _line(pairs: tuple[tuple[str, str], ...]) -> str:
    """What the status bar shows after the state, as the widget joins it."""
    return "".join(f"  {label} {value}" if label else f"  {value}" for label, value in pairs)


def test_a_read_only_console_says_so_first_at_any_width() -> None:
    snap = fixed_snapshot()
    assert ("", "read-only") not in status_view(snap).fit(400)
    for width in (20, 70, 400):
        fitted = status_view(snap, read_only=True).fit(width)
        assert fitted[0] == ("", "read-only"), width


def test_status_view_says_why_and_until_when_everything_is_paused() -> None:
    view = status_view(_paused_with_reasons(), now=T0, tz=UTC)
    assert view.pause_reason == LONG_REASON
    assert view.pause_until == "12:07"
    assert view.pause_by == "cli@ops1 3 min ago"
    assert view.paused_handlers == "CatalogueImport: vendor fixing the feed, until 13:00"
    assert view.pause == f"everything paused by cli@ops1 3 min ago: {LONG_REASON}; resumes at 12:07"
    assert "next poll" not in dict(view.fields)  # the state says paused already


@pytest.mark.parametrize("width", [70, 110, 190, 400])
def test_status_fields_fit_every_width_by_priority(width: int) -> None:
    view = status_view(_paused_with_reasons(), now=T0, tz=UTC)
    shown = view.fit(width)
    assert len(_line(shown)) <= width
    labels = [label for label, _ in shown]
    assert labels[:2] == ["reason", "until"]  # why and until when, whatever the width
    assert labels == [label for label, _ in view.fields if label in labels]  # display order
    values = dict(shown)
    if width >= 110:
        assert values["paused"].startswith("CatalogueImport")
    if width >= 190:
        assert values["reason"] == LONG_REASON  # details gave way to it
    if width < 190:
        assert values["reason"].endswith("…")
        assert "db" not in values and "worker" not in values
    if width == 400:
        assert shown == view.fields  # everything, whole


def test_status_fields_give_the_last_room_to_the_database() -> None:
    view = status_view(fixed_snapshot(), now=T0)
    whole = _line(view.fields)
    assert _line(view.fit(len(whole))) == whole
    cut = dict(view.fit(len(whole) - 10))
    assert cut["db"].endswith("…") and len(cut["db"]) == len(view.database) - 10
    assert cut["cycle"] == "128" and cut["worker"] == "worker-1"


def test_handler_rows_states_marks_and_purpose_filter() -> None:
    rows = {row.name: row for row in handler_rows(fixed_snapshot(), T0)}
    assert rows["PhysicalDeletion"].state == "active"
    assert rows["PhysicalDeletion"].tone == "success"
    assert rows["CatalogueImport"].state == "failing"
    assert rows["CatalogueImport"].tone == "error"
    assert rows["CatalogueImport"].cells[2] == "80*"  # batch size differs from config
    assert rows["NotificationExport"].state == "paused"
    assert rows["LegacySync"].state == "disabled"
    assert rows["LegacySync"].cells[6] == "never"
    assert rows["PhysicalDeletion"].cells[3] == "2 (+5)"  # in flight, queued
    only = handler_rows(fixed_snapshot(), T0, HandlerPurpose.INGESTION)
    assert [row.name for row in only] == ["CatalogueImport"]


def test_next_batch_size_steps_of_about_ten_percent_never_below_one() -> None:
    assert next_batch_size(10, 1) == 11
    assert next_batch_size(100, 1) == 110
    assert next_batch_size(100, -1) == 90
    assert next_batch_size(1, -1) == 1
    assert next_batch_size(3, -1) == 2


def test_queue_view() -> None:
    view = queue_view(fixed_snapshot())
    assert view.depth_text == "312 / 1,000"
    assert view.workers_text == "6/8"
    assert view.rate_text == "148/s"
    assert view.latency[1] == ("queue", "120 ms", "480 ms")


def test_busy_line_fits_the_queue_pane() -> None:
    from novaconsole.console.view_models import busy_line

    def line(workers: str, cycle: str, width: int) -> str:
        parts = busy_line(workers, cycle, width)
        assert [label for _, label in parts] == [True, False, True, False]
        text = "".join(part for part, _ in parts)
        assert len(text) <= width, (width, text)
        return text

    assert line("6/8", "12 ms", 24) == "busy    6/8  cycle 12 ms", "under depth and items/s"
    assert line("0/4", "513 ms", 24) == "busy    0/4 cycle 513 ms"
    assert line("16/16", "1.5 s", 24) == "busy 16/16 cycle 1.5 s"
    assert line("16/16", "2m 05s", 22) == "busy 16/16 cycle 2m05s"


def test_latency_table_fits_the_queue_pane() -> None:
    from novaconsole.console.view_models import latency_table

    def table(rows: list[tuple[str, str, str]], width: int) -> list[str]:
        lines = [label + figures for label, figures in latency_table(rows, width)]
        assert all(len(line) <= width for line in lines), (width, lines)
        return lines

    usual = list(queue_view(fixed_snapshot()).latency)
    assert table(usual, 24) == [
        "latency      p50     p95",
        " fetch      4 ms   21 ms",
        " queue    120 ms  480 ms",
        " process   11 ms   95 ms",
    ]
    assert table(usual, 40) == table(usual, 24), "columns stay put on a wider pane"
    long = [("fetch", "800 µs", "165 ms"), ("queue", "5m 10s", "12m 05s")]
    assert table(long, 26)[2] == " queue     5m 10s  12m 05s"
    assert table(long, 24)[2] == " queue     5m10s  12m05s", "figures lose their inner space"
    assert table(long, 22)[2] == " queue    5m10s 12m05s", "then the gap narrows"
    assert table(usual, 22)[1] == " fetch      4ms   21ms", "a scrollbar's 2 cells less"
    assert table([], 24) == ["latency      p50     p95"], "before the first snapshot"


def test_result_filters_cycle_and_select() -> None:
    assert [ResultFilter.ALL.next(), ResultFilter.FAILED.next(), ResultFilter.HANDLER.next()] == [
        ResultFilter.FAILED,
        ResultFilter.HANDLER,
        ResultFilter.ALL,
    ]
    failed = filter_results(FIXED_OUTCOMES, ResultFilter.FAILED, None)
    assert {o.status for o in failed} == {
        OutcomeStatus.FAILED,
        OutcomeStatus.TIMED_OUT,
        OutcomeStatus.CANCELLED,
    }
    mine = filter_results(FIXED_OUTCOMES, ResultFilter.HANDLER, "PhysicalDeletion")
    assert [o.item_id for o in mine] == [9001, 9002]
    assert filter_title(ResultFilter.FAILED, None) == "Results · failed only"
    assert filter_title(ResultFilter.HANDLER, "X") == "Results · X"


def test_result_row_and_columns_fit_the_width() -> None:
    failed = next(o for o in FIXED_OUTCOMES if o.status is OutcomeStatus.FAILED)
    row = result_row(failed, UTC)
    assert row.cells[:5] == ("failed", "11:59:30", "CatalogueImport", "batch-17/row-4", "3")
    for width in (78, 118, 198):
        shown = [w for w in result_columns(width).widths() if w]
        assert sum(shown) + len(shown) - 1 == width
    assert result_columns(78).duration == 0, "narrow: the duration gives way to the error"
    assert result_columns(118).duration == 8
    assert fit("abcdef", 4) == "abc…"
    assert fit("ab", 4) == "ab  "


def test_attempt_rows_and_retry_candidates() -> None:
    failed = next(o for o in FIXED_OUTCOMES if o.status is OutcomeStatus.FAILED)
    rows = attempt_rows(failed, UTC)
    assert [row.number for row in rows] == ["1", "2", "3"]
    assert rows[0].started == "2026-01-02 11:59:25.000"
    assert distinct_failed(reversed(FIXED_OUTCOMES)) == [
        ("NotificationExport", "n-552"),
        ("CatalogueImport", "batch-17/row-4"),
    ]


def test_log_line_carries_level_logger_handler_and_item() -> None:
    record = logging.LogRecord(
        "novaconsole.engine", logging.ERROR, __file__, 1, "boom %s", (1,), None
    )
    record.created = T0.timestamp()
    record.handler = "Ping"
    record.item_id = 42
    line = log_line(record, UTC)
    assert line.level == "ERROR"
    assert line.text == "12:00:00 ERROR   engine [Ping #42] boom 1"
    own = logging.LogRecord(
        "novaconsole.handlers.Ping", logging.INFO, __file__, 1, "hi", None, None
    )
    own.created = T0.timestamp()
    own.handler = "Ping"
    assert log_line(own, UTC).text == "12:00:00 INFO    Ping hi"


def test_log_line_masks_secrets_and_neutralises_controls() -> None:
    """The headless logs redact every line; the console's log pane must too."""
    record = logging.LogRecord(
        "novaconsole.handlers.Ping",
        logging.INFO,
        __file__,
        1,
        "item says %s",
        ("password=hunter2 \x1b]0;pwned\x07 \x1b[2J postgresql://app:s3cret@db/x",),
        None,
    )
    record.created = T0.timestamp()
    text = log_line(record, UTC).text
    assert text == (
        "12:00:00 INFO    Ping item says password=*** \\x1b]0;pwned\\x07 \\x1b[2J "
        "postgresql://app:***@db/x"
    )


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this error fails too")


def test_log_line_names_an_error_whose_own_str_fails() -> None:
    for error in (ValueError("bad row"), _Unprintable()):
        record = logging.LogRecord(
            "novaconsole.engine",
            logging.ERROR,
            __file__,
            1,
            "failed",
            None,
            (type(error), error, None),
        )
        record.created = T0.timestamp()
        line = log_line(record, UTC)
        assert line.text.startswith("12:00:00 ERROR   engine failed (")
    assert line.text.endswith("(_Unprintable: <exception str() failed>)")


def test_handler_columns_drop_by_priority_and_never_overflow() -> None:
    from novaconsole.console.view_models import CELL_PADDING, handler_columns

    for width in range(20, 220):
        columns = handler_columns(width, 18)
        keys = [key for key, _, _ in columns]
        assert keys[0] == "name"
        if width >= 20:
            assert sum(w + CELL_PADDING for _, _, w in columns) <= max(width, 20)
    narrow = [key for key, _, _ in handler_columns(50, 18)]
    assert narrow == ["name", "state", "succeeded", "failed"]
    wide = [key for key, _, _ in handler_columns(200, 18)]
    assert wide == [
        "name",
        "state",
        "batch",
        "in_flight",
        "succeeded",
        "failed",
        "last_run",
        "purpose",
        "last_error",
    ]


def test_a_why_comes_before_the_counts_and_never_overflows() -> None:
    from novaconsole.console.view_models import (
        CELL_PADDING,
        MIN_ERROR_WIDTH,
        WHY_HEADER,
        handler_columns,
    )

    for width in range(20, 220):
        for why in (1, 20, 60, 500):
            columns = handler_columns(width, 18, why)
            assert sum(w + CELL_PADDING for _, _, w in columns) <= max(width, 20)
            keys = [key for key, _, _ in columns]
            if width >= 20 + 10 + MIN_ERROR_WIDTH + CELL_PADDING:  # name, state, a why
                assert keys[:2] == ["name", "state"] and keys[-1] == "last_error"
    # 80 columns: the handlers pane's 50 cells give the why what the counts had
    narrow = handler_columns(50, 18, 57)
    assert [key for key, _, _ in narrow] == ["name", "state", "last_error"]
    assert narrow[-1] == ("last_error", WHY_HEADER, 18)
    # 120 columns (76 cells): the counts beside a why of 24 cells; in flight and batch wait
    middle = handler_columns(76, 18, 57)
    assert [key for key, _, _ in middle] == ["name", "state", "succeeded", "failed", "last_error"]
    assert middle[-1][2] == 24
    # a short why leaves the other columns their room
    assert [key for key, _, _ in handler_columns(118, 18, 8)][-3:] == [
        "last_run",
        "purpose",
        "last_error",
    ]
    # 160 columns: the why keeps 40 cells, in flight and batch come back, last run and
    # purpose wait
    wide = handler_columns(118, 18, 57)
    assert [key for key, _, _ in wide] == [
        "name",
        "state",
        "batch",
        "in_flight",
        "succeeded",
        "failed",
        "last_error",
    ]
    assert wide[-1][2] >= 40
    # no why: as before, and the header says last error
    assert handler_columns(118, 18)[-1][1] == "Last error"


def test_fit_and_note_lines_count_cells_not_characters() -> None:
    """A wide character (CJK) takes two cells and is never cut in half."""
    from rich.cells import cell_len

    from novaconsole.console.view_models import fit, note_lines

    assert fit("東京の夜景", 6) == "東京 …"  # 'の' would straddle the cut: a space instead
    assert fit("東京", 6) == "東京  "
    assert fit("ab", 1) == "…"
    reason = "データベースの夜間メンテナンス中です。運用チームに連絡してください"
    lines = note_lines(reason, 16)
    assert len(lines) == 2 and lines[1].endswith("…")
    assert all(cell_len(line) <= 16 for line in lines), lines
    assert lines[0] == "データベースの夜"


def test_note_lines_wrap_at_words_and_end_in_an_ellipsis_when_cut() -> None:
    from novaconsole.console.view_models import note_lines

    text = "db maintenance until the nightly vacuum finishes, ask ops"
    assert note_lines(text, 18) == ("db maintenance", "until the nightly…")
    assert note_lines(text, 60) == (text,)
    assert note_lines("x" * 50, 18) == ("x" * 18, "x" * 17 + "…")
    assert note_lines("", 18) == ("",)
    for width in range(1, 40):
        assert all(len(line) <= width for line in note_lines(text, width, 3))


def test_a_pause_reason_says_why_first_on_one_line_with_escapes_shown() -> None:
    from novaconsole.console.view_models import WHY_LIMIT, handler_row

    view = replace(
        fixed_snapshot().handlers["NotificationExport"],
        pause=PauseInfo(
            by="cli@ops1",
            at=T0 - timedelta(minutes=12),
            reason="relay\x1b[2J\x1b]52;c;cHduZWQ=\x07 down\r\n\tsee OPS-1 " + "y" * 900,
            resumes_at=T0 + timedelta(hours=2),
        ),
    )
    row = handler_row(view, T0, UTC)
    assert row.why
    note = row.cells[-1]
    assert note.startswith("relay\\x1b[2J\\x1b]52;c;cHduZWQ=\\x07 down see OPS-1 yyy")
    assert not any(ord(char) < 32 or ord(char) == 127 for char in note)
    assert len(note) <= WHY_LIMIT and note.endswith("…")
    no_reason = replace(view, pause=PauseInfo(by="cli@ops1", at=T0 - timedelta(minutes=12)))
    assert not handler_row(no_reason, T0, UTC).why  # "by cli@ops1 12 min ago" says no why
    until = replace(view, pause=PauseInfo(resumes_at=T0 + timedelta(hours=2)))
    assert handler_row(until, T0, UTC).cells[-1] == "until 14:00"


def test_counts_are_labelled_since_start_unless_the_snapshot_says_total() -> None:
    from dataclasses import replace

    from novaconsole.console.view_models import counts_label

    assert counts_label(fixed_snapshot()) == "since start"
    assert counts_label(replace(fixed_snapshot(), worker_id="attached")) == "total"


def test_search_matches_item_id_handler_and_error_ignoring_case() -> None:
    from novaconsole.console.view_models import filter_label, filter_results

    assert [o.item_id for o in filter_results(FIXED_OUTCOMES, ResultFilter.ALL, None, "isrc")] == [
        "batch-17/row-4"
    ]
    assert len(filter_results(FIXED_OUTCOMES, ResultFilter.ALL, None, "notificationexport")) == 2
    assert [o.item_id for o in filter_results(FIXED_OUTCOMES, ResultFilter.ALL, None, "900")] == [
        9001,
        9002,
    ]
    assert filter_results(FIXED_OUTCOMES, ResultFilter.FAILED, None, "9001") == []
    assert filter_label(ResultFilter.FAILED, None, "x") == "failed only · /x"
    assert filter_label(ResultFilter.ALL, None, "") == ""


def test_stats_rates_per_handler_and_latency_series() -> None:
    from dataclasses import replace
    from datetime import timedelta

    from novaconsole.console.stats import StatsHistory
    from novaconsole.console.view_models import handler_rates, latency_series

    history = StatsHistory(bucket=5, window=20)
    snapshot = fixed_snapshot()
    for step in range(8):
        handlers = {
            name: replace(view, succeeded=view.succeeded + 10 * step)
            for name, view in snapshot.handlers.items()
        }
        at = T0 + timedelta(seconds=5 * step)
        assert history.offer(replace(snapshot, handlers=handlers), at)
        assert not history.offer(snapshot, at + timedelta(seconds=1)), "one sample a bucket"
    assert len(history.samples) == 5, "bounded: the window, not everything"
    rates = {rate.name: rate for rate in handler_rates(list(history.samples))}
    assert rates["PhysicalDeletion"].rates == (2.0, 2.0, 2.0, 2.0)
    p50, p95 = latency_series(list(history.samples))
    assert p50[-1] == snapshot.latency.process.p50 and p95[-1] == snapshot.latency.process.p95


def test_rate_plots_share_one_scale() -> None:
    from novaconsole.console.view_models import (
        HandlerRate,
        rate_scale,
        rates_heading,
        scaled_bars,
    )

    slow = HandlerRate("Slow", (1.0, 2.0, 1.0, 2.0))
    fast = HandlerRate("Fast", (1000.0, 2000.0, 1000.0, 2000.0))
    top = rate_scale([slow, fast])
    assert top == 2000.0
    assert "".join(bar for bar, _ in scaled_bars(fast.rates, 4, top)) == "▅█▅█"
    assert "".join(bar for bar, _ in scaled_bars(slow.rates, 4, top)) == "▁▁▁▁"
    assert "".join(bar for bar, _ in scaled_bars(slow.rates, 4, rate_scale([slow]))) == "▅█▅█"
    # more values than bars: each bar the largest of its share; fewer: values repeat
    assert [bar for bar, _ in scaled_bars((0.0, 8.0, 0.0, 0.0), 2, 8.0)] == ["█", "▁"]
    assert [bar for bar, _ in scaled_bars((8.0,), 3, 8.0)] == ["█", "█", "█"]
    assert scaled_bars((), 3, 8.0) == (("▁", 0.0),) * 3
    assert scaled_bars((5.0,), 2, 0.0) == (("▁", 0.0),) * 2
    assert scaled_bars((5.0,), 0, 1.0) == ()
    assert rate_scale([]) == 0.0
    assert rates_heading([], 0.0) == "Items/s per handler · collecting…"
    assert rates_heading([], 2000.0) == "Items/s per handler, one scale: █ 2,000/s · collecting…"


def test_handler_latencies_plot_each_handler_apart_and_gaps_as_zero() -> None:
    from novaconsole.console.view_models import StatsSample, handler_latencies

    def sample(second: int, *latency: tuple[str, float, float, int]) -> StatsSample:
        return StatsSample(T0 + timedelta(seconds=second), (), 0.0, 0.0, latency)

    samples = [
        sample(0, ("A", 0.01, 0.05, 10), ("B", 0.2, 0.9, 3)),
        sample(5, ("A", 0.02, 0.06, 10), ("B", 0.3, 1.1, 0)),
        sample(10, ("A", 0.03, 0.07, 10), ("B", 0.4, 1.2, 4), ("C", 0.5, 0.5, 1)),
    ]
    series = {s.name: s for s in handler_latencies(samples)}
    assert list(series) == ["A", "B", "C"]
    assert series["A"].p50 == (0.01, 0.02, 0.03) and series["A"].p95 == (0.05, 0.06, 0.07)
    assert series["B"].p95 == (0.9, 0.0, 1.2), "nothing finished lately: 0, not a stale value"
    assert series["C"].p50 == (0.0, 0.0, 0.5), "a handler new since: nothing before"
    assert series["A"].text == "30 ms / 70 ms"
    idle = handler_latencies([sample(0, ("A", 0.0, 0.0, 0))])[0]
    assert idle.now_p50 is None and idle.text == "-"
    assert handler_latencies([]) == []


def test_latency_plots_share_one_scale() -> None:
    from novaconsole.console.view_models import (
        HandlerLatencySeries,
        latency_heading,
        latency_scale,
        scaled_bars,
    )

    quick = HandlerLatencySeries("Quick", (0.002, 0.003), (0.030, 0.030), 0.003, 0.030)
    slow = HandlerLatencySeries("Slow", (0.100, 0.100), (0.300, 0.300), 0.1, 0.3)
    service = ((0.010, 0.015), (0.095, 0.095))
    top = latency_scale(service, [quick, slow])
    assert top == 0.300, "the highest p50 or p95 of the service or any handler"
    assert latency_scale(((0.0,), (0.5,)), [quick]) == 0.5
    assert latency_scale(((), ()), []) == 0.0

    def bars(values: tuple[float, ...]) -> str:
        return "".join(bar for bar, _ in scaled_bars(values, 2, top))

    assert (bars(quick.p50), bars(quick.p95), bars(slow.p95)) == ("▁▁", "▂▂", "██")
    assert latency_heading("Process latency per handler", 0.300) == (
        "Process latency per handler, one scale: █ 300 ms"
    )
    assert latency_heading("Process latency per handler", 0.0) == "Process latency per handler"


def test_latency_pair_fits_its_column() -> None:
    from novaconsole.console.view_models import latency_pair

    assert latency_pair(0.165, 0.293) == "165 ms / 293 ms"
    assert latency_pair(0.165, 0.293, 15) == "165 ms / 293 ms"
    assert latency_pair(0.165, 0.293, 14) == "165 / 293 ms", "the unit once"
    assert latency_pair(0.0008, 0.012, 14) == "800 µs / 12 ms", "units apart: both said"
    assert latency_pair(0.0008, 0.165, 14) == "800µs / 165ms"
    assert latency_pair(125.0, 725.0, 14) == "2m05s / 12m05s", "minutes have no one unit"
    assert latency_pair(125.0, 725.0, 12) == "2m05s/12m05s"
    assert latency_pair(125.0, 725.0, 5) == "2m05s/12m05s", "the shortest when none fits"


def test_stats_sample_keeps_each_handlers_latency() -> None:
    from novaconsole.console.view_models import stats_sample
    from novaconsole.engine.snapshot import Percentiles

    snap = fixed_snapshot()
    handlers = dict(snap.handlers)
    handlers["CatalogueImport"] = replace(
        handlers["CatalogueImport"], latency=Percentiles(0.1, 0.4), latency_samples=7
    )
    taken = stats_sample(replace(snap, handlers=handlers), T0)
    assert ("CatalogueImport", 0.1, 0.4, 7) in taken.latency
    assert ("PhysicalDeletion", 0.0, 0.0, 0) in taken.latency
