"""Study creation and resumption, baselines, and running trials (samplers and pruners:
:mod:`losstune.sampling`; reading a stored study: :mod:`losstune.stored`).

A study is identified by its name in a storage. The same command run again resumes it; a study
of that name whose objective differs from the file's is refused rather than mixed.

Layer: search.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from losstune import __version__, results, sampling, tasks
from losstune.errors import StorageError
from losstune.quiet import quiet_optuna
from losstune.studyfile import StudySpec
from losstune.stopping import INTERRUPTED
from losstune.storage import mask, normalise, open_storage, study_names
from losstune.stored import run_records, runs_study

if TYPE_CHECKING:  # pragma: no cover
    import optuna

# Stop a run whose first trials all fail: a broken model factory or data file would otherwise
# burn the whole budget.
MAX_FAILURES_WITHOUT_SUCCESS = 3
# A search whose sampler proposes only designs it has tried, this many times in a row, has
# exhausted its space (a grid, or a few families without parameters).
MAX_REPEATS = 25


def resolve_storage_url(spec: StudySpec, override: str | None) -> str:
    """Command line first, then the study file, then the default SQLite file (in the cwd)."""
    if override:
        return normalise(override)
    if spec.storage:
        return normalise(spec.storage)
    from losstune.storage import DEFAULT_URL

    return DEFAULT_URL


def create_or_load(spec: StudySpec, storage_url: str, *, study_name: str | None = None,
                   worker: int = 0, heartbeat: bool = True, base_dir: Path | None = None,
                   queue_baselines: bool = True) -> "optuna.Study":
    """Create the study (enqueueing baselines) or resume it, after checking it matches.
    ``queue_baselines=False``: worker processes, whose parent has queued them."""
    import optuna

    quiet_optuna()
    name = study_name or spec.name
    storage = open_storage(storage_url, heartbeat=heartbeat)
    metrics = list(spec.objective.metrics)
    directions = list(spec.objective.directions)
    exists = name in study_names(storage)
    if exists:
        existing = optuna.load_study(study_name=name, storage=storage)
        stored = existing.user_attrs.get(results.OBJECTIVE)
        stored_dirs = [d.name.lower() for d in existing.directions]
        if stored_dirs != directions or (stored is not None and stored != metrics):
            raise StorageError(
                f"study {name!r} in {mask(storage_url)} optimises {stored or stored_dirs}, "
                f"the file asks for {metrics} ({', '.join(directions)}); use another study "
                "name (--study-name) or storage")
        if results.SPEC not in existing.user_attrs and existing.get_trials(deepcopy=False):
            raise StorageError(
                f"study {name!r} in {mask(storage_url)} has trials but no losstune settings: "
                "it was not made by losstune; use another study name (--study-name)")
        changed = incomparable_changes(existing.user_attrs.get(results.SPEC), spec)
        if changed:
            raise StorageError(
                f"study {name!r} in {mask(storage_url)} was made with other settings; "
                f"changed: {', '.join(changed[:6])}{' …' if len(changed) > 6 else ''}. Its "
                "trials would not compare with new ones: restore the file, or start a new "
                "study with --study-name")
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=sampling.make_sampler(spec, worker),
        pruner=sampling.make_pruner(spec), directions=directions, load_if_exists=True)
    # A study is made in several writes. Its settings go last, and until they are there (a
    # process killed in its first second) every start finishes the making again, so a resumed
    # study is never left without the settings its resumes are checked against.
    if results.SPEC not in study.user_attrs:
        study.set_metric_names(metrics)
        study.set_user_attr(results.OBJECTIVE, metrics)
        study.set_user_attr(results.TASK, spec.task)
        study.set_user_attr(results.DATASET, spec.dataset.name)
        study.set_user_attr(results.VERSION, __version__)
        if base_dir is not None:  # relative data paths in the spec are relative to this
            study.set_user_attr(results.BASE_DIR, str(base_dir))
        stored = json.loads(spec.model_dump_json())
        if stored.get("storage"):  # a password in the file's URL never goes into the study
            stored["storage"] = mask(stored["storage"])
        study.set_user_attr(results.SPEC, stored)
    if queue_baselines:
        queue_missing_baselines(study, spec)
    return study


# A baseline that failed this many times (not counting interrupts) is not queued again: its
# reason is in the failed trials, and the verdict says the baseline has no run.
MAX_BASELINE_FAILURES = 3


def queue_missing_baselines(study: "optuna.Study", spec: StudySpec) -> list[str]:
    """Enqueue every baseline that has no trial done, queued or running: at creation, and on
    every resume, so a baseline interrupted (Ctrl-C, SIGTERM, a killed parent) is trained when
    the study goes on, as racing queues its missing runs again. Returns the labels queued.

    Not Optuna's skip_if_exists: it compares params only, and two baselines may differ only in
    a parameter the study holds fixed (cross-entropy with and without smoothing)."""
    import optuna

    from losstune.space import baseline_params

    alive = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
             optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)
    present: set[str] = set()
    failures: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        label = t.user_attrs.get(results.BASELINE)
        if label is None:
            continue
        if t.state in alive:
            present.add(label)
        elif t.user_attrs.get(results.ERROR) != INTERRUPTED:
            failures[label] = failures.get(label, 0) + 1
    queued = []
    for params, label, own in baseline_params(spec):
        if label not in present and failures.get(label, 0) < MAX_BASELINE_FAILURES:
            study.enqueue_trial(params, user_attrs={results.BASELINE: label,
                                                    results.BASELINE_PARAMS: own})
            queued.append(label)
    return queued


# What may change when a study is resumed: the budget, and how it is searched. Anything else
# (data, task, seed, model, training, objective, search space, baselines) changes what a trial
# measures, so old and new trials would not compare.
RESUMABLE = ("name", "n_trials", "timeout", "storage", "sampler", "pruner", "racing", "notes",
             # how many trials train at once: a member computes what it would alone
             "training.population")


def incomparable_changes(stored: dict[str, Any] | None, spec: StudySpec) -> list[str]:
    """Dotted keys whose value differs between a stored spec and ``spec`` (resumable keys
    excepted)."""
    if stored is None:
        return []
    try:
        old = json.loads(StudySpec.model_validate(stored).model_dump_json())
    except Exception:  # noqa: BLE001 - a spec stored by another version: compare it as stored
        old = stored
    new = json.loads(spec.model_dump_json())

    def diff(a: Any, b: Any, prefix: str) -> list[str]:
        if isinstance(a, dict) and isinstance(b, dict):
            return [k for key in sorted(set(a) | set(b))
                    for k in diff(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)]
        return [] if a == b else [prefix]

    return [k for k in diff(old, new, "")
            if k.split(".")[0] not in RESUMABLE and k not in RESUMABLE]


class FailureGuard:
    """A callback after each tell: the run stops (``tripped``, read by the search loop) when
    its first trials all fail, keeping the reason."""

    def __init__(self, limit: int = MAX_FAILURES_WITHOUT_SUCCESS) -> None:
        self.limit, self.failures, self.successes = limit, 0, 0
        self.last_error: str | None = None

    def __call__(self, study: "optuna.Study", trial: "optuna.trial.FrozenTrial") -> None:
        import optuna

        if trial.user_attrs.get(results.ERROR) == INTERRUPTED:
            return  # the user stopped it; not a failure of the configuration
        if trial.state == optuna.trial.TrialState.FAIL:
            self.failures += 1
            self.last_error = trial.user_attrs.get(results.ERROR, "unknown error")
        elif trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
            self.successes += 1

    @property
    def tripped(self) -> bool:
        return self.successes == 0 and self.failures >= self.limit


# With several objectives, the searched designs of the front (spread along it) that racing
# gives seeds after the search, beside the baselines (pareto.ParetoVerdict.chosen).
FRONT_RACED = 5


def load_data(spec: StudySpec, base_dir: Path) -> Any:
    """The study's splits (scikit-learn only, no Keras): bad data fails before any storage write."""
    from losstune import data

    return prepared_splits(spec, data.load(spec.dataset, spec.task, seed=spec.seed, base_dir=base_dir))


def prepared_splits(spec: StudySpec, splits: Any) -> Any:
    """The splits with what the study's model needs from them (an autoencoder's code width),
    checked by the task before any trial (an embedding's P x K batches need as many classes
    as the largest batch asks for)."""
    splits.latent_dim = tasks.TASKS[spec.task].latent_width(spec)
    tasks.TASKS[spec.task].check_splits(spec, splits)
    return splits


def load_context(spec: StudySpec, base_dir: Path, splits: Any = None,
                 threads: int | None = None, model_fn: Callable | None = None,
                 reload: Callable[[int], Any] | None = None) -> "Any":
    """Import Keras, configure the backend, load the data once per worker. ``model_fn`` and
    ``reload`` (the data of another seed): for studies made from Python (losstune.api)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from losstune import backend
    from losstune.trial import Context

    backend.configure(threads)
    splits = splits if splits is not None else load_data(spec, base_dir)
    return Context(spec=spec, splits=splits, base_dir=base_dir, device=backend.describe_device(),
                   backend=keras.backend.backend(), model_fn=model_fn, reload=reload)


def record_data(study: "optuna.Study", splits: Any) -> None:
    """What the report needs about the data, stored once with the study."""
    if results.DATA not in study.user_attrs:  # a resumed study keeps what it was made with
        study.set_user_attr(results.DATA, splits.description)
        study.set_user_attr(results.CLASS_NAMES, list(splits.class_names))
        tasks.TASKS[splits.task].record_data(study, splits)


# ------------------------------------------------------------------------------ the search
class Search:
    """One process's share of a search: search trials, each followed by its race.

    ``n_trials`` counts search trials: designs the sampler proposes, each trained once on seed
    0 (a design proposed again is not trained again on a seed it has). Racing adds replicate
    runs on other seeds, counted separately as trainings.
    """

    def __init__(self, study: "optuna.Study", ctx: Any, storage: Any, *,
                 deadline: float | None = None, on_run: Callable[[], None] | None = None,
                 race: Any = None) -> None:
        from losstune.racing import Racer

        self.study, self.ctx, self.deadline, self.on_run = study, ctx, deadline, on_run
        self.storage = storage
        self.guard = FailureGuard()
        self.exhausted = False
        race = race or ctx.spec.race  # ``race``: settings that override the study's (confirm)
        self.companion = runs_study(study, storage, create=race is not None)
        self.racer = None
        self.several = len(study.directions) > 1
        if race is not None:
            from losstune.trial import Contexts

            self.contexts = Contexts(ctx, load_data)
            self.racer = Racer(load=lambda: run_records(self.study, self.companion),
                               execute=self._execute,
                               maximize=study.directions[0].name == "MAXIMIZE",
                               max_seeds=race.max_seeds, alpha=race.alpha,
                               fresh_seeds=race.test_seeds)

    def next_size(self, remaining: int | None = None) -> int:
        """Search trials for the next step: a population; for a model from user code, no more
        than the failure guard's limit until a trial of this run has succeeded (a broken
        factory fails them all at once, and the run stops after as many failures as it would
        one trial at a time)."""
        size = self.population_size(remaining)
        if self.guard.successes == 0 and self.ctx.spec.model.kind in ("factory", "python"):
            size = min(size, self.guard.limit)
        return size

    def population_size(self, remaining: int | None = None) -> int:
        """Trials this worker trains at once (1: each alone; losstune/population.py)."""
        from losstune import models, population

        splits = self.ctx.splits
        return population.size(self.ctx.spec, splits.input_shape,
                               models.output_units(self.ctx.spec.task, splits.num_classes,
                                                    self.ctx.spec.model.embedding_dim),
                               remaining)

    def _execute(self, runs: list[Any]) -> None:
        """Train replicate runs: as populations (one per seed index), or one at a time."""
        if self.population_size(len(runs)) > 1:
            self._execute_together(runs)
        else:
            self._execute_alone(runs)

    def _execute_together(self, runs: list[Any]) -> None:
        import time

        from losstune import batch
        from losstune.stopping import STOP

        claimed = [n for n in (self._claim(run) for run in runs) if n is not None]
        # Asking takes the oldest waiting trials first, which may be another worker's requests
        # or retries of a killed run: real runs too. Go on until the claimed ones have run.
        for _ in range(64):
            waiting = [n for n in claimed if self._state(n) == "WAITING"]
            if (not waiting or STOP.is_set()
                    or (self.deadline is not None and time.time() > self.deadline)):
                return
            batch.run(self.companion, self.contexts, self.population_size(len(waiting)),
                      queued_only=True)
            if self.on_run:
                self.on_run()

    def _execute_alone(self, runs: list[Any]) -> None:
        import time

        from losstune import batch
        from losstune.stopping import STOP

        for run in runs:
            if STOP.is_set() or (self.deadline is not None and time.time() > self.deadline):
                return
            waiting = self._claim(run)
            if waiting is None:
                continue  # done, or another worker is training it
            # Asking takes the oldest waiting trial, which may be another worker's request or
            # a retry of a killed run: each is a real run too. Go on until this one has run.
            for _ in range(64):
                batch.run(self.companion, self.contexts, 1, queued_only=True)
                if self.on_run:
                    self.on_run()
                if STOP.is_set() or self._state(waiting) != "WAITING":
                    break

    def _claim(self, run: Any) -> int | None:
        """The waiting trial that will train ``run``: an existing one, or a new one. None if
        the run is complete or running (in this or another worker) already."""
        def same(t: Any) -> bool:
            a = t.user_attrs
            return (a.get(results.DESIGN_KEY) == run.design_key
                    and a.get(results.SEED_INDEX) == run.seed_index)

        trials = [t for t in self.companion.get_trials(deepcopy=False) if same(t)]
        if any(t.state.name in ("COMPLETE", "RUNNING") for t in trials):
            return None
        waiting = [t.number for t in trials if t.state.name == "WAITING"]
        if waiting:
            return waiting[0]
        self.companion.enqueue_trial(run.params, user_attrs=run.user_attrs)
        waiting = [t.number for t in self.companion.get_trials(deepcopy=False)
                   if same(t) and t.state.name == "WAITING"]
        return waiting[0] if waiting else None

    def _state(self, number: int) -> str:
        return self.companion.get_trials(deepcopy=False)[number].state.name

    def step(self, callbacks: list[Callable] = (), size: int = 1) -> tuple[int, int]:
        """Up to ``size`` search trials (a population, when the study allows one), then
        (racing) each new design's race against the incumbent. Returns how many trials
        proposed a new design and how many a design they had already (nothing trained)."""
        from losstune import batch
        from losstune.stopping import STOP

        finished: list[Any] = []
        # One trial alone (k = 1) goes the same way: asked, recorded and told as a
        # population's are (losstune/batch.py, losstune/recording.py), then trained alone.
        k = min(size, self.population_size(size))
        batch.run(self.study, self.ctx, k,
                  callbacks=[*callbacks, self.guard, lambda s, t: finished.append(t)])
        repeats = sum(1 for t in finished if results.is_repeat(t))
        new = (len(finished) or 1) - repeats
        if self.racer is None or STOP.is_set() or self.several:
            return new, repeats  # several objectives: the front gets seeds after the search
        keys = [t.user_attrs.get(results.DESIGN_KEY) for t in finished
                if t.state.name == "COMPLETE" and not results.is_repeat(t)]
        if keys:  # raced together: each round's runs train as one population
            self.racer.race_many(keys)
            if self.on_run:
                self.on_run()
        return new, repeats

    def test(self) -> int:
        """After the search: the race's winner and every baseline on the fresh seeds that the
        verdict tests on (racing.Racer.test); returns runs made. Nothing without racing."""
        from losstune.stopping import STOP

        if self.racer is None or STOP.is_set():
            return 0
        # The timeout bounds the search; the test is a fixed number of runs that the verdict
        # needs, (1 + baselines) x test_seeds, so it runs past the deadline.
        self.deadline = None
        if self.several:  # the front's first designs and the baselines: seeds, then fresh
            from losstune.stored import pareto_verdict

            made = self.racer.extend(pareto_verdict(self.study, self.storage).chosen(
                FRONT_RACED), self.racer.max_seeds)
            made += self.racer.test(chosen=pareto_verdict(self.study, self.storage).chosen(
                FRONT_RACED))
            if made and self.on_run:
                self.on_run()
            return made
        made = self.racer.test()
        if made and self.on_run:
            self.on_run()
        return made

    def run(self, n_trials: int | None, callbacks: list[Callable] = ()) -> FailureGuard:
        """Search until ``n_trials`` new designs were tried (or the deadline, a stop, or the
        failure guard). A proposal of a known design trains nothing new on seed 0 and does not
        count; after MAX_REPEATS of them in a row the space is taken as exhausted."""
        import time

        from losstune.stopping import STOP

        done = repeats = 0
        while ((n_trials is None or done < n_trials) and not self.guard.tripped
               and not STOP.is_set() and repeats < MAX_REPEATS
               and (self.deadline is None or time.time() < self.deadline)):
            left = None if n_trials is None else n_trials - done
            new, repeated = self.step(callbacks, size=self.next_size(left))
            done += new
            repeats = 0 if new else repeats + repeated
        self.exhausted = repeats >= MAX_REPEATS
        return self.guard
