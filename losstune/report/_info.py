"""The data behind every part of a report, computed without drawing anything.

Each function takes finished trials (Optuna ``FrozenTrial``) and returns plain Python data, so it
is tested directly; ``_plots`` turns that data into plotly figures.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from losstune.schedules import Schedule

SECONDARY = {"classification": ("val.accuracy", "val.balanced_accuracy", "val.macro_f1"),
             "regression": ("val.mae", "val.rmse", "val.r2")}


def _complete(trials: Sequence[Any]) -> list[Any]:
    return [t for t in trials if t.state.name == "COMPLETE" and t.values]


def ranked(trials: Sequence[Any], maximize: bool) -> list[Any]:
    """Complete trials, best first by the first objective."""
    return sorted(_complete(trials), key=lambda t: t.values[0], reverse=maximize)


def design_label(trial: Any) -> str:
    return trial.user_attrs.get("loss_words") or trial.params.get("loss", "?")


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
    best_design: str | None = None
    best_value: float | None = None
    best_trial: int | None = None
    baseline_design: str | None = None
    baseline_value: float | None = None
    lift: float | None = None  # best - best baseline, signed so that > 0 is better
    confirmed: bool = False
    notes: list[str] = field(default_factory=list)


def summary_info(study_name: str, user_attrs: dict[str, Any], trials: Sequence[Any],
                 maximize: bool) -> Summary:
    spec = user_attrs.get("spec", {})
    counts = {"complete": 0, "pruned": 0, "fail": 0, "running": 0}
    for t in trials:
        key = t.state.name.lower()
        if key in counts:
            counts[key] += 1
    budget = []
    if spec.get("n_trials"):
        budget.append(f"{spec['n_trials']} trials")
    if spec.get("timeout"):
        budget.append(f"{spec['timeout']:g} s")
    training = spec.get("training", {})
    if isinstance(training.get("epochs"), int):
        budget.append(f"{training['epochs']} epochs per trial")
    metric = (user_attrs.get("objective") or ["objective"])[0]
    out = Summary(study=study_name, task=user_attrs.get("task", "?"),
                  dataset=user_attrs.get("data") or user_attrs.get("dataset", "?"),
                  metric=metric, maximize=maximize, budget=", ".join(budget) or "—",
                  counts=counts)
    order = ranked(trials, maximize)
    if order:
        best = order[0]
        out.best_design, out.best_value, out.best_trial = design_label(best), best.values[0], best.number
        baselines = [t for t in order if t.user_attrs.get("baseline")]
        if baselines:
            b = baselines[0]
            out.baseline_design, out.baseline_value = design_label(b), b.values[0]
            out.lift = (best.values[0] - b.values[0]) * (1 if maximize else -1)
    return out


# ------------------------------------------------------------------------------ leaderboard
def leaderboard_info(trials: Sequence[Any], maximize: bool, task: str,
                     test_for_top: int = 5) -> list[dict[str, Any]]:
    """One row per complete trial. Test-split figures are shown for the top designs only."""
    kind = "regression" if task == "regression" else "classification"
    metric_keys = SECONDARY[kind]
    rows = []
    for rank, t in enumerate(ranked(trials, maximize), start=1):
        a = t.user_attrs
        params = {k: v for k, v in t.params.items() if k != "loss"}
        rows.append({
            "rank": rank, "trial": t.number, "family": a.get("family", t.params.get("loss")),
            "design": design_label(t), "params": params, "value": t.values[0],
            "secondary": {k.split(".", 1)[1]: a.get(k) for k in metric_keys},
            "test": None,
            "train_time_s": a.get("train_time_s"), "baseline": bool(a.get("baseline")),
        })
        if rank <= test_for_top:
            rows[-1]["test"] = {k.split(".", 1)[1]: a.get("test." + k.split(".", 1)[1])
                                for k in metric_keys}
    return rows


# ------------------------------------------------------------------------------ by family
def family_values(trials: Sequence[Any]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for t in _complete(trials):
        out.setdefault(t.user_attrs.get("family", t.params.get("loss", "?")), []).append(t.values[0])
    return out


def params_present(trials: Sequence[Any], names: Sequence[str]) -> int:
    """How many complete trials have every one of ``names`` as a searched parameter."""
    return sum(1 for t in _complete(trials) if all(n in t.params for n in names))


# ------------------------------------------------------------------------------ top designs
def schedules_info(trials: Sequence[Any], maximize: bool, top: int = 5) -> list[dict[str, Any]]:
    """Curriculum factor per epoch for the top designs that use a schedule."""
    out = []
    for t in ranked(trials, maximize):
        desc = json.loads(t.user_attrs.get("loss", "{}"))
        params = desc.get("params", {})
        if desc.get("family") != "dynamic" or not params.get("w_curriculum"):
            continue
        sched = Schedule.from_dict(params.get("schedule"))
        epochs = int(params.get("epochs", 10))
        out.append({"trial": t.number, "label": f"#{t.number} {sched.describe()}",
                    "values": [params["w_curriculum"] * v for v in sched.values(epochs)]})
        if len(out) == top:
            break
    return out


def curves_info(trials: Sequence[Any], maximize: bool, metric: str,
                top: int = 5) -> dict[str, list[dict[str, Any]]]:
    """Per-epoch validation metric of the top designs, and DynamicLoss component curves."""
    val, components = [], []
    for t in ranked(trials, maximize)[:top]:
        curve = t.user_attrs.get(f"curve.val_{metric}")
        if curve:
            val.append({"trial": t.number, "label": f"#{t.number} {design_label(t)[:40]}",
                        "values": curve})
        for c in ("standard", "progress", "balance", "curriculum"):
            values = t.user_attrs.get(f"curve.loss_{c}")
            if values and any(v for v in values if v is not None):
                components.append({"trial": t.number, "component": c,
                                   "label": f"#{t.number} {c}", "values": values})
    return {"val": val, "components": components}


def recall_info(trials: Sequence[Any], maximize: bool,
                class_names: Sequence[str] | None) -> dict[str, Any] | None:
    """Per-class validation recall of the best design against the best baseline."""
    order = ranked(trials, maximize)
    if not order or "val.recall_per_class" not in order[0].user_attrs:
        return None
    best = order[0]
    baseline = next((t for t in order if t.user_attrs.get("baseline")), None)
    recall = best.user_attrs["val.recall_per_class"]
    names = list(class_names or [str(i) for i in range(len(recall))])
    out = {"classes": names, "best": recall, "best_label": f"best: {design_label(best)}"}
    if baseline is not None and baseline.number != best.number:
        out["baseline"] = baseline.user_attrs.get("val.recall_per_class")
        out["baseline_label"] = f"baseline: {design_label(baseline)}"
    return out


def residuals_info(trials: Sequence[Any], maximize: bool,
                   targets: Sequence[float] | None) -> dict[str, Any] | None:
    """Validation residuals (prediction − target) of the best regression design."""
    order = ranked(trials, maximize)
    if not order or not targets or "val.pred" not in order[0].user_attrs:
        return None
    pred = order[0].user_attrs["val.pred"]
    n = min(len(pred), len(targets))
    return {"target": list(targets[:n]), "residual": [p - y for p, y in zip(pred[:n], targets[:n])],
            "label": design_label(order[0])}


# ------------------------------------------------------------------------------ confirmation
@dataclass
class Confirmed:
    design: str
    family: str
    baseline: bool
    n: int
    mean: float
    ci_low: float
    ci_high: float
    values: list[float]
    test_mean: float | None
    by_seed: dict[int, float] = field(default_factory=dict, repr=False)
    p_value: float | None = None
    beats_baseline: bool = False


def _mean_ci(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % confidence interval (Student's t), NaN-free for n = 1."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def confirm_info(trials: Sequence[Any], maximize: bool, metric: str,
                 alpha: float = 0.05) -> list[Confirmed]:
    """Group confirmation runs by design, rank by mean, and test each against the best baseline.

    The test is a paired t-test across seeds: the design and the baseline were trained on the
    same data split and with the same seed index, so each seed is one pair.
    """
    from scipy import stats

    groups: dict[str, dict[str, Any]] = {}
    for t in _complete(trials):
        key = t.user_attrs.get("design_key")
        if key is None:
            continue
        g = groups.setdefault(key, {"design": design_label(t), "family": t.user_attrs.get("family"),
                                    "baseline": bool(t.user_attrs.get("baseline")),
                                    "by_seed": {}, "test": []})
        g["by_seed"][t.user_attrs.get("seed_index")] = t.values[0]
        test = t.user_attrs.get(f"test.{metric}")
        if test is not None:
            g["test"].append(test)
    rows = []
    for g in groups.values():
        values = [g["by_seed"][k] for k in sorted(g["by_seed"])]
        mean, lo, hi = _mean_ci(values)
        rows.append(Confirmed(design=g["design"], family=g["family"], baseline=g["baseline"],
                              n=len(values), mean=mean, ci_low=lo, ci_high=hi, values=values,
                              test_mean=sum(g["test"]) / len(g["test"]) if g["test"] else None,
                              by_seed=g["by_seed"]))
    rows.sort(key=lambda r: r.mean, reverse=maximize)
    baselines = [r for r in rows if r.baseline]
    if baselines:
        ref = baselines[0]  # the best baseline (rows are sorted)
        for r in rows:
            if r is ref:
                continue
            seeds = sorted(set(r.by_seed) & set(ref.by_seed))
            if len(seeds) < 2:
                continue
            a = [r.by_seed[s] for s in seeds]
            b = [ref.by_seed[s] for s in seeds]
            diffs = [x - y for x, y in zip(a, b)]
            if all(d == diffs[0] for d in diffs):  # zero variance: the t-test is undefined
                r.p_value = 0.0 if diffs[0] != 0 else 1.0
            else:
                r.p_value = float(stats.ttest_rel(a, b).pvalue)
            better = (r.mean > ref.mean) if maximize else (r.mean < ref.mean)
            r.beats_baseline = better and r.p_value < alpha
    return rows
