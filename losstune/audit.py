"""Loss audit: one batch, before training, every component checked.

For each component of a loss (a DynamicLoss has four; any other loss is one component, "loss")
the audit reports its value and the norm of its gradient with respect to the predictions. A
component whose gradient is identically zero cannot change training whatever its weight (the
seed's learning-progress offset is one): that is a warning. A component that is NaN or infinite
(value or gradient) rejects the configuration, naming the component.

Keras has no backend-neutral gradient API, so :func:`_value_and_grad` dispatches to the active
backend's own autodiff (a dozen lines; finite differences would be slower and less exact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import keras
import numpy as np
from keras import ops

from losstune.errors import LosstuneError


class LossAuditError(LosstuneError):
    """The loss produces NaN or inf on a real batch: the configuration is rejected."""


@dataclass(frozen=True)
class ComponentReport:
    name: str
    value: float
    grad_norm: float

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value) and math.isfinite(self.grad_norm)


@dataclass(frozen=True)
class AuditReport:
    components: tuple[ComponentReport, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {c.name: {"value": c.value, "grad_norm": c.grad_norm} for c in self.components}


def _value_and_grad(fn: Callable, y_pred) -> tuple[float, float]:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(y_pred)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x)
        grad = tape.gradient(value, x)
        grad = tf.zeros_like(x) if grad is None else grad
    elif backend == "torch":
        import torch

        x = torch.as_tensor(np.asarray(y_pred)).detach().requires_grad_(True)
        value = fn(x)
        (grad,) = torch.autograd.grad(value, x, allow_unused=True) if value.requires_grad else (None,)
        grad = torch.zeros_like(x) if grad is None else grad
        value, grad = value.detach(), grad.detach()
    elif backend == "jax":
        import jax

        value, grad = jax.value_and_grad(fn)(ops.convert_to_tensor(y_pred))
    else:  # pragma: no cover - numpy backend has no autodiff
        raise LossAuditError(f"the loss audit needs autodiff; backend {backend!r} has none.")
    value = float(ops.convert_to_numpy(value))
    grad = ops.convert_to_numpy(grad).astype("float64")
    return value, float(np.sqrt(np.sum(grad ** 2))) if np.all(np.isfinite(grad)) else float("nan")


def check(loss: keras.losses.Loss, y_true, y_pred, *, raise_on_nonfinite: bool = True) -> AuditReport:
    """Audit ``loss`` on one batch. Raises :class:`LossAuditError` on NaN/inf components."""
    from losstune.losses import DynamicLoss

    y_true = ops.convert_to_tensor(np.asarray(y_true), dtype="float32")
    y_pred = np.asarray(y_pred, dtype="float32")
    if isinstance(loss, DynamicLoss):
        names = ("standard", "progress", "balance", "curriculum")

        def component(name: str) -> Callable:
            return lambda x: ops.mean(loss.components(y_true, x)[name])

        fns = {name: component(name) for name in names}
    else:
        fns = {"loss": lambda x: loss(y_true, x)}

    reports, warnings = [], []
    for name, fn in fns.items():
        value, grad_norm = _value_and_grad(fn, y_pred)
        report = ComponentReport(name, value, grad_norm)
        if not report.finite and raise_on_nonfinite:
            raise LossAuditError(
                f"loss component {name!r} is not finite on the audit batch "
                f"(value={value}, gradient norm={grad_norm}); the configuration is rejected.")
        weight = getattr(loss, f"w_{name}", 1.0)
        if report.finite and grad_norm == 0.0 and weight != 0.0:
            warnings.append(
                f"loss component {name!r} has zero gradient with respect to the predictions: "
                f"its weight ({weight:g}) shifts the loss value but cannot change training.")
        reports.append(report)
    return AuditReport(tuple(reports), tuple(warnings))
