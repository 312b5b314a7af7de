"""Loss classes for counts. The model outputs η, the log of the expected count (``log_input``,
as PyTorch's ``PoissonNLLLoss`` takes it): the predicted count is exp(η), positive by
construction, and no exponential layer can overflow before the loss sees it.

Each returns one value per sample (the mean over the last axis, one unit), so a population's
(batch, members, 1) passes through.

Layer: domain.
"""

from __future__ import annotations

import keras
from keras import ops

from losstune.losses._families import PACKAGE, ConfigLoss
from losstune.losses._validation import check_params
# exp(η) of a diverging model stays finite in float32: the loss is then huge and finite, and the
# trial's divergence check names it, instead of inf meeting 0 as NaN. The scores cap it alike.
from losstune.metrics import MAX_LOG_COUNT


def expected_count(log_count):
    return ops.exp(ops.minimum(log_count, MAX_LOG_COUNT))


@keras.saving.register_keras_serializable(package=PACKAGE)
class PoissonLogInput(ConfigLoss):
    """Poisson negative log-likelihood of the count y with mean exp(η), without the constant
    log y!: exp(η) − y·η. Keras's ``Poisson`` computes μ − y·log(μ + ε) from μ itself; with
    μ = exp(η) the two agree to ε (tests/test_tasks.py)."""

    def __init__(self, reduction="sum_over_batch_size", name="poisson_log_input", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        y = ops.cast(y_true, y_pred.dtype)
        return ops.mean(expected_count(y_pred) - y * ops.minimum(y_pred, MAX_LOG_COUNT),
                        axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Log1pMeanSquaredError(ConfigLoss):
    """MSE between log(1 + y) and log(1 + exp(η)) = softplus(η): the squared error of counts
    on a log scale, which large counts do not dominate."""

    def __init__(self, reduction="sum_over_batch_size", name="log1p_mse", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        y = ops.cast(y_true, y_pred.dtype)
        return ops.mean(ops.square(ops.log1p(y) - ops.softplus(y_pred)), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CountHuber(ConfigLoss):
    """Keras's Huber loss between the count y and exp(η), δ in counts."""

    _config_keys = ("delta",)
    _variable_keys = ("delta",)
    _elementwise = ("delta",)

    def __init__(self, delta: float = 1.0, reduction="sum_over_batch_size", name="count_huber",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        check_params("count_huber", {"delta": delta})
        self.delta = float(delta)
        self._init_hp(delta=self.delta)

    def call(self, y_true, y_pred):
        return keras.losses.huber(ops.cast(y_true, y_pred.dtype), expected_count(y_pred),
                                  delta=self._h("delta", y_pred.dtype))
