"""One field, one flag: library errors name fields, and the CLI shows each as its flag."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
import typer

from sparseinfer_dse.cli import _register, app
from sparseinfer_dse.cli.flags import flag_names, flags_in_errors
from sparseinfer_dse.errors import OptionError, UserError


def _commands(command: click.Command):
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from _commands(sub)


def test_every_field_has_one_flag_across_commands():
    _register()
    seen: dict[str, set[str]] = {}
    for command in _commands(typer.main.get_command(app)):
        for field, flag in flag_names(command).items():
            seen.setdefault(field, set()).add(flag)
    clashes = {f: sorted(flags) for f, flags in seen.items() if len(flags) > 1}
    assert not clashes, clashes
    assert seen["decode_activation"] == {"--decode-activation"} and seen["threads"] == {"--threads"}


def test_option_errors_show_flags():
    _register()
    root = typer.main.get_command(app)
    with pytest.raises(UserError) as info, flags_in_errors(root):
        raise OptionError("grace_period", "{grace_period} must be longer than {heartbeat_interval}")
    assert str(info.value) == "--grace-period must be longer than --heartbeat-interval"
    assert not isinstance(info.value, OptionError)
    assert str(OptionError("tokens", "{tokens} must be at least 1")) == "tokens must be at least 1"


def test_a_library_setting_error_reaches_the_user_as_its_flag():
    proc = subprocess.run([sys.executable, "-c", "from sparseinfer_dse.cli import main; main()", "inspect",
                           "--model", "demo", "--dtype", "int8"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --dtype must be auto, float32, float16 or bfloat16, not 'int8'"), proc.stderr[-2000:]
