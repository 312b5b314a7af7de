"""From a study's search space to Optuna ``suggest_*`` calls, and back to a loss design.

Parameter names read well in optuna-dashboard: ``loss`` (the family), ``focal.gamma``,
``dynamic.w_curriculum``, ``schedule`` (the curriculum schedule), ``schedule.rate``,
``training.learning_rate``. A parameter is suggested only when the chosen family (or schedule)
uses it, so TPE sees a clean conditional space.

Imports Optuna only for type hints; no Keras.

Layer: domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from losstune import catalog, results
from losstune.studyfile import Choices, Param, Range, StudySpec, baseline_label

if TYPE_CHECKING:  # pragma: no cover
    import optuna


@dataclass(frozen=True)
class LossDesign:
    """A loss design as plain data: family + parameters (no data-dependent values), and what
    it adds through the model (catalog.MODEL_TERMS: ``{"penalty": {"l2_kernel": 1e-4}}``;
    nothing for a baseline)."""

    family: str
    params: dict[str, Any] = field(default_factory=dict)
    model_terms: dict[str, dict[str, float]] = field(default_factory=dict)

    def description(self, *, epochs: int, class_counts: list[int] | None,
                    from_logits: bool = True) -> dict[str, Any]:
        """The loss description :func:`losstune.losses.build_loss` takes for this design: a
        composite's base arguments gathered in ``base_params`` and its schedule in one entry,
        then what the design needs from the data (catalog ``needs``)."""
        record = catalog.family(self.family)
        params = dict(self.params)
        if record.bases:
            base = record.base(params.pop("base", record.param("base").default))
            arguments = {p.name for p in record.params if p.role == "base"}
            base_params = {k: params.pop(k) for k in list(params) if k in arguments}
            for name in base.stated:
                base_params.setdefault(name, base.defaults[name])
            params.update(base=base.name, base_params=base_params)
        if record.schedule_gate:
            schedule = params.pop("schedule", None)
            params["schedule"] = {"name": schedule or "constant",
                                  "params": params.pop("schedule_params", {})}
        described: dict[str, Any] = {"family": self.family, "params": params}
        for group, values in sorted(self.model_terms.items()):
            if any(values.values()):
                described[group] = {k: float(v) for k, v in sorted(values.items()) if v}
        return catalog.fill_from_data(described, epochs=epochs, class_counts=list(class_counts or []),
                           from_logits=from_logits)


def _suggest(trial: "optuna.Trial", name: str, value: Param, *, whole: bool = False) -> Any:
    if isinstance(value, Choices):
        return trial.suggest_categorical(name, list(value.choices))
    if isinstance(value, Range):
        if whole and value.is_int():
            return trial.suggest_int(name, int(value.low), int(value.high),
                                     step=int(value.step or 1))
        return trial.suggest_float(name, value.low, value.high, log=value.log, step=value.step)
    return value  # fixed: not a search dimension, recorded in the description only


def suggest_training(trial: "optuna.Trial", spec: StudySpec) -> dict[str, Any]:
    t = spec.training
    out = {name: _suggest(trial, f"training.{name}", getattr(t, name),
                          whole=name in ("epochs", "batch_size"))
           for name in ("epochs", "batch_size", "optimizer", "learning_rate")}
    out["epochs"], out["batch_size"] = int(out["epochs"]), int(out["batch_size"])
    out["learning_rate"] = float(out["learning_rate"])
    return out


# Samplers that model a parameter where trials have it (TPE with group=True, random) take
# baseline trials without a ``loss``. The grid (a tree of every trial's parameters) and GP and
# CMA-ES (the parameters every trial shares) need every trial to choose a ``loss``: there a
# baseline-only family stays a choice.
PROPOSE_SEARCHED_ONLY = ("tpe", "random")


def families_to_choose(spec: StudySpec) -> list[str]:
    """The sampler's ``loss`` choices: the searched families. A baseline's family that the
    study does not search is no choice: baselines are enqueued, never proposed (offered to the
    random sampler, cross-entropy beside one searched family took half its proposals, each a
    repeat of the baseline that trained nothing). Samplers outside PROPOSE_SEARCHED_ONLY need a
    ``loss`` on every trial: for them the baseline-only families stay choices."""
    if spec.sampler.name in PROPOSE_SEARCHED_ONLY:
        return list(spec.families)
    return _legacy_choices(spec)


def baseline_only_families(spec: StudySpec) -> list[str]:
    """The baselines' families that the study does not search."""
    return list(dict.fromkeys(b.family for b in spec.baseline_designs
                              if b.family not in spec.families))


def _legacy_choices(spec: StudySpec) -> list[str]:
    """The ``loss`` choices of a study made before 0.5: the baseline-only families too."""
    return list(spec.families) + baseline_only_families(spec)


def _baseline_family(trial: "optuna.Trial", spec: StudySpec) -> str | None:
    """A baseline trial's family when the study does not search it (from its label): it is
    not a ``loss`` choice, so the trial suggests no ``loss`` at all."""
    label = trial.user_attrs.get(results.BASELINE)
    if label is None:
        return None
    choices = families_to_choose(spec)
    for b in spec.baseline_designs:
        if b.family not in choices and baseline_label(b.family, dict(b.params)) == label:
            return b.family
    return None


def _choose_family(trial: "optuna.Trial", spec: StudySpec) -> str:
    family = _baseline_family(trial, spec)
    if family is not None:
        return family
    try:
        return trial.suggest_categorical("loss", families_to_choose(spec))
    except ValueError:
        # A study made before 0.5 offered the baseline-only families too, and Optuna refuses
        # another set of choices for a parameter its trials have ("does not support dynamic
        # value space"): such a study keeps its own set.
        return trial.suggest_categorical("loss", _legacy_choices(spec))


def _suggest_param(trial: "optuna.Trial", rule: catalog.Parameter, name: str,
                   value: Param) -> Any:
    chosen = _suggest(trial, name, value, whole=rule.kind == "whole")
    return int(chosen) if rule.kind == "whole" else chosen


def suggest_design(trial: "optuna.Trial", spec: StudySpec) -> LossDesign:
    family = _choose_family(trial, spec)
    record = catalog.family(family)
    space = spec.search.family_space(family, spec.task)
    params: dict[str, Any] = {}
    # The base first: it decides which base arguments exist (Family.uses).
    for name in sorted(space, key=lambda n: n != "base"):
        if record.uses(name, params):
            params[name] = _suggest_param(trial, record.param(name), f"{family}.{name}",
                                          space[name])
    params.update(trial.user_attrs.get(results.BASELINE_PARAMS, {}))
    gate = record.schedule_gate
    # A baseline is a fixed reference: its schedule is constant, never sampled.
    if gate and float(params.get(gate, 0.0)) > 0 and results.BASELINE not in trial.user_attrs:
        params["schedule"], params["schedule_params"] = _suggest_schedule(trial, spec)
    return LossDesign(family, params, suggest_model_terms(trial, spec))


def suggest_model_terms(trial: "optuna.Trial", spec: StudySpec) -> dict[str, dict[str, float]]:
    """The penalties and input noise of a searched design (``penalty.l1_activity``,
    ``denoise.sigma``); a baseline has none: it is the plain loss a study compares with."""
    if results.BASELINE in trial.user_attrs:
        return {}
    return {group: {name: float(_suggest(trial, f"{group}.{name}", value))
                    for name, value in getattr(spec.search, group).searched.items()}
            for group in catalog.MODEL_TERMS if getattr(spec.search, group).searched}


def _suggest_schedule(trial: "optuna.Trial", spec: StudySpec) -> tuple[str, dict[str, Any]]:
    """A curriculum schedule and the parameters it reads (a list of epochs is never searched)."""
    space = spec.search.schedule
    name = trial.suggest_categorical("schedule", list(space.names))
    params = {}
    for key in catalog.SCHEDULES[name]:
        rule, value = catalog.SCHEDULE_PARAMETERS[key], getattr(space, key)
        params[key] = (list(value) if rule.kind == "epochs"
                       else _suggest_param(trial, rule, f"schedule.{key}", value))
    return name, params


def baseline_params(spec: StudySpec) -> list[tuple[dict[str, Any], str, dict[str, Any]]]:
    """For each baseline: the Optuna params to enqueue, its label and its own parameters.

    A searched parameter the baseline does not fix takes the range's lower end (or first
    choice), so the baseline is a complete point of the space; one its design does not read (a
    base argument of another base) is left out. A baseline parameter that the study holds
    fixed is not a search dimension; the trial applies it from the user attribute
    ``baseline_params`` (see :func:`suggest_design`).

    Searched training settings (learning rate, epochs, batch size, optimizer) are declared too,
    at the middle of their range (geometric for a log range; the first of some choices): left
    to the sampler, a baseline would train at whatever it drew and keep that on every seed, and
    "better than cross-entropy" would partly measure the learning rate.
    """
    out = []
    for baseline in spec.baseline_designs:
        record = catalog.family(baseline.family)
        space = spec.search.family_space(baseline.family, spec.task)
        point = {name: baseline.params.get(name, _lowest(value)) for name, value in space.items()}
        # A family the study does not search is no ``loss`` choice (_choose_family).
        params: dict[str, Any] = ({"loss": baseline.family}
                                  if baseline.family in families_to_choose(spec) else {})
        params.update({f"{baseline.family}.{name}": point[name] for name, value in space.items()
                       if isinstance(value, (Range, Choices)) and record.uses(name, point)})
        params.update(training_point(spec))
        out.append((params, baseline_label(baseline.family, dict(baseline.params)),
                    dict(baseline.params)))
    return out


def training_point(spec: StudySpec) -> dict[str, Any]:
    """The training settings baselines train at: each searched one at its range's middle."""
    import math

    point = {}
    for name in ("epochs", "batch_size", "optimizer", "learning_rate"):
        value = getattr(spec.training, name)
        if isinstance(value, Choices):
            point[f"training.{name}"] = value.choices[0]
        elif isinstance(value, Range):
            middle = (math.sqrt(value.low * value.high) if value.log
                      else (value.low + value.high) / 2)
            if value.step:
                middle = value.low + round((middle - value.low) / value.step) * value.step
            if name in ("epochs", "batch_size"):
                middle = int(round(middle))
            point[f"training.{name}"] = middle
    return point


def _lowest(value: Param) -> Any:
    """A range's lower end, the first of some choices, a fixed value itself."""
    if isinstance(value, Range):
        return value.low
    return value.choices[0] if isinstance(value, Choices) else value
