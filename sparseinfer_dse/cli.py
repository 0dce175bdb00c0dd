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


_registered = False


def _register() -> None:
    """Attach every command (imported here so that the CLI module itself stays light)."""
    global _registered
    if _registered:
        return
    _registered = True
    from sparseinfer_dse.inspect_cmd import inspect_command
    from sparseinfer_dse.profile_cmd import profile_app

    from sparseinfer_dse.analyze_cmd import analyze_command

    app.command("inspect")(inspect_command)
    app.command("analyze")(analyze_command)
    app.add_typer(profile_app, name="profile")
    from sparseinfer_dse.demo.cli import demo_app

    app.add_typer(demo_app, name="demo")


def main() -> None:
    """Console-script entry point: user errors become one line on stderr and exit code 2."""
    from sparseinfer_dse.errors import UserError

    _register()
    try:
        app()
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
