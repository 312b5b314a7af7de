"""From a study's search space to Optuna ``suggest_*`` calls, and back to a loss design.

Parameter names read well in optuna-dashboard: ``loss`` (the family), ``focal.gamma``,
``dynamic.w_curriculum``, ``schedule`` (the curriculum schedule), ``schedule.rate``,
``training.learning_rate``. A parameter is suggested only when the chosen family (or schedule)
uses it, so TPE sees a clean conditional space.

Imports Optuna only for type hints; no Keras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from losstune.spec import SCHEDULE_PARAMS, Choices, Param, Range, StudySpec, baseline_label

if TYPE_CHECKING:  # pragma: no cover
    import optuna


@dataclass(frozen=True)
class LossDesign:
    """A loss design as plain data: family + parameters (no data-dependent values)."""

    family: str
    params: dict[str, Any] = field(default_factory=dict)

    def description(self, *, epochs: int, class_counts: list[int] | None,
                    from_logits: bool = True) -> dict[str, Any]:
        """The loss description :func:`losstune.losses.build_loss` takes for this design."""
        params = dict(self.params)
        if self.family in ("cross_entropy", "focal", "class_balanced", "poly1", "soft_fbeta"):
            params["from_logits"] = from_logits
        if self.family == "class_balanced":
            params["class_counts"] = list(class_counts or [])
        if self.family == "dynamic":
            base = params.pop("base", "categorical_crossentropy")
            base_params = {k: params.pop(k) for k in ("gamma", "alpha", "delta",
                                                      "label_smoothing") if k in params}
            if base == "categorical_focal_crossentropy":
                base_params.setdefault("gamma", 2.0)
                base_params.setdefault("alpha", 0.25)
            schedule = params.pop("schedule", None)
            sched_params = params.pop("schedule_params", {})
            params = {**params, "base": base, "base_params": base_params, "epochs": epochs,
                      "schedule": {"name": schedule or "constant", "params": sched_params}}
            if params.get("prior") == "train":
                params["class_counts"] = list(class_counts or [])
            if base in ("categorical_crossentropy", "categorical_focal_crossentropy"):
                params["from_logits"] = from_logits
        return {"family": self.family, "params": params}


def _suggest(trial: "optuna.Trial", name: str, value: Param) -> Any:
    if isinstance(value, Choices):
        return trial.suggest_categorical(name, list(value.choices))
    if isinstance(value, Range):
        if value.is_int() and name.endswith(("epochs", "batch_size", "warmup")):
            return trial.suggest_int(name, int(value.low), int(value.high),
                                     step=int(value.step or 1))
        return trial.suggest_float(name, value.low, value.high, log=value.log, step=value.step)
    return value  # fixed: not a search dimension, recorded in the description only


def suggest_training(trial: "optuna.Trial", spec: StudySpec) -> dict[str, Any]:
    t = spec.training
    out = {name: _suggest(trial, f"training.{name}", getattr(t, name))
           for name in ("epochs", "batch_size", "optimizer", "learning_rate")}
    out["epochs"], out["batch_size"] = int(out["epochs"]), int(out["batch_size"])
    out["learning_rate"] = float(out["learning_rate"])
    return out


def families_to_choose(spec: StudySpec) -> list[str]:
    """The ``loss`` choices: the study's families plus any family a baseline needs."""
    families = list(spec.families)
    for baseline in spec.baseline_designs:
        if baseline.family not in families:
            families.append(baseline.family)
    return families


# DynamicLoss base-loss arguments, and which base reads which (mirrors losses.BASE_LOSSES).
BASE_ARGS = ("gamma", "alpha", "delta", "label_smoothing")
BASE_USES = {"categorical_crossentropy": ("label_smoothing",),
             "categorical_focal_crossentropy": ("gamma", "alpha", "label_smoothing"),
             "huber": ("delta",), "mean_squared_error": (), "mean_absolute_error": (),
             "log_cosh": ()}


def _used(family: str, name: str, params: dict[str, Any]) -> bool:
    """A DynamicLoss base argument is a search dimension only when the chosen base reads it."""
    if family != "dynamic" or name not in BASE_ARGS:
        return True
    return name in BASE_USES.get(params.get("base", "categorical_crossentropy"), ())


def suggest_design(trial: "optuna.Trial", spec: StudySpec) -> LossDesign:
    family = trial.suggest_categorical("loss", families_to_choose(spec))
    space = spec.search.family_space(family, spec.task)
    params: dict[str, Any] = {}
    if "base" in space:  # first: it decides which base arguments exist
        params["base"] = _suggest(trial, f"{family}.base", space["base"])
    for name, value in space.items():
        if name != "base" and _used(family, name, params):
            params[name] = _suggest(trial, f"{family}.{name}", value)
    params.update(trial.user_attrs.get("baseline_params", {}))
    if family == "dynamic" and float(params.get("w_curriculum", 0.0)) > 0:
        space = spec.search.schedule
        schedule = trial.suggest_categorical("schedule", list(space.names))
        sched_params = {}
        for key in SCHEDULE_PARAMS[schedule]:
            value = space.milestones if key == "milestones" else getattr(space, key)
            sched_params[key] = (list(value) if key == "milestones"
                                 else _suggest(trial, f"schedule.{key}", value))
        if "warmup" in sched_params:
            sched_params["warmup"] = int(sched_params["warmup"])
        params["schedule"] = schedule
        params["schedule_params"] = sched_params
    return LossDesign(family, params)


def baseline_params(spec: StudySpec) -> list[tuple[dict[str, Any], str, dict[str, Any]]]:
    """For each baseline: the Optuna params to enqueue, its label and its own parameters.

    A searched parameter the baseline does not fix takes the range's lower end (or first
    choice), so the baseline is a complete point of the space. A baseline parameter that the
    study holds fixed is not a search dimension; the trial applies it from the user attribute
    ``baseline_params`` (see :func:`suggest_design`).
    """
    out = []
    for baseline in spec.baseline_designs:
        params: dict[str, Any] = {"loss": baseline.family}
        space = spec.search.family_space(baseline.family, spec.task)
        for name, value in space.items():
            if isinstance(value, (Range, Choices)):
                default = value.low if isinstance(value, Range) else value.choices[0]
                params[f"{baseline.family}.{name}"] = baseline.params.get(name, default)
        out.append((params, baseline_label(baseline.family, dict(baseline.params)),
                    dict(baseline.params)))
    return out

