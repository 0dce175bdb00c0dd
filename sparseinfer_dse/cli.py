"""The `sparseinfer-dse` command line. Each command lives in its own module; this file wires them."""

from __future__ import annotations

from typing import Annotated

import typer

from sparseinfer_dse import __version__

app = typer.Typer(
    name="sparseinfer-dse",
    help="Search per-layer SparseInfer alpha profiles: sign-bit sparsity prediction and sparse MLP "
    "kernels for ReLU-fied LLMs, measured for token latency and accuracy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sparseinfer-dse {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Search per-layer SparseInfer alpha profiles for ReLU-fied LLMs."""


def _register() -> None:
    from sparseinfer_dse.inspect_cmd import inspect_command
    from sparseinfer_dse.profile_cmd import profile_app

    app.command("inspect")(inspect_command)
    app.add_typer(profile_app, name="profile")


def main() -> None:
    """Console-script entry point: user errors become one line on stderr and exit code 2."""
    from sparseinfer_dse.errors import UserError

    _register()
    try:
        app()
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
