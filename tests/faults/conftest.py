"""The fault suite's fixtures: a project directory and a runner of the real command."""

from tests.clirun import cli, project

__all__ = ["cli", "project"]
