"""Errors that the command line reports as one line instead of a traceback."""


class ConfigError(ValueError):
    """A user-facing configuration problem: the message names the problem and the valid choices."""
