"""Racing over seeds: which (design, seed) runs come next.

The idea is SMAC3's intensification and irace's racing, for a noisy objective. Racing picks the
winner; the verdict then tests it on seeds racing never used:

* a *run* is (design, seed index). Seed index ``i`` fixes the data split, the initialisation and
  the batch order for every design (:func:`seed_for`), so designs compare seed by seed;
* a new design runs on seed 0 (its search trial);
* the incumbent is the design with the most seeds and, among those, the best mean
  (:func:`losstune.results.rank`); it gets a second seed first;
* a challenger that comes within the run noise of the incumbent, or beats it, runs on the
  incumbent's seeds in the same order, until a paired t-test separates the two (p < alpha) or
  both reach ``max_seeds``; the incumbent gains seeds one at a time while they stay tied.
  A challenger clearly worse than the noise allows is rejected, most often after one seed.
  The noise is the design x seed residual (:func:`noise_sd`): pairing cancels the seed effect;
* baselines are raced as challengers too. After the race, the winner and every baseline train
  on fresh seeds (:meth:`Racer.test`, seed indices from ``results.FRESH_SEEDS``) and the
  verdict's tests use those alone, so the winner is not tested on the seeds that picked it.
  Without fresh seeds (``test_seeds = 0``) the baselines follow the incumbent's racing seeds
  instead (:meth:`Racer.follow_baselines`), so that the verdict has paired runs.

:class:`Racer` decides; whatever trains the runs is handed a list of :class:`Run` (a population
of runs in one compiled step where the executor can) and the racer reads the results back from
the storage, so any executor that records runs the way a trial does can take over.

Layer: domain.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from losstune import results

SEED_STRIDE = 1000


def seed_for(study_seed: int, index: int) -> int:
    """The seed of seed index ``index``: 0 is the study's own seed (the search trials)."""
    return study_seed + SEED_STRIDE * index


@dataclass(frozen=True)
class Run:
    """A request to train ``design_key`` on ``seed_index``: the Optuna params to enqueue and the
    user attributes the run starts with."""

    design_key: str
    seed_index: int
    params: dict[str, Any]
    user_attrs: dict[str, Any]
    why: str = ""


def run_of(design: results.Design, seed_index: int, why: str) -> Run:
    attrs = {results.DESIGN_KEY: design.key, results.SEED_INDEX: seed_index,
             results.SOURCE_TRIAL: design.trials[0] if design.trials else None, **design.run_attrs}
    return Run(design.key, seed_index, dict(design.params), attrs, why)


class StepKind(enum.StrEnum):
    """What a race does next (a string: ``"accept"`` compares equal to ``StepKind.ACCEPT``)."""

    CHALLENGER = "challenger"  # train the challenger on a seed
    INCUMBENT = "incumbent"    # train the incumbent on a seed
    ACCEPT = "accept"          # stop: the challenger is better
    REJECT = "reject"          # stop: it is not


@dataclass(frozen=True)
class Step:
    """The next thing a race needs: train the challenger or the incumbent on a seed, or stop."""

    kind: StepKind
    seed_index: int | None = None
    reason: str = ""


def next_seed(by_seed: dict[int, float], failed: set[int] = frozenset()) -> int:
    """The smallest seed index the design has neither run nor failed on."""
    return next(i for i in range(len(by_seed) + len(failed) + 1)
                if i not in by_seed and i not in failed)


@dataclass(frozen=True)
class Noise:
    """One run's noise: its standard deviation, the degrees of freedom it was estimated with,
    and whether it is the paired residual (True) or the raw spread over seeds (False). A paired
    estimate carries the raw one, when there is one, as a cap (:meth:`margin`)."""

    sd: float
    dof: int
    paired: bool = True
    raw: "Noise | None" = None

    def margin(self, band: float, n: int) -> float:
        """How far a challenger's mean paired difference over ``n`` common seeds may trail the
        incumbent before it is rejected: ``band`` standard errors (a difference of two runs
        has variance 2 sd²).

        The paired residual's band is widened to Student's t with its degrees of freedom, so
        that a residual estimated from a handful of runs cannot be small by luck and reject a
        good design (a 1-dof estimate is below a fifth of the truth 16 % of the time). The raw
        spread is not widened: it holds the seed effect too, so it is wide already. While the
        residual has few degrees of freedom its widened band can exceed the raw one, and the
        narrower of the two is used: both are on the safe side."""
        from scipy import special

        quantile = float(special.stdtrit(self.dof, special.ndtr(band))) if self.paired \
            else band
        margin = quantile * self.sd * math.sqrt(2.0 / n)
        return min(margin, self.raw.margin(band, n)) if self.raw is not None else margin


def noise_sd(found: Sequence[results.Design]) -> Noise | None:
    """The run noise that decides "close to the incumbent": the residual standard deviation of
    the two-way layout value = design effect + seed effect + residual, fitted by least squares
    over the designs with >= 2 seeds (search and racing seeds only).

    Designs share seeds (split, initialisation, batch order), so the seed effect cancels in
    every paired difference; a design's raw spread over seeds also holds that seed effect,
    which was 2-8x the run noise on real studies, and as a band it kept nearly every design
    racing to the cap. Until the layout has a residual degree of freedom (only the incumbent
    has a second seed), the pooled raw spread stands in: wider, so a close call gets a seed.

    Written with NumPy's least squares: scipy.stats has no two-way layout with missing cells,
    and statsmodels would be a large dependency for one residual.
    """
    import numpy as np

    rows = [(d.key, s, v) for d in found if d.n >= 2 for s, v in d.by_seed.items()]
    keys = sorted({k for k, _, _ in rows})
    seeds = sorted({s for _, s, _ in rows})
    if len(keys) >= 2:
        x = np.zeros((len(rows), len(keys) + len(seeds)))
        for i, (k, s, _) in enumerate(rows):
            x[i, keys.index(k)] = 1.0
            x[i, len(keys) + seeds.index(s)] = 1.0
        y = np.array([v for _, _, v in rows])
        coef, _, rank_, _ = np.linalg.lstsq(x, y, rcond=None)
        dof = len(rows) - int(rank_)
        if dof > 0:
            return Noise(math.sqrt(float(np.sum((y - x @ coef) ** 2)) / dof), dof,
                         raw=raw_sd(found))
    return raw_sd(found)


def raw_sd(found: Sequence[results.Design]) -> Noise | None:
    """The seed-to-seed standard deviation of one design's runs, pooled over designs with
    >= 2 seeds: the seed effect and the run noise together."""
    ss, dof = 0.0, 0
    for d in found:
        if d.n >= 2:
            values = list(d.by_seed.values())
            mean = math.fsum(values) / len(values)
            ss += math.fsum((v - mean) ** 2 for v in values)
            dof += len(values) - 1
    return Noise(math.sqrt(ss / dof), dof, paired=False) if dof else None


def paired_p(diffs: Sequence[float]) -> float:
    """The two-sided p-value of the paired t-test on these differences: the same number as
    ``scipy.stats.ttest_rel`` (tests/test_racing.py checks it), through scipy's Student-t
    distribution function directly. Racing asks this at every decision, and the calibration
    test simulates thousands of races: ttest_rel's input checks took 3/4 of that time."""
    from scipy import special

    n = len(diffs)
    mean = math.fsum(diffs) / n
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    t = mean / (sd / math.sqrt(n))
    return float(2.0 * special.stdtr(n - 1, -abs(t)))


def decide(challenger: dict[int, float], incumbent: dict[int, float], *, maximize: bool,
           max_seeds: int, alpha: float, noise: Noise | None, band: float = 2.0,
           failed: tuple[set[int], set[int]] = (frozenset(), frozenset())) -> Step:
    """One decision of a race between two designs (their values by seed index). ``noise``:
    one run's noise (:func:`noise_sd`); ``band``: how many standard errors of the paired
    difference a challenger may trail the incumbent and still race. ``failed``: the seeds on
    which the challenger's and the incumbent's runs failed, never asked again."""
    challenger_failed, incumbent_failed = failed
    if len(incumbent) < min(2, max_seeds):
        return Step(StepKind.INCUMBENT, next_seed(incumbent, incumbent_failed),
                    "a second seed measures the noise")
    missing = [s for s in sorted(incumbent) if s not in challenger and s not in challenger_failed]
    common = sorted(set(challenger) & set(incumbent))
    if not common:
        return Step(StepKind.CHALLENGER, missing[0], "no common seed yet")
    sign = 1.0 if maximize else -1.0
    diffs = [sign * (challenger[s] - incumbent[s]) for s in common]
    diff = math.fsum(diffs) / len(diffs)  # > 0: the challenger is better
    if len(common) >= 2 and not all(d == diffs[0] for d in diffs):
        p = paired_p(diffs)
        if p < alpha and diff < 0:
            return Step(StepKind.REJECT, reason=f"worse on {len(common)} seeds (p = {p:.3g})")
        if p < alpha:
            if missing:
                return Step(StepKind.CHALLENGER, missing[0], f"better (p = {p:.3g}); completing the "
                                                      "incumbent's seeds")
            return Step(StepKind.ACCEPT, reason=f"better on {len(common)} seeds (p = {p:.3g})")
    margin = 0.0 if noise is None else noise.margin(band, len(common))
    if diff < -margin:
        return Step(StepKind.REJECT, reason=f"worse by {-diff:.3g}, beyond the run noise "
                                     f"({margin:.3g})")
    if missing:
        return Step(StepKind.CHALLENGER, missing[0], "within the run noise: the incumbent's next seed")
    if len(incumbent) < max_seeds:
        return Step(StepKind.INCUMBENT, next_seed(incumbent, incumbent_failed),
                    "tied: both get another seed")
    return Step(StepKind.ACCEPT if diff > 0 else "reject", reason=f"seed cap ({max_seeds}) reached")


@dataclass
class Racer:
    """Drives races against the stored runs.

    ``load`` returns the current run records (search trials and replicate runs); ``execute``
    trains a list of runs and stores them; both hide Optuna and Keras from the decisions.
    """

    load: Callable[[], list[results.RunRecord]]
    execute: Callable[[list[Run]], None]
    maximize: bool
    max_seeds: int = 5
    alpha: float = results.ALPHA
    band: float = 2.0
    fresh_seeds: int = 0  # > 0: the verdict tests on fresh seeds; baselines need not follow
    log: list[str] = field(default_factory=list)
    _tried: set[tuple[str, int]] = field(default_factory=set)

    def designs(self) -> dict[str, results.Design]:
        return results.designs(self.load())

    def race(self, key: str) -> str:
        """Race design ``key`` against the incumbent until decided; returns the outcome."""
        return self.race_many([key])[key]

    def race_many(self, keys: Sequence[str]) -> dict[str, str]:
        """Race several designs (a population's new designs) at once: in each round every
        undecided design takes its next step against the incumbent of that moment, and the
        round's runs are handed to ``execute`` together (trained as one population where the
        executor can). Returns each design's outcome."""
        outcomes = {key: "incumbent" for key in keys}
        undecided = list(dict.fromkeys(keys))
        for _ in range(4 * self.max_seeds + 4):  # each round trains runs or stops
            if not undecided:
                break
            found = self.designs()
            noise = noise_sd(list(found.values()))
            ranking = results.rank(found.values(), self.maximize)  # once a round, not a design
            runs: dict[tuple[str, int], Run] = {}
            still = []
            for key in undecided:
                step = self._step(key, found, ranking, noise)
                if isinstance(step, str):
                    outcomes[key] = step
                    continue
                target, seed, why = step
                if (target.key, seed) in runs:  # another challenger needs the same run
                    still.append(key)
                elif (target.key, seed) in self._tried:
                    # Tried before and still missing: running elsewhere (another worker) or
                    # lost.
                    outcomes[key] = "pending"
                    self.log.append(f"{target.words}: seed {seed} pending")
                else:
                    self._tried.add((target.key, seed))
                    runs[(target.key, seed)] = run_of(target, seed, why)
                    still.append(key)
            if not runs:
                break
            self.execute(list(runs.values()))
            undecided = still
        if not self.fresh_seeds:
            self.follow_baselines()
        return outcomes

    def _step(self, key: str, found: dict[str, results.Design],
              ranking: list[results.Design], noise: Noise | None
              ) -> "str | tuple[results.Design, int, str]":
        """Design ``key``'s next step: an outcome ("accept", "reject", "incumbent", "no run"),
        or the run to train next (the design to train, its seed index, why)."""
        challenger = found.get(key)
        if challenger is None:
            return "no run"
        others = [d for d in ranking if d.key != key]
        if not others or challenger.n > others[0].n:
            return "incumbent"  # it has more seeds than any other design
        incumbent = others[0]
        step = decide(challenger.by_seed, incumbent.by_seed, maximize=self.maximize,
                      max_seeds=self.max_seeds, alpha=self.alpha, noise=noise, band=self.band,
                      failed=(challenger.failed, incumbent.failed))
        if step.kind in (StepKind.ACCEPT, StepKind.REJECT):
            self.log.append(f"{challenger.words}: {step.kind}ed, {step.reason}")
            return step.kind
        target = challenger if step.kind == StepKind.CHALLENGER else incumbent
        return target, step.seed_index, step.reason

    def follow_baselines(self) -> None:
        """Every baseline gets the incumbent's seeds: the verdict needs paired runs. Each
        pass hands all missing runs to ``execute`` together."""
        for _ in range(self.max_seeds * 64):  # bounded; each pass trains runs or stops
            ranking = results.rank(self.designs().values(), self.maximize)
            if not ranking:
                return
            incumbent = ranking[0]
            todo = [(b, s) for b in ranking if b.baseline is not None and b.key != incumbent.key
                    for s in incumbent.seeds if s not in b.by_seed and s not in b.failed
                    and (b.key, s) not in self._tried]
            if not todo:
                return
            self._train_all([(design, seed, "a baseline follows the incumbent's seeds")
                             for design, seed in todo])

    def test(self, seeds: int | None = None,
             chosen: Sequence[results.Design] | None = None) -> int:
        """Train the winner of the race and every baseline (or the ``chosen`` designs: a
        front's) on fresh seeds (seed indices ``results.FRESH_SEEDS`` ... + seeds - 1), all
        handed to ``execute`` at once: the verdict tests on them alone. Returns runs made (a
        run made before is not made again)."""
        seeds = self.fresh_seeds if seeds is None else seeds
        if chosen is None:
            ranking = results.rank(self.designs().values(), self.maximize)
            chosen = ranking[:1] + [d for d in ranking[1:] if d.baseline is not None]
        if not chosen or seeds < 1:
            return 0
        return self._train_all([(d, results.FRESH_SEEDS + i, "fresh seed: the verdict's test")
                                for i in range(seeds) for d in chosen
                                if results.FRESH_SEEDS + i not in d.fresh])

    def extend(self, chosen: Sequence[results.Design], seeds: int) -> int:
        """Give every chosen design seeds 0..seeds-1 (``losstune confirm``), all runs handed
        to ``execute`` at once; returns runs made."""
        return self._train_all([(design, seed, "confirmation") for seed in range(seeds)
                                for design in chosen if seed not in design.by_seed])

    def _train_all(self, wanted: list[tuple[results.Design, int, str]]) -> int:
        """Train the runs not tried before, in one ``execute``; how many."""
        runs = []
        for design, seed, why in wanted:
            if (design.key, seed) not in self._tried:
                self._tried.add((design.key, seed))
                runs.append(run_of(design, seed, why))
        if runs:
            self.execute(runs)
        return len(runs)
