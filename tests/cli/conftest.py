"""The CLI suite's fixtures: a project directory and a runner of the real command."""

from tests.clirun import cli, project, shared_cli, shared_project

__all__ = ["cli", "project", "shared_cli", "shared_project"]
