"""One trial: suggest a design, build and audit the loss, train, score, record.

Everything a trial learns goes into the Optuna trial itself (params, one intermediate value per
epoch, small user attributes), so ``losstune report``, ``show`` and optuna-dashboard all read the
same record.

Layer: training.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from losstune.data import Splits
from losstune.errors import LosstuneError
from losstune.space import LossDesign, suggest_design, suggest_training
from losstune.studyfile import StudySpec
from losstune import optuna_adapter, results, tasks
from losstune.tasks import a_task
from losstune import activity
from losstune.stopping import INTERRUPTED, STOP, TrialInterrupted

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import optuna


# Regression trials keep their validation predictions (for residual plots), at most this many.
MAX_STORED_PREDICTIONS = 1000
SHOWN_RECONSTRUCTIONS = 8  # validation inputs whose reconstructions each trial keeps
MAX_PROJECTED = 400  # validation embeddings kept per trial for the report's projection
GC_EVERY = 10
# Samples of the training split the loss audit checks on the untrained model.
AUDIT_BATCH = 256


class LossDivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Context:
    """What every trial of a worker shares: the spec, the data (loaded once) and the device."""

    spec: StudySpec
    splits: Splits
    base_dir: Path
    device: str
    backend: str
    model_fn: Any = None  # a model function given in Python (losstune.api), not imported
    reload: Any = None    # seed -> Splits, for in-memory data (replicate runs)


class Contexts:
    """A worker's context per seed index: seed ``i`` has its own split (and initialisation).
    ``load``: (spec, base folder) -> splits, the runner's data loader (a study made from
    Python reloads through its context's ``reload`` instead)."""

    def __init__(self, base: Context, load: Callable[[Any, Path], Any]) -> None:
        self.base, self._load = base, load
        self._by_seed: dict[int, Context] = {0: base}

    def get(self, index: int) -> Context:
        if index not in self._by_seed:
            from losstune.racing import seed_for

            base = self.base
            spec = base.spec.model_copy(update={"seed": seed_for(base.spec.seed, index)})
            splits = (base.reload(spec.seed) if base.reload is not None
                      else self._load(spec, base.base_dir))
            self._by_seed[index] = replace(base, spec=spec, splits=splits)
        return self._by_seed[index]


def context_of(ctx: "Context | Contexts", trial: Any) -> Context:
    """The context of a trial's seed index (a search trial: seed 0)."""
    if isinstance(ctx, Contexts):
        return ctx.get(int(trial.user_attrs.get(results.SEED_INDEX, 0)))
    return ctx


def compact(values: list[float]) -> list[float]:
    """Per-epoch curves stored as user attributes, rounded: the dashboard stays fast."""
    return [float(f"{v:.5g}") if math.isfinite(v) else None for v in values]


def predict(model: "keras.Model", x: np.ndarray, batch: int = 2048) -> np.ndarray:
    """Direct calls instead of ``model.predict``: for small arrays this skips building a
    prediction loop and a data adapter every epoch (several times faster here)."""
    from keras import ops

    outs = [ops.convert_to_numpy(model(x[i:i + batch], training=False))
            for i in range(0, len(x), batch)]
    return np.concatenate(outs).astype("float64")


def score(model: "keras.Model | None", splits: Splits, x: np.ndarray, y: np.ndarray,
          only: str | None = None, out: np.ndarray | None = None) -> dict[str, Any]:
    """All metrics of a split (the objective candidates plus per-class recall), or ``only`` one.
    ``out``: the model's outputs on ``x`` when the caller already has them."""
    out = predict(model, x) if out is None else out
    return tasks.TASKS[splits.task].score(splits, x, y, out, only=only)


def score_members(splits: Splits, x: np.ndarray, y: np.ndarray, outs: np.ndarray,
                  only: str | None = None) -> list[Any]:
    """:func:`score` for K members at once, from their outputs ``outs`` (n, K, ...) on ``x``
    (one prediction of a population's stacked model): each member's metrics, or the
    FloatingPointError its outputs raise. Classification is scored for all members in one
    go (metrics.classification_members); the other tasks member by member."""
    return tasks.TASKS[splits.task].score_members(splits, x, y, outs, only=only)


def loss_diverged(loss: Any, epoch: int) -> str | None:
    """Why a training stops when its epoch's training loss is not finite, or None."""
    if loss is None or math.isfinite(float(loss)):
        return None
    return f"the training loss became {float(loss)} at epoch {epoch}"


def watch_epoch(watched: Any, trial: "optuna.Trial", epoch: int, scored: Any, metric: str,
                report: bool) -> bool:
    """One training's objective after an epoch, for a trial alone and for each population
    member alike (``watched`` holds ``values``, ``diverged`` and ``pruned_at``): ``scored``
    is the split's scores, or the FloatingPointError its outputs raised. Records the value,
    reports it to Optuna and asks the pruner; False when this training stops here."""
    if isinstance(scored, FloatingPointError):
        watched.diverged = f"{scored} at epoch {epoch}"
        return False
    watched.values.append(scored[metric])
    if report:
        trial.report(scored[metric], epoch)
        if trial.should_prune():
            watched.pruned_at = epoch
            return False
    return True


def _epoch_scorer(trial: "optuna.Trial", ctx: Context, metric: str, report: bool):
    import keras

    class EpochScorer(keras.callbacks.Callback):
        """Scores the objective on the validation split after every epoch, reports it to
        Optuna (pruning) and stops on a NaN loss with the reason kept (:func:`watch_epoch`,
        as each population member is watched)."""

        def __init__(self) -> None:
            super().__init__()
            self.values: list[float] = []
            self.epoch_seconds: list[float] = []  # training only, not scoring
            self._epoch_start = 0.0
            self.pruned_at: int | None = None
            self.diverged: str | None = None
            self.interrupted = False
            # The task's other per-epoch metrics (a GAN's FD beside its KID): their curves.
            self.curves: dict[str, list[float]] = {
                m: [] for m in tasks.TASKS[ctx.spec.task].curve_metrics if m != metric}

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if STOP.is_set():
                self.interrupted = True
                self.model.stop_training = True

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._epoch_start = time.perf_counter()
            activity.epoch(1, epoch, int(self.params.get("epochs") or 0))

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch_seconds.append(time.perf_counter() - self._epoch_start)
            self.diverged = loss_diverged((logs or {}).get("loss"), epoch)
            if self.diverged is None:
                try:
                    scored: Any = score(self.model, ctx.splits, ctx.splits.val_inputs,
                                        ctx.splits.y_val, only=None if self.curves else metric)
                except FloatingPointError as err:
                    scored = err
                if not isinstance(scored, FloatingPointError):
                    for name, values in self.curves.items():
                        values.append(scored[name])
                if watch_epoch(self, trial, epoch, scored, metric, report):
                    return
            self.model.stop_training = True

    return EpochScorer()


def trains_alone(spec: StudySpec) -> str | None:
    """Why this study's trials must train one at a time (not in populations), or None."""
    if spec.training.mixed_precision:
        # Keras wraps the optimizer in a loss-scale optimizer whose finiteness check covers all
        # weights: one member's overflow would skip every member's step.
        return "mixed precision scales the loss of the whole model at once"
    if spec.multi_objective and tasks.TRAIN_TIME_METRIC in spec.objective.metrics:
        return "the objective train_time measures a trial's training alone"
    reason = tasks.TASKS[spec.task].trains_alone(spec)
    if reason:
        return reason
    if spec.search.penalty.searched:
        # The stacked layers hold no per-member penalty coefficients (not built).
        return "penalties (search.penalty) are added to models that train alone"
    return None


def steady_epoch_seconds(seconds: list[float]) -> float:
    """Training seconds per epoch without the first epoch, which traces the train step when
    the model is new (compiled models are reused, so most trials never trace): the median of
    the later epochs, or the only one."""
    import statistics

    return statistics.median(seconds[1:] or seconds) if seconds else 0.0


def training_targets(splits: Splits) -> np.ndarray:
    """What the model is trained to output for the training split (the task says: the
    targets as the losses take them, or an autoencoder's own inputs)."""
    return tasks.TASKS[splits.task].training_targets(splits)


def execution_steps(ctx: Context, batch_size: int) -> int:
    """Train steps per call into the compiled function (the study's setting, as the task
    allows it: an embedding task's P × K epochs cap it)."""
    from losstune import compiled

    steps = compiled.steps_per_execution(ctx.spec.training.steps_per_execution, ctx.backend)
    return tasks.TASKS[ctx.splits.task].execution_steps(ctx, steps, batch_size)


def fit_arguments(ctx: Context, y: np.ndarray, batch_size: int, seed: int,
                  epochs: int) -> dict[str, Any]:
    """``fit`` arguments for the training split: shuffled every epoch, or in the task's own
    order (an embedding task's P × K batches)."""
    own = tasks.TASKS[ctx.splits.task].fit_arguments(ctx, y, batch_size, seed, epochs)
    if own is not None:
        return own
    return {**_fit_data(ctx.backend, ctx.splits.x_train, y, batch_size, seed), "epochs": epochs}


def _fit_data(backend: str, x: np.ndarray, y: np.ndarray, batch_size: int,
              seed: int) -> dict[str, Any]:
    """``fit`` arguments for the training split, reshuffled every epoch.

    TensorFlow: a plain tf.data pipeline. Keras's adapter for NumPy arrays builds each epoch's
    iterator through a gather function, which took three quarters of a five-epoch digits fit
    (52 ms against 212 ms, same model and batches). No prefetch: its background threads slowed
    a 40-trial study by 15 % on 2 cores (24.0 s against 20.5 s), more with 2 workers.
    Other backends: the arrays themselves.
    """
    if backend != "tensorflow":
        return {"x": x, "y": y, "batch_size": batch_size, "shuffle": True}
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y))
    return {"x": data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size), "shuffle": False}


@dataclass
class Built:
    """A trial's loss and model, audited and compiled (or a kept compiled model, retuned)."""

    loss: Any
    model: Any
    y_train: np.ndarray
    reused: bool
    warnings: tuple[str, ...]


@dataclass
class Trained:
    """What ``fit`` and the per-epoch scorer saw."""

    scorer: Any
    logs: dict[str, list[float]]
    seconds: float


def train_alone(trial: "optuna.Trial", ctx: Context, training: dict[str, Any],
                description: dict[str, Any]) -> float | tuple[float, ...]:
    """Train a proposed design by itself (a kept compiled model where one fits), score and
    record it; raises as the Optuna objective does (pruned, diverged, failed)."""
    import keras
    import optuna

    spec = ctx.spec
    seed = run_seed(spec)
    trial.set_user_attr(results.POPULATION, 1)
    if spec.training.population != 1:
        reason = trains_alone(spec)
        if reason:  # asked for populations (or "auto"), but this model cannot have one
            trial.set_user_attr(results.POPULATION_NOTE, reason)
    keras.utils.set_random_seed(seed)
    built = None
    if spec.training.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        built = _build(trial, ctx, description, training)
        trained = _train(trial, ctx, built, training, seed)
        stop_unless_finished(trial, trained.scorer)
        model = built.model
        return record_scores(trial, ctx, description,
                             val_out=predict(model, ctx.splits.val_inputs),
                             test_out=(predict(model, ctx.splits.test_inputs)
                                       if len(ctx.splits.y_test) else None),
                             seconds=trained.seconds,
                             epoch_seconds=trained.scorer.epoch_seconds,
                             warnings=built.warnings)
    except (optuna.TrialPruned, LossDivergedError, TrialInterrupted):
        raise
    except Exception as err:  # noqa: BLE001 - recorded on the trial, then Optuna marks FAIL
        trial.set_user_attr(results.ERROR, error_message(err))
        raise
    except SystemExit as err:
        # A model factory (the user's code) called sys.exit(): Optuna would let it end the
        # process with the trial left RUNNING. It is a failure of this trial, like any other.
        message = error_message(err)
        trial.set_user_attr(results.ERROR, message)
        raise RuntimeError(message) from None
    finally:
        if spec.training.mixed_precision:
            keras.mixed_precision.set_global_policy("float32")
        # Frees Keras's global state (layer-name counters, the TF graph) and collects
        # garbage. It costs about 0.25 s with TensorFlow loaded, more than a small trial's
        # training, so it runs only every GC_EVERY trials, and never after a trial that reused
        # a compiled model: those leave no graph behind (50 such trials without it grew memory
        # by 0.7 %). benchmarks/run.py (figure 7) checks that memory stays flat.
        if not (built and built.reused) and trial.number % GC_EVERY == 0:
            keras.utils.clear_session(free_memory=True)


def answer_repeat(trial: "optuna.Trial", earlier: Any, spec: StudySpec) -> Any:
    """A search trial that proposed a design already trained on seed 0 (``earlier``): the same
    design on the same seed trains to the same result, so it is never trained again. The
    sampler is told the earlier value; racing may give the design its next seed."""
    import optuna

    trial.set_user_attr(results.DUPLICATE_OF, earlier.number)
    if earlier.state == optuna.trial.TrialState.PRUNED:
        raise optuna.TrialPruned(f"the same design as trial {earlier.number}, pruned")
    if earlier.state == optuna.trial.TrialState.RUNNING:  # another worker trains it now
        raise optuna.TrialPruned(f"the same design as trial {earlier.number}, running")
    return tuple(earlier.values) if spec.multi_objective else earlier.values[0]


def error_message(err: BaseException) -> str:
    """What a failed trial records as its ``error``."""
    if isinstance(err, SystemExit):
        return f"the trial's code called sys.exit({err.code!r})"
    if isinstance(err, LosstuneError):
        return str(err)
    return f"{type(err).__name__}: {err}"[:500]


def run_seed(spec: StudySpec) -> int:
    """Seed index i fixes the initialisation and the batch order of every design (``spec.seed``
    is that seed's), so designs compare seed by seed; it does not depend on the trial."""
    return (spec.seed * 100_003) % 2**31


def propose(trial: "optuna.Trial", ctx: Context) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sampler's training settings and loss design, recorded on the trial."""
    from losstune import losses

    spec, splits = ctx.spec, ctx.splits
    training = suggest_training(trial, spec)
    design: LossDesign = suggest_design(trial, spec)
    description = design.description(epochs=training["epochs"], class_counts=splits.class_counts,
                                      from_logits=tasks.TASKS[spec.task].has_classes)
    trial.set_user_attr(results.FAMILY, design.family)
    trial.set_user_attr(results.LOSS, json.dumps(description, sort_keys=True))
    trial.set_user_attr(results.WORDS, losses.describe_in_words(description))
    trial.set_user_attr(results.DEVICE, ctx.device)
    trial.set_user_attr(results.BACKEND, ctx.backend)
    return training, description


def repeat_of(trial: "optuna.Trial", description: dict[str, Any],
               known: dict[str, Any]) -> Any:
    """For a search trial (seed 0 of its design): the earlier search trial of the same design,
    if there is one. Replicate runs come with their design and seed already set. ``known``:
    :func:`trained_designs`, read once for a batch of trials; each new design is added."""
    if results.SEED_INDEX in trial.user_attrs:
        return None
    key = results.design_key(description, results.training_params(trial.params))
    trial.set_user_attr(results.DESIGN_KEY, key)
    trial.set_user_attr(results.SEED_INDEX, 0)
    earlier = known.get(key)
    if earlier is None or earlier.state.name == "FAIL":  # a failed one is no answer
        known[key] = optuna_adapter.held(trial)  # RUNNING: later trials of the batch wait
        return None
    return earlier


class TrainedDesigns:
    """Each design's first search trial that trained or trains now, by design key
    (:func:`trained_designs`); a trial is read whole only when a proposal asks for it."""

    def __init__(self, study: "optuna.Study", ids: dict[str, int]) -> None:
        self.study, self.ids, self.trials = study, ids, {}

    def get(self, key: str) -> Any:
        if key not in self.trials and key in self.ids:
            from losstune import optuna_adapter

            self.trials[key] = optuna_adapter.storage_of(self.study).get_trial(self.ids[key])
        return self.trials.get(key)

    def __setitem__(self, key: str, trial: Any) -> None:
        self.trials[key] = trial


def trained_designs(study: "optuna.Study", but: Any = ()) -> TrainedDesigns:
    """Each design's first search trial that trained or trains now (RUNNING too: another
    worker may train it on the same seed right now), not a repeat, by design key; ``but``:
    trial numbers left out (the trial asking, and the repeats waiting with it)."""
    from losstune import optuna_adapter

    rows = optuna_adapter.trials_with_user_attr(study, results.DESIGN_KEY, _trained_states(),
                                                without=results.DUPLICATE_OF)
    return _designs(study, rows, but)


def waiting_and_trained(study: "optuna.Study") -> tuple[list[int], TrainedDesigns]:
    """The study's WAITING trials' ids, oldest first, and :func:`trained_designs`, in one
    read of the storage: what a batch reads before it asks its trials."""
    from losstune import optuna_adapter

    waiting, rows = optuna_adapter.waiting_and_with_user_attr(
        study, results.DESIGN_KEY, _trained_states(), without=results.DUPLICATE_OF)
    return waiting, _designs(study, rows, ())


def _trained_states() -> tuple[Any, ...]:
    from optuna.trial import TrialState

    return TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING


def _designs(study: "optuna.Study", rows: list[tuple[int, int, str]], but: Any
             ) -> TrainedDesigns:
    left_out = {but} if isinstance(but, int) else set(but or ())
    ids: dict[str, int] = {}
    for tid, number, key in rows:
        if key not in ids and number not in left_out:
            ids[key] = tid
    return TrainedDesigns(study, ids)


def _build(trial: "optuna.Trial", ctx: Context, description: dict[str, Any],
           training: dict[str, Any]) -> Built:
    """The loss and a fresh model, checked on a real batch, then compiled (or reused)."""
    import keras

    from losstune import compiled, losses, models

    spec, splits = ctx.spec, ctx.splits
    loss = losses.build_loss(description)
    model = tasks.TASKS[spec.task].build_model(ctx, description)
    if model is None:
        model = models.build(spec.model, input_shape=splits.input_shape,
                             units=models.output_units(spec.task, splits.num_classes,
                                                       spec.model.embedding_dim),
                             base_dir=ctx.base_dir, builder=ctx.model_fn, task=spec.task,
                             penalty=description.get("penalty"))
    y_train = training_targets(splits)
    batch = y_train[:AUDIT_BATCH]
    warnings = tasks.TASKS[spec.task].check_built(trial, ctx, model, loss, batch)
    if warnings is None:
        outputs = keras.ops.convert_to_numpy(model(splits.x_train[:len(batch)]))
        check_outputs(spec, outputs, batch)
        warnings = record_audit(trial, loss, batch, outputs)
    model, loss, reused = compiled.CACHE.prepare(
        model, loss, optimizer=training["optimizer"],
        learning_rate=training["learning_rate"], jit_compile=spec.training.jit_compile,
        steps=execution_steps(ctx, training["batch_size"]),
        sample=(splits.x_train[:2], y_train[:2]), reuse=spec.training.reuse_compiled)
    trial.set_user_attr(results.COMPILED, "reused" if reused else "new")
    return Built(loss, model, y_train, reused, warnings)


def record_audit(trial: "optuna.Trial", loss: Any, targets: np.ndarray,
                 outputs: np.ndarray) -> tuple[str, ...]:
    """The loss audit on a real batch of the untrained model, recorded; its warnings."""
    from losstune import audit

    return keep_audit(trial, audit.check(loss, targets, outputs))


def keep_audit(trial: "optuna.Trial", report: Any) -> tuple[str, ...]:
    """A loss audit's report recorded on the trial; its warnings."""
    trial.set_user_attr(results.AUDIT, {k: {n: float(f"{v:.4g}") for n, v in d.items()}
                                        for k, d in report.as_dict().items()})
    if report.warnings:
        trial.set_user_attr(results.AUDIT_WARNINGS, list(report.warnings))
    return tuple(report.warnings)


def _train(trial: "optuna.Trial", ctx: Context, built: Built, training: dict[str, Any],
           seed: int) -> Trained:
    """``fit``, scoring the objective after every epoch; the curves and times recorded."""
    import keras

    from losstune import losses

    spec = ctx.spec
    metric = spec.objective.metrics[0]
    scorer = _epoch_scorer(trial, ctx, metric, report=not spec.multi_objective)
    # Again: the same batches whatever building, auditing or compiling drew before.
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    # No validation_data: the scorer computes the objective on the validation split itself,
    # and a Keras validation pass would trace a second graph and compute a loss nobody reads.
    try:
        history = built.model.fit(**fit_arguments(ctx, built.y_train, training["batch_size"],
                                                  seed, training["epochs"]), verbose=0,
                                  callbacks=[*losses.loss_callbacks(built.loss), scorer])
    finally:
        activity.clear()  # also when fit raised: no stale epoch on the display
    trained = Trained(scorer, history.history, time.perf_counter() - start)
    record_training(trial, metric, scorer.values, trained.logs, trained.seconds,
                    scorer.epoch_seconds)
    for name, values in scorer.curves.items():
        trial.set_user_attr(results.val_curve(name), compact(values))
    return trained


def record_training(trial: "optuna.Trial", metric: str, values: list[float],
                    logs: dict[str, list[float]], seconds: float,
                    epoch_seconds: list[float]) -> None:
    """The curves and times of a trial's training: the objective per epoch, the training loss
    (and DynamicLoss's terms) per epoch."""
    trial.set_user_attr(results.TRAIN_TIME, round(seconds, 3))
    trial.set_user_attr(results.EPOCH_TIME, float(f"{steady_epoch_seconds(epoch_seconds):.6g}"))
    trial.set_user_attr(results.EPOCHS_TRAINED, len(logs.get("loss", [])))
    trial.set_user_attr(results.val_curve(metric), compact(values))
    for key in logs:  # the loss, and its components where it has some (loss_<component>)
        if key == "loss" or key.startswith(results.COMPONENT):
            trial.set_user_attr(results.CURVE + key, compact([float(v) for v in logs[key]]))


def stop_unless_finished(trial: "optuna.Trial", scorer: Any,
                          interrupted: bool | None = None) -> None:
    """A trial the user interrupted, whose loss diverged, or that the pruner stopped.
    ``scorer``: what watched its epochs (``interrupted``, ``diverged``, ``pruned_at``).
    ``interrupted``: whether this trial was cut short, when known (a population's member that
    finished before a stop is not); by default, a stop counts."""
    import optuna

    if interrupted if interrupted is not None else (scorer.interrupted or STOP.is_set()):
        trial.set_user_attr(results.ERROR, INTERRUPTED)
        raise TrialInterrupted(INTERRUPTED)
    if scorer.diverged:
        trial.set_user_attr(results.ERROR, scorer.diverged)
        raise LossDivergedError(scorer.diverged)
    if scorer.pruned_at is not None:
        trial.set_user_attr(results.PRUNED_AT, scorer.pruned_at)
        raise optuna.TrialPruned(f"pruned at epoch {scorer.pruned_at}")


def record_scores(trial: "optuna.Trial", ctx: Context, description: dict[str, Any], *,
                  val_out: np.ndarray, test_out: np.ndarray | None, seconds: float,
                  epoch_seconds: list[float], warnings: tuple[str, ...],
                  val_scores: dict[str, Any] | None = None,
                  test_scores: dict[str, Any] | None = None) -> float | tuple[float, ...]:
    """Every metric on the validation (and test) split, from the trained model's outputs
    there (or ``val_scores`` / ``test_scores``, already computed from them: a population
    scores its members at once), recorded; the objective(s) returned."""
    spec, splits = ctx.spec, ctx.splits
    metric = spec.objective.metrics[0]
    val = val_scores if val_scores is not None else score(None, splits, splits.x_val,
                                                          splits.y_val, out=val_out)
    tasks.TASKS[splits.task].record_outputs(trial, splits, val_out)  # for the report
    for name, value in val.items():
        trial.set_user_attr(results.VAL + name, _round(value))
    if len(splits.y_test):
        # Recorded for every trial but read only for the top designs: the sampler never
        # sees user attributes, so the search cannot select on the test split.
        if test_scores is None:
            test_scores = score(None, splits, splits.x_test, splits.y_test, out=test_out)
        for name, value in test_scores.items():
            trial.set_user_attr(results.TEST + name, _round(value))
    objective = val[metric]
    _save_note(trial, description, val, metric, seconds, warnings)
    if not math.isfinite(objective):
        raise LossDivergedError(f"the objective {metric} is {objective}")
    if not spec.multi_objective:
        return objective
    # The objective "train_time" leaves out the one-off compilation that only the first trial
    # of each compiled model pays, so trials compare by what their loss costs.
    cost = steady_epoch_seconds(epoch_seconds) * len(epoch_seconds)
    return (objective, *[cost if m == tasks.TRAIN_TIME_METRIC else val[m]
                         for m in spec.objective.metrics[1:]])


def projection(embeddings: np.ndarray) -> list[list[float]]:
    """The first MAX_PROJECTED embeddings, L2-normalised as the losses see them, projected on
    their first two principal components (scikit-learn's PCA): [[x...], [y...]]."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import normalize

    points = normalize(np.asarray(embeddings[:MAX_PROJECTED], dtype="float64"))
    xy = PCA(n_components=2, random_state=0).fit_transform(points)
    return [compact(xy[:, 0].tolist()), compact(xy[:, 1].tolist())]


def check_outputs(spec: StudySpec, outputs: np.ndarray, targets: np.ndarray) -> None:
    """The model's outputs must match the targets (a user's factory may return anything):
    say what was expected instead of a backend's shape error deep inside the loss."""
    task = tasks.TASKS[spec.task]
    want, got = task.expected_outputs(spec, targets), tuple(outputs.shape[1:])
    if want is not None and got != want:
        source = (f"model.factory {spec.model.factory!r}" if spec.model.kind == "factory"
                  else f"model.kind {spec.model.kind!r}")
        raise LosstuneError(f"{source} returned outputs of shape (batch, "
                            f"{', '.join(map(str, got))}); {a_task(spec.task)} here needs "
                            f"(batch, {', '.join(map(str, want))}): one unit per "
                            f"{task.unit}, {task.output}")


def _save_note(trial: "optuna.Trial", description: dict[str, Any], val: dict[str, Any],
               metric: str, train_time: float, warnings: tuple[str, ...]) -> None:
    """A markdown note optuna-dashboard shows on the trial page: the loss in words and figures."""
    from losstune import recording
    from losstune.losses import describe_in_words

    lines = [f"### {describe_in_words(description)}", ""]
    if trial.user_attrs.get(results.BASELINE):
        lines += ["*Baseline design (enqueued by losstune).*", ""]
    lines += ["| metric (validation) | value |", "|---|---|"]
    for name, value in val.items():
        if isinstance(value, float):
            lines.append(f"| {'**' + name + '**' if name == metric else name} | {value:.4f} |")
    lines += ["", f"Training time: {train_time:.1f} s.", "",
              "Loss description (use with `losstune.losses.build_loss`):", "",
              "```json", json.dumps(description, indent=2, sort_keys=True), "```"]
    lines += [f"> ⚠ {w}" for w in warnings]
    recording.start(trial).note("\n".join(lines))


def _round(value: Any) -> Any:
    if isinstance(value, list):
        return [_round(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    return value

