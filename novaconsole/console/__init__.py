"""The Textual operations console: ``NovaConsole``, ``run_console`` and ``run_attached``."""

from novaconsole.console.app import NovaConsole
from novaconsole.console.runner import capture_logs, run_attached, run_console, serve_console

__all__ = ["NovaConsole", "capture_logs", "run_attached", "run_console", "serve_console"]
