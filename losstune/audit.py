"""Loss audit: one batch, before training, every component checked.

For each component of a loss (a DynamicLoss has four; any other loss is one component, "loss")
the audit reports its value and the norm of its gradient with respect to the predictions. A
component whose gradient is identically zero cannot change training whatever its weight (the
seed's learning-progress offset is one): that is a warning. A component that is NaN or infinite
(value or gradient) rejects the configuration, naming the component.

A DynamicLoss changes with the epoch: a linear or cosine curriculum that starts at 0 has no
gradient at epoch 0 yet shapes the rest of training. So its components are looked at where they
are active — epoch 0, the epoch where the schedule factor is largest, the last planned epoch
(largest learning progress) and the loss's current epoch — and a zero gradient is a warning only
when it is zero at every one of them. The report keeps, per component, the point where it was
most active.

Keras has no backend-neutral gradient API, so :func:`_value_and_grad` dispatches to the active
backend's own autodiff (a dozen lines; finite differences would be slower and less exact).

Layer: training.
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
    epoch: float | None = None  # where a DynamicLoss was evaluated; None for other losses

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value) and math.isfinite(self.grad_norm)


@dataclass(frozen=True)
class AuditReport:
    components: tuple[ComponentReport, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {c.name: {"value": c.value, "grad_norm": c.grad_norm} for c in self.components}


def record_terms(trial: Any, values: dict[str, Any], what: str) -> None:
    """A task's own audit (a GAN's two losses, a style transfer's terms): each value, a
    backend tensor or a number, must be finite (else :class:`LossAuditError`, ``what`` saying
    where it was computed); they are recorded as the trial's audit."""
    from losstune import results

    values = {k: float(ops.convert_to_numpy(v)) for k, v in values.items()}
    for name, value in values.items():
        if not math.isfinite(value):
            raise LossAuditError(f"the {name} term is not finite {what} ({value}); the "
                                 "configuration is rejected.")
    trial.set_user_attr(results.AUDIT, {k: {"value": float(f"{v:.4g}")}
                                        for k, v in values.items()})


def _value_and_grad(fn: Callable, y_pred) -> tuple[float, float]:
    value, grad = _backend_grad(fn, y_pred)
    value = float(ops.convert_to_numpy(value))
    grad = ops.convert_to_numpy(grad).astype("float64")
    return value, float(np.sqrt(np.sum(grad ** 2))) if np.all(np.isfinite(grad)) else float("nan")


def _backend_grad(fn: Callable, y_pred) -> tuple[Any, Any]:
    """``fn(y_pred)`` and its gradient with respect to ``y_pred``, by the backend's autodiff."""
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
    return value, grad


def _audit_epochs(loss: Any) -> list[float]:
    """The epochs at which a DynamicLoss's components are active: see the module docstring."""
    current = float(ops.convert_to_numpy(loss.epoch))
    factors = [abs(loss.schedule.value(e, loss.epochs)) for e in range(loss.epochs)]
    peak = int(np.argmax(factors))  # first epoch of the largest |factor|
    return sorted({0.0, float(peak), float(loss.epochs - 1), current})


def _epochs_text(epochs: list[Any]) -> str:
    shown = ", ".join(f"{e:g}" for e in epochs)
    return f"epoch {shown}" if len(epochs) == 1 else f"epochs {shown}"


def check(loss: keras.losses.Loss, y_true, y_pred) -> AuditReport:
    """Audit ``loss`` on one batch. Raises :class:`LossAuditError` on NaN/inf components."""
    from losstune.losses import COMPONENTS, DynamicLoss

    y_true = ops.convert_to_tensor(np.asarray(y_true), dtype="float32")
    y_pred = np.asarray(y_pred, dtype="float32")
    dynamic = isinstance(loss, DynamicLoss)
    if dynamic:
        def component(name: str) -> Callable:
            return lambda x: ops.mean(loss.components(y_true, x)[name])

        fns = {name: component(name) for name in COMPONENTS}
    else:
        fns = {"loss": lambda x: loss(y_true, x)}
    epochs: list[float | None] = list(_audit_epochs(loss)) if dynamic else [None]

    points: dict[str, list[ComponentReport]] = {name: [] for name in fns}
    saved = float(ops.convert_to_numpy(loss.epoch)) if dynamic else None
    try:
        for epoch in epochs:
            if epoch is not None:
                loss.set_epoch(epoch)
            for name, fn in fns.items():
                value, grad_norm = _value_and_grad(fn, y_pred)
                report = ComponentReport(name, value, grad_norm, epoch)
                if not report.finite:
                    where = "" if epoch is None else f" at epoch {epoch:g}"
                    raise LossAuditError(
                        f"loss component {name!r} is not finite on the audit batch{where} "
                        f"(value={value}, gradient norm={grad_norm}); the configuration is "
                        "rejected.")
                points[name].append(report)
    finally:
        if saved is not None:
            loss.set_epoch(saved)  # the audit must leave the loss as it found it

    return _report(loss, points, epochs, dynamic)


def _report(loss: Any, points: dict[str, list[ComponentReport]], epochs: list[Any],
            dynamic: bool) -> AuditReport:
    """Each component's most active point, and the warnings of the components that cannot
    change training."""
    reports, warnings = [], []
    for name, found in points.items():
        # Most active point: largest gradient, then largest value (progress has no gradient but
        # grows with the epoch); max keeps the earliest epoch on ties.
        reports.append(max(found, key=lambda r: (r.grad_norm, abs(r.value))))
        weight = getattr(loss, f"w_{name}", 1.0)
        satisfied = getattr(loss, "satisfied", "")  # a margin loss: what a zero loss means
        if satisfied and all(r.grad_norm == 0.0 and r.value == 0.0 for r in found):
            warnings.append(f"{satisfied} on the audit batch: zero loss and zero gradient, so "
                            "training starts with nothing to learn from it; a larger margin "
                            "(or harder mining) gives it a gradient.")
        elif weight != 0.0 and all(r.grad_norm == 0.0 for r in found):
            where = f" at {_epochs_text(epochs)}" if dynamic else ""
            warnings.append(
                f"loss component {name!r} has zero gradient with respect to the predictions"
                f"{where}: its weight ({weight:g}) shifts the loss value but cannot change "
                "training.")
    return AuditReport(tuple(reports), tuple(warnings))


def _values_and_grad_norms(fn: Callable, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """``fn`` maps predictions (batch, K, ...) to K values, member k's reading only slice k:
    the values and, from one gradient of their sum, each member's gradient norm."""
    holder: dict[str, Any] = {}

    def total(x):
        holder["values"] = values = fn(x)
        return ops.sum(values)

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        (_, values), grad = jax.value_and_grad(lambda x: (total(x), holder["values"]),
                                               has_aux=True)(ops.convert_to_tensor(y_pred))
    else:
        _, grad = _backend_grad(total, y_pred)
        values = holder["values"]
    values = ops.convert_to_numpy(values).astype("float64")
    grad = ops.convert_to_numpy(grad).astype("float64")
    norms = np.sqrt(np.sum(grad.reshape(grad.shape[0], grad.shape[1], -1) ** 2, axis=(0, 2)))
    finite = np.all(np.isfinite(grad.reshape(grad.shape[0], grad.shape[1], -1)), axis=(0, 2))
    return values, np.where(finite, norms, np.nan)


def check_members(losses: list[keras.losses.Loss], y_true, y_pred,
                  stacked: dict[str, keras.losses.Loss] | None = None) -> list[AuditReport]:
    """:func:`check` for the members of a population, all starting from the same model (so
    the same predictions ``y_pred``): the losses of one structure (``stack``) are audited
    together, from one evaluation and one gradient, where each loss is one component; a
    DynamicLoss, whose components are looked at over several epochs, is audited alone.
    ``stacked``: losses already stacked, by compiled key, used where one holds exactly the
    losses of its structure in order (the population's own: stacking costs more than the
    audit). Raises the first member's :class:`LossAuditError`, in member order, as auditing
    them one by one would."""
    from losstune.losses import DynamicLoss, compiled_key, stack

    y_true_np = np.asarray(y_true, dtype="float32")
    y_pred_np = np.asarray(y_pred, dtype="float32")
    reports: list[Any] = [None] * len(losses)
    groups: dict[str, list[int]] = {}
    for i, loss in enumerate(losses):
        if isinstance(loss, DynamicLoss) or loss.reduction != "sum_over_batch_size":
            groups[f"alone {i}"] = [i]
        else:
            groups.setdefault(compiled_key(loss), []).append(i)
    for key, members in groups.items():
        if len(members) == 1:
            try:
                reports[members[0]] = check(losses[members[0]], y_true_np, y_pred_np)
            except LossAuditError as err:
                reports[members[0]] = err
            continue
        k = len(members)
        together = (stacked or {}).get(key)
        sizes = {int(v.shape[0]) for v in dict.values(getattr(together, "_hp", {}))}
        if together is None or sizes - {k}:  # none given, or not these k members
            together = stack([losses[i] for i in members])
        targets = ops.convert_to_tensor(np.repeat(y_true_np[:, None], k, axis=1))
        pred = np.repeat(y_pred_np[:, None], k, axis=1)
        values, norms = _values_and_grad_norms(
            lambda x: ops.mean(together.call(targets, x), axis=0), pred)
        for j, i in enumerate(members):
            report = ComponentReport("loss", float(values[j]), float(norms[j]))
            if not report.finite:
                reports[i] = LossAuditError(
                    f"loss component 'loss' is not finite on the audit batch "
                    f"(value={report.value}, gradient norm={report.grad_norm}); the "
                    "configuration is rejected.")
            else:
                reports[i] = _report(losses[i], {"loss": [report]}, [None], False)
    for report in reports:
        if isinstance(report, LossAuditError):
            raise report
    return reports
