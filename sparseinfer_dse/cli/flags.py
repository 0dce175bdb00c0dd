"""Setting names -> command-line flags, in one place: an `OptionError` from the library names a field
(`alpha_range`); the user typed a flag (`--alpha-range`), so the message shows the flag."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import click

from sparseinfer_dse.errors import OptionError, UserError


def flag_names(command: click.Command) -> dict[str, str]:
    """Each option's field name -> its long flag, as the commands declare them (a group: all of its
    commands; one field has one flag everywhere, which tests/cli/test_flags.py checks). Classes are
    not compared: typer may vendor its own click."""
    out: dict[str, str] = {}
    for sub in getattr(command, "commands", {}).values():
        out.update(flag_names(sub))
    out.update({p.name: next((o for o in p.opts if o.startswith("--")), p.opts[0])
                for p in command.params if p.param_type_name == "option" and p.name})
    return out


def given_flags(ctx: click.Context) -> dict[str, object]:
    """The options given on the command line (not left at their defaults), by field name.

    The source is compared by name: typer vendors its own click, whose enum is not click's."""
    out = {}
    for key, value in ctx.params.items():
        source = ctx.get_parameter_source(key)
        if source is not None and getattr(source, "name", "") != "DEFAULT":
            out[key] = value
    return out


@contextmanager
def flags_in_errors(command: click.Command) -> Iterator[None]:
    """Re-raise an OptionError from the library as a UserError that names `command`'s flags."""
    try:
        yield
    except OptionError as exc:
        raise UserError(exc.render(flag_names(command))) from None
