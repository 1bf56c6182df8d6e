"""The Textual operations console: ``NovaConsole`` and ``run_console``."""

from novaconsole.console.app import NovaConsole
from novaconsole.console.runner import capture_logs, run_console, serve_console

__all__ = ["NovaConsole", "capture_logs", "run_console", "serve_console"]
