"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2, never a traceback."""


class UserError(Exception):
    """Base class: bad input from the user (path, id, config, checkpoint...)."""


class DataError(UserError):
    """A dataset that cannot be found, read or trusted."""


class ConfigError(UserError):
    """A configuration that is malformed, has unknown keys or values of the wrong type."""


class CheckpointError(UserError):
    """A checkpoint or run directory that is missing, not ours, or does not fit the environment."""
