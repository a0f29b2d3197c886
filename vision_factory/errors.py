"""Errors a user can act on. Raised at start or from a parameter change; the text is the whole message."""
from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """A setting (model path, parameter value, manifest field) cannot work; the text names it and the options."""


def file_problem(path: str, what: str = "model file") -> str:
    """'' if `path` names a non-empty regular file, else what is wrong with it (for weights parameters)."""
    found = Path(path).expanduser()
    if found.is_dir():
        return f"{what} '{path}' is a directory, not a file"
    if not found.is_file():
        return f"{what} '{path}' does not exist"
    if found.stat().st_size == 0:
        return f"{what} '{path}' is empty (0 bytes)"
    return ""
