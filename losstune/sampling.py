"""Optuna's samplers and pruners, made from a study file: every option that affects results
set explicitly, a sampler seed per worker, and the median pruner within a loss family.

Layer: domain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from losstune import results
from losstune.errors import LosstuneError
from losstune.studyfile import StudySpec

if TYPE_CHECKING:  # pragma: no cover
    import optuna


def worker_seed(seed: int, worker: int) -> int:
    """Each worker its own sampler seed derived from the study seed (0 keeps the study seed)."""
    return seed if worker == 0 else (seed * 1_000_003 + worker * 7_919) % 2**31


def make_sampler(spec: StudySpec, worker: int = 0) -> "optuna.samplers.BaseSampler":
    import optuna

    seed = worker_seed(spec.sampler_seed, worker)
    name = spec.sampler.name
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.BruteForceSampler(seed=seed)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise LosstuneError("sampler.name = 'cmaes' needs the cmaes package: "
                                "pip install cmaes") from None
        return optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=spec.sampler.n_startup_trials,
            independent_sampler=optuna.samplers.TPESampler(seed=seed))
    if name == "gp":
        try:
            import scipy  # noqa: F401
            import torch  # noqa: F401
        except ImportError:
            raise LosstuneError("sampler.name = 'gp' needs PyTorch and SciPy: "
                                "pip install torch scipy") from None
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=spec.sampler.n_startup_trials)
    # TPE with every option that affects results set explicitly, so a seed reproduces a study
    # across Optuna versions whose defaults differ.
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=spec.sampler.n_startup_trials, multivariate=True,
        group=True, constant_liar=True, n_ei_candidates=24)


def make_pruner(spec: StudySpec) -> "optuna.pruners.BasePruner":
    import optuna

    p = spec.pruner
    if p.name == "none" or spec.multi_objective:  # Optuna cannot prune multi-objective trials
        return optuna.pruners.NopPruner()
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1,
                                              max_resource=spec.training.max_epochs())
    median = optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials,
                                         n_warmup_steps=p.n_warmup_steps)
    return family_pruner(median) if p.scope == "family" else median


class _FamilyView:
    """A study as a pruner should see it: only the trials of one loss family that trained."""

    def __init__(self, study: "optuna.Study", family: Any) -> None:
        self._study, self._family = study, family

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[Any]:
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states)
                if results.family_of(t) == self._family and not results.is_repeat(t)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def _family_pruner_class() -> type:
    import optuna

    class FamilyPruner(optuna.pruners.BasePruner):
        """Optuna's median rule within a loss family.

        Across families, the median rule prunes whatever learns slowly in the first epochs:
        on long-tailed digits it stopped every class-balanced trial with β 0.99 and 0.999,
        designs that win at the end. Comparing a trial with its own family's curves keeps the
        epochs it saves and leaves the choice of family to the final objective. The inner
        pruner is Optuna's own; it reads the study through a view of one family.
        """

        def __init__(self, inner: optuna.pruners.BasePruner) -> None:
            self._inner = inner

        def prune(self, study: "optuna.Study", trial: Any) -> bool:
            return self._inner.prune(_FamilyView(study, results.family_of(trial)), trial)

    return FamilyPruner


def family_pruner(inner: Any) -> Any:
    """``inner`` (Optuna's median pruner) applied within each trial's loss family."""
    return _family_pruner_class()(inner)
