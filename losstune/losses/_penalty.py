"""Penalties a design adds to its loss through the model's ``add_loss``: an L1 penalty on the
activations of the penultimate layer and L2 decay of every kernel (catalog.PENALTIES).

Their coefficients are non-trainable weights of a :class:`Penalties` layer in the model, not
Python floats in Keras's ``L1``/``L2`` regularizers: a compiled train step reads a weight at
every step (on JAX too, where the model's weights are the state the step carries), so a
compiled model is reused across trials with other coefficients (losstune.compiled copies the
weights of a fresh model, these included).

Where this differs from Keras's regularizers: the L1 activity term is the mean over the batch
of Σ|a| per sample, so λ means the same at every batch size; ``keras.regularizers.L1(λ)`` as
an ``activity_regularizer`` sums over the batch (the same as L1(λ / batch_size) here). The
kernel term is exactly ``keras.regularizers.L2(λ)``: λ Σ w² per kernel (tests/test_tasks.py).

Layer: domain.
"""

from __future__ import annotations

from typing import Any, Mapping

import keras
from keras import ops

from losstune.losses._families import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class Penalties(keras.layers.Layer):
    """Passes its input through; holds the penalty coefficients and adds the L1 activity
    penalty of that input (the penultimate layer's output) with ``add_loss``. Its config says
    which penalties are on, not their values: models that differ only in values share one
    compiled step."""

    def __init__(self, l1_activity: bool = False, l2_kernel: bool = False,
                 values: Mapping[str, float] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.l1_on, self.l2_on = bool(l1_activity), bool(l2_kernel)
        values = dict(values or {})
        self.l1_activity = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(values.get("l1_activity", 0.0)),
            trainable=False, name="l1_activity")
        self.l2_kernel = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(values.get("l2_kernel", 0.0)),
            trainable=False, name="l2_kernel")

    def call(self, x):
        if self.l1_on:  # in float32: under mixed precision Σ|a| can overflow float16
            flat = ops.reshape(ops.abs(ops.cast(x, "float32")), (ops.shape(x)[0], -1))
            self.add_loss(ops.cast(self.l1_activity, "float32") * ops.mean(ops.sum(flat, axis=-1)))
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "l1_activity": self.l1_on, "l2_kernel": self.l2_on}


@keras.saving.register_keras_serializable(package=PACKAGE)
class KernelDecay(keras.regularizers.Regularizer):
    """λ Σ w², λ read from a :class:`Penalties` layer's weight at every step."""

    def __init__(self, penalties: Penalties | None = None) -> None:
        self.penalties = penalties

    def __call__(self, w):
        if self.penalties is None:  # rebuilt from a config alone: no coefficient to read
            return ops.zeros((), dtype=w.dtype)
        return ops.cast(self.penalties.l2_kernel, w.dtype) * ops.sum(ops.square(w))

    def get_config(self) -> dict[str, Any]:
        return {}


def layers_for(penalty: Mapping[str, float] | None) -> tuple[Penalties | None, Any]:
    """The Penalties layer and the kernel regularizer a built-in model adds for a design's
    ``penalty`` (None, None for a design without one)."""
    penalty = {k: float(v) for k, v in (penalty or {}).items() if v}
    if not penalty:
        return None, None
    layer = Penalties(l1_activity="l1_activity" in penalty, l2_kernel="l2_kernel" in penalty,
                      values=penalty, name="penalties")
    return layer, (KernelDecay(layer) if layer.l2_on else None)
