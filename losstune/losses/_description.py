"""Loss descriptions: plain data that names a loss, to build it, describe it, word it, save it.

A *loss description* is ``{"family": "focal", "params": {"gamma": 2.0, "alpha": 0.25,
"from_logits": true}}``. :func:`build_loss` turns one into a ready Keras loss,
:func:`describe_loss` goes back, :func:`describe_in_words` writes it for people and
:func:`load_loss` reads what ``losstune export`` wrote. Studies store, export and report exactly
this description, so every view of a result describes one object. What each family is, takes
and needs comes from the catalog (:mod:`losstune.catalog`).

Layer: domain.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras

from losstune import catalog
from losstune.catalog import format_number
from losstune.losses._validation import check_params
from losstune.schedules import Schedule


def build_loss(description: Mapping[str, Any]) -> keras.losses.Loss:
    """A ready Keras loss from a loss description ``{"family": ..., "params": {...}}``."""
    family = catalog.family(description.get("family"))
    params = dict(description.get("params", {}))
    from_logits = bool(params.pop("from_logits", False))
    allowed = [a for a in family.arguments() if a != "from_logits"]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"loss family {family.name!r} has no parameter {unknown[0]!r}; "
                         f"allowed: {', '.join(allowed) or 'none'}.")
    check_params(family.name, params)
    if "logits" in family.needs:
        params["from_logits"] = from_logits
    return catalog.load(family.loss)(**params)


def _family_of(loss: keras.losses.Loss) -> catalog.Family:
    """The family whose class (or one of its ``also`` classes) ``loss`` is exactly."""
    cls = type(loss)
    for family in catalog.families():
        for reference in (family.loss, *family.also):
            # Only a class of the same name is imported: a family whose module cannot be
            # imported does not stop every other family from being described.
            if reference.rpartition(":")[2].split(".")[-1] == cls.__name__ \
                    and catalog.load(reference) is cls:
                return family
    raise ValueError(f"loss must be one built by losstune.build_loss, got {cls.__name__}.")


def describe_loss(loss: keras.losses.Loss) -> dict[str, Any]:
    """The loss description of a loss built by :func:`build_loss` (the inverse mapping)."""
    family = _family_of(loss)
    arguments = family.arguments()
    params = {k: v for k, v in loss.get_config().items() if k in arguments}
    return {"family": family.name, "params": params}


def describe_in_words(description: Mapping[str, Any]) -> str:
    """'focal loss, γ = 2, α = 0.25' — for reports, the dashboard and the terminal."""
    name = description.get("family", "?")
    params = dict(description.get("params", {}))
    family = catalog.find(name)
    if family is None:  # a family not registered in this process: its parameters as they are
        return ", ".join([str(name)] + [f"{catalog.label(k)} = {format_number(v)}"
                                        for k, v in params.items()
                                        if k not in catalog.FITTED and v is not None])
    parts = [family.words or family.name]
    for param in family.params:
        part = _words(family, param, params)
        if part:
            parts.append(part)
    terms = catalog.model_term_words(description)
    return ", ".join(parts) + (f"; + {terms}" if terms else "")


def _words(family: catalog.Family, param: catalog.Parameter, params: Mapping[str, Any]) -> str:
    value = params.get(param.name)
    if param.kind == "schedule":  # shown where the schedule has a weight
        gate = params.get(family.schedule_gate) if family.schedule_gate else True
        return f"schedule {Schedule.from_dict(value).describe()}" if value and gate else ""
    if param.role != "loss" or value is None or value in param.quiet:
        return ""  # a base's arguments are shown with the base, below
    if param.kind != "name":
        return param.words(value)
    text = f"{param.label} {value}"
    if param.name == "base" and family.bases:
        base = family.base(value)
        args = {**base.defaults, **(params.get("base_params") or {})}
        shown = [p.words(args[p.name]) for p in family.params if p.role == "base"
                 and p.name in base.args and p.name in args and args[p.name] not in p.quiet]
        text += f" ({', '.join(shown)})" if shown else ""
    return text


def with_fitted(description: Mapping[str, Any], *, class_counts: Sequence[int] | None = None,
                epochs: int | None = None) -> dict[str, Any]:
    """The description with your own class counts and planned epochs, where its design uses
    them (class-balanced weights, DynamicLoss's prior and schedule); otherwise unchanged."""
    return catalog.fill_from_data(description, class_counts=class_counts, epochs=epochs)


def save_description(description: Mapping[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")


def read_description(path: str | Path) -> dict[str, Any]:
    """The loss description in a file ``losstune export`` wrote (or a bare description).

    An export holds ``loss`` (the whole description) and, since 0.2, ``design`` (family and
    parameters) and ``fitted`` (what was fitted to the study's data: class counts, epochs);
    ``loss`` is read when present. A design alone was trained on logits, as every losstune
    model's output is.
    """
    data = json.loads(Path(path).read_text())
    if "loss" in data:
        return dict(data["loss"])
    if "design" in data:
        design = data["design"]
        description = {"family": design.get("family"),
                       "params": {**design.get("params", {}), **data.get("fitted", {})}}
        if "from_logits" in description["params"]:
            return description
        return catalog.fill_from_data(description, from_logits=True)
    return data


def load_loss(path: str | Path, *, class_counts: Sequence[int] | None = None,
              epochs: int | None = None) -> keras.losses.Loss:
    """Read a loss description written by ``losstune export`` and build the Keras loss.

    ``class_counts`` / ``epochs``: your own training set's class counts and your planned epochs,
    for a design that uses them (class-balanced weights, DynamicLoss's prior and schedule);
    ignored by one that does not. By default, the study's. A design's penalties or input noise
    are the model's, not the loss's: a warning names them.

    >>> loss = load_loss("best_loss.json", class_counts=[500, 50, 5])  # doctest: +SKIP
    >>> model.compile(optimizer="adam", loss=loss)  # doctest: +SKIP
    """
    description = read_description(path)
    terms = catalog.model_term_words(description)
    if terms:
        import warnings

        warnings.warn(f"{path}: the design also adds {terms} through its model; load_loss "
                      "returns the loss alone: add them to your model (README: Tasks)",
                      stacklevel=2)
    return build_loss(with_fitted(description, class_counts=class_counts, epochs=epochs))
