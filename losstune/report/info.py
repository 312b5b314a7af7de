"""The data behind every part of a report, computed without drawing anything.

Each function takes finished trials (Optuna ``FrozenTrial``) and returns plain Python data, so it
is tested directly; ``_plots`` turns that data into plotly figures.

Layer: views.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from losstune import catalog, results
from losstune.schedules import Schedule

def _complete(trials: Sequence[Any]) -> list[Any]:
    return [t for t in trials if t.state.name == "COMPLETE" and t.values]


def ranked(trials: Sequence[Any], maximize: bool) -> list[Any]:
    """Complete trials that trained (a repeat proposal trained nothing: it is not a row of its
    own), best first by the first objective."""
    return sorted((t for t in _complete(trials) if not results.is_repeat(t)),
                  key=lambda t: t.values[0], reverse=maximize)


def by_verdict(verdict: Any, trials: Sequence[Any]) -> list[Any]:
    """One trial per design, in the verdict's ranking (designs over seeds, its winner first):
    the design's first search trial, which holds what the figures draw (curves, per-class
    recall, predictions). Every figure that names a "best" or "top" design reads this order,
    so it names the verdict's winner, never a single lucky search trial."""
    numbers = {t.number: t for t in trials}
    return [numbers[d.trials[0]] for d in verdict.ranking if d.trials and d.trials[0] in numbers]


def design_label(trial: Any) -> str:
    return results.words_of(trial)


# ------------------------------------------------------------------------------ summary
@dataclass
class Summary:
    study: str
    task: str
    dataset: str
    metric: str
    maximize: bool
    budget: str
    counts: dict[str, int]
    done: str  # what the study did: results.Tally's words, as every view says it


def summary_info(study_name: str, user_attrs: dict[str, Any], trials: Sequence[Any],
                 maximize: bool, records: Sequence[Any] | None = None) -> Summary:
    """The study in a few lines. The budget is the new designs its runs asked for (a run's
    ``--n-trials`` included), else the study file's ``n_trials``. ``records``: the search
    trials' and replicate runs' (results.records), read once by the report."""
    spec = user_attrs.get(results.SPEC, {})
    counts = {"complete": 0, "pruned": 0, "fail": 0, "running": 0}
    for t in trials:
        key = t.state.name.lower()
        if key in counts:
            counts[key] += 1
    budget = []
    asked = user_attrs.get(results.ASKED)
    if asked:
        budget.append(f"{sum(asked)} new designs asked"
                      + (f" ({' + '.join(map(str, asked))} in {len(asked)} runs)"
                         if len(asked) > 1 else ""))
    elif spec.get("n_trials"):
        budget.append(f"{spec['n_trials']} new designs")
    if spec.get("timeout"):
        budget.append(f"{spec['timeout']:g} s")
    training = spec.get("training", {})
    if isinstance(training.get("epochs"), int):
        budget.append(f"{training['epochs']} epochs per training")
    racing = spec.get("racing", True)
    if racing is not False and len(results.metrics_of(user_attrs)) == 1:
        seeds = racing.get("max_seeds", 5) if isinstance(racing, dict) else 5
        budget.append(f"racing up to {seeds} seeds per design")
    metric = results.metrics_of(user_attrs)[0]
    return Summary(study=study_name, task=user_attrs.get(results.TASK, "?"),
                   dataset=user_attrs.get(results.DATA) or user_attrs.get(results.DATASET, "?"),
                   metric=metric, maximize=maximize, budget=", ".join(budget) or "—",
                   counts=counts, done=results.tally(
                       results.records(trials) if records is None else records).words())


# ------------------------------------------------------------------------------ leaderboard
def leaderboard_info(trials: Sequence[Any], maximize: bool, task: str,
                     test_for_top: int = 5) -> list[dict[str, Any]]:
    """One row per complete trial. Test-split figures are shown for the top designs only."""
    from losstune import tasks

    metric_keys = tasks.TASKS[task].leaderboard_metrics  # the task's (losstune/tasks/)
    rows = []
    for rank, t in enumerate(ranked(trials, maximize), start=1):
        a = t.user_attrs
        params = {k: v for k, v in t.params.items() if k != "loss"}
        rows.append({
            "rank": rank, "trial": t.number, "family": results.family_of(t),
            "design": design_label(t), "params": params, "value": t.values[0],
            "secondary": {k: a.get(results.VAL + k) for k in metric_keys},
            "test": None,
            results.TRAIN_TIME: a.get(results.TRAIN_TIME),
            "baseline": bool(a.get(results.BASELINE)),
        })
        if rank <= test_for_top:
            rows[-1]["test"] = {k: a.get(results.TEST + k) for k in metric_keys}
    return rows


# ------------------------------------------------------------------------------ by family
def family_values(trials: Sequence[Any]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for t in _complete(trials):
        out.setdefault(results.family_of(t), []).append(t.values[0])
    return out


def params_present(trials: Sequence[Any], names: Sequence[str]) -> int:
    """How many complete trials have every one of ``names`` as a searched parameter."""
    return sum(1 for t in _complete(trials) if all(n in t.params for n in names))


# ------------------------------------------------------------------------------ top designs
def schedules_info(order: Sequence[Any], top: int = 5) -> list[dict[str, Any]]:
    """The scheduled weight per epoch (DynamicLoss's w_curriculum, a VAE's β) × its schedule's
    factor, for the top designs (``order``: :func:`by_verdict`) that use a schedule."""
    out = []
    for t in order:
        desc = json.loads(t.user_attrs.get(results.LOSS, "{}"))
        params = desc.get("params", {})
        record = catalog.find(desc.get("family"))
        gate = record.schedule_gate if record else ""
        if not gate or not params.get(gate):
            continue
        sched = Schedule.from_dict(params.get("schedule"))
        epochs = int(params.get("epochs", 10))
        out.append({"trial": t.number,
                    "label": f"#{t.number} {catalog.label(gate, record.name)} × "
                             f"{sched.describe()}",
                    "values": [params[gate] * v for v in sched.values(epochs)]})
        if len(out) == top:
            break
    return out


def curves_info(order: Sequence[Any], metric: str,
                top: int = 5) -> dict[str, list[dict[str, Any]]]:
    """Per-epoch validation metric of the top designs (``order``: :func:`by_verdict`, so
    each design once), and the curves of their losses' components (DynamicLoss's terms, a
    VAE's reconstruction and KL)."""
    val, components = [], []
    for t in order[:top]:
        curve = t.user_attrs.get(results.val_curve(metric))
        if curve:
            val.append({"trial": t.number, "label": f"#{t.number} {design_label(t)[:40]}",
                        "values": curve})
        prefix = results.CURVE + results.COMPONENT
        for key in sorted(k for k in t.user_attrs if k.startswith(prefix)):
            c, values = key[len(prefix):], t.user_attrs[key]
            if values and any(v for v in values if v is not None):
                components.append({"trial": t.number, "component": c,
                                   "label": f"#{t.number} {c}", "values": values})
    return {"val": val, "components": components}


def _best_with(order: Sequence[Any], key: str) -> Any:
    """The verdict's winner's trial, if it recorded ``key`` (a task figure's data); else
    None."""
    return order[0] if order and key in order[0].user_attrs else None


def recall_info(order: Sequence[Any], class_names: Sequence[str] | None,
                key: str = results.RECALL) -> dict[str, Any] | None:
    """A per-class validation score (recall; for labels, F1 or AP: ``key``) of the verdict's
    winner against the best baseline (``order``: :func:`by_verdict`)."""
    if not order or key not in order[0].user_attrs:
        return None
    best = order[0]
    baseline = next((t for t in order if t.user_attrs.get(results.BASELINE)), None)
    recall = best.user_attrs[key]
    names = list(class_names or [str(i) for i in range(len(recall))])
    out = {"classes": names, "best": recall, "best_label": f"winner: {design_label(best)}"}
    if baseline is not None and baseline.number != best.number:
        out["baseline"] = baseline.user_attrs.get(key)
        out["baseline_label"] = f"baseline: {design_label(baseline)}"
    return out


def residuals_info(order: Sequence[Any],
                   targets: Sequence[float] | None) -> dict[str, Any] | None:
    """Validation residuals (prediction − target) of the verdict's winner (regression)."""
    info = predictions_info(order, targets)
    if info is None:
        return None
    return {"target": info["target"], "label": info["label"],
            "residual": [p - y for p, y in zip(info["predicted"], info["target"])]}


def projection_info(order: Sequence[Any], targets: Sequence[int] | None,
                    class_names: Sequence[str] | None) -> dict[str, Any] | None:
    """The verdict's winner's validation embeddings in 2-D, grouped by class."""
    best = _best_with(order, results.PROJECTION)
    if best is None or not targets:
        return None
    xs, ys = best.user_attrs[results.PROJECTION]
    names = list(class_names or [])
    groups: dict[str, dict[str, list[float]]] = {}
    for x, y, c in sorted(zip(xs, ys, targets), key=lambda p: p[2]):  # legend in class order
        name = names[c] if c < len(names) else str(c)
        group = groups.setdefault(name, {"x": [], "y": []})
        group["x"].append(x)
        group["y"].append(y)
    return {"classes": groups, "label": design_label(best)}


def reconstructions_info(order: Sequence[Any], inputs: Sequence[Sequence[float]] | None,
                         image_shape: Sequence[int] | None) -> dict[str, Any] | None:
    """The shown validation inputs and the verdict's winner's reconstructions of them."""
    best = _best_with(order, results.RECONSTRUCTIONS)
    if best is None or not inputs:
        return None
    rebuilt = best.user_attrs[results.RECONSTRUCTIONS]
    n = min(len(inputs), len(rebuilt))
    return {"inputs": list(inputs[:n]), "rebuilt": list(rebuilt[:n]),
            "shape": list(image_shape) if image_shape else None, "label": design_label(best)}


def predictions_info(order: Sequence[Any],
                     targets: Sequence[float] | None) -> dict[str, Any] | None:
    """The verdict's winner's validation predictions (regression; a count's expected counts)
    against the targets."""
    best = _best_with(order, results.PREDICTIONS)
    if best is None or not targets:
        return None
    pred = best.user_attrs[results.PREDICTIONS]
    n = min(len(pred), len(targets))
    return {"target": list(targets[:n]), "predicted": list(pred[:n]),
            "label": design_label(best)}


# ------------------------------------------------------------------------------ per-family designs
def _param_kind(trial: Any, name: str) -> str:
    """"categorical", "log" or "linear": how a parameter's axis should be drawn."""
    dist = trial.distributions.get(name)
    if type(dist).__name__ == "CategoricalDistribution" or isinstance(trial.params.get(name), str):
        return "categorical"
    return "log" if getattr(dist, "log", False) else "linear"


def family_params_info(trials: Sequence[Any], maximize: bool,
                       min_trials: int = 3) -> list[dict[str, Any]]:
    """The objective over each loss family's own searched parameters, one entry per family.

    A family's parameters are the ``<family>.*`` parameters that every one of its complete trials
    has (a parameter only some of them searched, such as a DynamicLoss base argument that depends
    on the base, is left out rather than drawn at a made-up value). Families with fewer than
    ``min_trials`` complete trials, or with no searched parameter, get no entry. Rows are best
    first. Each entry: ``family``, ``params`` (full names), ``names`` (without the family
    prefix), ``left_out`` (names searched by only some of its trials), ``kinds`` ("categorical", "log" or "linear"), ``rows`` (one list of values per
    trial, in ``params`` order), ``objective`` and ``trials`` (trial numbers), aligned with rows.
    """
    groups: dict[str, list[Any]] = {}
    for t in ranked(trials, maximize):
        family = results.family_of(t)
        if family:
            groups.setdefault(str(family), []).append(t)
    out = []
    for family in sorted(groups):
        members = groups[family]
        if len(members) < min_trials:
            continue
        prefix = family + "."
        names: list[str] = []
        for t in members:
            names.extend(n for n in t.params if n.startswith(prefix) and n not in names)
        params = [n for n in names if all(n in t.params for t in members)]
        if not params:
            continue
        out.append({"family": family, "params": params,
                    "names": [n[len(prefix):] for n in params],
                    "left_out": [n[len(prefix):] for n in names if n not in params],
                    "kinds": [_param_kind(members[0], n) for n in params],
                    "rows": [[t.params[n] for n in params] for t in members],
                    "objective": [t.values[0] for t in members],
                    "trials": [t.number for t in members]})
    return out
