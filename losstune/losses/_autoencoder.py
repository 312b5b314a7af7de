"""Loss classes for autoencoders. The model's output is the reconstruction's logits, one per
input feature (inputs are scaled to [0, 1]; the reconstruction is their sigmoid), then the
latent code; a variational autoencoder's code is its mean μ followed by its log-variance
(losstune.models). The target is the clean input, so a loss reads the reconstruction from the
first ``d`` outputs, d the target's width.

Reconstruction losses average over the features (Keras's convention). The VAE's loss is the
negative ELBO per sample: the reconstruction error *summed* over the features plus β·KL, so
that β = 1 is the ELBO itself and β ≠ 1 is Higgins et al.'s β-VAE; β can be warmed up over
the epochs by a curriculum schedule (Bowman et al. 2016's KL annealing).

Layer: domain.
"""

from __future__ import annotations

from typing import Any, Mapping

import keras
from keras import ops

from losstune.losses._dynamic import DynamicLossCallback
from losstune.losses._families import PACKAGE, ConfigLoss
from losstune.losses._validation import check_params
from losstune.schedules import Schedule


def split(y_true, y_pred):
    """The reconstruction logits (the first d outputs) and the rest (the latent code)."""
    d = y_true.shape[-1]
    return y_pred[..., :d], y_pred[..., d:]


def _errors(error: str, x, logits, delta=None):
    """Per feature: squared, absolute or Huber error of sigmoid(logits), or binary
    cross-entropy from the logits."""
    if error == "bce":
        return ops.softplus(logits) - x * logits  # BCE with logits, numerically safe
    r = ops.sigmoid(logits) - x
    if error == "mse":
        return ops.square(r)
    if error == "mae":
        return ops.abs(r)
    a = ops.abs(r)  # Huber, as keras.losses.huber computes it
    return ops.where(a <= delta, 0.5 * ops.square(r), delta * a - 0.5 * ops.square(delta))


class _Reconstruction(ConfigLoss):
    """The mean over features of one error (``error``) of the reconstruction."""

    error = "mse"

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(name=name or f"reconstruction_{self.error}", reduction=reduction,
                         dtype=dtype)

    def call(self, y_true, y_pred):
        x = ops.cast(y_true, y_pred.dtype)
        logits, _ = split(x, y_pred)
        return ops.mean(_errors(self.error, x, logits), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ReconstructionMSE(_Reconstruction):
    """Mean squared error of the reconstruction."""

    error = "mse"


@keras.saving.register_keras_serializable(package=PACKAGE)
class ReconstructionMAE(_Reconstruction):
    """Mean absolute error of the reconstruction."""

    error = "mae"


@keras.saving.register_keras_serializable(package=PACKAGE)
class ReconstructionBCE(_Reconstruction):
    """Binary cross-entropy of the reconstruction, inputs in [0, 1] as soft targets."""

    error = "bce"


@keras.saving.register_keras_serializable(package=PACKAGE)
class ReconstructionHuber(ConfigLoss):
    """Huber error of the reconstruction, δ in input units (inputs are in [0, 1])."""

    _config_keys = ("delta",)
    _variable_keys = ("delta",)
    _elementwise = ("delta",)

    def __init__(self, delta: float = 0.1, reduction="sum_over_batch_size",
                 name="reconstruction_huber", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        check_params("reconstruction_huber", {"delta": delta})
        self.delta = float(delta)
        self._init_hp(delta=self.delta)

    def call(self, y_true, y_pred):
        x = ops.cast(y_true, y_pred.dtype)
        logits, _ = split(x, y_pred)
        return ops.mean(_errors("huber", x, logits, self._h("delta", y_pred.dtype)), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class VAELoss(ConfigLoss):
    """Σ_features reconstruction error + β · schedule(epoch) · KL(N(μ, σ²) ‖ N(0, 1)).

    The model's outputs after the reconstruction are μ then log σ², each ``latent`` wide
    (half of what remains). ``reconstruction``: ``bce`` or ``mse``. The epoch and the schedule
    factor live in variables assigned by the epoch callback, as DynamicLoss's do.
    """

    _config_keys = ("reconstruction", "beta", "schedule", "epochs")
    _variable_keys = ("beta", "schedule", "epochs")
    component_names = ("reconstruction", "kl")

    def __init__(self, reconstruction: str = "bce", beta: float = 1.0,
                 schedule: Schedule | Mapping[str, Any] | str | None = None, epochs: int = 10,
                 reduction="sum_over_batch_size", name="vae", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        check_params("vae", {"reconstruction": reconstruction, "beta": beta, "epochs": epochs})
        self.reconstruction, self.beta, self.epochs = reconstruction, float(beta), int(epochs)
        self.schedule = schedule if isinstance(schedule, Schedule) else Schedule.from_dict(schedule)
        self.epoch = keras.Variable(0.0, trainable=False, dtype="float32", name="epoch")
        self.beta_factor = keras.Variable(self.schedule.value(0, self.epochs), trainable=False,
                                          dtype="float32", name="beta_factor")
        self._init_hp(beta=self.beta)
        self._hp.update(epoch=self.epoch, beta_factor=self.beta_factor)

    def set_epoch(self, epoch: int) -> None:
        self.epoch.assign(float(epoch))
        self.beta_factor.assign(self.schedule.value(epoch, self.epochs))

    def fit_callbacks(self) -> list[keras.callbacks.Callback]:
        return [DynamicLossCallback(self)]

    def compile_metrics(self) -> list[keras.metrics.Metric]:
        from losstune.losses._dynamic import ComponentMeans

        return [*super().compile_metrics(), ComponentMeans(self)]

    def components(self, y_true, y_pred) -> dict[str, Any]:
        """The reconstruction error and the weighted KL term, one value per sample."""
        y_pred = ops.convert_to_tensor(y_pred)
        x = ops.cast(y_true, y_pred.dtype)
        logits, code = split(x, y_pred)
        z = code.shape[-1] // 2
        mu, log_var = code[..., :z], code[..., z:]
        kl = -0.5 * ops.sum(1.0 + log_var - ops.square(mu) - ops.exp(log_var), axis=-1)
        weight = self._h("beta", y_pred.dtype) * self._h("beta_factor", y_pred.dtype)
        return {"reconstruction": ops.sum(_errors(self.reconstruction, x, logits), axis=-1),
                "kl": weight * kl}

    def _terms_for(self, y_true, y_pred) -> dict[str, Any]:
        return self.components(y_true, y_pred)

    def call(self, y_true, y_pred):
        terms = self.components(y_true, y_pred)
        return terms["reconstruction"] + terms["kl"]


@keras.saving.register_keras_serializable(package=PACKAGE)
class SampledCode(keras.layers.Layer):
    """The reparameterised code μ + σ·ε of a VAE in training; μ itself otherwise."""

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        mean, log_var = inputs
        if not training:
            return mean
        eps = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
        return mean + ops.exp(0.5 * log_var) * eps

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package=PACKAGE)
class InputNoise(keras.layers.Layer):
    """Gaussian noise of standard deviation σ on the inputs, in training only (a denoising
    autoencoder). σ is a non-trainable weight, not a Python float as in Keras's
    ``GaussianNoise``: a reused compiled model reads each trial's σ (losstune.compiled copies a
    fresh model's weights, this one included)."""

    def __init__(self, sigma: float = 0.0, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sigma = self.add_weight(shape=(), initializer=keras.initializers.Constant(sigma),
                                     trainable=False, name="sigma")
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training:
            return x
        return x + ops.cast(self.sigma, x.dtype) * keras.random.normal(
            ops.shape(x), seed=self.seed_generator, dtype=x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return super().get_config()  # σ is a weight: models that differ only in σ share a step
