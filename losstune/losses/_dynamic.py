"""DynamicLoss and what trains it: the epoch callback and the per-term metric.

Where DynamicLoss differs from the seed design (README, "The loss library"):

* the epoch lives in a non-trainable ``keras.Variable`` assigned by :class:`DynamicLossCallback`,
  not in a Python int (a compiled train step freezes a Python number at trace time);
* the class-balance term is KL(prior || batch-mean prediction); the seed's
  CE(mean(y_true), uniform) is the constant log C and has no gradient;
* the curriculum term is summed over classes *per sample* (then averaged over the batch by the
  reduction) instead of over the whole batch, so its scale does not grow with the batch size.

Its base losses and term names are the catalog's (the ``dynamic`` family's ``bases`` and
``terms``).

Layer: domain.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import keras
from keras import ops

from losstune import catalog
from losstune.results import COMPONENT
from losstune.losses._families import EPS, PACKAGE, ConfigLoss, per_sample, probabilities
from losstune.losses._validation import check_base_params, check_counts, check_params
from losstune.schedules import Schedule, progress

_FAMILY = "dynamic"
COMPONENTS = catalog.family(_FAMILY).terms


def make_base_loss(base: str, base_params: Mapping[str, Any] | None = None) -> keras.losses.Loss:
    """A Keras loss by its catalog name, unreduced (DynamicLoss reduces the sum of its terms)."""
    record = catalog.family(_FAMILY).base(base)
    params = dict(base_params or {})
    check_base_params(record, params)
    return catalog.load(record.loss)(reduction=None, **params)


@keras.saving.register_keras_serializable(package=PACKAGE)
class DynamicLoss(ConfigLoss):
    """standard + learning progress + class balance + curriculum, each with its own weight.

    * standard: ``w_standard`` × a Keras built-in loss (``base`` + ``base_params``);
    * progress: ``w_progress`` × epoch / (epochs - 1), a per-epoch offset (no gradient, by design
      of the seed; the audit warns about it);
    * balance: ``w_balance`` × KL(prior || mean predicted distribution over the batch), prior
      uniform or the training-set class frequencies (``prior="train"`` with ``class_counts``);
    * curriculum: ``w_curriculum`` × schedule(epoch) × 0.1 × Σ_classes |sin(p)| per sample.

    The epoch, the progress and the schedule factor are non-trainable Keras variables that
    :class:`DynamicLossCallback` assigns at the start of every epoch, so they change inside a
    compiled train step. Use ``loss.callback()`` in ``model.fit(callbacks=[...])``.
    ``from_logits`` (when given) is the base's, where the base takes it.
    """

    _config_keys = ("base", "base_params", "w_standard", "w_progress", "w_balance",
                    "w_curriculum", "schedule", "epochs", "prior", "class_counts")
    # base_params: the base loss's own variables (its compiled_key covers what must match).
    _variable_keys = ("base_params", "w_standard", "w_progress", "w_balance", "w_curriculum",
                      "schedule", "epochs", "class_counts")

    def __init__(self, base: str = "categorical_crossentropy",
                 base_params: Mapping[str, Any] | None = None, w_standard: float = 1.0,
                 w_progress: float = 0.0, w_balance: float = 0.0, w_curriculum: float = 0.0,
                 schedule: Schedule | Mapping[str, Any] | str | None = None, epochs: int = 10,
                 prior: str = "uniform", class_counts=None, from_logits: bool | None = None,
                 reduction="sum_over_batch_size", name="dynamic_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        record = catalog.family(_FAMILY).base(base)
        self.base, self.base_params = base, dict(base_params or {})
        if from_logits is not None and "from_logits" in record.args:
            self.base_params.setdefault("from_logits", bool(from_logits))
        self._base = make_base_loss(base, self.base_params)
        weights = {f"w_{term}": value for term, value in
                   zip(COMPONENTS, (w_standard, w_progress, w_balance, w_curriculum))}
        check_params(_FAMILY, {**weights, "epochs": epochs, "prior": prior})
        self.w_standard, self.w_progress = float(w_standard), float(w_progress)
        self.w_balance, self.w_curriculum = float(w_balance), float(w_curriculum)
        self.schedule = schedule if isinstance(schedule, Schedule) else Schedule.from_dict(schedule)
        self.epochs, self.prior = int(epochs), prior
        self.class_counts = check_counts(class_counts, "dynamic.class_counts")
        if prior == "train" and self.class_counts is None:
            raise ValueError("dynamic.class_counts must be given when prior is 'train', got None.")
        self._classes = record.classes
        if not self._classes and self.w_balance > 0:
            raise ValueError(f"dynamic.w_balance must be 0 for the regression base {base!r}, "
                             f"got {self.w_balance}; the class-balance term needs class "
                             "probabilities.")
        self.from_logits = bool(self.base_params.get("from_logits", False))
        self.epoch = keras.Variable(0.0, trainable=False, dtype="float32", name="epoch")
        self.progress = keras.Variable(0.0, trainable=False, dtype="float32", name="progress")
        self.curriculum_factor = keras.Variable(
            self.schedule.value(0, self.epochs), trainable=False, dtype="float32",
            name="curriculum_factor")
        counts = self.class_counts or [1.0, 1.0]
        prior_p = [c / sum(counts) for c in counts]
        self._init_hp(**weights, prior=prior_p,
                      # Σ prior · log prior, the constant half of the KL balance term
                      prior_log_prior=sum(q * math.log(max(q, EPS)) for q in prior_p))
        self._hp.update(epoch=self.epoch, progress=self.progress,
                        curriculum_factor=self.curriculum_factor)

    # The callback calls this; tests and user loops may too.
    def set_epoch(self, epoch: int) -> None:
        self.epoch.assign(float(epoch))
        self.progress.assign(progress(epoch, self.epochs))
        self.curriculum_factor.assign(self.schedule.value(epoch, self.epochs))

    def callback(self) -> "DynamicLossCallback":
        return DynamicLossCallback(self)

    def fit_callbacks(self) -> list[keras.callbacks.Callback]:
        return [self.callback()]

    def compile_metrics(self) -> list[keras.metrics.Metric]:
        return [*super().compile_metrics(), ComponentMeans(self)]

    def components(self, y_true, y_pred) -> dict[str, Any]:
        """Each weighted component, one value per sample; their sum is the loss."""
        terms = self._terms(y_true, y_pred)
        return {c: terms[c] if c in self._PER_SAMPLE else per_sample(terms[c], y_pred)
                for c in COMPONENTS}

    # standard and curriculum vary per sample; progress and balance are one value per batch,
    # kept scalar inside the train step (broadcast once, in call) to save ops on small models.
    _PER_SAMPLE = ("standard", "curriculum")

    def _terms(self, y_true, y_pred) -> dict[str, Any]:
        dtype = y_pred.dtype
        out = {"standard": self._h("w_standard", dtype)
               * ops.cast(self._base.call(y_true, y_pred), dtype),
               "progress": self._h("w_progress", dtype) * self._h("progress", dtype)}
        if self._classes:
            p = probabilities(y_pred, self.from_logits)
            out["balance"] = self._h("w_balance", dtype) * self._balance(p)
        else:
            p = y_pred
            out["balance"] = ops.zeros((), dtype=dtype)
        scale = self._h("w_curriculum", dtype) * self._h("curriculum_factor", dtype) * 0.1
        out["curriculum"] = scale * ops.sum(ops.abs(ops.sin(p)), axis=-1)
        return out

    def _balance(self, p):
        """KL(prior || mean prediction) = Σ prior·log prior − Σ prior·log mean."""
        # The mean over the batch (axis 0), sums over classes (the last axis): one value, or one
        # per member of a population (batch, members, classes).
        log_mean = ops.log(ops.maximum(ops.mean(p, axis=0), EPS))
        if self.prior == "train":
            return (self._h("prior_log_prior", p.dtype)
                    - ops.sum(self._h("prior", p.dtype) * log_mean, axis=-1))
        return (-ops.mean(log_mean, axis=-1)
                - ops.log(ops.cast(ops.shape(log_mean)[-1], p.dtype)))

    def call(self, y_true, y_pred):
        terms = self._terms(y_true, y_pred)
        # Kept for ComponentMeans, which Keras updates right after the loss in the same train
        # step with the very same tensors; it then logs these instead of computing them again.
        self._last_terms = (y_true, y_pred, terms)
        return (terms["standard"] + terms["curriculum"]) + (terms["progress"] + terms["balance"])

    def _terms_for(self, y_true, y_pred) -> dict[str, Any]:
        """The terms of this exact (y_true, y_pred): those the loss just computed when it was
        called with these tensor objects, else computed now."""
        last, self._last_terms = getattr(self, "_last_terms", None), None
        if last is not None and last[0] is y_true and last[1] is y_pred:
            return last[2]
        return self._terms(y_true, y_pred)


class DynamicLossCallback(keras.callbacks.Callback):
    """Assigns the loss's epoch variables at the start of every epoch (0-based, like Keras).

    The seed updates a Python int in ``on_epoch_end``: Keras never calls a loss's
    ``on_epoch_end``, the value would be one epoch late, and a compiled step would not see it.
    """

    def __init__(self, loss: DynamicLoss):
        super().__init__()
        self.loss = loss

    def on_train_begin(self, logs=None):
        check_state_reaches_step(self.model, self.loss)

    def on_epoch_begin(self, epoch, logs=None):
        self.loss.set_epoch(epoch)


class LossStateError(ValueError):
    """A loss whose changing state the compiled train step would not read."""


def check_state_reaches_step(model: keras.Model, loss: Any) -> None:
    """On JAX the compiled train step is a pure function of the state Keras threads through
    it; a loss's epoch and schedule variables reach it only as a :class:`LossState` metric
    (``compile(metrics=component_metrics(loss))``). Without it, training runs with the loss
    frozen at its first epoch and nothing says so; this says so, in one line, before the
    first step. (TensorFlow and torch read the variables wherever they live.)"""
    if keras.backend.backend() != "jax":
        return
    from losstune.losses._tunable import loss_variables

    state = {id(v) for v in model.metrics_variables}
    if not all(id(v) in state for v in loss_variables(loss)):
        raise LossStateError(
            f"{type(loss).__name__} changes with the epoch, and on the JAX backend its state "
            "reaches the compiled train step only as a metric: compile with "
            "model.compile(..., metrics=component_metrics(loss)) (from losstune.losses import "
            "component_metrics)")


class ComponentMeans(keras.metrics.Metric):
    """Mean of every component of a loss with components (DynamicLoss's four terms, a VAE's
    reconstruction and KL: its ``component_names``), logged as ``loss_<component>`` each
    epoch.

    One metric for all components: four separate metrics would trace the components four
    times into the train step. In a train step it reuses the terms the loss has just computed
    from the same tensors (TensorFlow and torch pass the loss and the metrics the same objects);
    otherwise (JAX, whose loss runs inside its gradient trace) it computes them again.
    Metric state, not variables written by the loss, because Keras carries metric state through
    the compiled step on every backend (the JAX step is stateless and would drop a loss's own
    writes).
    """

    def __init__(self, loss: Any, name: str = "loss_components", **kwargs):
        super().__init__(name=name, **kwargs)
        self.loss = loss
        self.names = tuple(getattr(loss, "component_names", COMPONENTS))
        # Sums of the components over samples, in ``names`` order, and the sample count.
        self.sums = self.add_variable((len(self.names),), initializer="zeros", name="sums")
        self.count = self.add_variable((), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        terms = self.loss._terms_for(y_true, y_pred)
        n = ops.cast(ops.shape(y_pred)[0], self.dtype)
        # A term of one value per batch (DynamicLoss's progress and balance) counts n times.
        sums = [ops.cast(ops.sum(terms[c]), self.dtype) * (n if len(terms[c].shape) == 0
                                                          else 1.0) for c in self.names]
        self.sums.assign_add(ops.stack(sums))
        self.count.assign_add(n)

    def result(self):
        means = self.sums / ops.maximum(self.count, 1.0)
        return {COMPONENT + c: means[i] for i, c in enumerate(self.names)}
