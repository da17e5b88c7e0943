"""The ``browserml`` command: a thin layer over the Python API.

Each command parses its options, calls one API function and prints the result. Expected failures
(:class:`browserml.errors.BrowserMLError`) become one readable line on stderr and a non-zero exit;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console

from .errors import BrowserMLError

console = Console()
err_console = Console(stderr=True)


class BrowserMLGroup(click.Group):
    """A click group that turns BrowserMLError into `error: <message>` and exit code 1 (or the
    error's own code)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrowserMLError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)


@click.group(cls=BrowserMLGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="browserml")
def cli() -> None:
    """BrowserML: train an image classifier, ship it to browsers with TF.js, and watch it there."""


def print_json(payload: object) -> None:
    """Print machine-readable output on stdout, nothing else."""
    click.echo(json.dumps(payload, indent=2))


def existing_dir(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Path | None:
    """Click callback: return the path, leaving existence checks to the API's clearer errors."""
    return Path(value) if value is not None else None


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
