"""Files the commands write (``export``, ``report``): checked before anything is computed, and
never written through a symbolic link.

* :func:`check_output_path` refuses, with one line naming the path, an output that is a symbolic
  link (dangling or not), a folder, or in a folder that does not exist (unless asked to create
  it) or cannot be written.
* :func:`write_output` writes a file with ``O_NOFOLLOW``, so a link made after the check is
  refused too.
* :func:`default_report_path` is ``reports/<study>.html`` with a visible file name: a study
  called ``.hidden`` gets ``reports/hidden.html``, not a hidden file.
"""

from __future__ import annotations

import os
from pathlib import Path

from losstune.errors import LosstuneError


def check_output_path(path: str | os.PathLike, *, create_folder: bool = False) -> Path:
    """The output path, once it is safe to write: not a symbolic link (never followed), not a
    folder, in an existing, writable folder (``create_folder``: created when missing)."""
    path = Path(path)
    if path.is_symlink():
        raise LosstuneError(f"{path}: is a symbolic link; refusing to write through it (give "
                            "the real file's path, or remove the link)")
    if path.is_dir():
        raise LosstuneError(f"{path}: is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        if folder.exists() or folder.is_symlink():  # a file, or a broken link
            raise LosstuneError(f"{path}: {folder} is not a folder")
        if not create_folder:
            raise LosstuneError(f"{path}: folder {folder} does not exist; create it first")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise LosstuneError(f"{path}: cannot create folder {folder} "
                                f"({err.strerror or err})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LosstuneError(f"{path}: folder {folder} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise LosstuneError(f"{path}: the file exists and is not writable")
    return path


def write_output(path: str | os.PathLike, text: str, *, create_folder: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` after :func:`check_output_path`; the open itself does
    not follow a symbolic link (``O_NOFOLLOW``), so a link created in between is refused too."""
    path = check_output_path(path, create_folder=create_folder)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as err:
        if path.is_symlink():
            raise LosstuneError(f"{path}: is a symbolic link; refusing to write through "
                                "it") from None
        raise LosstuneError(f"{path}: cannot write ({err.strerror or err})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as err:
        raise LosstuneError(f"{path}: cannot write ({err.strerror or err})") from None
    return path


def visible_name(name: str) -> str:
    """A file name stem for ``name``: letters, digits, ``-``, ``_`` and ``.`` kept, anything else
    ``_``, and no leading dot (a leading dot hides the file); ``study`` if nothing is left."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return safe.lstrip(".") or "study"


def default_report_path(study_name: str, folder: str | os.PathLike = "reports") -> Path:
    """``reports/<study>.html`` with a visible name (see :func:`visible_name`)."""
    return Path(folder) / f"{visible_name(study_name)}.html"


__all__ = ["check_output_path", "default_report_path", "visible_name", "write_output"]
