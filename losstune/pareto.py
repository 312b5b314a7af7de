"""Verdicts for studies with several objectives (macro-F1 x train time, content x style).

With two objectives there is no single winner: the honest answer is the Pareto front of the
designs' *means over seeds*, and the finding a careful reader may sign is narrower than "the
front": which searched designs **dominate a baseline significantly**. A design dominates a
baseline significantly when, on every objective, the paired test over their common seeds
(:func:`losstune.results.compare`: ``scipy.stats.ttest_rel``, or the exact sign test when every
seed gives the same difference) is in the design's favour with a Holm-adjusted p below alpha.
Holm runs across every test the verdict makes: each front design against each baseline on each
objective (the claims it could make, together), which is stricter than correcting per design.
Requiring every objective to be significant is the intersection-union test, so the correction
across objectives only makes it more conservative.

The front is of the designs with 2 or more seeds when some have them (more seeds first, as the
one-objective ranking): a design with one lucky run does not push tested ones off it. The tests
use the fresh seeds where a design has them (racing and ``losstune confirm`` give the front and
the baselines some), else the seeds the front was picked on (optimistic: a note says so).

Layer: domain.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from losstune import results
from losstune.results import ALPHA, Comparison, Design, RunRecord


@dataclass
class Member:
    """One design over seeds: its runs' means per objective (in the metrics' order)."""

    per_objective: list[Design]  # the same design, once per objective

    @property
    def first(self) -> Design:
        return self.per_objective[0]

    @property
    def key(self) -> str:
        return self.first.key

    @property
    def words(self) -> str:
        return self.first.words

    @property
    def baseline(self) -> str | None:
        return self.first.baseline

    @property
    def n(self) -> int:
        return self.first.n

    @property
    def means(self) -> list[float]:
        return [d.mean for d in self.per_objective]


@dataclass
class Dominance:
    """A searched front design against one baseline: one comparison per objective."""

    design: Member
    baseline: Member
    comparisons: list[Comparison]
    alpha: float = ALPHA

    @property
    def dominates(self) -> bool:
        """Significantly better on every objective (Holm-adjusted)."""
        return all(c.better and c.p_adjusted is not None and c.p_adjusted < self.alpha
                   for c in self.comparisons)

    @property
    def tested(self) -> bool:
        return all(c.p is not None for c in self.comparisons)


@dataclass
class ParetoVerdict:
    """What a careful reader may conclude from a study with several objectives."""

    study: str
    metrics: list[str]
    maximize: list[bool]
    front: list[Member]        # non-dominated by mean, best first on the first objective
    others: list[Member]       # the rest, in the same order
    dominance: list[Dominance]
    alpha: float = ALPHA
    notes: list[str] = field(default_factory=list)

    @property
    def significant(self) -> bool:
        """Some searched design dominates some baseline significantly."""
        return any(d.dominates for d in self.dominance)

    @property
    def winners(self) -> list[Member]:
        """The searched designs that dominate at least one baseline significantly."""
        keys = {d.design.key for d in self.dominance if d.dominates}
        return [m for m in self.front if m.key in keys]

    @property
    def sentence(self) -> str:
        return _sentence(self)

    @property
    def ranking(self) -> list[Design]:
        """Every design (front first), as the design of its first objective."""
        return [m.first for m in [*self.front, *self.others]]

    def chosen(self, top: int) -> list[Design]:
        """What racing and ``losstune confirm`` give seeds: every baseline, then ``top``
        searched designs (as designs of the first objective): the front's, spread along it
        (both ends, and evenly between them, by the first objective) when it has more, then
        the others by the first objective (more seeds may move them onto the front)."""
        everyone = [*self.front, *self.others]
        on_front = [m for m in self.front if m.baseline is None]
        if len(on_front) > top:
            step = (len(on_front) - 1) / max(top - 1, 1)
            on_front = [on_front[round(i * step)] for i in range(top)] if top > 1 \
                else on_front[:1]
        rest = [m for m in everyone if m.baseline is None and m not in on_front]
        return ([m.first for m in everyone if m.baseline is not None]
                + [m.first for m in [*on_front, *rest][:top]])

    @property
    def winner(self) -> Design | None:
        """The front's knee (:func:`knee`), as the design of its first objective: what
        ``best_design``, ``best_loss`` and ``export`` give without another pick."""
        chosen = knee(self)
        return chosen.first if chosen is not None else None

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        winners = {m.key for m in self.winners}

        def row(rank: int, m: Member, on_front: bool) -> dict[str, Any]:
            out: dict[str, Any] = {"rank": rank, "design": m.words, "key": m.key,
                                   "baseline": m.baseline, "seeds": m.n, "on_front": on_front,
                                   "dominates_a_baseline": m.key in winners}
            for metric, d in zip(self.metrics, m.per_objective):
                out[metric] = d.mean
                out[f"{metric}_ci"] = list(d.ci) if d.ci else None
            out["loss"] = results.exported_design(m.first.description)
            return out

        members = [row(i, m, i <= len(self.front))
                   for i, m in enumerate([*self.front, *self.others], start=1)]
        shown = len(self.front) if top is None else min(top, len(self.front))
        return {
            "study": self.study, "metrics": self.metrics,
            "directions": ["maximize" if up else "minimize" for up in self.maximize],
            "verdict": {
                "significant": self.significant, "sentence": self.sentence,
                "alpha": self.alpha, "correction": "holm",
                "corrected_across": "front designs x baselines x objectives",
                "test": "paired t-test across seeds (scipy.stats.ttest_rel) on every "
                        "objective",
                "winners": [m.words for m in self.winners],
                "front": members[:shown],
                "dominance": [{"design": d.design.words, "baseline": d.baseline.words,
                               "dominates": d.dominates,
                               "objectives": {m: c.to_dict()
                                              for m, c in zip(self.metrics, d.comparisons)}}
                              for d in self.dominance],
                "notes": list(self.notes)},
            "leaderboard": members if top is None else members[:top],
        }


def members(runs: Iterable[RunRecord], n_objectives: int) -> list[Member]:
    """Every design with runs on all objectives, grouped over seeds."""
    runs = list(runs)
    per = [results.designs([dataclasses.replace(r, values=r.values[i:i + 1]) for r in runs])
           for i in range(n_objectives)]
    return [Member([p[key] for p in per]) for key in per[0] if all(key in p for p in per)]


def dominates(a: Sequence[float], b: Sequence[float], maximize: Sequence[bool]) -> bool:
    """``a`` at least as good as ``b`` on every objective and better on one (by value)."""
    signs = [1 if up else -1 for up in maximize]
    at_least = all(s * x >= s * y for s, x, y in zip(signs, a, b))
    return at_least and any(s * x > s * y for s, x, y in zip(signs, a, b))


def front(found: Sequence[Member], maximize: Sequence[bool]) -> list[Member]:
    """The members no other member dominates by their means (Optuna's own front is of single
    trials; this one is of designs over seeds)."""
    return [m for m in found
            if not any(dominates(o.means, m.means, maximize) for o in found if o is not m)]


def verdict(study_name: str, metrics: Sequence[str], maximize: Sequence[bool],
            runs: Iterable[RunRecord], alpha: float = ALPHA) -> ParetoVerdict:
    """The front of the designs' means (of those with 2 or more seeds, when some have), and
    each searched front design against each baseline on every objective (paired, Holm across
    all the tests)."""
    found = members(runs, len(metrics))
    sign = -1 if maximize[0] else 1
    found.sort(key=lambda m: (sign * m.means[0], m.key))
    # More seeds first, as the one-objective ranking (results.rank): once some designs have
    # several seeds, a design with one lucky run does not push them off the front.
    pool = [m for m in found if m.n >= 2] or found
    on_front = front(pool, maximize)
    keys = {m.key for m in on_front}
    baselines = [m for m in found if m.baseline is not None]
    dominance = [Dominance(d, b, [results.compare(dd, bb, up) for dd, bb, up in
                                  zip(d.per_objective, b.per_objective, maximize)], alpha)
                 for d in on_front if d.baseline is None for b in baselines]
    tested = [c for d in dominance for c in d.comparisons if c.p is not None]
    for c, adjusted in zip(tested, results.holm([c.p for c in tested])):
        c.p_adjusted = adjusted
        c.significant = adjusted < alpha
    notes = []
    if any(c.p is not None and not c.fresh for c in tested):
        notes.append("some front designs were tested on the seeds that picked them, so their "
                     "p-values are optimistic; `losstune confirm` adds fresh seeds")
    if dominance and not tested:
        notes.append("no front design has 2 or more seeds in common with a baseline: nothing "
                     "was tested; `losstune confirm` gives them seeds")
    return ParetoVerdict(study_name, list(metrics), list(maximize), on_front,
                         [m for m in found if m.key not in keys], dominance, alpha, notes)


def knee(verdict: ParetoVerdict) -> Member | None:
    """The front member closest to the ideal point (each objective's best mean on the front),
    objectives scaled to [0, 1] over the front: a common "knee" choice. None on an empty
    front."""
    if not verdict.front:
        return None
    columns = list(zip(*(m.means for m in verdict.front)))
    spans = [(min(c), max(c)) for c in columns]

    def distance(m: Member) -> float:
        total = 0.0
        for value, (low, high), up in zip(m.means, spans, verdict.maximize):
            scaled = (value - low) / (high - low) if high > low else 0.0
            total += (1.0 - scaled if up else scaled) ** 2
        return math.sqrt(total)

    return min(verdict.front, key=distance)


PICKS = "'knee' or an objective's name (the front's best on it)"


def pick(v: ParetoVerdict, how: str) -> Member | None:
    """A front member: the knee (``"knee"``), or the front's best on objective ``how``."""
    from losstune.errors import LosstuneError

    if how == "knee":
        return knee(v)
    if how not in v.metrics:
        raise LosstuneError(f"pick {how!r}: {PICKS}: {', '.join(['knee', *v.metrics])}")
    i = v.metrics.index(how)
    sign = 1 if v.maximize[i] else -1
    return max(v.front, key=lambda m: sign * m.means[i]) if v.front else None


def _sentence(v: ParetoVerdict) -> str:
    objectives = " and ".join(f"{m} ({'max' if up else 'min'})"
                              for m, up in zip(v.metrics, v.maximize))
    head = f"{len(v.front)} design{'s' if len(v.front) != 1 else ''} on the front of {objectives}"
    if not v.dominance:
        if not any(m.baseline is not None for m in [*v.front, *v.others]):
            return head + "; no baseline to test against"
        return head + "; no searched design on it to test against a baseline"
    if v.significant:
        found = [f"{d.design.words} dominates {d.baseline.words}"
                 for d in v.dominance if d.dominates]
        return (head + "; significantly better on every objective (paired tests, Holm): "
                + "; ".join(found))
    if not any(d.tested for d in v.dominance):
        return head + "; nothing tested (fewer than 2 paired seeds): no significant finding"
    return (head + "; no searched design dominates a baseline significantly (paired tests on "
            "every objective, Holm)")
