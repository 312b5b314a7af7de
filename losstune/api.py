"""The Python API: search loss designs from a notebook, and read any stored study.

``losstune.search(build_model, x, y, ...)`` works like KerasTuner's ``tuner.search``: your model
function and your arrays, no files. :class:`Study` wraps a stored study — made from Python or by
``losstune search`` — and holds its verdict, leaderboard and best loss. The command line is a thin
layer over this module: both run the same code.

Heavy libraries (TensorFlow, Keras, Optuna, pandas) are imported inside the methods that need
them, so ``import losstune`` stays instant.

Layer: interface.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from losstune import results
from losstune.errors import LosstuneError
from losstune.tasks import IN_MEMORY

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import optuna
    import pandas

    from losstune.pareto import ParetoVerdict
    from losstune.results import Verdict
    from losstune.studyfile import StudySpec



@dataclass
class InMemory:
    """What a study made from Python needs to train again: the model and the data."""

    build_model: Any  # (input_shape, output_units) -> keras.Model, or a keras.Model to clone
    x: Any
    y: Any = None
    validation_data: Any = None
    validation_split: float | None = 0.2
    _cache: dict[int, Any] = field(default_factory=dict, repr=False)

    def splits(self, task: str, seed: int) -> Any:
        """The splits for a seed: the same validation data for every seed when it was given,
        else a new stratified hold-out per seed."""
        from losstune import data

        key = 0 if self.validation_data is not None else seed
        if key not in self._cache:
            self._cache[key] = data.from_arrays(
                self.x, self.y, task=task, validation_data=self.validation_data,
                validation_split=self.validation_split, seed=seed)
        return self._cache[key]

    def fingerprint(self) -> str:
        """A hash of the data and of how it is split: the same arrays give the same one."""
        import hashlib

        import numpy as np

        from losstune import data

        x, y = (self.x, self.y) if self.y is not None else data.from_datasets(self.x)
        digest = hashlib.sha256()
        parts = [x, y, *(self.validation_data or ())]
        for part, name in zip(parts, ("x", "y", "x_val", "y_val")):
            array = np.ascontiguousarray(data.as_array(part, name))
            digest.update(str((array.shape, array.dtype.str)).encode())
            digest.update(array.tobytes() if array.dtype.kind != "O"
                          else repr(array.tolist()).encode())
        digest.update(repr(None if self.validation_data is not None
                           else self.validation_split).encode())
        return digest.hexdigest()[:16]

    def model_fn(self) -> Callable[..., Any]:
        """A function that builds a fresh model for every trial, or what the task's
        :meth:`~losstune.tasks.Task.from_python` made of its functions (a GAN's two)."""
        import keras

        source = self.build_model
        if isinstance(source, keras.Model):
            return lambda input_shape, output_units: keras.models.clone_model(source)
        return source


@dataclass
class SearchHooks:
    """What a search reports while it runs (the CLI draws a progress bar with these)."""

    started: Callable[[Any, Any], None] = lambda study, storage: None  # Optuna study, storage
    status: Callable[[str], None] = lambda text: None
    refresh: Callable[[], None] = lambda: None
    message: Callable[[str], None] = lambda text: None


@dataclass
class SearchResult:
    """What one call to :meth:`Study.search` did."""

    new_designs: int
    failed: int
    interrupted: bool
    faults: list[Any]
    last_error: str | None = None
    error: LosstuneError | None = None  # the run did not do what was asked (raised by search)
    exhausted: bool = False  # the sampler proposed only known designs, many times in a row


class Study:
    """A loss-design study in a storage: its verdict, its leaderboard, its best loss.

    Get one from :func:`losstune.search` (in-memory data), :meth:`Study.from_file` (a study
    file) or :func:`losstune.load_study` (any stored study, made by either).
    """

    def __init__(self, name: str, storage: str | None = None, *, spec: "StudySpec | None" = None,
                 source: InMemory | None = None, study_file: Path | None = None) -> None:
        from losstune.storage import DEFAULT_URL, normalise

        self.name = name
        self.storage = normalise(storage or DEFAULT_URL)
        self._spec, self._source, self._study_file = spec, source, study_file
        self._optuna: Any = None
        self._storage_reader: Any = None

    def __repr__(self) -> str:
        from losstune.storage import mask

        return f"Study({self.name!r}, storage={mask(self.storage)!r})"

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_file(cls, path: str | Path, *, storage: str | None = None,
                  study_name: str | None = None) -> "Study":
        """A study described by a TOML study file (validated now; nothing is written until
        :meth:`search`)."""
        from losstune import runner
        from losstune import studyfile as spec_mod

        path = Path(path)
        spec = spec_mod.load(path)
        url = runner.resolve_storage_url(spec, storage)
        return cls(study_name or spec.name, url, spec=spec, study_file=path)

    def attach(self, build_model: Any, x: Any, y: Any = None, *, validation_data: Any = None,
               validation_split: float | None = 0.2, build_generator: Any = None,
               build_discriminator: Any = None) -> "Study":
        """Give a study made from Python its model and data again (after
        :func:`load_study`), so that it can search further or be confirmed. The data must be
        the data the study was made with (its fingerprint is stored). A GAN study's
        ``build_model`` is None, its model functions ``build_generator`` and
        ``build_discriminator``."""
        from losstune import tasks

        build_model, model = tasks.TASKS[self.spec.task].from_python(
            {"build_model": build_model, "build_generator": build_generator,
             "build_discriminator": build_discriminator}, self.spec.model.latent_dim)
        if model["kind"] != self.spec.model.kind:  # built-in models for Python ones, or back
            raise LosstuneError(f"study {self.name!r} was made with "
                                f"{self.spec.model.factory or 'the built-in models'}; give "
                                "the same model functions (or none) again")
        source = InMemory(build_model, x, y, validation_data, validation_split)
        stored = self.spec.dataset.fingerprint
        if stored is not None and source.fingerprint() != stored:
            raise LosstuneError(f"study {self.name!r} was made with other data (or another "
                                "validation split): its runs would not compare with new ones; "
                                "give the same arrays, or search them in a new study_name")
        self._source = source
        return self

    # ------------------------------------------------------------------ reading
    def _reader(self) -> Any:
        """One storage connection pool for this object's reads (opening one costs a few ms
        and a few checks)."""
        from losstune.storage import open_storage

        if self._storage_reader is None:
            self._storage_reader = open_storage(self.storage, heartbeat=False, create=False)
        return self._storage_reader

    @property
    def optuna_study(self) -> "optuna.Study":
        """The Optuna study (search trials; replicate runs are in ``<name>:runs``)."""
        from losstune import stored as stored_study

        if self._optuna is None:
            self._optuna = stored_study.load_existing(self.storage, self.name)
        return self._optuna

    @property
    def spec(self) -> "StudySpec":
        if self._spec is None:
            from losstune import stored as stored_study

            self._spec = stored_study.stored_spec(self.optuna_study)
        return self._spec

    @property
    def verdict(self) -> "Verdict | ParetoVerdict":
        """The verdict: the winner over seeds and its paired test against every baseline; for
        several objectives, the front of the designs' means and which searched designs
        dominate a baseline significantly (:class:`losstune.pareto.ParetoVerdict`)."""
        from losstune import stored as stored_study

        return stored_study.any_verdict(self.optuna_study, self._reader())

    def leaderboard(self, top: int | None = None) -> "pandas.DataFrame":
        """The designs over seeds, ranked as the verdict ranks them, as a pandas DataFrame."""
        import pandas

        rows = self.verdict.to_dict(top)["leaderboard"]
        frame = pandas.DataFrame(rows)
        return frame.set_index("rank") if len(frame) else frame

    @property
    def best_design(self) -> dict[str, Any]:
        """The winner's loss design: ``{"family", "params"}`` without data-fitted values."""

        winner = self.verdict.winner
        if winner is None:
            raise LosstuneError(f"study {self.name!r} has no complete trial yet")
        return results.exported_design(winner.description)

    def best_loss(self, *, class_counts: Sequence[int] | None = None,
                  epochs: int | None = None) -> "keras.losses.Loss":
        """The winner as a ready ``keras.losses.Loss`` (integer or one-hot labels).

        ``class_counts`` / ``epochs``: your own, where the design uses them (class-balanced
        weights, DynamicLoss's prior and schedules); by default the study's.
        """
        from losstune.losses import build_loss, with_fitted

        winner = self.verdict.winner
        if winner is None:
            raise LosstuneError(f"study {self.name!r} has no complete trial yet")
        return build_loss(with_fitted(winner.description, class_counts=class_counts,
                                      epochs=epochs))

    # ------------------------------------------------------------------ running
    def search(self, n_trials: int | None = None, *, timeout: float | None = None,
               workers: int = 1, gpus: str | None = None,
               hooks: SearchHooks | None = None) -> "Study":
        """Run (or resume) the search: ``n_trials`` new designs (default: the study's)."""
        result = self.run_search(n_trials=n_trials, timeout=timeout, workers=workers, gpus=gpus,
                                 hooks=hooks)
        if result.error is not None:
            raise result.error
        return self

    def run_search(self, *, n_trials: int | None = None, timeout: float | None = None,
                   workers: int = 1, gpus: str | None = None,
                   hooks: SearchHooks | None = None) -> SearchResult:
        """:meth:`search`, returning what the run did (the CLI reports it)."""
        from losstune import backend, runner, stopping
        from losstune import workers as workers_mod
        from losstune.storage import open_storage

        hooks = hooks or SearchHooks()
        spec = self._spec if self._spec is not None else self.spec
        in_memory = spec.dataset.name == IN_MEMORY
        self.check_trainable("search")
        if workers > 1 and self._study_file is None:
            raise LosstuneError("workers > 1 need a study file (Study.from_file): worker "
                                "processes read it, and cannot share a model function or "
                                "in-memory data")
        backend.check(spec, self._study_file or Path("<python>"))
        n_trials = n_trials or spec.n_trials
        timeout = timeout or spec.timeout
        if n_trials and workers > n_trials:  # a worker with no design to try only costs
            hooks.message(f"note: {workers} workers for {n_trials} new design"
                          f"{'s' if n_trials > 1 else ''}: {n_trials} start")
            workers = n_trials
        base_dir = self._base_dir()
        # Bad data fails before the storage is touched.
        splits = (runner.prepared_splits(spec, self._source.splits(spec.task, spec.seed)) if in_memory
                  else runner.load_data(spec, base_dir))
        from losstune.storage import new_sqlite_file

        with new_sqlite_file(self.storage):  # interrupted while made: no empty file is left
            study = runner.create_or_load(spec, self.storage, study_name=self.name,
                                          base_dir=base_dir)
            runner.record_data(study, splits)
        if n_trials:  # the budgets asked, run by run: the report says what was asked
            study.set_user_attr(results.ASKED,
                                [*study.user_attrs.get(results.ASKED, []), n_trials])
        before = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        storage = open_storage(self.storage)
        hooks.started(study, storage)
        faults: list[Any] = []
        exhausted = False
        previous = stopping.install()
        interrupted = False
        try:
            if workers == 1:
                hooks.status("starting the backend and compiling the first model")
                ctx = runner.load_context(spec, base_dir, splits, **self._memory(spec))
                hooks.message(f"data: {splits.description}; backend {ctx.backend} on "
                              f"{ctx.device}")
                deadline = time.time() + timeout if timeout else None
                search = runner.Search(study, ctx, storage, deadline=deadline,
                                       on_run=hooks.refresh)
                search.run(n_trials, callbacks=[lambda s, t: hooks.refresh()])
                exhausted = search.exhausted
            else:
                hooks.status(f"starting {workers} worker processes")
                hooks.message(f"data: {splits.description}; {workers} worker processes")
                faults = workers_mod.run(self._study_file, self.storage, self.name,
                                         workers=workers, n_trials=n_trials, timeout=timeout,
                                         gpus=gpus, on_poll=hooks.refresh)
                # The parent tests on fresh seeds once the workers are done, also after a
                # worker died: a rerun only adds the runs still missing.
                search = None
                if spec.race is not None and (spec.race.test_seeds or spec.multi_objective) \
                        and not stopping.STOP.is_set():
                    ctx = runner.load_context(spec, base_dir, splits, **self._memory(spec))
                    search = runner.Search(study, ctx, storage, on_run=hooks.refresh)
            if search is not None and search.racer is not None and (
                    search.racer.fresh_seeds or search.several):
                hooks.status("the front's designs and the baselines on more seeds (the "
                             "verdict's test)" if search.several else
                             "the winner and the baselines on fresh seeds (the verdict's test)")
                search.test()
        except KeyboardInterrupt:  # a second Ctrl-C
            interrupted = True
        finally:
            stopping.restore(previous)
        from losstune.report import save_to_dashboard

        save_to_dashboard(study, storage)
        new = [t for t in study.get_trials(deepcopy=False)
               if t.number not in before and t.state.is_finished()]
        failed = [t for t in new if t.state.name == "FAIL"]
        result = SearchResult(
            new_designs=sum(1 for t in new if not results.is_repeat(t)),
            failed=len(failed), interrupted=interrupted or stopping.STOP.is_set(),
            faults=faults, last_error=failed[-1].user_attrs.get(results.ERROR) if failed else None,
            exhausted=exhausted)
        if result.interrupted:
            return result
        if faults and n_trials and result.new_designs < n_trials and not timeout:
            result.error = workers_mod.BudgetNotMet(
                f"the run tried {result.new_designs} of {n_trials} new designs: {len(faults)} "
                f"worker{'s' if len(faults) > 1 else ''} died; run the same command to continue")
        elif new and len(failed) == len(new):  # nothing trained: never a normal return
            first = min(failed, key=lambda t: t.number).user_attrs.get(results.ERROR)
            result.error = LosstuneError(
                f"{'stopped: ' if len(failed) >= runner.MAX_FAILURES_WITHOUT_SUCCESS else ''}"
                f"all {len(failed)} trial{'s' if len(failed) != 1 else ''} of this run failed; "
                f"first error: {first or 'unknown error'}")
        return result

    def confirm(self, seeds: int = 5, *, top: int = 3, test_seeds: int | None = None,
                on_run: Callable[[int, int], None] | None = None) -> "Verdict":
        """Give the baselines and the ``top`` best other designs seeds 0..seeds−1 (racing's
        machinery), then the winner and the baselines ``test_seeds`` fresh seeds (default: the
        study's ``racing.test_seeds``), and return the verdict."""
        from losstune import confirm as confirm_mod

        spec = self.spec
        self.check_trainable("confirm")
        memory = self._memory(spec) if spec.dataset.name == IN_MEMORY else None
        return confirm_mod.run(self.storage, self.name, top=top, seeds=seeds,
                               test_seeds=test_seeds, on_run=on_run, memory=memory)

    def report(self, path: str | Path | None = None) -> Path:
        """Write the self-contained HTML report (default ``reports/<name>.html``)."""
        from losstune import report

        return report.write(self.name, self.storage, Path(path) if path else None)

    def export(self, path: str | Path = "best_loss.json", *, trial: int | None = None,
               overwrite: bool = False, pick: str | None = None) -> Path:
        """Write the verdict's winner (or one search trial's design) as JSON for
        :func:`losstune.losses.load_loss`. An existing file is replaced only with
        ``overwrite=True`` (it may be another study's export)."""
        from losstune.paths import check_output_path, write_output

        path = check_output_path(Path(path))  # before any work
        if path.exists() and not overwrite:
            raise LosstuneError(f"{path}: the file exists (another export?); give another "
                                "path, or overwrite=True to replace it")
        return write_output(path, json.dumps(self.export_payload(trial, pick=pick), indent=2)
                            + "\n")

    def export_payload(self, trial: int | None = None, *,
                       pick: str | None = None) -> dict[str, Any]:
        """The exported JSON: ``design`` (family, params), ``fitted`` (what was fitted to this
        study's data: class counts, planned epochs), ``loss`` (both together, ready for
        ``build_loss``), and the verdict it won. Several objectives: the front member
        ``pick`` names (:func:`losstune.pareto.pick`: the knee by default)."""

        study = self.optuna_study
        if pick is not None and (trial is not None or len(study.directions) == 1):
            raise LosstuneError("pick chooses a member of a front: for a study with several "
                                "objectives, without a trial number")
        if trial is None and len(study.directions) > 1:
            from losstune import pareto

            front = self.verdict
            member = pareto.pick(front, pick or "knee")
            if member is None:
                raise LosstuneError(f"study {self.name!r} has no complete trial to export")
            description, words = member.first.description, member.words
            extra = {"trial": member.first.trials[0] if member.first.trials else None,
                     "picked_by": pick or "knee", "seeds": member.n,
                     "means": dict(zip(front.metrics, member.means)),
                     "verdict": {"significant": front.significant, "sentence": front.sentence,
                                 "dominates_a_baseline": member.key in
                                 {m.key for m in front.winners}}}
        elif trial is None:
            verdict = self.verdict
            w = verdict.winner
            if w is None:
                raise LosstuneError(f"study {self.name!r} has no complete trial to export")
            description, words = w.description, w.words
            extra = {"trial": w.trials[0] if w.trials else None, "mean": w.mean,
                     "ci": list(w.ci) if w.ci else None, "seeds": w.n,
                     "fresh_mean": w.fresh_mean, "fresh_seeds": len(w.fresh),
                     "verdict": {"significant": verdict.significant,
                                 "sentence": verdict.sentence,
                                 "picked_on_seeds": verdict.picked_on,
                                 "tested_on_seeds": verdict.tested_on,
                                 "fresh_test": verdict.fresh_test}}
        else:
            matches = [t for t in study.get_trials(deepcopy=False) if t.number == trial]
            if not matches:
                raise LosstuneError(f"study {self.name!r} has no trial {trial}; trials are "
                                    f"0..{len(study.trials) - 1}")
            chosen = matches[0]
            if chosen.state.name != "COMPLETE" or results.is_repeat(chosen):
                state = ("a repeat of trial " + str(chosen.user_attrs[results.DUPLICATE_OF])
                         if results.is_repeat(chosen) else chosen.state.name.lower())
                raise LosstuneError(f"trial {trial} of {self.name!r} is {state}, not a "
                                    "complete training")
            record = results.RunRecord.from_trial(chosen)
            description, words = record.description, record.words
            extra = {"trial": chosen.number, "values": chosen.values}
        fitted = {k: v for k, v in description.get("params", {}).items()
                  if k in results.FITTED}
        return {"study": self.name, "metrics": results.metrics_of(study.user_attrs),
                "description": words, **extra,
                "design": results.exported_design(description), "fitted": fitted,
                "loss": description}

    def check_trainable(self, action: str) -> None:
        """Raise (one line) if training this study needs Python objects it has not been given:
        a study made from Python needs its model function and data again (:meth:`attach`)."""
        if self.spec.dataset.name == IN_MEMORY and self._source is None:
            from losstune import stored as stored_study

            raise stored_study.needs_python(self.name, action, self.spec.task)

    # ------------------------------------------------------------------ helpers
    def _base_dir(self) -> Path:
        """Where the study's relative data paths and model factories are found: the study
        file's folder, or the one stored with the study (a study loaded by name)."""
        if self._study_file is not None:
            return self._study_file.parent.resolve()
        try:
            stored = self.optuna_study.user_attrs.get(results.BASE_DIR)
        except LosstuneError:  # not stored yet: a new study made from Python
            stored = None
        return Path(stored) if stored else Path.cwd()

    def _memory(self, spec: "StudySpec") -> dict[str, Any]:
        """Context arguments for in-memory studies: the model function and the data per seed."""
        if spec.dataset.name != IN_MEMORY:
            return {}
        from losstune import runner

        source = self._source
        return {"model_fn": source.model_fn(),
                "reload": lambda seed: runner.prepared_splits(spec, source.splits(spec.task, seed))}


# ------------------------------------------------------------------------------ functions
def search(build_model: Any, x: Any, y: Any = None, *, validation_data: Any = None,
           validation_split: float | None = 0.2, task: str | None = None,
           metric: str | None = None, families: Sequence[str] | None = None,
           n_trials: int = 30, epochs: int = 10, batch_size: int = 32,
           learning_rate: float = 1e-3, optimizer: str = "adam", seed: int = 0,
           baselines: Any = True, racing: Any = True, pruner: str = "median",
           sampler: str = "tpe", space: dict[str, dict[str, Any]] | None = None,
           timeout: float | None = None, storage: str | None = None,
           study_name: str = "losstune", build_generator: Any = None,
           build_discriminator: Any = None, latent_dim: int = 16) -> Study:
    """Search loss designs for your model and your data, in this process.

    Args:
        build_model: ``(input_shape, output_units) -> keras.Model`` ending in a Dense layer of
            ``output_units`` without activation (logits), or a ``keras.Model`` to clone.
            None for a GAN (``task="gan"``), which takes ``build_generator`` and
            ``build_discriminator`` instead.
        x: features (NumPy, pandas), or a ``tf.data.Dataset`` / ``keras.utils.PyDataset`` of
            ``(x, y)`` batches (then leave ``y`` out).
        y: integer, string or one-hot labels; numbers for regression; 0/1 columns, one per
            label, for multilabel; whole numbers >= 0 for count (``task="count"``).
        validation_data: ``(x_val, y_val)``; else ``validation_split`` of the training data is
            held out (stratified, drawn anew for every seed).
        task: ``multiclass``, ``binary``, ``regression``, ``multilabel``, ``count`` or
            ``embedding`` (default: inferred from ``y``; a count or an embedding never is).
            An embedding's ``build_model`` gets ``output_units`` = 16, the embedding's width;
            the autoencoder task trains the built-in autoencoder, so it needs a study file.
        metric: the objective (default: the task's first metric: ``macro_f1``, ``mae`` for
            regression, ``poisson_deviance`` for count).
        families: loss families to search (default: the task's).
        n_trials: new designs to try; racing adds seeds to the close ones.
        space: per-family search space overrides, as in a study file's ``[search.FAMILY]``,
            e.g. ``{"focal": {"gamma": {"low": 0, "high": 3}}}``.
        storage: an Optuna storage URL (default ``sqlite:///losstune.db``).
        study_name: the study's name; the same name again resumes it.
        build_generator: a GAN's ``(latent_dim, output_shape) -> keras.Model`` mapping latent
            vectors to samples in [-1, 1] (tanh); default: the built-in MLP.
        build_discriminator: a GAN's ``(input_shape) -> keras.Model`` giving one raw value a
            sample (a logit, or a critic's score); default: the built-in MLP. A GAN's ``x``:
            samples in [-1, 1] (flat, or images (n, height, width[, channels])); its ``y``:
            their class labels, which train the feature classifier that scores it.
        latent_dim: a GAN's latent vector width.

    Returns:
        The :class:`Study`, searched.
    """
    from losstune import data, studyfile as spec_mod, tasks

    functions = {"build_model": build_model, "build_generator": build_generator,
                 "build_discriminator": build_discriminator}
    task = tasks.for_python(functions, task)
    the_task = tasks.TASKS.get(task) if task is not None else None
    # Checked before any write; an unknown task is the study file's rules' to refuse below.
    builder, model = (the_task.from_python(functions, latent_dim) if the_task is not None
                      else tasks.model_function(functions))
    if task is None:
        task = data.infer_task(data.as_array(y, "y") if y is not None
                               else data.from_datasets(x)[1])
    source = InMemory(builder, x, y, validation_data, validation_split)
    document: dict[str, Any] = {
        "name": study_name, "task": task, "seed": seed, "n_trials": n_trials,
        "dataset": {"name": IN_MEMORY, "fingerprint": source.fingerprint()},
        "model": model,
        "training": {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                     "optimizer": optimizer},
        "objective": {"metric": metric or (tasks.TASKS[task].default_metric
                                           if task in tasks.TASKS else "macro_f1")},
        "sampler": {"name": sampler}, "pruner": {"name": pruner},
        "baselines": baselines, "racing": racing,
        "search": {**({"families": list(families)} if families is not None else {}),
                   **(space or {})},
    }
    if timeout is not None:  # the study file's rules: 0 is refused, not dropped
        document["timeout"] = timeout
    spec = spec_mod.parse(document, "losstune.search()")
    study = Study(study_name, storage, spec=spec, source=source)
    study.search()
    return study


def load_study(name: str, *, storage: str | None = None) -> Study:
    """A stored study (made from Python or by ``losstune search``), ready to read."""
    study = Study(name, storage)
    study.optuna_study  # fails now, in one line, if it is not there  # noqa: B018
    return study
