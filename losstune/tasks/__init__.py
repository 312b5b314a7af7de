"""The tasks losstune tunes losses for: the registry, and what every task is.

A task is a module (``losstune/tasks/<name>.py``) that makes one :class:`Task` and registers
it, the way a loss family is a record in the catalog. Its record says what its targets are,
what one output unit of the model means, which scikit-learn metrics score it (each with its
direction) and which built-in datasets serve it; its methods do what differs by task: the
targets the losses take, the scores of a split, what a trial keeps for the report, whether it
trains in populations. The rest of the package asks the task (``tasks.TASKS[name]``) and does
not branch on its name.

This module is the registry: plain data and the base class, no heavy import and no import of
the package's upper layers. The task modules sit in a layer of their own above the report
(they use the training, scoring and report modules, inside their methods), and nothing below
imports them: the rest of the package calls the methods of the registered objects. The
built-in task modules are imported by ``losstune/__init__.py``, so they are registered before
any other module reads the registry.

Model outputs are raw (except a GAN's samples, through a tanh): logits for classes and labels (the losses are built with
``from_logits=True``), a standardised value for regression, and the log of the expected count
for counts (``log_input``, as in PyTorch's ``PoissonNLLLoss``): an exponential output layer
would overflow where a loss can take the log-rate as it is.

Layer: foundation.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from losstune import registry

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

MAXIMIZE, MINIMIZE = "maximize", "minimize"


@dataclass(frozen=True)
class Task:
    """``targets``: ``classes`` (one class per sample), ``labels`` (0/1 for each of several
    labels), ``values`` (a real number, robustly scaled), ``counts`` (a whole number >= 0,
    never scaled) or ``inputs`` (the samples themselves). ``outputs``: ``scores`` (one unit per
    class or label), ``value`` (one unit), ``embedding`` (``model.embedding_dim`` units),
    ``reconstruction`` or ``samples`` (a generator's). ``unit``: what one output unit stands for, in an error message.
    ``metrics``: name -> direction; the first is the default objective. ``datasets``: the
    built-in datasets of this task. ``shown``: the metrics the report's leaderboard shows
    (default: the first three). ``classes``: the exact number of classes the task takes (2
    for binary), or 0 for two or more. ``settings``: the study-file keys only some tasks take
    (:data:`SETTINGS`) that this one takes. ``feature_range``: the features scaled into this
    range (the training split's minimum and maximum, as its model's outputs are: a sigmoid's
    [0, 1], a tanh's [-1, 1]), or None for standardised features. ``backends``: the Keras
    backends its trials train on, with why the others cannot (``backends_why``), or () for
    all.

    Subclasses (one per task module) implement :meth:`score`, and override the other methods
    where their task differs from a task with one target column per sample."""

    name: str
    targets: str
    outputs: str
    unit: str
    output: str
    metrics: Mapping[str, str]
    datasets: tuple[str, ...] = ()
    shown: tuple[str, ...] = ()
    classes: int = 0
    settings: tuple[str, ...] = ()
    feature_range: tuple[float, float] | None = None
    backends: tuple[str, ...] = ()
    # The model functions losstune.search() takes for this task, by keyword.
    python_functions: tuple[str, ...] = ("build_model",)
    # Metrics recorded after every epoch of a trial alone beside the objective (curves).
    curve_metrics: tuple[str, ...] = ()

    @property
    def default_metric(self) -> str:
        return next(iter(self.metrics))

    @property
    def leaderboard_metrics(self) -> tuple[str, ...]:
        return self.shown or tuple(self.metrics)[:3]

    @property
    def outputs_logits(self) -> bool:
        """One logit per class or label: a final sigmoid or softmax is refused."""
        return self.outputs == "scores"

    @property
    def has_classes(self) -> bool:
        """Targets that are classes or labels: class counts, and logits as outputs."""
        return self.targets in ("classes", "labels")

    @property
    def backends_why(self) -> str:
        """Why the task trains on its ``backends`` only."""
        return ""

    @property
    def stratified(self) -> bool:
        """Splits keep each class's share: targets that are classes, or inputs whose labels
        score an autoencoder's code."""
        return self.targets in ("classes", "inputs")

    @property
    def scored_by_neighbours(self) -> bool:
        """Outputs scored by their nearest training samples (an embedding, an autoencoder's
        code): the model also runs on the training split to score a split."""
        return self.outputs in ("embedding", "reconstruction")

    def latent_width(self, spec: Any) -> int:
        """The width of the model's code or latent vectors (an autoencoder's code)."""
        return spec.model.embedding_dim

    def scored_inputs(self, splits: Any, x: np.ndarray, split: str) -> np.ndarray:
        """What the model is run on to score a split (``"val"`` or ``"test"``) whose features
        are ``x``: the features, then (outputs scored by their nearest training samples) the
        training split's."""
        import numpy as np

        if not self.scored_by_neighbours:
            return x
        return np.concatenate([x, splits.x_train])

    def from_python(self, functions: dict[str, Any], latent_dim: int) -> tuple[Any, dict]:
        """A study made from Python: what builds a trial's model (``ctx.model_fn``), and the
        study's ``[model]`` section, from the model functions given (:attr:`python_functions`
        by name; each checked before anything is written). The default: ``build_model``, a
        function ``(input_shape, output_units) -> keras.Model`` or a model to clone."""
        return model_function(functions)

    def check_built(self, trial: Any, ctx: Any, model: Any, loss: Any,
                    y: np.ndarray) -> tuple[str, ...] | None:
        """Before a trial trains alone, the task's own check of its new model and loss on a
        real training batch (targets ``y``), recorded; its warnings. None (the default): the
        trial's check, the model's outputs against the task and the loss audit on them."""
        return None

    def units(self, num_classes: int, embedding_dim: int = 0) -> int:
        """Output units of a model for this task: one per class or label, the embedding's
        dimension, or one."""
        if self.outputs == "scores":
            return num_classes
        return embedding_dim if self.outputs == "embedding" else 1

    # ------------------------------------------------------------------ the study file
    def check_study(self, spec: Any, fail: Any) -> None:
        """This task's own rules for a study file: ``fail(key, message)`` for the first broken
        (default: none beyond the rules every task shares)."""

    def check_files(self, spec: Any, fail: Any, base_dir: Any) -> None:
        """The files this task's study keys name, relative to the study file's folder
        ``base_dir``: ``fail(key, message)`` for one that is missing (default: none)."""

    # ------------------------------------------------------------------ training
    def loss_targets(self, splits: Any, y: np.ndarray) -> np.ndarray:
        """Targets ``y`` of a split as the losses take them (default: one column)."""
        import numpy as np

        return np.asarray(y, dtype="float32").reshape(-1, 1)

    def training_targets(self, splits: Any) -> np.ndarray:
        """What the model is trained to output for the training split."""
        return self.loss_targets(splits, splits.y_train)

    def expected_outputs(self, spec: Any, targets: np.ndarray) -> tuple[int, ...] | None:
        """The shape of one sample's model output (after the batch axis), or None where the
        task's own built-in model is the only one allowed."""
        return tuple(targets.shape[1:])

    def trains_alone(self, spec: Any) -> str | None:
        """Why this task's trials train one at a time (not in populations), or None."""
        return None

    def load_data(self, spec: Any, base_dir: Any, seed: int) -> Any:
        """The task's own splits from ``spec`` (its ``[dataset]``), or None (the default) for
        the shared loading of tables and bundled sets."""
        return None

    def check_splits(self, spec: Any, splits: Any) -> None:
        """Refuse (DataError) splits this study's settings cannot train on, before any
        trial (default: anything goes)."""

    def build_model(self, ctx: Any, description: dict[str, Any]) -> Any:
        """The task's own model for a trial, or None for the study's model (built-in kinds,
        a factory, a Python function) with :func:`units` outputs."""
        return None

    def execution_steps(self, ctx: Any, steps: int, batch_size: int) -> int:
        """Train steps per call into the compiled function, from the study's ``steps``."""
        return steps

    def fit_arguments(self, ctx: Any, y: Any, batch_size: int, seed: int,
                      epochs: int) -> dict[str, Any] | None:
        """``fit``'s data arguments where the task orders its batches itself, or None for the
        training split reshuffled every epoch."""
        return None

    # ------------------------------------------------------------------ scoring
    def score(self, splits: Any, x: np.ndarray, y: np.ndarray, out: np.ndarray,
              only: str | None = None) -> dict[str, Any]:
        """Every metric of a split from the model's outputs ``out`` on ``x`` (or ``only``
        that one)."""
        raise NotImplementedError(f"task {self.name!r} has no score")

    def score_members(self, splits: Any, x: np.ndarray, y: np.ndarray, outs: np.ndarray,
                      only: str | None = None) -> list[Any]:
        """:meth:`score` for K members from their outputs ``outs`` (n, K, ...): each member's
        metrics, or the FloatingPointError its outputs raise."""
        scored: list[Any] = []
        for k in range(outs.shape[1]):
            try:
                scored.append(self.score(splits, x, y, outs[:, k], only=only))
            except FloatingPointError as err:
                scored.append(err)
        return scored

    # ------------------------------------------------------------------ the report
    def record_outputs(self, trial: Any, splits: Any, val_out: np.ndarray) -> None:
        """What a trial keeps of its validation outputs for the report (default: nothing)."""

    def record_data(self, study: Any, splits: Any) -> None:
        """What the report needs of the data beside the trials' outputs, on the study
        (default: nothing)."""

    def report_figures(self, order: list[Any], attrs: dict[str, Any], add: Any) -> None:
        """The report's figures of this task: ``add(title, caption, figure or None, why
        missing)`` for each, from ``order`` (one trial per design in the verdict's ranking)
        and the study's user attributes ``attrs`` (default: none)."""


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add a task (its module calls this once); its name must be new."""
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is registered already")
    unknown = [key for key in task.settings if key not in SETTINGS]
    if unknown:
        raise ValueError(f"task {task.name!r}: settings {', '.join(unknown)} are not among "
                         f"{', '.join(SETTINGS)}")
    TASKS[task.name] = task
    return task


def unregister(name: str) -> None:
    """Remove a registered task (a task registered for a while: tests, notebooks)."""
    TASKS.pop(name, None)


def registered(task: Task) -> AbstractContextManager[Task]:
    """``task`` registered for the ``with`` block only (tests, notebooks)."""
    return registry.for_block(register, unregister, task)


def names() -> tuple[str, ...]:
    """The registered tasks' names, built-in tasks first."""
    return tuple(TASKS)


CLASS_METRICS = {"macro_f1": MAXIMIZE, "balanced_accuracy": MAXIMIZE, "accuracy": MAXIMIZE,
                 "roc_auc": MAXIMIZE, "log_loss": MINIMIZE}
# Only as a second objective, for every task: wall time of the trial's training, in seconds.
# The objective (seconds per epoch × epochs); the recorded fit time is results.TRAIN_TIME.
TRAIN_TIME_METRIC = "train_time"


def a_task(name: str) -> str:
    """"a multiclass task", "an embedding task": the task's name with its article."""
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name} task"


def task(name: str) -> Task:
    found = TASKS.get(name)
    if found is None:
        raise ValueError(f"task must be one of {', '.join(names())}, got {name!r}.")
    return found


def metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every metric -> (direction, tasks it applies to). A metric means one thing, so it has
    one direction whichever task uses it (tests/test_spec.py checks)."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for t in TASKS.values():
        for name, direction in t.metrics.items():
            _, tasks = out.get(name, (direction, ()))
            out[name] = (direction, (*tasks, t.name))
    out[TRAIN_TIME_METRIC] = (MINIMIZE, names())
    return out


IN_MEMORY = "arrays"  # dataset.name of a study made from Python with in-memory data


def builtin_datasets() -> dict[str, tuple[str, ...]]:
    """Built-in dataset -> the tasks it serves."""
    out: dict[str, tuple[str, ...]] = {}
    for t in TASKS.values():
        for d in t.datasets:
            out[d] = (*out.get(d, ()), t.name)
    return out


def for_python(functions: dict[str, Any], task: str | None) -> str | None:
    """The task of a study made from Python: ``task``, or the one task that takes the model
    functions given (a GAN's generator and discriminator), or None (inferred from the data).
    Functions another task takes are refused in one line."""
    from losstune.errors import LosstuneError

    given = [name for name, f in functions.items() if f is not None and name != "build_model"]
    takers = [t for t in TASKS.values() if given and set(given) <= set(t.python_functions)]
    if task is None and len(takers) == 1:
        return takers[0].name
    if given and task in TASKS and not set(given) <= set(TASKS[task].python_functions):
        owners = " or ".join(f"task={t.name!r}" for t in takers) or "no task"
        raise LosstuneError(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for "
                            f"{owners}, not task={task!r}")
    return task


def model_function(functions: dict[str, Any]) -> tuple[Any, dict]:
    """:meth:`Task.from_python`'s default: ``build_model``, checked."""
    from losstune.errors import LosstuneError

    build_model = functions.get("build_model")
    if not callable(build_model) and not hasattr(build_model, "layers"):
        raise LosstuneError("build_model must be a function (input_shape, output_units) -> "
                            f"keras.Model, or a keras.Model; got {type(build_model).__name__}")
    return build_model, {"kind": "python", "factory": reference(build_model)}


def reference(function: Any) -> str:
    """Where a model function given in Python came from, for the record (it is not imported
    back)."""
    target = function if callable(function) and not hasattr(function, "layers") \
        else type(function)
    module = getattr(target, "__module__", "?")
    return f"{module}:{getattr(target, '__qualname__', type(target).__name__)}"


def units(name: str, num_classes: int, embedding_dim: int = 0) -> int:
    """Output units of a model for task ``name`` (:meth:`Task.units`)."""
    return TASKS[name].units(num_classes, embedding_dim)


# The training-split transforms of a study file's dataset section, by the kind of targets they
# act on (a long tail thins classes or labels; noise flips classes; outliers move values).
TRANSFORMS: dict[str, tuple[str, ...]] = {"long_tail": ("classes", "labels"),
                                          "label_noise": ("classes",),
                                          "outliers": ("values",)}
# Study-file keys that only some tasks take (Task.settings), with what they are for.
SETTINGS: dict[str, str] = {
    "training.samples_per_class": "P x K batches",
    "model.embedding_dim": "the embedding's or the code's width",
    "model.latent_dim": "the generator's latent vectors",
    "model.normalization": "the generator's and discriminator's normalisation",
    "search.denoise": "input noise: a denoising autoencoder",
    "dataset.content": "the content image",
    "dataset.style": "the style image",
    "dataset.size": "the images' long side in pixels",
    "model.features": "the feature network of the style and content losses",
    "model.vgg_weights": "VGG19's weights file",
    "training.steps_per_epoch": "optimisation steps of the image an epoch",
}
