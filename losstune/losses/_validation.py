"""Argument checks of the loss classes: the catalog's rules, reported with the argument's name.

Every rule is the catalog's (:mod:`losstune.catalog`), the same one a study file is checked
against; here a bad value raises ``ValueError("focal.gamma must be a number in [0, inf), got
-1.0.")`` for people who build losses in Python.

Layer: domain.
"""

from __future__ import annotations

from typing import Any, Mapping

from losstune import catalog


def check_params(family: str, values: Mapping[str, Any]) -> None:
    """Each value against its rule: the family's own parameters and what it is given at build
    time (class counts, epochs, from_logits). Names the family does not know are left to the
    caller to refuse."""
    record = catalog.family(family)
    for name, value in values.items():
        if record.has(name):
            param = record.param(name)
            param.check(value, f"{family}.{name}", record.choices(param))
        elif name in catalog.FITTED_RULES and value is not None:
            catalog.FITTED_RULES[name].check(value, f"{family}.{name}")


def check_counts(class_counts: Any, key: str) -> list[float] | None:
    """Class counts as floats (None stays None)."""
    if class_counts is None:
        return None
    catalog.FITTED_RULES["class_counts"].check(class_counts, key)
    return [float(c) for c in class_counts]


def check_base_params(base: catalog.Base, params: Mapping[str, Any]) -> None:
    """The arguments given to a composite's base loss: ones it takes, each within its rule."""
    unknown = sorted(set(params) - set(base.args))
    if unknown:
        raise ValueError(f"base loss {base.name!r} has no argument {unknown[0]!r}; "
                         f"allowed: {', '.join(base.args) or 'none'}.")
    for name, value in params.items():
        catalog.ARGUMENTS[name].check(value, f"base_params.{name}")
