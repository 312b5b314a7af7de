"""Errors a user can fix. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations


class LosstuneError(Exception):
    """An error caused by user input (a file, an option, a storage URL), not by a bug."""

    exit_code = 2


class SpecError(LosstuneError):
    """A study file that does not validate: names the file, the dotted key path and what is allowed."""

    def __init__(self, path: str, key: str, message: str) -> None:
        self.path = str(path)
        self.key = key
        self.message = message
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + message)


class DataError(LosstuneError):
    """A dataset that cannot be used as asked (missing column, NaN, a single class...)."""


class StorageError(LosstuneError):
    """A storage URL that cannot be opened or a study that does not exist there."""
