"""The ``novaconsole`` command.

Only the standard library and the status and purpose enums are imported at module level so
that ``novaconsole --help`` is instant; every command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from novaconsole.control_cli import add_commands, add_retry_options
from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.engine.purpose import HandlerPurpose
from novaconsole.triage_cli import add_commands as add_triage_commands
from novaconsole.triage_cli import add_group_options

if TYPE_CHECKING:
    from novaconsole.engine.service import ProcessingService
    from novaconsole.settings import Settings

PURPOSES = HandlerPurpose.choices()
STATUSES = OutcomeStatus.choices()
LOG_LEVELS = ("debug", "info", "warning", "error")

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line; always ends with ``SystemExit`` carrying the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.once and not args.no_ui:
        args.no_ui = True  # one cycle never needs the console
    command: Command = args.command_func
    raise SystemExit(_guarded(command, args))


def _guarded(command: Command, args: argparse.Namespace) -> int:
    from novaconsole.errors import ConfigError

    try:
        try:
            return command(args)
        except BaseExceptionGroup as group:
            # A task group wraps what its tasks raise (the service opens its store in one).
            raise _user_error(group) or group from None
    except ConfigError as error:
        text = " ".join(str(error).split())
        print(f"novaconsole: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `novaconsole results | head`: the reader left; say nothing more.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (lives until exit)
        return 1


def _user_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The ConfigError (or KeyboardInterrupt) inside ``group``, if that is what it holds."""
    from novaconsole.errors import ConfigError

    for kind in (ConfigError, KeyboardInterrupt):
        found: BaseException | None = group.subgroup(kind)
        while isinstance(found, BaseExceptionGroup):
            found = found.exceptions[0]
        if found is not None:
            return found
    return None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: the console by default, ``--no-ui`` headless, and subcommands."""
    parser = argparse.ArgumentParser(
        prog="novaconsole",
        description="Background processing with a live operations console.",
        epilog="Exit status: 0 ok, 1 an item or fetch failed (--once), 2 bad configuration "
        "or usage, 130 interrupted.",
    )
    _config_option(parser, None)
    _db_option(parser, None)
    _log_options(parser, "rich", "info")
    parser.add_argument(
        "--no-ui",
        action="store_true",
        help="run headless (no console) until SIGINT/SIGTERM, then drain and exit",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="with --no-ui: run one cycle, print a summary, exit 0 if every item succeeded",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="items processed at once (overrides [processing] max_concurrency)",
    )
    parser.set_defaults(command_func=_run_service)

    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    suppress = argparse.SUPPRESS

    handlers = sub.add_parser("handlers", help="list the registered handlers and their totals")
    _config_option(handlers, suppress)
    _db_option(handlers, suppress)
    handlers.add_argument("--purpose", choices=PURPOSES, help="only handlers of this purpose")
    handlers.add_argument("--json", action="store_true", help="print a JSON list")
    handlers.set_defaults(command_func=_handlers)

    results = sub.add_parser("results", help="result history from the database")
    _config_option(results, suppress)
    _db_option(results, suppress)
    results.add_argument("--handler", metavar="H", help="only this handler's results")
    results.add_argument("--status", choices=STATUSES, help="only results with this status")
    results.add_argument(
        "--limit", type=_positive_int, default=50, metavar="N", help="newest N (default 50)"
    )
    results.add_argument("--json", action="store_true", help="print a JSON list")
    results.set_defaults(command_func=_results)

    retry = sub.add_parser(
        "retry",
        help="retry a failed item and report what became of it",
        description="Forget a failed item's attempts, have a worker reopen it at its source and "
        "run it again; report what really happened (or, with no worker running, save it for "
        "the next start).",
    )
    _config_option(retry, suppress)
    _db_option(retry, suppress)
    retry.add_argument("handler", nargs="?", metavar="HANDLER")
    retry.add_argument("item_id", nargs="?", metavar="ITEM_ID")
    add_retry_options(retry)
    add_group_options(retry)

    workers = sub.add_parser("workers", help="the workers sharing the database, alive or not")
    _config_option(workers, suppress)
    _db_option(workers, suppress)
    workers.add_argument("--json", action="store_true", help="print a JSON list")
    workers.set_defaults(command_func=_workers)

    attach = sub.add_parser(
        "attach", help="the console on the database's fleet, hosting no service of its own"
    )
    _config_option(attach, suppress)
    _db_option(attach, suppress)
    _log_options(attach, suppress, suppress)
    attach.set_defaults(command_func=_attach)

    serve = sub.add_parser(
        "serve", help="the console in a browser (token in the URL, loopback by default)"
    )
    _config_option(serve, suppress)
    _db_option(serve, suppress)
    _log_options(serve, suppress, suppress)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument(
        "--port", type=_port, default=8000, metavar="N", help="port (default 8000; 0: any free)"
    )
    serve.add_argument(
        "--token",
        metavar="TEXT",
        help="access token (default: $NOVACONSOLE_SERVE_TOKEN, else a random one)",
    )
    serve.add_argument(
        "--public-url",
        metavar="URL",
        help="the address browsers use, if not http://HOST:PORT (needed with --host 0.0.0.0)",
    )
    serve.add_argument("--read-only", action="store_true", help="show everything, change nothing")
    serve.set_defaults(command_func=_serve)

    demo = sub.add_parser("demo", help="seed demo data for the example handlers and run them")
    _db_option(demo, suppress)
    _log_options(demo, suppress, suppress)
    demo.add_argument(
        "--rate", type=_non_negative_float, default=5.0, metavar="R", help="new items per second"
    )
    demo.add_argument(
        "--failure-rate",
        type=_fraction,
        default=0.1,
        metavar="F",
        help="share of items that fail, 0 to 1 (default 0.1)",
    )
    demo.add_argument("--no-ui", action="store_true", help="run the demo headless")
    demo.add_argument(
        "--dir",
        type=Path,
        default=Path("demo-data"),
        metavar="PATH",
        help="where the demo keeps its files (default ./demo-data)",
    )
    demo.set_defaults(command_func=_demo)

    def common(command: argparse.ArgumentParser) -> None:
        _config_option(command, suppress)
        _db_option(command, suppress)

    add_commands(sub, common, _settings)
    add_triage_commands(sub, common, _settings)
    _db_commands(sub)
    return parser


def _db_commands(sub: Any) -> None:
    """``novaconsole db upgrade|current|sql``: the store's schema migrations (Alembic)."""
    suppress = argparse.SUPPRESS
    db = sub.add_parser("db", help="the database schema: upgrade it, show it, print its SQL")
    db_sub = db.add_subparsers(title="db commands", metavar="COMMAND", required=True)
    upgrade = db_sub.add_parser("upgrade", help="bring the schema to this novaconsole's")
    current = db_sub.add_parser("current", help="the schema revision of the database")
    current.add_argument("--json", action="store_true", help="print a JSON object")
    sql = db_sub.add_parser(
        "sql", help="print the SQL of the upgrade, for a DBA to review and apply by hand"
    )
    sql.add_argument(
        "--from",
        dest="from_revision",
        metavar="REVISION",
        help="the database's revision ('none': empty), instead of reading it from the database",
    )
    for command, func in ((upgrade, _db_upgrade), (current, _db_current), (sql, _db_sql)):
        _config_option(command, suppress)
        _db_option(command, suppress)
        command.set_defaults(command_func=func)


def _config_option(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        default=default,
        help="config file (default ./config.toml; optional)",
    )


def _db_option(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        default=default,
        help="database URL, e.g. sqlite+aiosqlite:///novaconsole.db (overrides [database] url)",
    )


def _log_options(parser: argparse.ArgumentParser, fmt: Any, level: Any) -> None:
    parser.add_argument(
        "--log-format",
        choices=("rich", "json"),
        default=fmt,
        help="human-readable (default) or one JSON object per line",
    )
    parser.add_argument(
        "--log-level", type=str.lower, choices=LOG_LEVELS, default=level, help="default info"
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _fraction(text: str) -> float:
    value = _non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


# ---------------------------------------------------------------------- building blocks


def _settings(args: argparse.Namespace) -> Settings:
    from novaconsole.settings import load_settings

    overrides: dict[str, Any] = {}
    if args.db is not None:
        overrides["database.url"] = args.db
    if getattr(args, "concurrency", None) is not None:
        overrides["processing.max_concurrency"] = args.concurrency
    return load_settings(args.config, overrides=overrides)


def _service(settings: Settings) -> ProcessingService:
    from novaconsole.builder import BackgroundProcessing

    builder = BackgroundProcessing.from_settings(settings)
    return builder.build(database_url=settings.database.url)


def _run(func: Callable[..., Any], *args: Any) -> Any:
    import anyio

    return anyio.run(func, *args)


# ---------------------------------------------------------------------- commands


def _run_service(args: argparse.Namespace) -> int:
    from novaconsole.gc_tuning import tuned_gc

    settings = _settings(args)
    if args.no_ui:
        _require_handlers(settings)  # before anything opens (and creates) the database
        from novaconsole.logs import setup_logging

        setup_logging(args.log_format, args.log_level)
        service = _service(settings)
        from functools import partial

        from novaconsole.headless import run_headless

        with tuned_gc(settings.process.tune_gc):
            code: int = _run(partial(run_headless, service, once=args.once, settings=settings))
        return code
    import logging

    service = _service(settings)
    from novaconsole.console import run_console

    with tuned_gc(settings.process.tune_gc):
        return run_console(
            service, settings, log_level=logging.getLevelName(args.log_level.upper())
        )


def _require_handlers(settings: Settings) -> None:
    """Headless with nothing to run is a mistake (a wrong directory, most often): say where
    the settings came from and how to fix it, as a :class:`ConfigError`."""
    from novaconsole.errors import ConfigError

    if settings.handlers:
        return
    if settings.source is None:
        where = f"no config file: {Path.cwd() / settings.source_label} does not exist"
        fix = "run novaconsole in your application's directory or pass --config PATH"
    else:
        where = f"{settings.source.resolve()} has no [[handlers]] table"
        fix = 'add one (name = "...", factory = "module:Class"), see the README'
    raise ConfigError(f"no handlers to run ({where}); {fix}")


def _handlers(args: argparse.Namespace) -> int:
    from novaconsole.builder import BackgroundProcessing
    from novaconsole.durations import format_duration
    from novaconsole.store.breakers import open_breakers
    from novaconsole.store.queries import handler_totals

    settings = _settings(args)
    processing = BackgroundProcessing.from_settings(settings)
    totals = _run(handler_totals, settings.database.url)
    tripped = {row["handler"]: row["reason"] for row in _run(open_breakers, settings.database.url)}
    rows = []
    for registration in processing.registrations:
        if args.purpose and registration.purpose.value != args.purpose:
            continue
        interval = registration.poll_interval or settings.processing.poll_interval
        counts = totals.get(registration.name, {})
        rows.append(
            {
                "name": registration.name,
                "purpose": registration.purpose.value,
                "batch_size": registration.max_items_per_cycle,
                "enabled": registration.enabled,
                "poll_interval": interval.total_seconds(),
                **{status: int(counts.get(status, 0)) for status in STATUSES},
                "last_finished_at": counts.get("last_finished_at"),
                "tripped": registration.name in tripped,
                "breaker": tripped.get(registration.name),
            }
        )
    if args.json:
        _print_json(rows)
        return 0
    columns = ["name", "purpose", "batch", "enabled", "interval", *_titles(STATUSES), "last"]
    if tripped:
        columns.append("breaker")
    _print_table(
        f"handlers ({settings.source_label})",
        columns,
        [
            [
                row["name"],
                row["purpose"],
                str(row["batch_size"]),
                "yes" if row["enabled"] else "no",
                format_duration(row["poll_interval"]),
                *(str(row[status]) for status in STATUSES),
                _short_time(row["last_finished_at"]),
                *(["tripped" if row["tripped"] else ""] if tripped else []),
            ]
            for row in rows
        ],
    )
    return 0


def _results(args: argparse.Namespace) -> int:
    from novaconsole.store.queries import list_results

    settings = _settings(args)

    async def query() -> list[dict[str, Any]]:
        return await list_results(
            settings.database.url, handler=args.handler, status=args.status, limit=args.limit
        )

    # Before the error is cut to fit: a cut could split a secret out of the mask's reach.
    rows: list[dict[str, Any]] = _redacted(_run(query))
    if args.json:
        _print_json(rows)
        return 0
    _print_table(
        "results (newest first)",
        ["finished", "handler", "item", "status", "attempts", "duration", "error"],
        [
            [
                _short_time(row.get("finished_at")),
                str(row["handler"]),
                str(row["item_id"]),
                str(row["status"]),
                str(row.get("attempts", "")),
                f"{float(row.get('duration') or 0.0):.3f} s",
                " ".join(str(row.get("error") or "").split())[:120],
            ]
            for row in rows
        ],
    )
    return 0


def _workers(args: argparse.Namespace) -> int:
    from novaconsole.store.fleet import views_as_dicts
    from novaconsole.store.queries import list_workers

    settings = _settings(args)
    rows = views_as_dicts(_run(list_workers, settings.database.url))
    if args.json:
        _print_json(rows)
        return 0
    _print_table(
        f"workers ({settings.source_label})",
        ["worker", "state", "alive", "in flight", "processed", "started", "last beat"],
        [
            [
                row["worker_id"],
                row["state"],
                "yes" if row["alive"] else "no",
                str(row["in_flight"]),
                str(row["processed"]),
                _short_time(row["started_at"]),
                _short_time(row["last_beat"]),
            ]
            for row in rows
        ],
    )
    return 0


def _attach(args: argparse.Namespace) -> int:
    import logging

    from novaconsole.console import run_attached

    settings = _settings(args)
    level = logging.getLevelName(str(getattr(args, "log_level", "info")).upper())
    return run_attached(settings, log_level=level)


def _serve(args: argparse.Namespace) -> int:
    from novaconsole.errors import ConfigError

    _settings(args)  # a bad config stops here, not in every browser session
    try:
        from novaconsole.web.server import TOKEN_ENV, ServeOptions, check_options, serve
    except ImportError as error:
        raise ConfigError(
            f"needs the web extra ({error.name} is missing): pip install 'novaconsole[web]'",
            source="novaconsole serve",
        ) from None
    from novaconsole.logs import setup_logging

    setup_logging(getattr(args, "log_format", "rich"), getattr(args, "log_level", "info"))
    if args.db is not None:  # the sessions read it from here, not from a command line
        os.environ["NOVACONSOLE_DATABASE__URL"] = args.db
    options = ServeOptions(
        host=args.host,
        port=args.port,
        token=args.token or os.environ.get(TOKEN_ENV) or None,
        read_only=args.read_only,
        config=args.config,
        public_url=args.public_url,
    )
    if (problem := check_options(options)) is not None:
        raise ConfigError(problem, source="novaconsole serve")
    try:
        _run(serve, options)
    except OSError as error:  # the port is taken, or the address is not this machine's
        raise ConfigError(
            f"cannot listen on {args.host}:{args.port}: {error.strerror or error}",
            source="novaconsole serve",
        ) from None
    return 0


def _demo(args: argparse.Namespace) -> int:
    if args.no_ui:
        from novaconsole.logs import setup_logging

        setup_logging(getattr(args, "log_format", "rich"), getattr(args, "log_level", "info"))
    from novaconsole.demo import run_demo

    return run_demo(
        directory=args.dir,
        rate=args.rate,
        failure_rate=args.failure_rate,
        no_ui=args.no_ui,
        db=getattr(args, "db", None),
    )


def _db_upgrade(args: argparse.Namespace) -> int:
    from novaconsole.store.database import mask_url
    from novaconsole.store.schema import upgrade_at

    url = _settings(args).database.url
    before, after = _run(upgrade_at, url)
    if before.status == "current":
        print(f"{mask_url(url)}: already at revision {after.revision}, the latest")
    else:
        start = "an empty database" if before.revision is None else f"revision {before.revision}"
        print(f"{mask_url(url)}: upgraded from {start} to revision {after.revision}")
    return 0


def _db_current(args: argparse.Namespace) -> int:
    from novaconsole.store.database import mask_url
    from novaconsole.store.schema import schema_at

    url = _settings(args).database.url
    state = _run(schema_at, url)
    if args.json:
        import json

        print(json.dumps({"database": mask_url(url), **state.as_dict()}, indent=2))
        return 0
    meaning = {
        "empty": "no novaconsole tables yet (a worker or `novaconsole db upgrade` creates them)",
        "current": "up to date",
        "unstamped": "up to date, from before migrations (a worker stamps it at start)",
        "older": "run `novaconsole db upgrade`",
        "newer": "written by a newer novaconsole: upgrade novaconsole",
    }[state.status]
    revision = state.revision or "none"
    if state.legacy:
        revision += " (from novaconsole_meta, before migrations)"
    print(f"database  {mask_url(url)}")
    print(f"revision  {revision}")
    print(f"latest    {state.head}")
    print(f"status    {state.status}: {meaning}")
    return 0


def _db_sql(args: argparse.Namespace) -> int:
    from novaconsole.store.database import mask_url
    from novaconsole.store.schema import SchemaState, dialect_at, head, schema_at, upgrade_sql

    url = _settings(args).database.url
    if args.from_revision is None:
        state = _run(schema_at, url)
    else:
        given = None if args.from_revision.lower() == "none" else args.from_revision
        state = SchemaState(given, head())
    if state.status == "newer":
        print(
            f"novaconsole: {mask_url(url)} is at revision {state.revision}, newer than this "
            f"novaconsole's ({state.head})",
            file=sys.stderr,
        )
        return 2
    script = upgrade_sql(dialect_at(url), state)
    if not script:
        print(
            f"-- {mask_url(url)} is at revision {state.head}, the latest: nothing to apply",
            file=sys.stderr,
        )
        return 0
    sys.stdout.write(script)
    return 0


# ---------------------------------------------------------------------- output


def _titles(names: Sequence[str]) -> list[str]:
    return [name.replace("_", " ") for name in names]


def _short_time(value: Any) -> str:
    if not value:
        return "-"
    text = str(value)
    return text[:19].replace("T", " ")


def _redacted(value: Any) -> Any:
    """``value`` with every string in it redacted: rows come from the database, where handlers
    (and anyone with write access) put the text, and rows stored before redaction existed."""
    from novaconsole.redaction import redact

    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redacted(key): _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value


def _print_json(rows: list[dict[str, Any]]) -> None:
    import json

    print(json.dumps(_redacted(rows), indent=2, default=lambda v: _redacted(str(v))))


def _print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = _redacted(rows)

    table = Table(title=title, title_justify="left")
    for column in columns:
        wide = column in ("error", "name", "handler", "item")
        table.add_column(column, overflow="fold", no_wrap=not wide)
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:
        console.width = 200  # a pipe or file: keep one row per line
    console.print(table, markup=False, highlight=False)
    if not rows:
        console.print("(none)")
