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
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from losstune.errors import SpecError
from losstune.spec._errors import _allowed_keys, _best_error, _friendly, _key_path
from losstune.spec._rules import _cross_checks
from losstune.spec._schema import (BUILTIN_DATASETS, MAX_SEED, MAX_TRIALS, METRICS, OPTIMIZERS,
                                   TASKS, Baseline, Choices, DatasetSpec, ModelSpec,
                                   ObjectiveSpec, Param, PrunerSpec, RacingSpec, Range,
                                   SamplerSpec, SearchSpec, StudySpec, TrainingSpec,
                                   default_space, param_bounds)


def parse(data: dict[str, Any], path: str | Path = "<study>") -> StudySpec:
    """Validate already-parsed TOML data."""
    path = str(path)
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as err:
        error = _best_error(err)
        key = _key_path(error["loc"])
        message = _friendly(error)
        if error["type"] == "extra_forbidden":
            message += _allowed_keys(error)
        raise SpecError(path, key, message) from None
    _cross_checks(spec, path)
    return spec


def load(path: str | Path) -> StudySpec:
    """Read and validate a study file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(str(path), "", "study file not found") from None
    except OSError as err:
        raise SpecError(str(path), "", f"cannot read the study file ({err.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SpecError(str(path), "", "not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(str(path), "", f"TOML syntax error: {err}") from None
    spec = parse(data, path)
    # These two exist only for studies made from Python, with the objects themselves.
    if spec.dataset.name == "arrays":
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


__all__ = ["BUILTIN_DATASETS", "Baseline", "Choices", "DatasetSpec", "MAX_SEED", "MAX_TRIALS",
           "METRICS", "ModelSpec", "OPTIMIZERS", "ObjectiveSpec", "Param", "PrunerSpec",
           "RacingSpec", "Range", "SamplerSpec", "SearchSpec", "StudySpec", "TASKS",
           "TrainingSpec", "baseline_label", "default_space", "load", "param_bounds", "parse"]
