"""Shared fixtures: tiny study files in temporary folders, and service checks.

Locally, a missing PostgreSQL server or Chromium skips the tests that need it, with the reason.
In CI (LOSSTUNE_REQUIRE_SERVICES=1) they fail instead: a skipped check is not a pass.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import tomli_w

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY: dict[str, Any] = {
    "name": "tiny",
    "task": "multiclass",
    "seed": 3,
    "n_trials": 4,
    "dataset": {"name": "wine"},
    "model": {"kind": "mlp", "hidden": [16]},
    "training": {"epochs": 3, "batch_size": 32, "learning_rate": 0.01},
    "objective": {"metric": "macro_f1"},
    "sampler": {"name": "tpe", "n_startup_trials": 2},
    "pruner": {"name": "none"},
    "search": {"families": ["cross_entropy", "focal", "dynamic"],
               "focal": {"gamma": {"low": 0.5, "high": 3.0}}},
}


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``changes`` into a copy of ``base``; a value of None deletes the key."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def write_study(folder: Path, changes: dict[str, Any] | None = None,
                name: str = "study.toml") -> Path:
    path = folder / name
    path.write_text(tomli_w.dumps(merge(TINY, changes or {})))
    return path


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    return write_study(tmp_path)


def require_service(available: bool, reason: str) -> None:
    if available:
        return
    if os.environ.get("LOSSTUNE_REQUIRE_SERVICES"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)
