"""Trial records, designs over seeds, the ranking and the verdict.

This is the one module that reads what trials store. A *run* is one training of one design on
one seed; a search trial is the run of its design on seed 0, and replicate runs (racing,
``losstune confirm``) live in the companion study ``<study>:runs``. Runs of the same design are
grouped by ``design_key``; runs of different designs on the same seed index share the data
split, the initialisation and the batch order, so designs compare seed by seed (paired).

The verdict is computed here once and shown everywhere (terminal, ``show -f json``, the HTML
report, the dashboard note, ``export``). It compares the winner with **each** baseline: a paired
t-test across common seeds (``scipy.stats.ttest_rel``), Holm's adjustment across those
comparisons, and the direction of the metric. A single-seed difference is never called better.

No Keras, no Optuna import: records are built from any object with Optuna's ``FrozenTrial``
attributes (``number``, ``state``, ``values``, ``params``, ``user_attrs``).

Layer: domain.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from losstune import catalog
from losstune.stopping import INTERRUPTED

RUNS_SUFFIX = ":runs"  # the companion study that holds replicate runs
ALPHA = 0.05
# Seed indices from FRESH_SEEDS on are *fresh* seeds: after racing has picked its winner, the
# winner and the baselines train on them, and the verdict's tests use them alone, so the winner
# is never tested on the seeds that picked it (the winner's curse). Indices below are the search
# and racing seeds, on which designs are ranked. Racing never reaches this index
# (RacingSpec.max_seeds <= 100).
FRESH_SEEDS = 100


def is_fresh(seed_index: int) -> bool:
    """A seed index reserved for the verdict's test (never used to pick a design)."""
    return seed_index >= FRESH_SEEDS

# ---------------------------------------------------------------- stored-record keys (user attrs)
FAMILY = "family"
LOSS = "loss"                  # the loss description, JSON
WORDS = "loss_words"
BASELINE = "baseline"          # a baseline's label; absent for searched designs
BASELINE_PARAMS = "baseline_params"
DESIGN_KEY = "design_key"
SEED_INDEX = "seed_index"
SOURCE_TRIAL = "source_trial"  # the search trial a replicate run repeats
DUPLICATE_OF = "duplicate_of"  # a re-sampled design: not trained again on a seed it has
ERROR = "error"
TRAIN_TIME = "train_time_s"
PARENT = "parent"              # on the companion study: the search study's name
PID = "pid"                    # the process that ran the trial (local workers' fault recovery)

DEVICE = "device"
BACKEND = "backend"
COMPILED = "compiled"            # "new", or "reused": a compiled model kept from a trial before
POPULATION = "population"        # how many trials trained together in one model (1: alone)
MEMBER = "population_member"     # this trial's index in that population
POPULATION_NOTE = "population_note"  # why a study's trials train alone where it asked otherwise
AUDIT = "audit"
AUDIT_WARNINGS = "audit_warnings"
EPOCH_TIME = "epoch_time_s"
EPOCHS_TRAINED = "epochs_trained"
PRUNED_AT = "pruned_at_epoch"
VAL = "val."                     # + metric: the validation split's figures
TEST = "test."                   # + metric: the test split's (reported, never searched on)
CURVE = "curve."                 # + "val_<metric>", "loss", "loss_<component>": per epoch


def val_curve(metric: str) -> str:
    """The key of a trial's per-epoch curve of a validation metric."""
    return f"{CURVE}val_{metric}"


RECALL = "val.recall_per_class"
# multilabel: F1 of each label at 0.5, and its average precision (metrics.multilabel's names)
F1_PER_LABEL_NAME, AP_PER_LABEL_NAME = "f1_per_label", "ap_per_label"
F1_PER_LABEL, AP_PER_LABEL = VAL + F1_PER_LABEL_NAME, VAL + AP_PER_LABEL_NAME
COMPONENT = "loss_"  # + a loss's component: its logged mean per epoch (curve.loss_kl, ...)
PROJECTION = "val.projection"   # embedding: 2-D PCA of validation embeddings, [[x...], [y...]]
RECONSTRUCTIONS = "val.reconstructions"  # autoencoder: the first validation inputs rebuilt
PREDICTIONS = "val.pred"         # regression, count: validation predictions (original units)
GENERATED = "val.generated"      # gan: the first generated samples, in [0, 1]
STYLIZED = "val.stylized"        # style transfer: the result, a small PNG (data URI)
STYLE_IMAGES = "style_images"    # style transfer: the content and style images (data URIs)

# Study-level user attributes.
OBJECTIVE = "objective"          # the metric names
TASK = "task"
DATASET = "dataset"
SPEC = "spec"                    # the study file, validated (storage URL masked)
BASE_DIR = "base_dir"            # where relative data paths and factories are found
DATA = "data"                    # the data in words
CLASS_NAMES = "class_names"
CLASS_COUNTS = "class_counts"    # gan: training samples per class (its coverage figure)
SHOWN_INPUTS = "val_inputs_shown"  # autoencoder: the validation inputs reconstructed
IMAGE_SHAPE = "image_shape"        # autoencoder: how to draw an input (8 x 8 digits)
VAL_TARGETS = "val_targets"      # regression, count: validation targets; embedding: classes
VERSION = "losstune_version"
ASKED = "new_designs_asked"      # the new designs each run of the study asked for, in order


def metrics_of(study_attrs: dict[str, Any]) -> list[str]:
    """The study's objective names (``objective`` when unknown)."""
    return list(study_attrs.get(OBJECTIVE) or ["objective"])


def words_of(trial: Any) -> str:
    """A trial's design in words."""
    return trial.user_attrs.get(WORDS) or trial.params.get("loss", "?")


def family_of(trial: Any) -> str:
    return trial.user_attrs.get(FAMILY) or trial.params.get("loss", "?")


def is_repeat(trial: Any) -> bool:
    """A proposal of a design already trained on its seed: nothing was trained."""
    return DUPLICATE_OF in trial.user_attrs


# Parameters of a loss description fitted to the study's data, not part of the design.
FITTED = catalog.FITTED
MODEL_TERMS = catalog.MODEL_TERMS


def design_key(description: dict[str, Any], training: dict[str, Any] | None = None) -> str:
    """The identity of a design: its family and parameters (exact values), plus the searched
    training settings. Built from the loss description, so a sampled design equal to a baseline
    (say plain cross-entropy) is recognised as the same design."""
    params = {k: v for k, v in description.get("params", {}).items() if k not in FITTED}
    if isinstance(params.get("base_params"), dict):
        params["base_params"] = dict(params["base_params"])
    params.update({f"training.{k}": v for k, v in (training or {}).items()})
    for group in MODEL_TERMS:  # penalties, input noise: part of the design
        params.update({f"{group}.{k}": v for k, v in (description.get(group) or {}).items()})
    return description.get("family", "?") + json.dumps(params, sort_keys=True,
                                                       separators=(",", ":"))


def training_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("training.")}


# ------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class RunRecord:
    """One finished training of a design on a seed, as stored."""

    number: int
    replicate: bool  # True: a run in the companion study; False: a search trial
    state: str       # complete | pruned | fail | running | waiting
    values: tuple[float, ...]
    design_key: str
    seed_index: int
    family: str
    words: str
    description: dict[str, Any]
    params: dict[str, Any]
    baseline: str | None
    duplicate_of: int | None
    train_time_s: float | None
    user_attrs: dict[str, Any] = field(repr=False, compare=False)

    @property
    def value(self) -> float | None:
        return self.values[0] if self.values else None

    @property
    def trained(self) -> bool:
        return self.state == "complete" and self.duplicate_of is None and bool(self.values)

    @classmethod
    def from_trial(cls, trial: Any, *, replicate: bool = False) -> "RunRecord":
        a = trial.user_attrs
        description = json.loads(a[LOSS]) if a.get(LOSS) else {
            "family": trial.params.get("loss", "?"), "params": {}}
        key = a.get(DESIGN_KEY) or design_key(description, training_params(trial.params))
        return cls(number=trial.number, replicate=replicate, state=trial.state.name.lower(),
                   values=tuple(trial.values or ()), design_key=key,
                   seed_index=int(a.get(SEED_INDEX, 0)),
                   family=a.get(FAMILY, description.get("family", "?")),
                   words=a.get(WORDS) or trial.params.get("loss", "?"),
                   description=description, params=dict(trial.params),
                   baseline=a.get(BASELINE), duplicate_of=a.get(DUPLICATE_OF),
                   train_time_s=a.get(TRAIN_TIME), user_attrs=dict(a))


def records(search_trials: Iterable[Any], replicate_trials: Iterable[Any] = ()) -> list[RunRecord]:
    return ([RunRecord.from_trial(t) for t in search_trials]
            + [RunRecord.from_trial(t, replicate=True) for t in replicate_trials])


@dataclass(frozen=True)
class Tally:
    """What a study did, counted once for every view (terminal, report, JSON, dashboard).

    A *training* is one design trained on one seed: a search trial that trained, or a replicate
    run (racing, the fresh-seed test, ``confirm``). A *repeat* is a search trial that proposed
    a design already trained on its seed: it trained nothing and carries that training's
    score. Interrupted trainings (Ctrl-C, SIGTERM) count in none of the others."""

    designs: int      # distinct designs with at least one training
    trainings: int    # finished trainings, pruned and failed ones included
    fresh: int        # of them, on the verdict's fresh seeds
    pruned: int
    failed: int
    interrupted: int
    repeats: int
    running: int

    def words(self) -> str:
        s = lambda n, word: f"{n} {word}{'' if n == 1 else 's'}"  # noqa: E731
        detail = [f"{self.fresh} on fresh seeds" if self.fresh else "",
                  f"{self.pruned} pruned" if self.pruned else "",
                  f"{self.failed} failed" if self.failed else "",
                  f"{self.interrupted} interrupted" if self.interrupted else "",
                  f"{self.running} running" if self.running else ""]
        detail = [d for d in detail if d]
        text = f"{s(self.designs, 'design')}, {s(self.trainings, 'training')}"
        text += f" ({', '.join(detail)})" if detail else ""
        if self.repeats:
            text += f"; {s(self.repeats, 'repeat proposal')} not trained again"
        return text

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def tally(runs: Iterable[RunRecord]) -> Tally:
    designs_seen: set[str] = set()
    n = dict(trainings=0, fresh=0, pruned=0, failed=0, interrupted=0, repeats=0, running=0)
    for r in runs:
        if r.duplicate_of is not None:
            n["repeats"] += 1
        elif r.state in ("running", "waiting"):
            n["running"] += r.state == "running"
        elif r.state == "fail" and r.user_attrs.get(ERROR) == INTERRUPTED:
            n["interrupted"] += 1
        else:
            n["trainings"] += 1
            n["fresh"] += is_fresh(r.seed_index)
            n["pruned"] += r.state == "pruned"
            n["failed"] += r.state == "fail"
            designs_seen.add(r.design_key)
    return Tally(designs=len(designs_seen), **n)


def exported_design(description: dict[str, Any]) -> dict[str, Any]:
    """A loss description without what was fitted to the study's data (``export`` writes the
    design; ``load_loss`` takes the data-fitted values separately)."""
    design = {"family": description.get("family"),
              "params": {k: v for k, v in description.get("params", {}).items()
                         if k not in FITTED}}
    for group in MODEL_TERMS:
        if description.get(group):
            design[group] = dict(description[group])
    return design


# ------------------------------------------------------------------------------------ designs
def mean_ci(values: Sequence[float]) -> tuple[float, tuple[float, float] | None]:
    """Mean and 95 % Student-t interval (None with one value: there is no interval)."""
    from scipy import stats

    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None
    sem = stats.sem(values)
    if sem == 0:
        return mean, (mean, mean)
    low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=sem)
    return mean, (float(low), float(high))


@dataclass
class Design:
    """A design and its runs over seeds."""

    key: str
    family: str
    words: str
    description: dict[str, Any]
    params: dict[str, Any]          # Optuna params of one of its runs (to enqueue more runs)
    baseline: str | None
    by_seed: dict[int, float]       # search and racing seeds: what the ranking reads
    trials: list[int]               # search trials that proposed it
    test: dict[int, float] = field(default_factory=dict)
    run_attrs: dict[str, Any] = field(default_factory=dict)  # what a new run of it starts with
    failed: set[int] = field(default_factory=set)  # seeds whose run failed (never completed)
    fresh: dict[int, float] = field(default_factory=dict)  # fresh seeds: the verdict's test

    @property
    def n(self) -> int:
        return len(self.by_seed)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.by_seed)

    @property
    def mean(self) -> float:
        # Not mean_ci's: the ranking reads this for every design at every racing decision,
        # and the interval (scipy.stats.t) is not needed there.
        return math.fsum(self.by_seed.values()) / len(self.by_seed)

    @property
    def ci(self) -> tuple[float, float] | None:
        return mean_ci([self.by_seed[s] for s in self.seeds])[1]

    @property
    def fresh_mean(self) -> float | None:
        """The mean over the fresh seeds (the verdict's test), None without any."""
        return math.fsum(self.fresh.values()) / len(self.fresh) if self.fresh else None

    @property
    def test_mean(self) -> float | None:
        return math.fsum(self.test.values()) / len(self.test) if self.test else None


def designs(runs: Iterable[RunRecord], metric: str | None = None) -> dict[str, Design]:
    """Group trained runs by design. A seed trained twice (a retried run) counts once, first."""
    out: dict[str, Design] = {}

    def design_of(r: RunRecord) -> Design:
        # Not setdefault(key, _design(r)): that builds a Design for every run, and racing
        # reads the designs at every round.
        if r.design_key not in out:
            out[r.design_key] = _design(r)
        return out[r.design_key]

    for r in sorted(runs, key=lambda r: (r.replicate, r.number)):
        if r.state == "complete" and r.values and not r.replicate:
            d = design_of(r)
            if r.number not in d.trials:
                d.trials.append(r.number)
            d.baseline = d.baseline or r.baseline
        if r.state == "fail" and r.user_attrs.get(ERROR) != INTERRUPTED:
            design_of(r).failed.add(r.seed_index)
        if not r.trained:
            continue
        d = design_of(r)
        d.baseline = d.baseline or r.baseline
        if is_fresh(r.seed_index):
            d.fresh.setdefault(r.seed_index, r.value)
        elif r.seed_index not in d.by_seed:
            d.by_seed[r.seed_index] = r.value
            test = r.user_attrs.get(TEST + metric) if metric else None
            if test is not None:
                d.test[r.seed_index] = test
    for d in out.values():
        d.failed -= set(d.by_seed) | set(d.fresh)  # a retry that completed
    return {k: d for k, d in out.items() if d.by_seed}


def _design(r: RunRecord) -> Design:
    attrs = {k: r.user_attrs[k] for k in (BASELINE, BASELINE_PARAMS) if k in r.user_attrs}
    return Design(key=r.design_key, family=r.family, words=r.words, description=r.description,
                  params=dict(r.params), baseline=r.baseline, by_seed={}, trials=[],
                  run_attrs=attrs)


def rank(found: Iterable[Design], maximize: bool) -> list[Design]:
    """Designs with more seeds first, then by mean (in the metric's direction).

    Racing gives more seeds only to designs that stay close to the best, so "more seeds, then
    the better mean" is SMAC's incumbent rule; a lucky single-seed design never outranks a
    design that held its place over several seeds.
    """
    sign = -1 if maximize else 1
    return sorted(found, key=lambda d: (-d.n, sign * d.mean, d.key))


# ------------------------------------------------------------------------------------ statistics
def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order.

    Written here because scipy.stats has no Holm step-down (only Benjamini–Hochberg, which
    controls another error rate) and statsmodels would be a large dependency for ten lines.
    Sort ascending, multiply the i-th smallest by (m − i), enforce monotonicity, cap at 1.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank_i, i in enumerate(order):
        running = max(running, min(1.0, (m - rank_i) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass
class Comparison:
    """The winner against one baseline, on the seeds both have: the fresh seeds when they have
    any in common (the winner was not picked on them), else the seeds that picked it."""

    baseline: str                      # the baseline's words
    baseline_key: str
    baseline_design: dict[str, Any]
    seeds: int                         # paired seeds
    diff: float | None                 # winner − baseline, metric units; None: no common seed
    ci: tuple[float, float] | None     # 95 % paired-t interval of diff
    p: float | None                    # two-sided paired test; None with < 2 pairs
    p_adjusted: float | None = None    # Holm across the comparisons made
    significant: bool = False          # p_adjusted < alpha, in either direction
    better: bool = False               # diff in the metric's better direction
    test: str = "paired t-test"        # or "sign test" when every difference is the same
    fresh: bool = False                # tested on fresh seeds, not on those that picked the winner
    seed_indices: tuple[int, ...] = ()  # the paired seeds' indices
    between_baselines: bool = False    # the winner is a baseline too: no finding about a design

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "baseline_design": self.baseline_design,
                "seeds": self.seeds, "seed_indices": list(self.seed_indices),
                "fresh_seeds": self.fresh, "diff": self.diff,
                "ci": list(self.ci) if self.ci else None, "p": self.p,
                "p_adjusted": self.p_adjusted, "significant": self.significant,
                "test": self.test, "direction": self.direction,
                "between_baselines": self.between_baselines, "outcome": self.outcome}

    @property
    def direction(self) -> str:
        if not self.diff:
            return "equal" if self.diff == 0 else "not compared"
        return "better" if self.better else "worse"

    @property
    def outcome(self) -> str:
        """The comparison in words, the same in every view (report, dashboard, terminal)."""
        if self.p is None:
            return ("not compared (no common seed)" if self.diff is None
                    else "not tested (fewer than 2 paired seeds)")
        said = f"significant, {self.direction}" if self.significant else "not significant"
        if self.test != "paired t-test":
            said += f" ({self.test}: the same difference on every seed)"
        if self.between_baselines:
            said = "baseline vs baseline: " + said
        return said


def compare(winner: Design, baseline: Design, maximize: bool) -> Comparison:
    """Paired comparison on common seeds: ``scipy.stats.ttest_rel`` and its interval. On the
    fresh seeds when the winner has any (then on those alone, for every baseline: one Holm
    family never mixes them with the seeds that picked the winner); else on the racing seeds (a
    study raced without fresh seeds, or from before they existed)."""
    from scipy import stats

    fresh = bool(winner.fresh)
    a_runs, b_runs = (winner.fresh, baseline.fresh) if fresh else (winner.by_seed,
                                                                   baseline.by_seed)
    common = sorted(set(a_runs) & set(b_runs))
    a = [a_runs[s] for s in common]
    b = [b_runs[s] for s in common]
    diffs = [x - y for x, y in zip(a, b)]
    diff = math.fsum(diffs) / len(diffs) if diffs else None
    p, ci, test = None, None, "paired t-test"
    if len(common) >= 2:
        if all(d == diffs[0] for d in diffs):
            # Every seed gave the same difference (accuracy on a small split moves in steps):
            # the t statistic is undefined. The exact sign test still says how often that
            # happens by chance: 2 seeds can never be significant (p = 0.5), 5 give 0.0625.
            test = "sign test"
            p = 1.0 if diffs[0] == 0 else float(
                stats.binomtest(len(diffs), len(diffs), 0.5).pvalue)
            ci = (diff, diff)
        else:
            res = stats.ttest_rel(a, b)
            p = float(res.pvalue)
            low, high = res.confidence_interval(0.95)
            ci = (float(low), float(high))
    better = diff is not None and ((diff > 0) if maximize else (diff < 0))
    return Comparison(baseline=baseline.words, baseline_key=baseline.key,
                      baseline_design=exported_design(baseline.description),
                      seeds=len(common), diff=diff, ci=ci, p=p, better=better, test=test,
                      fresh=fresh, seed_indices=tuple(common),
                      between_baselines=winner.baseline is not None)


# ------------------------------------------------------------------------------------ verdict
@dataclass
class Verdict:
    """What a careful reader may conclude from a study, in one place."""

    study: str
    metric: str
    maximize: bool
    winner: Design | None
    comparisons: list[Comparison]
    ranking: list[Design]
    alpha: float = ALPHA
    notes: list[str] = field(default_factory=list)  # what the runs behind it did not do
    tally: Tally | None = None                      # what the study did (designs, trainings)

    @property
    def direction(self) -> str:
        return "maximize" if self.maximize else "minimize"

    @property
    def significant(self) -> bool:
        """A searched design (not a baseline) wins and beats at least one baseline
        significantly (Holm-adjusted). A baseline beating another baseline is reported in the
        comparisons and the sentence, but is no finding about the searched designs."""
        return (self.winner is not None and self.winner.baseline is None
                and any(c.significant and c.better for c in self.comparisons))

    @property
    def picked_on(self) -> list[int]:
        """The seed indices the winner was picked on (search and racing)."""
        return self.winner.seeds if self.winner is not None else []

    @property
    def tested_on(self) -> list[int]:
        """The seed indices the comparisons were tested on (fresh ones, when there are)."""
        return sorted({s for c in self.comparisons if c.p is not None for s in c.seed_indices})

    @property
    def fresh_test(self) -> bool:
        """Every tested comparison used fresh seeds: the winner was not tested on the seeds
        that picked it."""
        tested = [c for c in self.comparisons if c.p is not None]
        return bool(tested) and all(c.fresh for c in tested)

    @property
    def sentence(self) -> str:
        return _sentence(self)

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        """The documented JSON form (README: "Machine-readable output")."""
        w = self.winner
        winner = None if w is None else {
            "words": w.words, "design": exported_design(w.description), "key": w.key,
            "mean": w.mean, "ci": list(w.ci) if w.ci else None, "seeds": w.n,
            "fresh_mean": w.fresh_mean, "fresh_seeds": len(w.fresh),
            "baseline": w.baseline is not None, "trials": w.trials}
        return {"study": self.study, "metric": self.metric, "direction": self.direction,
                "counts": self.tally.to_dict() if self.tally else None,
                "verdict": {"significant": self.significant, "sentence": self.sentence,
                            "alpha": self.alpha, "correction": "holm",
                            "test": "paired t-test across seeds (scipy.stats.ttest_rel)",
                            "picked_on_seeds": self.picked_on,
                            "tested_on_seeds": self.tested_on,
                            "fresh_test": self.fresh_test,
                            "winner": winner,
                            "comparisons": [c.to_dict() for c in self.comparisons],
                            "notes": list(self.notes)},
                "leaderboard": [design_row(d, i, self) for i, d in
                                enumerate(self.ranking[:top] if top else self.ranking, 1)]}


def design_row(d: Design, rank_: int, verdict: Verdict) -> dict[str, Any]:
    return {"rank": rank_, "design": d.words, "family": d.family, "key": d.key,
            "baseline": d.baseline is not None, "seeds": d.n, "mean": d.mean,
            "ci": list(d.ci) if d.ci else None, "fresh_seeds": len(d.fresh),
            "fresh_mean": d.fresh_mean, "test_mean": d.test_mean,
            "trials": d.trials, "failed_seeds": sorted(d.failed),
            "winner": verdict.winner is not None and d.key == verdict.winner.key,
            "loss": exported_design(d.description)}


def verdict(study_name: str, metric: str, maximize: bool, runs: Iterable[RunRecord],
            alpha: float = ALPHA) -> Verdict:
    """Rank the designs on the search and racing seeds, and test the winner against each
    baseline (on fresh seeds where it has them; Holm across the baselines)."""
    runs = list(runs)
    found = designs(runs, metric)
    ranking = rank(found.values(), maximize)
    winner = ranking[0] if ranking else None
    comparisons: list[Comparison] = []
    if winner is not None:
        baselines = [d for d in ranking if d.baseline is not None and d.key != winner.key]
        comparisons = [compare(winner, b, maximize) for b in baselines]
        tested = [c for c in comparisons if c.p is not None]
        for c, p_adj in zip(tested, holm([c.p for c in tested])):
            c.p_adjusted = p_adj
            c.significant = p_adj < alpha
    notes = [f"{d.words}: the run{'s' if len(d.failed) > 1 else ''} on seed"
             f"{'s' if len(d.failed) > 1 else ''} {', '.join(map(str, sorted(d.failed)))} "
             f"failed; its mean leaves {'them' if len(d.failed) > 1 else 'it'} out"
             for d in ranking if d.failed]
    if any(c.p is not None and not c.fresh for c in comparisons):
        notes.append("the winner was tested on the seeds that picked it, so its p-values are "
                     "optimistic (the winner's curse); `losstune confirm` adds fresh seeds")
    elif winner is not None and winner.n >= 2 and any(c.p is None for c in comparisons):
        notes.append("the winner is not tested against every baseline (fewer than 2 paired "
                     "seeds: the search stopped before its test, or runs failed); run the same "
                     "`losstune search` again, or `losstune confirm`, to add them")
    return Verdict(study_name, metric, maximize, winner, comparisons, ranking, alpha,
                   notes=notes, tally=tally(runs))


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"


def _p(c: Comparison) -> str:
    if c.p_adjusted is None:
        return "not tested, 1 seed"
    seeds = f"{c.seeds} fresh seeds" if c.fresh else f"{c.seeds} seeds that also picked it"
    return f"p_adj = {c.p_adjusted:.3g}, {seeds}"


def _against(cs: Sequence[Comparison], m: str) -> list[str]:
    """The comparisons in words: significant wins, significant losses, the rest."""
    parts = []
    wins = [c for c in cs if c.significant and c.better]
    if wins:
        parts.append("better than " + ", ".join(
            f"{c.baseline} by {c.diff:+.3f} {m} [{fmt(c.ci[0])}, {fmt(c.ci[1])}] ({_p(c)})"
            for c in wins))
    worse = [c for c in cs if c.significant and not c.better]
    if worse:
        parts.append("worse than " + ", ".join(f"{c.baseline} by {c.diff:+.3f} {m} ({_p(c)})"
                                                for c in worse))
    others = [c for c in cs if not c.significant]
    if others:
        parts.append("not significantly different from " + ", ".join(
            f"{c.baseline} ({_p(c)})" for c in others))
    return parts


def _sentence(v: Verdict) -> str:
    w = v.winner
    if w is None:
        return "no complete run yet: nothing to conclude"
    m = v.metric
    seeds = f"{w.n} seed{'s' if w.n != 1 else ''}"
    compared = [c for c in v.comparisons if c.diff is not None]
    if w.baseline is not None:
        # A baseline beating another baseline is no finding about the searched designs, but
        # it is a finding: say what the tests against the other baselines found.
        head = (f"no searched design is significantly better than the baselines; the best is "
                f"the baseline {w.words} ({m} {fmt(w.mean, 4)}, {seeds})")
        tested = [c for c in compared if c.p is not None]
        if tested:
            head += "; against the other baselines it is " + "; ".join(_against(tested, m))
        elif w.n < 2:
            head += "; single-seed: add seeds with racing or `losstune confirm`"
        return head
    if not compared:
        return (f"{w.words} has the best mean {m} ({fmt(w.mean, 4)}, {seeds}); there is no "
                "baseline run on the same seeds to compare it with")
    if not any(c.significant and c.better for c in compared):
        best = min(compared, key=lambda c: (c.p_adjusted is None,
                                            1.0 if c.p_adjusted is None else c.p_adjusted,
                                            -abs(c.diff)))
        head = (f"no design is significantly better than the baselines (best: {w.words}, "
                f"{best.diff:+.3f} {m} vs {best.baseline}, {_p(best)})")
        worse = [c for c in compared if c.significant and not c.better]
        if worse:  # a significant loss is said as such, not hidden in "no design is better"
            head += f"; {w.words} is " + _against(worse, m)[0]
        if w.n < 2 and not best.fresh:
            head += "; single-seed: add seeds with racing or `losstune confirm`"
        return head
    return f"{w.words} is " + "; ".join(_against(compared, m))
