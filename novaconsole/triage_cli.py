"""The operator's toolkit on the command line, part 2: ``failures``, ``retry --group``,
``peek`` and ``breaker reset``.

Like :mod:`novaconsole.control_cli` (whose helpers these share), each reads or changes the
database, so it works on a running fleet, a single headless worker and a stopped system; each
prints what it found or changed and exits 0, or says in one line why not and exits 2
(``peek`` exits 1 when the handler's own ``fetch_next`` fails). Only the standard library is
imported at module level (``--help`` is instant).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from novaconsole import control_cli
from novaconsole.control_cli import Refused, _known, _print_json, _run, _who

if TYPE_CHECKING:
    from novaconsole.engine.operator import RetryStatus
    from novaconsole.settings import Settings
    from novaconsole.store.operator import OperatorClient
    from novaconsole.triage import FailedItem, FailureGroup

Options = Callable[[argparse.ArgumentParser], None]

RESET_WAIT = 10.0
"""How long ``breaker reset`` waits for the running workers to close the breaker."""
_POLL = 0.2


def add_commands(
    sub: Any, common: Options, settings: Callable[[argparse.Namespace], Settings]
) -> None:
    """Register ``failures``, ``peek`` and ``breaker`` on ``sub`` (``retry --group`` is an
    option of cli.py's ``retry``: :func:`add_group_options`)."""
    global _settings
    _settings = settings

    failures = sub.add_parser(
        "failures",
        help="failed items grouped by handler, exception and normalised message",
        description="Failed items (each item's latest outcome) grouped by handler, exception "
        "type and message with numbers, ids, UUIDs, hex and quoted values replaced by "
        "placeholders; most items first. Retry a whole group with `retry --group ID`.",
    )
    common(failures)
    failures.add_argument("--handler", metavar="H", help="only this handler's groups")
    failures.add_argument("--json", action="store_true", help="print JSON")
    failures.set_defaults(command_func=_failures)

    peek = sub.add_parser(
        "peek",
        help="what fetch_next would return now: rolled back, nothing claimed or processed",
        description="Run the handler's fetch_next in a database transaction that is rolled "
        "back at the end and show the ids and a one-line repr of the items: nothing is "
        "claimed, processed or changed (work outside the database is not undone). Works "
        "whether workers run or not.",
    )
    common(peek)
    peek.add_argument("handler", metavar="HANDLER")
    peek.add_argument(
        "--limit", type=int, metavar="N", help="items to ask for (default: its batch size)"
    )
    peek.add_argument("--json", action="store_true", help="print JSON")
    peek.set_defaults(command_func=_peek)

    breaker = sub.add_parser("breaker", help="a handler's circuit breaker: reset it")
    breaker_sub = breaker.add_subparsers(title="breaker commands", metavar="COMMAND", required=True)
    reset = breaker_sub.add_parser(
        "reset",
        help="close a tripped circuit breaker on every running worker",
        description="Close HANDLER's tripped circuit breaker on every running worker (each "
        "does within a second or two); retries it held run again.",
    )
    common(reset)
    reset.add_argument("handler", metavar="HANDLER")
    reset.add_argument("--json", action="store_true", help="print JSON")
    reset.set_defaults(command_func=_breaker_reset)


def add_group_options(parser: argparse.ArgumentParser) -> None:
    """``retry --group ID [--yes]`` on cli.py's ``retry`` parser (HANDLER and ITEM_ID become
    optional: one or the other form)."""
    parser.add_argument(
        "--group", metavar="ID", help="retry every item of a failure group (`novaconsole failures`)"
    )
    parser.add_argument(
        "--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)"
    )
    parser.set_defaults(command_func=retry)


_settings: Callable[[argparse.Namespace], Settings]


def retry(args: argparse.Namespace) -> int:
    """``retry HANDLER ITEM_ID`` (control_cli's honest retry) or ``retry --group ID``."""
    if args.group is None:
        if args.handler is None or args.item_id is None:
            return _usage("retry needs HANDLER ITEM_ID, or --group ID")
        return control_cli.retry(args)
    if args.handler is not None or args.item_id is not None:
        return _usage("retry takes HANDLER ITEM_ID or --group ID, not both")
    return _retry_group(args)


def _usage(message: str) -> int:
    print(f"novaconsole: {message}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------- failures


def _failures(args: argparse.Namespace) -> int:
    from novaconsole.store.triage import failure_groups

    async def work(settings: Settings, client: OperatorClient) -> int:
        await _known(settings, client, args.handler)
        groups = await failure_groups(settings.database.url, args.handler)
        if args.json:
            _print_json([group.as_dict() for group in groups])
        else:
            _print_groups(groups)
        return 0

    return _run(args, work)


def _print_groups(groups: list[FailureGroup]) -> None:
    if not groups:
        print("(no failed items)")
        return
    from rich.console import Console
    from rich.table import Table

    from novaconsole.redaction import redact

    table = Table(title="failure groups", title_justify="left")
    for column in ("group", "items", "handler", "error", "first seen", "last seen", "sample"):
        table.add_column(column, overflow="fold", no_wrap=column not in ("error", "sample"))
    for group in groups:
        table.add_row(
            group.id,
            str(group.count),
            group.handler,
            group.title,
            f"{group.first_seen.astimezone():%Y-%m-%d %H:%M:%S}",
            f"{group.last_seen.astimezone():%Y-%m-%d %H:%M:%S}",
            redact(group.sample_item_id),
        )
    console = Console()
    if not console.is_terminal:
        console.width = 160
    console.print(table, markup=False, highlight=False)
    print("retry a whole group: novaconsole retry --group ID")


# ---------------------------------------------------------------------- retry --group


def _retry_group(args: argparse.Namespace) -> int:
    import anyio

    from novaconsole.store.triage import group_members

    async def work(settings: Settings, client: OperatorClient) -> int:
        group, items = await group_members(settings.database.url, args.group)
        if group is None:
            raise Refused(f"no failure group {args.group!r} (see `novaconsole failures`)")
        question = f"Retry {len(items)} items of {group.handler}: {group.title}?"
        if not args.yes:
            if not sys.stdin.isatty():
                raise Refused(
                    f"not retrying {len(items)} items without --yes: stdin is not a terminal"
                )
            answer = await anyio.to_thread.run_sync(input, f"{question} [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing retried")
                return 0
        return await _request_all(args, settings, client, group, items)

    return _run(args, work)


async def _request_all(
    args: argparse.Namespace,
    settings: Settings,
    client: OperatorClient,
    group: FailureGroup,
    items: list[FailedItem],
) -> int:
    import anyio

    from novaconsole.redaction import redact

    who = _who()
    requested: list[RetryStatus] = []
    nothing: list[str] = []
    for item in items:
        status = await client.request_retry(item.handler, item.item_id, who)
        if status is None:
            nothing.append(item.item_id)
        else:
            requested.append(status)
    live = any(w.alive for w in (await client.read()).workers)
    say = (lambda text: None) if args.json else print
    say(
        f"{group.handler} group {group.id} ({group.title}): retry requested for "
        f"{len(requested)} items" + (f"; {len(nothing)} had nothing to retry" if nothing else "")
    )
    final = {status.id: status for status in requested}
    if not live:
        say("no worker is running: saved; they run at the next start")
    elif requested:
        with anyio.move_on_after(max(args.wait, 0.0)):
            while any(not status.final for status in final.values()):
                await anyio.sleep(_POLL)
                for request_id, status in list(final.items()):
                    if not status.final and request_id is not None:
                        final[request_id] = await client.retry_status(request_id) or status
        counts: dict[str, int] = {}
        for status in final.values():
            counts[status.state] = counts.get(status.state, 0) + 1
        summary = ", ".join(f"{count} {state.replace('_', ' ')}" for state, count in counts.items())
        say(
            f"after {'all ran again' if all(s.final for s in final.values()) else 'waiting'}: "
            f"{summary}"
        )
    if args.json:
        _print_json(
            {
                "group": group.as_dict(),
                "requested": [status.as_dict() for status in final.values()],
                "nothing_to_retry": [redact(item_id) for item_id in nothing],
                "workers_running": live,
            }
        )
    return 0


# ---------------------------------------------------------------------- peek


def _peek(args: argparse.Namespace) -> int:
    import anyio

    from novaconsole.builder import BackgroundProcessing
    from novaconsole.engine.peek import PeekError

    settings = _settings(args)
    if args.limit is not None and args.limit < 1:
        return _usage(f"--limit must be at least 1, got {args.limit}")
    processing = BackgroundProcessing.from_settings(settings)
    if args.handler not in processing.handlers():
        known = ", ".join(processing.handlers()) or f"none in {settings.source_label}"
        return _usage(f"no handler named {args.handler!r} (registered: {known})")
    service = processing.build(settings.database.url)

    async def main() -> int:
        try:
            result = await service.peek(args.handler, args.limit)
        except PeekError as error:
            print(f"novaconsole: peek of {args.handler}: {error}", file=sys.stderr)
            return 1
        finally:
            await service.store.close()
        if args.json:
            _print_json(result.as_dict())
            return 0
        how = (
            "rolled back, nothing claimed or processed"
            if result.rolled_back
            else "no database: nothing to roll back"
        )
        print(
            f"{result.handler}: fetch_next({result.asked}) would return "
            f"{len(result.items)} item{'' if len(result.items) == 1 else 's'} ({how})"
        )
        width = max((len(item.id) for item in result.items), default=0)
        for item in result.items:
            print(f"  {item.id:<{width}}  {item.repr}")
        return 0

    result: int = anyio.run(main)
    return result


# ---------------------------------------------------------------------- breaker reset


def _breaker_reset(args: argparse.Namespace) -> int:
    import anyio

    from novaconsole.store.breakers import open_breakers, reset_breaker, reset_pending

    async def work(settings: Settings, client: OperatorClient) -> int:
        await _known(settings, client, args.handler)
        url = settings.database.url
        asked = await reset_breaker(url, args.handler, _who())
        if not asked:
            raise Refused(
                f"{args.handler}: its circuit breaker is not tripped on any running worker"
            )
        say = (lambda text: None) if args.json else print
        say(f"{args.handler}: breaker reset requested on {asked} worker{'' if asked == 1 else 's'}")
        pending = asked
        with anyio.move_on_after(RESET_WAIT):
            while pending:
                await anyio.sleep(_POLL)
                pending = await reset_pending(url, args.handler)
        if pending:
            plural = "" if pending == 1 else "s"
            say(f"{pending} worker{plural} did not close it within {RESET_WAIT:g} s")
        else:
            say(f"{args.handler}: breaker closed")
        if args.json:
            _print_json(
                {
                    "handler": args.handler,
                    "asked": asked,
                    "closed": asked - pending,
                    "still_open": await open_breakers(url, args.handler),
                }
            )
        return 0

    return _run(args, work)
