"""The swap contract: hyperparameters in variables, so one traced train step computes many designs.

A compiled train step reads a Python float once, when it is traced, but reads a variable at every
step. A :class:`Tunable` loss therefore keeps every number it reads while computing (γ, α, δ, β,
label smoothing, DynamicLoss's weights and epoch) in a non-trainable ``keras.Variable``, and
:func:`retune` can give an already compiled loss another design's values: the traced step is
reused instead of traced again (:mod:`losstune.compiled`, the only user of this module besides the
loss classes). :func:`compiled_key` says which losses one traced step can compute.

A loss may also bring what ``fit`` and ``compile`` need to train it: callbacks that assign its
per-epoch variables (:meth:`Tunable.fit_callbacks`) and metrics that log its terms
(:meth:`Tunable.compile_metrics`).

Layer: domain.
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any, Iterator

import keras
from keras import ops


class Tunable:
    """A loss whose hyperparameters live in non-trainable variables (``self._hp``).

    ``_variable_keys`` are the config keys that may differ between two losses sharing one traced
    step: those held in ``_hp`` and those read only from Python (a schedule, the epoch count).
    """

    _variable_keys: tuple[str, ...] = ()
    # Variables the loss applies to every class of a prediction (before reducing over classes):
    # in a population (predictions shaped batch × members × classes) each member's value gets
    # a trailing axis, so it broadcasts over that member's classes (see :func:`stack`). The
    # others apply to one value per sample or per class vector and broadcast as they are.
    _elementwise: tuple[str, ...] = ()

    def _init_hp(self, **values: Any) -> None:
        self._hp = HeldValues(values)
        if not getattr(_HOLDING, "on", False):
            self._hp.values()  # every variable now, outside any traced step

    def _h(self, name: str, dtype):
        return ops.cast(self._hp[name], dtype)

    def fit_callbacks(self) -> list[keras.callbacks.Callback]:
        """Callbacks ``model.fit`` needs for this loss (none by default)."""
        return []

    def compile_metrics(self) -> list[keras.metrics.Metric]:
        """Metrics ``model.compile`` takes for this loss: its :class:`LossState`, and (in
        subclasses) metrics that log its terms."""
        return [LossState(self)]


_HOLDING = threading.local()


@contextlib.contextmanager
def holding() -> Iterator[None]:
    """Losses made inside hold their hyperparameters as values until one is read as a
    variable (:class:`HeldValues`). For a population's members, whose values are only ever
    stacked into the population's own variables; a loss that a step traces must have its
    variables before it (a variable made inside a ``tf.function`` is refused), so outside
    this block they are made at once."""
    before = getattr(_HOLDING, "on", False)
    _HOLDING.on = True
    try:
        yield
    finally:
        _HOLDING.on = before


class HeldValues(dict):
    """A loss's hyperparameters by name, each a non-trainable float32 ``keras.Variable`` once
    it is read (``[name]``, ``values()``, ``items()``); until then, in a loss made inside
    :func:`holding`, the value alone, which :meth:`array` reads. A population member's loss
    is only ever read as values (stacked into the population's variables), so it makes no
    variable: making one costs more than the member's proposal (about 0.3 ms each on
    TensorFlow)."""

    def __getitem__(self, name: str) -> keras.Variable:
        value = super().__getitem__(name)
        if not isinstance(value, keras.Variable):
            value = keras.Variable(value, trainable=False, dtype="float32", name=name)
            super().__setitem__(name, value)
        return value

    def values(self) -> list[keras.Variable]:  # type: ignore[override]
        return [self[name] for name in self]

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return self[name] if name in self else default

    def items(self) -> list[tuple[str, keras.Variable]]:  # type: ignore[override]
        return [(name, self[name]) for name in self]

    def array(self, name: str) -> Any:
        """The value of ``name`` as a float32 NumPy array (a copy), without making a
        variable of it."""
        import numpy as np

        value = super().__getitem__(name)
        if isinstance(value, keras.Variable):
            return ops.convert_to_numpy(value.value).astype("float32")
        return np.array(value, dtype="float32")


def _array(loss: Any, name: str) -> Any:
    """A loss's hyperparameter ``name`` as a NumPy array (a copy)."""
    hp = loss._hp
    if isinstance(hp, HeldValues):
        return hp.array(name)
    return ops.convert_to_numpy(hp[name].value)


def _hyperparameters(loss: Any) -> list[tuple[Any, str]]:
    """Every value a loss reads while computing, as (the loss holding it, its name): its own,
    then its nested losses' (a DynamicLoss's base), in a fixed order."""
    found = [(loss, name) for name in getattr(loss, "_hp", {})]
    for _, nested in _nested(loss):
        found += _hyperparameters(nested)
    return found


def held_arrays(loss: Any) -> list[Any]:
    """:func:`loss_variables`' values as NumPy arrays, in the same order; no variable is
    made."""
    return [_array(owner, name) for owner, name in _hyperparameters(loss)]


def _nested(loss: Any) -> list[tuple[str, Any]]:
    """The losses a loss holds (a DynamicLoss's base; a population's member groups), by
    attribute name, in a fixed order."""
    found = []
    for name, value in sorted(vars(loss).items()):
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(item, keras.losses.Loss):
                found.append((f"{name}.{i}", item))
    return found


def loss_variables(loss: Any) -> list[keras.Variable]:
    """Every variable a loss reads while computing, nested losses (a DynamicLoss's base)
    included."""
    return [owner._hp[name] for owner, name in _hyperparameters(loss)]


def stack(losses: list[keras.losses.Loss]) -> keras.losses.Loss:
    """One loss that computes the designs of ``losses`` (equal :func:`compiled_key`) side by
    side: given predictions shaped (batch, K, ...) and matching targets, it returns one value
    per sample and member, (batch, K), member k's exactly as ``losses[k]`` computes it alone.

    Every variable gets a leading member axis (plus a trailing one for ``_elementwise``
    values); the arithmetic is the loss's own. Python-side settings (a schedule, the epoch
    count) are not stacked: the caller assigns the per-epoch variables of the members and
    restacks them (:func:`restack`)."""
    first = losses[0]
    if any(compiled_key(loss) != compiled_key(first) for loss in losses[1:]):
        raise ValueError("stack needs losses with the same compiled_key.")
    stacked = type(first).from_config(first.get_config())
    _stack_values(stacked, losses, create=True)
    return stacked


def restack(stacked: keras.losses.Loss, losses: list[keras.losses.Loss]) -> None:
    """Assign the current values of ``losses`` to a loss made by :func:`stack` (the same
    number of members, the same compiled_key): new designs, or new per-epoch values."""
    _stack_values(stacked, losses, create=False)


def _stack_values(stacked: Any, losses: list[Any], *, create: bool) -> None:
    import numpy as np

    for name in getattr(stacked, "_hp", {}):
        values = np.stack([_array(loss, name) for loss in losses])
        if name in type(stacked)._elementwise:
            values = values[..., None]
        if create:
            stacked._hp[name] = keras.Variable(values, trainable=False, dtype="float32",
                                               name=name)
        else:
            stacked._hp[name].assign(values)
    members = [dict(_nested(loss)) for loss in losses]
    for key, nested in _nested(stacked):
        _stack_values(nested, [m[key] for m in members], create=create)


class LossState(keras.metrics.Metric):
    """A loss's variables, held as the state of a metric that computes nothing.

    TensorFlow and torch read a variable at every step wherever it lives. JAX's train step is a
    pure function of the state Keras hands it: trainable, non-trainable, optimizer and metric
    variables. A variable outside those is read once, when the step is traced, so a loss's
    epoch, schedule factor and retuned hyperparameters would stay frozen. Keras computes the
    loss with the metrics' variables mapped to their current values, so holding the loss's
    variables here makes every backend read them at every step. Never reset: they are the
    loss's hyperparameters, not a running statistic.
    """

    def __init__(self, loss: Any, name: str = "loss_state", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.state = loss_variables(loss)  # tracked by the metric: part of its variables

    def update_state(self, *args: Any, **kwargs: Any) -> None:
        return None

    def reset_state(self) -> None:
        return None

    def result(self) -> dict[str, Any]:
        return {}


def compiled_key(loss: keras.losses.Loss) -> str:
    """Losses with equal keys differ only in values held in variables, so one traced train step
    computes either of them once :func:`retune` has assigned the values."""

    def key(obj: Any) -> list[Any]:
        config = obj.get_config()
        masked = set(getattr(type(obj), "_variable_keys", ()))
        fixed = {k: (len(v) if isinstance(v, list) else "*") if k in masked else v
                 for k, v in config.items()}
        nested = {name: key(value) for name, value in sorted(vars(obj).items())
                  if isinstance(value, keras.losses.Loss)}
        return [type(obj).__module__, type(obj).__qualname__, fixed, nested]

    return json.dumps(key(loss), sort_keys=True, default=str)


def retune(target: keras.losses.Loss, source: keras.losses.Loss) -> None:
    """Make ``target`` compute ``source`` in place: variables assigned, Python-side
    hyperparameters (config, schedule, epochs) copied. Both must have the same
    :func:`compiled_key`."""
    if compiled_key(target) != compiled_key(source):
        raise ValueError("retune needs two losses with the same compiled_key.")
    _copy_hyperparameters(target, source)


def _copy_hyperparameters(target: Any, source: Any) -> None:
    for name in getattr(source, "_hp", {}):
        # A copy, not the source's array: JAX's compiled steps donate the buffers of the state
        # they are given, which would delete the source loss's value with the target's.
        target._hp[name].assign(_array(source, name))
    for name in getattr(type(source), "_variable_keys", ()):
        if name in vars(source):
            setattr(target, name, getattr(source, name))
    targets = dict(_nested(target))
    for key, value in _nested(source):
        _copy_hyperparameters(targets[key], value)


def loss_callbacks(loss: keras.losses.Loss) -> list[keras.callbacks.Callback]:
    """What ``model.fit(callbacks=...)`` needs for ``loss`` (DynamicLoss: its epoch callback)."""
    return loss.fit_callbacks() if isinstance(loss, Tunable) else []


def component_metrics(loss: keras.losses.Loss) -> list[keras.metrics.Metric]:
    """What ``model.compile(metrics=...)`` takes for ``loss`` (DynamicLoss: its terms)."""
    return loss.compile_metrics() if isinstance(loss, Tunable) else []
