"""One compiled model per model shape and loss structure, reused across a worker's trials.

For the small models people tune losses on, a trial's time goes to framework overhead, not
arithmetic: building and compiling the model and tracing its train step took about 0.3 s of a
0.7 s five-epoch digits fit on TensorFlow (figure 0 of benchmarks/run.py measures the whole
effect). Trials of one study
mostly differ only in numbers: the loss's hyperparameters, the learning rate, the initial weights.
So the first trial of each (model, loss structure, optimizer) compiles as usual and later trials
reuse that model and its traced step, after

* the weights (and dropout seed state) are copied from a freshly built, freshly seeded model:
  the same initial weights a new model would have had;
* the optimizer's variables are restored to their state before the first step, then given the
  trial's learning rate;
* the loss's hyperparameters are assigned with ``retune``, the swap contract of
  :mod:`losstune.losses._tunable` and all this module knows of losses (they live in variables,
  so the traced step reads the new values).

A reused trial computes what a fresh one would: tests/test_compiled.py checks that a study gives
the same objective values, trial by trial, with reuse on and off. Keras offers no public
"reset this compiled model" call, so this is written here. ``training.reuse_compiled = false``
turns it off.

On JAX the train step is a pure function of the state Keras threads through it; a loss's
variables are part of that state through its :class:`~losstune.losses._tunable.LossState`
metric, so reuse works there too.

Layer: training.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from losstune.losses._tunable import compiled_key, component_metrics, retune

# Compiled models a worker keeps (least recently used is dropped). A study with a few loss
# families and optimizers fits; each entry holds one small model and its traced functions.
MAX_ENTRIES = 6


@dataclass
class _Entry:
    model: keras.Model
    loss: keras.losses.Loss
    optimizer_start: list[np.ndarray]


def build_state(model: keras.Model, sample: tuple[Any, Any]) -> None:
    """Build a compiled model's loss, metrics and optimizer now, as a reused model already is.
    Otherwise the first fit builds them, and on torch it draws a batch to do so, which moves
    the shuffling random stream: the same trial would then see other batches. Keras's own
    symbolic build (what ``fit`` calls on torch and JAX, and Keras's tests call directly)
    builds them from the batch's shapes; ``test_on_batch`` would also trace and run a test
    step no one uses (0.1 s of a new population's model on the CPU). Where a Keras has no
    symbolic build, ``test_on_batch`` is used."""
    symbolic = getattr(model, "_symbolic_build", None)
    if symbolic is None:
        model.test_on_batch(*sample)
    else:
        symbolic(data_batch=sample)
    if not model.optimizer.built:  # the symbolic build builds it too
        model.optimizer.build(model.trainable_variables)


def steps_per_execution(setting: int | str, backend: str) -> int:
    if setting != "auto":
        return int(setting)
    return 1 if backend == "torch" else 64


def _model_key(model: keras.Model) -> str | None:
    """The architecture plus every variable's shape, with layer names replaced by positions:
    names count up between builds ("dense_7"), and a functional model's config refers to its
    layers by name. None when the model cannot describe itself (a subclassed model or a custom
    layer without get_config); such a model is never reused."""
    def positional(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: positional(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [positional(v) for v in value]
        return names.get(value, value) if isinstance(value, str) else value

    try:
        config = model.get_config()
    except Exception:  # noqa: BLE001 - Keras raises several kinds for undescribable models
        return None
    # The config's own layer list (a Sequential's input layer is not in model.layers).
    names = {model.name: "<model>"}
    for i, entry in enumerate(config.get("layers", [])):
        name = entry.get("config", {}).get("name") if isinstance(entry, dict) else None
        if isinstance(name, str):
            names[name] = f"<layer {i}>"
    shapes = [(tuple(v.shape), str(v.dtype)) for v in model.variables]
    return json.dumps([type(model).__qualname__, positional(config), shapes], sort_keys=True,
                      default=str)


class CompiledModels:
    """The cache a worker process keeps (see the module docstring)."""

    def __init__(self, size: int = MAX_ENTRIES) -> None:
        self.size = size
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def kept(self, key: str | None) -> _Entry | None:
        """The kept entry of ``key`` (now the most recently used), its optimizer back in its
        state before the first step; None when there is none."""
        entry = self._entries.get(key) if key else None
        if entry is not None:
            self._entries.move_to_end(key)
            for variable, value in zip(entry.model.optimizer.variables, entry.optimizer_start):
                variable.assign(value)
        return entry

    def keep(self, key: str, model: keras.Model, loss: Any) -> _Entry:
        """Keep a compiled, built model (and its loss) under ``key``, with its optimizer's
        state before the first step; the least recently used entry goes past ``size``."""
        start = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
        entry = self._entries[key] = _Entry(model, loss, start)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return entry

    def prepare(self, model: keras.Model, loss: keras.losses.Loss, *, optimizer: str,
                learning_rate: float, jit_compile: bool | str, steps: int,
                sample: tuple[Any, Any], reuse: bool = True
                ) -> tuple[keras.Model, keras.losses.Loss, bool]:
        """A compiled model that starts from ``model``'s weights and trains with ``loss``:
        a cached one made to match (third value True) or ``model`` itself, compiled.
        ``sample``: a small (x, y) batch to build a new model's loss and metrics on."""
        key = None
        if reuse:
            model_key = _model_key(model)
            if model_key is not None:
                key = json.dumps([model_key, compiled_key(loss), optimizer,
                                  str(jit_compile), steps,
                                  keras.mixed_precision.global_policy().name])
        entry = self._entries.get(key) if key else None
        if entry is not None and len(entry.model.variables) == len(model.variables):
            # (A different count cannot happen for one architecture: never copy misaligned
            # weights.)
            entry = self.kept(key)
            for target, source in zip(entry.model.variables, model.variables):
                target.assign(source.value)
            entry.model.optimizer.learning_rate = learning_rate
            retune(entry.loss, loss)
            return entry.model, entry.loss, True

        opt = keras.optimizers.get({"class_name": optimizer,
                                    "config": {"learning_rate": learning_rate}})
        model.compile(optimizer=opt, loss=loss, metrics=component_metrics(loss),
                      jit_compile=jit_compile, steps_per_execution=steps)
        build_state(model, sample)
        if key:  # its state before the first step, restored when the model is reused
            self.keep(key, model, loss)
        return model, loss, False


CACHE = CompiledModels()
