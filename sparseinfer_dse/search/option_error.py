"""`OptionError`: an invalid search setting that names its field, so each front end can show its own
name for it (the CLI its flag, a study TOML its key)."""

from __future__ import annotations

import re
from typing import Mapping

from sparseinfer_dse.errors import UserError

_FIELD = re.compile(r"\{(\w+)\}")


class OptionError(UserError):
    """`template` refers to settings as {field}; `render(names)` shows them by a front end's names,
    `str()` by the field names themselves."""

    def __init__(self, field: str, template: str) -> None:
        self.field = field
        self.template = template
        super().__init__(self.render({}))

    def render(self, names: Mapping[str, str]) -> str:
        return _FIELD.sub(lambda m: names.get(m.group(1), m.group(1)), self.template)
