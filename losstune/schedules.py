"""Curriculum schedules: pure functions epoch -> factor.

A schedule is plain data (a name and its parameters) with a ``value(epoch, epochs)`` method, so the
same object drives training (through :class:`EpochCallback`-style assignment of a Keras variable in
``losstune.losses``), is stored in the study as JSON, and is drawn in reports.

Conventions, shared by every schedule:

* ``epoch`` is Keras's 0-based epoch index; ``epochs`` is the planned number of epochs.
* ``warmup`` epochs hold the ``start`` value; the ramp then runs from ``start`` (at epoch ``warmup``)
  to ``end`` (at the last planned epoch, ``epochs - 1``). Past the end the value stays at ``end``.
* ``step`` multiplies ``start`` by ``gamma`` at each milestone epoch instead of ramping.

Keras's ``optimizers.schedules`` are functions of the optimizer step and live inside the graph; a
curriculum factor is a function of the epoch that is read once per epoch, so it is plain Python.

Layer: domain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from losstune import catalog

SCHEDULES = tuple(catalog.SCHEDULES)


def _ramp_fraction(epoch: float, epochs: int, warmup: int) -> float:
    """Fraction in [0, 1] of the ramp reached at ``epoch``."""
    span = max(epochs - 1 - warmup, 1)
    return min(max((epoch - warmup) / span, 0.0), 1.0)


@dataclass(frozen=True)
class Schedule:
    """A curriculum schedule: ``name`` (one of :data:`SCHEDULES`) and its parameters."""

    name: str = "constant"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Checked against the catalog's rules, the same a study's [search.schedule] meets."""
        if self.name not in catalog.SCHEDULES:
            raise ValueError(
                f"schedule must be one of {', '.join(SCHEDULES)}, got {self.name!r}."
            )
        allowed = catalog.SCHEDULES[self.name]
        unknown = sorted(set(self.params) - set(allowed))
        if unknown:
            raise ValueError(
                f"schedule {self.name!r} has no parameter {unknown[0]!r}; "
                f"allowed: {', '.join(allowed) or 'none'}."
            )
        merged = {**allowed, **self.params}
        for key, value in merged.items():
            rule = catalog.SCHEDULE_PARAMETERS[key]
            rule.check(value, f"schedule.{key}")
            if rule.kind == "whole":
                merged[key] = int(value)
            elif rule.kind == "epochs":
                merged[key] = tuple(int(m) for m in value)
        object.__setattr__(self, "params", merged)

    def value(self, epoch: float, epochs: int) -> float:
        """The factor at 0-based ``epoch`` of a run planned for ``epochs`` epochs."""
        p = self.params
        if self.name == "constant":
            return float(p["value"])
        if self.name == "step":
            passed = sum(1 for m in p["milestones"] if epoch >= m)
            return float(p["start"] * p["gamma"] ** passed)
        t = _ramp_fraction(epoch, epochs, p["warmup"])
        start, end = p["start"], p["end"]
        if self.name == "linear":
            shape = t
        elif self.name == "cosine":
            shape = (1.0 - math.cos(math.pi * t)) / 2.0
        elif self.name == "exponential":
            # Normalised so the ramp starts exactly at `start` and ends exactly at `end`.
            steps = max(epochs - 1 - p["warmup"], 1)
            shape = (1.0 - math.exp(-p["rate"] * t * steps)) / (1.0 - math.exp(-p["rate"] * steps))
        else:  # sigmoid, normalised the same way
            def s(x: float) -> float:
                return 1.0 / (1.0 + math.exp(-p["steepness"] * (x - p["midpoint"])))

            shape = (s(t) - s(0.0)) / (s(1.0) - s(0.0))
        return float(start + (end - start) * shape)

    def values(self, epochs: int) -> list[float]:
        """The factor at every planned epoch, for drawing."""
        return [self.value(e, epochs) for e in range(epochs)]

    def to_dict(self) -> dict[str, Any]:
        params = dict(self.params)
        if "milestones" in params:
            params["milestones"] = list(params["milestones"])
        return {"name": self.name, "params": params}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | str | None) -> "Schedule":
        if data is None:
            return cls()
        if isinstance(data, str):
            return cls(data)
        return cls(data.get("name", "constant"), dict(data.get("params", {})))

    def describe(self) -> str:
        def fmt(v: Any) -> str:
            if isinstance(v, float):
                return f"{v:.3g}"
            return ",".join(str(m) for m in v) if isinstance(v, tuple) else str(v)

        shown = ", ".join(f"{k}={fmt(v)}" for k, v in self.params.items())
        return f"{self.name}({shown})"


def progress(epoch: float, epochs: int) -> float:
    """Learning progress of the seed design: 0 at the first epoch, 1 at the last planned one."""
    return min(max(epoch / max(epochs - 1, 1), 0.0), 1.0)
