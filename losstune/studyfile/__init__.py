"""Study files: TOML parsed once, validated by pydantic into a frozen :class:`StudySpec`.

Nothing downstream sees raw dicts. Every error becomes a :class:`~losstune.errors.SpecError`
naming the file, the dotted key path and what is allowed. This package imports neither Keras nor
Optuna, so ``losstune validate`` is fast. What the loss families are, take and allow comes from
:mod:`losstune.catalog`.

* ``_schema``: the sections and their own checks;
* ``_rules``: the checks across sections;
* ``_errors``: pydantic's errors as one line with the key path.

A searchable value is written either as a fixed scalar, as a range table
``{low = .., high = .., log = true, step = ..}``, or as ``{choices = [..]}``.

Layer: domain.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from losstune.errors import SpecError
from losstune.studyfile._errors import _allowed_keys, _best_error, _friendly, _key_path
from losstune.studyfile._rules import _cross_checks
from losstune.studyfile._schema import (IN_MEMORY, MAX_SEED, MAX_TRIALS, OPTIMIZERS, Baseline,
                                        Choices, DatasetSpec, ModelSpec, ObjectiveSpec, Param,
                                        PrunerSpec, RacingSpec, Range, SamplerSpec, SearchSpec,
                                        StudySpec, TrainingSpec, default_space, param_bounds)


def _tuples(value: Any) -> Any:
    """``value`` with every list made a tuple, in nested tables too, and NumPy scalars (from
    Python callers: ``epochs=np.int64(5)``) made Python numbers."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        value = value.tolist()  # a scalar becomes a number, an array a (nested) list
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value


def parse(data: dict[str, Any], path: str | Path = "<study>") -> StudySpec:
    """Validate already-parsed TOML data."""
    path = str(path)
    try:
        # Strict: TOML is typed, so "16" is not 16 and true is not 1 (pydantic's lax mode
        # would convert both). Arrays become tuples, the only sequences the schema holds.
        spec = StudySpec.model_validate(_tuples(data), strict=True)
    except ValidationError as err:
        error = _best_error(err)
        key = _key_path(error["loc"])
        message = _friendly(error)
        if error["type"] == "extra_forbidden":
            message += _allowed_keys(error)
        raise SpecError(path, key, message) from None
    _cross_checks(spec, path)
    return spec


# The largest study file read: the examples are about 2 KB; anything near this is not one.
MAX_FILE_BYTES = 1_000_000


def load(path: str | Path) -> StudySpec:
    """Read and validate a study file."""
    path = Path(path)
    try:
        # A FIFO or a device would block the read for ever (or never end): regular files only.
        if path.exists() and not path.is_file():
            raise SpecError(str(path), "", "not a regular file; give a TOML study file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SpecError(str(path), "", f"{path.stat().st_size:,} bytes; a study file is "
                            f"at most {MAX_FILE_BYTES:,}")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(str(path), "", "study file not found") from None
    except OSError as err:
        raise SpecError(str(path), "", f"cannot read the study file ({err.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
        spec = parse(data, path)
    except UnicodeDecodeError:
        raise SpecError(str(path), "", "not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(str(path), "", f"TOML syntax error: {err}") from None
    except RecursionError:  # tomllib and pydantic recurse once per level of nesting
        raise SpecError(str(path), "", "values nested too deeply; a study file nests tables "
                        "and arrays a few levels at most") from None
    # These two exist only for studies made from Python, with the objects themselves.
    if spec.dataset.name == IN_MEMORY:
        raise SpecError(str(path), "dataset.name", "'arrays' is for in-memory data given to "
                        "losstune.search() in Python; a study file uses digits, wine, "
                        "breast_cancer, diabetes, csv or npz")
    if spec.model.kind == "python":
        raise SpecError(str(path), "model.kind", "'python' is for a model function given to "
                        "losstune.search() in Python; a study file uses mlp, cnn or factory "
                        "(factory = 'module:function')")
    return spec


def baseline_label(family: str, params: dict[str, Any]) -> str:
    """A short readable label of a baseline design (its ``baseline`` user attribute)."""
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in sorted(params.items()))
    return f"{family}({shown})"


__all__ = ["Baseline", "Choices", "DatasetSpec", "IN_MEMORY", "MAX_SEED", "MAX_TRIALS",
           "ModelSpec", "OPTIMIZERS", "ObjectiveSpec", "Param", "PrunerSpec", "RacingSpec", "Range",
           "SamplerSpec", "SearchSpec", "StudySpec", "TrainingSpec", "baseline_label", "default_space", "load", "param_bounds", "parse"]
