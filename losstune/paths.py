"""Files the commands write (``export``, ``report``): checked before anything is computed, and
never written through a symbolic link.

* :func:`check_output_path` refuses, with one line naming the path, an output that is a symbolic
  link (dangling or not), a folder, or in a folder that does not exist (unless asked to create
  it) or cannot be written.
* :func:`write_output` writes all or nothing: a new file beside the output, renamed over it,
  so a full disk or a kill never leaves a truncated file, and a link made after the check is
  replaced, never written through.
* :func:`default_report_path` is ``reports/<study>.html`` with a visible file name: a study
  called ``.hidden`` gets ``reports/hidden.html``, not a hidden file.

Layer: foundation.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from losstune.errors import LosstuneError


def check_output_path(path: str | os.PathLike, *, create_folder: bool = False) -> Path:
    """The output path, once it is safe to write: not a symbolic link (never followed), not a
    folder, in an existing, writable folder (``create_folder``: created when missing). Any
    error of the file system (a name too long, a folder that is a file) is one line."""
    path = Path(path)
    try:
        return _check(path, create_folder)
    except OSError as err:
        raise LosstuneError(f"{_shown(path)}: cannot write there ({err.strerror or err})") from None


def _shown(path: Path) -> str:
    """A path for a one-line message: a very long name is cut in its middle."""
    text = str(path)
    return text if len(text) <= 120 else f"{text[:60]}…{text[-40:]}"


def _check(path: Path, create_folder: bool) -> Path:
    if len(path.name.encode()) > MAX_NAME_BYTES:
        raise LosstuneError(f"{_shown(path)}: the file name is {len(path.name.encode())} bytes; "
                            f"file systems take at most {MAX_NAME_BYTES}")
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
    if path.exists() and not path.is_file():
        raise LosstuneError(f"{path}: is not a regular file; give a file name")
    return path


def write_output(path: str | os.PathLike, text: str, *, create_folder: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` after :func:`check_output_path`, all or nothing: into a
    new file beside it (``O_EXCL | O_NOFOLLOW``: no link is ever written through), synced, then
    renamed over ``path``. A full disk or a kill leaves the old file as it was, never a
    truncated one, and no temporary file behind."""
    import tempfile

    path = check_output_path(path, create_folder=create_folder)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name[:40]}.", suffix=".part",
                                    dir=path.parent)
    except OSError as err:
        raise LosstuneError(f"{_shown(path)}: cannot write ({err.strerror or err})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        # The mode the file had (a 0600 export stays private), else what open() would give.
        os.chmod(temp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_UMASK)
        os.replace(temp, path)  # replaces a link made in between, never writes through it
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(err, OSError):
            raise LosstuneError(f"{_shown(path)}: cannot write ({err.strerror or err}); "
                                "nothing was changed") from None
        raise
    return path


def _read_umask() -> int:
    """The process's umask, read once at import (os.umask can only read it by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


# The longest file name (in bytes) the common file systems take (ext4, APFS, NTFS: 255).
MAX_NAME_BYTES = 255
# Names made from a study's name keep at most this many bytes, then a short digest.
_STEM_BYTES = 120


def visible_name(name: str) -> str:
    """A file name stem for ``name``: letters, digits, ``-``, ``_`` and ``.`` kept, anything else
    ``_``, and no leading dot (a leading dot hides the file); ``study`` if nothing is left; a
    name longer than 120 bytes is cut and ends in a digest of the whole."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    safe = safe.lstrip(".") or "study"
    if len(safe.encode()) > _STEM_BYTES:  # a long (or multi-byte) name: a file system limit
        import hashlib

        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        safe = safe.encode()[:_STEM_BYTES - 9].decode("utf-8", "ignore") + "-" + digest
    return safe


def default_report_path(study_name: str, folder: str | os.PathLike = "reports") -> Path:
    """``reports/<study>.html`` with a visible name (see :func:`visible_name`)."""
    return Path(folder) / f"{visible_name(study_name)}.html"


__all__ = ["check_output_path", "default_report_path", "visible_name", "write_output"]
