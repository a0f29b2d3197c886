"""Errors a user can act on. Raised at start or from a parameter change; the text is the whole message."""


class ConfigError(ValueError):
    """A setting (model path, parameter value, manifest field) cannot work; the text names it and the options."""
