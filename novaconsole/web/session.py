"""One browser session of ``novaconsole serve``: the attached console, read-only if asked.

textual-serve runs this as a process per browser tab (``python -m novaconsole.web.session``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console attached to the configured database; the exit status."""
    parser = argparse.ArgumentParser(prog="novaconsole-session")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--read-only", action="store_true")
    args = parser.parse_args(argv)

    import anyio

    from novaconsole.builder import BackgroundProcessing
    from novaconsole.console.app import NovaConsole
    from novaconsole.console.attached import AttachedFleet
    from novaconsole.console.runner import HostedService, notify_fleet, serve_console
    from novaconsole.console.widgets.log_pane import LogSink
    from novaconsole.errors import ConfigError
    from novaconsole.settings import load_settings
    from novaconsole.web.read_only import ReadOnlyService

    try:
        settings = load_settings(args.config)
        processing = BackgroundProcessing.from_settings(settings)
    except ConfigError as error:
        print(f"novaconsole: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    fleet = AttachedFleet(
        settings.database.url, processing.registrations, settings.processing.max_concurrency
    )
    service: HostedService = ReadOnlyService(fleet) if args.read_only else fleet
    app = NovaConsole(service, log_sink=LogSink())
    app.sub_title = f"attached: {settings.source_label}"
    fleet.notify = partial(notify_fleet, app)
    code: int = anyio.run(partial(serve_console, service, app))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
