"""Errors that are the user's to fix: the CLI prints them as one line, never as a traceback."""


class UserError(Exception):
    """Bad input (missing model, unsupported layout, malformed profile...): message says what to fix."""
