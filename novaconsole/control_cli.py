"""The console's actions on the command line: ``status``, ``pause``, ``resume``, ``run-once``,
``batch-size``, ``concurrency``, ``retry`` and ``audit``.

Each goes through the database's control plane, so it reaches every worker on it (shared mode
or not) within a second, and a change made while none runs is applied at the next start. Each
prints what changed and exits 0, or says in one line why not and exits 2; ``--json`` prints
JSON instead. Only the standard library is imported at module level (``--help`` is instant).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from novaconsole.engine.operator import AuditEntry
    from novaconsole.settings import Settings
    from novaconsole.store.operator import OperatorClient

T = TypeVar("T")
Options = Callable[[argparse.ArgumentParser], None]

RETRY_WAIT = 30.0
"""How long ``retry`` waits for a running worker to report what became of the item."""
COMMAND_WAIT = 5.0
"""How long ``run-once`` waits for a worker to take the command."""
_POLL = 0.2
_SUFFIXED = re.compile(
    r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$"
)


def add_commands(
    sub: Any, common: Options, settings: Callable[[argparse.Namespace], Settings]
) -> None:
    """Register the commands on ``sub`` (the ``novaconsole`` subparsers); ``common`` adds
    ``--config`` and ``--db``; ``settings`` loads the settings from parsed arguments."""
    global _settings
    _settings = settings

    def command(name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> Any:
        parser = sub.add_parser(name, help=help_text, description=help_text)
        common(parser)
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(command_func=func)
        return parser

    command(
        "status",
        "what the status bar and the handler and queue panes show, from the database",
        _status,
    )
    pause = command(
        "pause", "pause everything, or one handler, on every worker (and at the next start)", _pause
    )
    pause.add_argument("handler", nargs="?", metavar="HANDLER", help="only this handler")
    pause.add_argument("--reason", metavar="TEXT", help="why: shown with the pause everywhere")
    pause.add_argument(
        "--for",
        dest="duration",
        type=_duration,
        metavar="DURATION",
        help="resume by itself after this long (30s, 10m, 1h30m, 00:10:00)",
    )
    resume = command("resume", "resume everything, or one handler", _resume)
    resume.add_argument("handler", nargs="?", metavar="HANDLER", help="only this handler")
    run_once = command(
        "run-once", "one cycle now on one running worker (also while paused)", _run_once
    )
    run_once.add_argument("handler", nargs="?", metavar="HANDLER", help="only this handler")
    batch = command("batch-size", "items asked of a handler per fetch, on every worker", _batch)
    batch.add_argument("handler", metavar="HANDLER")
    batch.add_argument("size", type=int, metavar="N")
    concurrency = command("concurrency", "items processed at once, on every worker", _concurrency)
    concurrency.add_argument("workers", type=int, metavar="N")
    audit = command("audit", "who changed which control, when, old → new", _audit)
    audit.add_argument("--limit", type=int, default=50, metavar="N", help="newest N (default 50)")


def add_retry_options(parser: argparse.ArgumentParser) -> None:
    """``retry``'s options beyond HANDLER and ITEM_ID (the parser is cli.py's)."""
    parser.add_argument(
        "--wait",
        type=float,
        default=RETRY_WAIT,
        metavar="SECONDS",
        help=f"wait this long for a running worker to report the outcome (default {RETRY_WAIT:g})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(command_func=retry)


_settings: Callable[[argparse.Namespace], Settings]


# ---------------------------------------------------------------------- helpers


class Refused(Exception):
    """One clear line, exit status 2."""


def _duration(text: str) -> timedelta:
    from novaconsole.durations import parse_duration

    value = text.strip().lower()
    match = _SUFFIXED.match(value)
    if value and match and any(match.groupdict().values()):
        parts = {key: float(number or 0) for key, number in match.groupdict().items()}
        result = timedelta(hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    else:
        try:
            result = parse_duration(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    if result <= timedelta(0):
        raise argparse.ArgumentTypeError(f"must be longer than 0, got {text!r}")
    return result


def _run(
    args: argparse.Namespace, work: Callable[[Settings, OperatorClient], Awaitable[int]]
) -> int:
    import anyio

    from novaconsole.store.operator import OperatorClient

    settings = _settings(args)

    async def main() -> int:
        client = OperatorClient(settings.database.url)
        try:
            return await work(settings, client)
        finally:
            await client.close()

    try:
        result: int = anyio.run(main)
    except Refused as error:
        print(f"novaconsole: {error}", file=sys.stderr)
        return 2
    return result


def _who() -> str:
    from novaconsole.engine.operator import operator_id

    return operator_id("cli")


def _registrations(settings: Settings) -> Any:
    from novaconsole.builder import BackgroundProcessing

    return BackgroundProcessing.from_settings(settings).registrations


async def _known(settings: Settings, client: OperatorClient, handler: str | None) -> None:
    """Refuse a handler the config does not register (or, with no [[handlers]] in it, one the
    database has never seen: the demo builds its config in its own process)."""
    if handler is None:
        return
    names = [h.name for h in settings.handlers]
    if not names:
        names = sorted(await client.known_handlers())
    if handler not in names:
        known = ", ".join(names) if names else f"none: no [[handlers]] in {settings.source_label}"
        raise Refused(f"no handler named {handler!r} (registered: {known})")


async def _status_data(settings: Settings, client: OperatorClient) -> dict[str, Any]:
    from novaconsole.status import from_database

    reading = await client.read()
    return from_database(
        reading,
        _registrations(settings),
        settings.processing.max_concurrency,
        client.display_url,
    )


def _print_json(data: Any) -> None:
    import json

    print(json.dumps(data, indent=2, default=str))


def _reach(status: dict[str, Any]) -> str:
    live = [w for w in status["workers"] if w["alive"]]
    if not live:
        return "no worker is running: saved, applied at the next start"
    return f"{len(live)} running worker{'' if len(live) == 1 else 's'} follow within a second"


def _changed(args: argparse.Namespace, entries: list[AuditEntry], status: dict[str, Any]) -> int:
    if args.json:
        _print_json({"changed": [entry.as_dict() for entry in entries], "status": status})
        return 0
    for entry in entries:
        target = f" {entry.handler}" if entry.handler else " everything"
        if entry.what in ("pause", "resume"):
            line = f"{entry.what}d{target}" if entry.what == "pause" else f"resumed{target}"
            if entry.detail:
                line += f" ({entry.detail})"
        else:
            name = entry.what.replace("_", " ")
            of = f" of {entry.handler}" if entry.handler else ""
            line = f"{name}{of}: {entry.old or 'as configured'} → {entry.new}"
        print(line)
    for line in status["paused_lines"]:
        print(f"  {line}")
    print(_reach(status))
    return 0


# ---------------------------------------------------------------------- commands


def _status(args: argparse.Namespace) -> int:
    async def work(settings: Settings, client: OperatorClient) -> int:
        status = await _status_data(settings, client)
        if args.json:
            _print_json(status)
        else:
            _print_status(status)
        return 0

    return _run(args, work)


def _print_status(status: dict[str, Any]) -> None:
    live = [w for w in status["workers"] if w["alive"]]
    workers = f"{len(live)} worker{'' if len(live) == 1 else 's'} running" if live else "stopped"
    print(
        f"{status['state']} · {workers} · concurrency {status['concurrency']}"
        f"{'' if status['concurrency'] == status['configured_concurrency'] else ' (changed)'}"
        f" · in flight {status['in_flight']} · database {status['database']}"
    )
    for line in status["paused_lines"]:
        print(f"  {line}")
    from rich.console import Console
    from rich.table import Table

    table = Table(title="handlers", title_justify="left")
    for column in (
        "handler",
        "state",
        "batch",
        "succeeded",
        "failed",
        "skipped",
        "retrying",
        "dead",
        "last error",
    ):
        table.add_column(column, overflow="fold", no_wrap=column not in ("last error",))
    for view in status["handlers"].values():
        batch = "-" if view["batch_size"] is None else str(view["batch_size"])
        configured = view["configured_batch_size"]
        if configured is not None and view["batch_size"] != configured:
            batch += f" (config {configured})"
        table.add_row(
            view["name"],
            view["state"],
            batch,
            *(str(view[key]) for key in ("succeeded", "failed", "skipped", "retrying", "dead")),
            " ".join(str(view["last_error"] or "").split())[:100],
        )
    console = Console()
    if not console.is_terminal:
        console.width = 160
    console.print(table, markup=False, highlight=False)


def _pause(args: argparse.Namespace) -> int:
    from novaconsole.engine.operator import PauseInfo
    from novaconsole.engine.persistence import Controls

    async def work(settings: Settings, client: OperatorClient) -> int:
        await _known(settings, client, args.handler)
        who = _who()
        reason = " ".join(args.reason.split()) if args.reason else None
        info = PauseInfo(by=who, reason=reason or None)
        if args.handler:
            change = Controls(
                handler_paused={args.handler: True}, handler_pauses={args.handler: info}
            )
        else:
            change = Controls(paused=True, pause=info)
        entries = await client.change(change, who, pause_for=args.duration)
        return _changed(args, entries, await _status_data(settings, client))

    return _run(args, work)


def _resume(args: argparse.Namespace) -> int:
    from novaconsole.engine.persistence import Controls

    async def work(settings: Settings, client: OperatorClient) -> int:
        await _known(settings, client, args.handler)
        change = (
            Controls(handler_paused={args.handler: False})
            if args.handler
            else Controls(paused=False)
        )
        entries = await client.change(change, _who())
        return _changed(args, entries, await _status_data(settings, client))

    return _run(args, work)


def _batch(args: argparse.Namespace) -> int:
    from novaconsole.engine.operator import check_batch_size
    from novaconsole.engine.persistence import Controls

    async def work(settings: Settings, client: OperatorClient) -> int:
        await _known(settings, client, args.handler)
        try:
            check_batch_size(args.size)
        except ValueError as error:
            raise Refused(str(error)) from None
        entries = await client.change(Controls(batch_sizes={args.handler: args.size}), _who())
        return _changed(args, entries, await _status_data(settings, client))

    return _run(args, work)


def _concurrency(args: argparse.Namespace) -> int:
    from novaconsole.engine.operator import check_concurrency
    from novaconsole.engine.persistence import Controls

    async def work(settings: Settings, client: OperatorClient) -> int:
        try:
            check_concurrency(args.workers)
        except ValueError as error:
            raise Refused(str(error)) from None
        entries = await client.change(Controls(concurrency=args.workers), _who())
        return _changed(args, entries, await _status_data(settings, client))

    return _run(args, work)


def _run_once(args: argparse.Namespace) -> int:
    import anyio

    async def work(settings: Settings, client: OperatorClient) -> int:
        await _known(settings, client, args.handler)
        status = await _status_data(settings, client)
        if not any(w["alive"] for w in status["workers"]):
            raise Refused(
                "no worker is running to run a cycle (start one, or run "
                "`novaconsole --no-ui --once` for one cycle here)"
            )
        command = await client.run_once(args.handler, _who())
        taker = None
        with anyio.move_on_after(COMMAND_WAIT):
            while taker is None:
                await anyio.sleep(_POLL)
                taker = await client.command_taker(command)
        target = args.handler or "every handler"
        if args.json:
            _print_json({"command": command, "handler": args.handler, "taken_by": taker})
        elif taker:
            print(f"run once ({target}): taken by worker {taker} (command {command})")
        else:
            print(f"run once ({target}): queued as command {command}; no worker took it yet")
        return 0

    return _run(args, work)


def retry(args: argparse.Namespace) -> int:
    """``novaconsole retry HANDLER ITEM_ID``: request it, then report what really happened."""
    import anyio

    async def work(settings: Settings, client: OperatorClient) -> int:
        await _known(settings, client, args.handler)
        requested = await client.request_retry(args.handler, args.item_id, _who())
        if requested is None:
            raise Refused(
                f"{args.handler} {args.item_id}: no failed result or attempts remembered, "
                "nothing to retry"
            )
        status = await _status_data(settings, client)
        live = any(w["alive"] for w in status["workers"])
        shown: list[str] = []

        def say(text: str) -> None:
            if not args.json and (not shown or shown[-1] != text):
                print(f"{args.handler} {args.item_id}: {text}")
            shown.append(text)

        say("retry requested")
        current = requested
        if not live:
            say("saved; runs at next start")
        else:
            assert requested.id is not None
            with anyio.move_on_after(max(args.wait, 0.0)):
                while not current.final:
                    await anyio.sleep(_POLL)
                    current = await client.retry_status(requested.id) or current
                    if current.taken_by and current.state != "requested":
                        say(current.message())
                    elif current.taken_by and current.detail:
                        say(f"taken by {current.taken_by}: {current.detail}")
            if not current.final:
                say(f"no outcome after {args.wait:g} s; it stays requested ({current.message()})")
            else:
                say(current.message())
        if args.json:
            _print_json({**current.as_dict(), "workers_running": live})
        return 0

    return _run(args, work)


def _audit(args: argparse.Namespace) -> int:
    async def work(settings: Settings, client: OperatorClient) -> int:
        entries = await client.audit(max(args.limit, 1))
        if args.json:
            _print_json([entry.as_dict() for entry in entries])
        elif not entries:
            print("(no changes recorded)")
        for entry in entries if not args.json else ():
            print(entry.line())
        return 0

    return _run(args, work)
