"""Errors a user can fix. The CLI prints them as one line and exits with status 2.

Layer: foundation.
"""

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


def one_line(err: BaseException) -> str:
    """An unexpected error as one line: the first line of its message, or of the deepest cause's
    when the outer one is a wrapper that hides it (Optuna's ``StorageInternalError`` says "An
    exception is raised during the commit" where the database said "permission denied for
    table studies")."""
    seen: set[int] = set()
    chain = [err]
    while chain[-1].__cause__ is not None and id(chain[-1]) not in seen:
        seen.add(id(chain[-1]))
        chain.append(chain[-1].__cause__)
    for e in reversed(chain):  # the database's own words first (SQLAlchemy keeps them in .orig)
        text = str(getattr(e, "orig", None) or e).strip()
        if text:
            return f"{type(e).__name__}: {text.splitlines()[0]}"
    return type(err).__name__
