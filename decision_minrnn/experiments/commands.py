"""Subcommands sweep, report and bench."""


def register(sub) -> None:
    return None
