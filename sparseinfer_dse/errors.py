"""Errors that are the user's to fix: the CLI prints them as one line, never as a traceback."""

from __future__ import annotations

import re
from typing import Mapping

_FIELD = re.compile(r"\{(\w+)\}")


class UserError(Exception):
    """Bad input (missing model, unsupported layout, malformed profile...): message says what to fix."""


class OptionError(UserError):
    """An invalid setting that names its field, so each front end shows its own name for it (the CLI
    its flag, a study TOML its key). `template` refers to settings as {field}; `render(names)` shows
    them by a front end's names, `str()` by the field names themselves."""

    def __init__(self, field: str, template: str) -> None:
        self.field = field
        self.template = template
        super().__init__(self.render({}))

    def render(self, names: Mapping[str, str]) -> str:
        return _FIELD.sub(lambda m: names.get(m.group(1), m.group(1)), self.template)
