"""Subcommands beyond `datasets`: train, evaluate, sweep, report, bench (registered as they are built)."""


def register(sub) -> None:
    return None
