"""The tasks losstune tunes losses for: one record each, the only list of them there is.

A :class:`Task` says what its targets are, what one output unit of the model means, which
scikit-learn metrics score it (each with its direction) and which built-in datasets serve it.
The study-file checks, the catalog of loss families, the data loader, the models and the
scoring read these records. Plain data, no heavy import.

Model outputs are always raw: logits for classes and labels (the losses are built with
``from_logits=True``), a standardised value for regression, and the log of the expected count
for counts (``log_input``, as in PyTorch's ``PoissonNLLLoss``): an exponential output layer
would overflow where a loss can take the log-rate as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

MAXIMIZE, MINIMIZE = "maximize", "minimize"


@dataclass(frozen=True)
class Task:
    """``targets``: ``classes`` (one class per sample), ``labels`` (0/1 for each of several
    labels), ``values`` (a real number, robustly scaled) or ``counts`` (a whole number >= 0,
    never scaled). ``outputs``: ``scores`` (one unit per class or label), ``value`` (one
    unit) or ``embedding`` (``model.embedding_dim`` units). ``unit``: what one output unit
    stands for, in an error message.
    ``metrics``: name -> direction; the first is the default objective. ``datasets``: the
    built-in datasets of this task."""

    name: str
    targets: str
    outputs: str
    unit: str
    output: str
    metrics: Mapping[str, str]
    datasets: tuple[str, ...] = ()

    @property
    def default_metric(self) -> str:
        return next(iter(self.metrics))

    @property
    def has_classes(self) -> bool:
        """Targets that are classes or labels: class counts, and logits as outputs."""
        return self.targets in ("classes", "labels")


_CLASS_METRICS = {"macro_f1": MAXIMIZE, "balanced_accuracy": MAXIMIZE, "accuracy": MAXIMIZE,
                  "roc_auc": MAXIMIZE, "log_loss": MINIMIZE}
_TASKS = (
    Task("multiclass", "classes", "scores", "class", "logits without an activation",
         _CLASS_METRICS, ("digits", "wine")),
    Task("binary", "classes", "scores", "class", "logits without an activation",
         _CLASS_METRICS, ("breast_cancer",)),
    Task("regression", "values", "value", "target", "one linear unit",
         {"mae": MINIMIZE, "rmse": MINIMIZE, "r2": MAXIMIZE}, ("diabetes",)),
    Task("multilabel", "labels", "scores", "label",
         "logits without an activation (one per label)",
         {"macro_f1": MAXIMIZE, "micro_f1": MAXIMIZE, "mean_average_precision": MAXIMIZE},
         ("multilabel",)),
    Task("count", "counts", "value", "target", "a linear unit: the log of the expected count",
         {"poisson_deviance": MINIMIZE, "mae": MINIMIZE, "rmse": MINIMIZE},
         ("counts",)),
    # The reconstruction error of the clean validation inputs is the default objective; the
    # code's k-nearest-neighbour accuracy (classes as labels) is recorded too, or chosen.
    Task("autoencoder", "inputs", "reconstruction", "input feature",
         "reconstruction logits of every input feature, then the latent code "
         "(model.embedding_dim units; a VAE's log-variance after it)",
         {"reconstruction_mse": MINIMIZE, "latent_knn_accuracy": MAXIMIZE},
         ("digits", "breast_cancer")),
    # Scored by the nearest training embeddings of each validation embedding (k = 5 votes,
    # and the single nearest); the losses compare the samples of a batch with each other.
    Task("embedding", "classes", "embedding", "embedding dimension",
         "one linear unit per embedding dimension (model.embedding_dim)",
         {"knn_accuracy": MAXIMIZE, "recall_at_1": MAXIMIZE}, ("digits",)),
)
TASKS: dict[str, Task] = {t.name: t for t in _TASKS}
NAMES = tuple(TASKS)
# Only as a second objective, for every task: wall time of the trial's training, in seconds.
# The objective (seconds per epoch × epochs); the recorded fit time is results.TRAIN_TIME.
TRAIN_TIME_METRIC = "train_time"


def a(name: str) -> str:
    """"a multiclass task", "an embedding task": the task's name with its article."""
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name} task"


def task(name: str) -> Task:
    found = TASKS.get(name)
    if found is None:
        raise ValueError(f"task must be one of {', '.join(NAMES)}, got {name!r}.")
    return found


def metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every metric -> (direction, tasks it applies to). A metric means one thing, so it has
    one direction whichever task uses it (tests/test_spec.py checks)."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for t in _TASKS:
        for name, direction in t.metrics.items():
            _, tasks = out.get(name, (direction, ()))
            out[name] = (direction, (*tasks, t.name))
    out[TRAIN_TIME_METRIC] = (MINIMIZE, NAMES)
    return out


IN_MEMORY = "arrays"  # dataset.name of a study made from Python with in-memory data


def builtin_datasets() -> dict[str, tuple[str, ...]]:
    """Built-in dataset -> the tasks it serves."""
    out: dict[str, tuple[str, ...]] = {}
    for t in _TASKS:
        for d in t.datasets:
            out[d] = (*out.get(d, ()), t.name)
    return out


def units(name: str, num_classes: int, embedding_dim: int = 0) -> int:
    """Output units of a model for this task: one per class or label, the embedding's
    dimension, or one."""
    outputs = TASKS[name].outputs
    return num_classes if outputs == "scores" else embedding_dim if outputs == "embedding" else 1
