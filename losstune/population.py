"""Population training: many trials of a study trained at once, as one Keras model.

The models people tune losses on are small next to the machine: a digits MLP's train step takes
a fraction of a millisecond, and most of a trial's time is fixed cost per step and per trial.
A population of K trials is one model whose every layer holds the K members' weights side by
side: a leading member axis and one ``einsum`` per dense layer. Each member has

* its own loss design: the members' losses are stacked (:func:`losstune.losses.stack`), one
  stacked loss per loss structure, so a population may mix families;
* its own learning rate (:func:`member_optimizer`) and its own number of epochs;
* its own curves, pruning, score and record, the same as if it had trained alone
  (:mod:`losstune.trial` writes both).

A model from a factory or a Python function cannot be stacked layer by layer (losstune does not
know its layers); its members are K copies side by side in one model (:class:`SideBySide`): the
arithmetic is not batched, but the per-step and per-trial costs are still paid once. The built-in
CNN trains side by side too: its convolutions stacked as one grouped convolution ran 7.5 times
slower than eight separate ones on TensorFlow's CPU kernels (1.88 s against 0.25 s an epoch, the
long-tailed digits CNN, K = 8).

The loss of the population is the sum over members of each member's mean loss, so each member's
weights get exactly the gradient they would get alone, and Adam, SGD and RMSprop update every
weight on its own. A member that is pruned, diverges or reaches its epoch count stops counting:
its weight in the loss and its learning rate go to 0.

What members share is the seed index. In losstune every design of a study trains on seed i with
the same split, the same initial weights and the same batch order, so that designs compare seed
by seed; the members of a population are trials on one seed index and see exactly that. Runs
on other seeds form other populations. Members also share the model, the optimizer kind and the
batch size; trials that differ there train in separate populations (:mod:`losstune.batch`).

A member computes what it computes alone up to float rounding: tests/test_population.py checks
that for every family, on TensorFlow and torch. Not the same draw: dropout masks, which are drawn
for the whole population.

Layer: training.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from keras import ops

from losstune import activity, results
from losstune import trial as trial_mod
from losstune.compiled import CompiledModels, build_state
from losstune.losses import (COMPONENTS, DynamicLoss, LossState, Tunable, compiled_key,
                             held_arrays, restack, stack)
from losstune.stopping import STOP

# "auto" trains at most this many trials at once. On 2 CPU cores trials per hour of the digits
# MLP grow more slowly past 16 members (benchmarks/run.py, figure 13: 2.13x and 2.35x one trial
# alone at 16 and 32, 2.64x at 64), and a smaller population leaves Optuna's pruners finished
# trials to compare with.
AUTO_MAX = 32
# "auto" keeps a population's parameters, optimizer state and activations under this share of
# the free memory.
MEMORY_SHARE = 0.25
# Population models a worker keeps compiled (least recently used dropped).
MAX_ENTRIES = 4
# Models whose members are copies side by side (SideBySide) rather than stacked layers.
SIDE_BY_SIDE = ("cnn", "factory", "python")


def size(spec: Any, input_shape: tuple[int, ...], units: int,
         remaining: int | None = None) -> int:
    """How many trials to train at once: ``training.population``, or for "auto" the largest
    population up to :data:`AUTO_MAX` that fits :data:`MEMORY_SHARE` of the free memory;
    never more than ``remaining``; 1 when the study cannot use populations. "auto" splits
    ``remaining`` into populations of sizes within one of each other (40 trials with room for
    32: 20 and 20, not 32 and 8; 33: 17 and 16): populations of one size reuse the first one's
    compiled model and traced step, and no small one is left to train at a small population's
    cost."""
    if trial_mod.trains_alone(spec):
        return 1
    setting = spec.training.population
    if setting != "auto":
        return max(1, int(setting) if remaining is None else min(int(setting), remaining))
    k = max(1, min(AUTO_MAX, _fits_in_memory(spec, input_shape, units)))
    if remaining is None:
        return k
    if remaining <= k:
        return max(1, remaining)
    return math.ceil(remaining / math.ceil(remaining / k))


def member_bytes(spec: Any, input_shape: tuple[int, ...], units: int) -> int:
    """An upper estimate of one member's memory: weights, their gradient and two optimizer
    moments, and the activations of the largest batch kept for the backward pass."""
    from losstune.studyfile import param_bounds

    batch = int(param_bounds(spec.training.batch_size)[1])
    widths, params, cells = [int(np.prod(input_shape))], 0, 0
    if spec.model.kind == "cnn":
        h, w, channels = input_shape
        for filters in spec.model.filters:
            params += 9 * channels * filters + filters
            cells += h * w * filters
            h, w, channels = math.ceil(h / 2), math.ceil(w / 2), filters
        widths = [channels]
    for width in [*spec.model.hidden, units]:
        params += widths[-1] * width + width
        widths.append(width)
    cells += sum(widths[1:])
    return 4 * (4 * params + 3 * batch * cells)


def _free_memory() -> int:
    """The kernel's estimate of memory available without swapping (MemAvailable: free memory
    plus reclaimable cache), or 2 GiB where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2 * 2**30


def _fits_in_memory(spec: Any, input_shape: tuple[int, ...], units: int) -> int:
    if spec.model.kind in SIDE_BY_SIDE:
        return AUTO_MAX  # its size is known once built: train() splits a population then
    return max(1, int(_free_memory() * MEMORY_SHARE) // member_bytes(spec, input_shape, units))


def _fits_beside(alone: keras.Model) -> int:
    """How many copies of a built model fit the memory share: its parameters with their
    gradient and two optimizer moments, and as much again for activations (a factory's
    activations are not known before it runs)."""
    return max(1, int(_free_memory() * MEMORY_SHARE) // max(32 * alone.count_params(), 1))


# ------------------------------------------------------------------------------ the model
@keras.saving.register_keras_serializable(package="losstune")
class StackedDense(keras.layers.Layer):
    """K dense layers side by side: inputs (batch, in) shared by all members, or (batch, K, in)
    one per member, give (batch, K, units). One einsum for all members. Written here because
    Keras has no batched dense layer (``EinsumDense`` shares one kernel)."""

    def __init__(self, members: int, units: int, activation: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.members, self.units = int(members), int(units)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape: tuple[int, ...]) -> None:
        # Zeros: the members' initial weights are copied in from the model a trial builds
        # alone (copy_weights), so they are the same as that trial's.
        self.kernel = self.add_weight(shape=(self.members, input_shape[-1], self.units),
                                      initializer="zeros", name="kernel")
        self.bias = self.add_weight(shape=(self.members, self.units), initializer="zeros",
                                    name="bias")

    def call(self, x: Any) -> Any:
        equation = "bi,kio->bko" if len(x.shape) == 2 else "bki,kio->bko"
        return self.activation(ops.einsum(equation, x, self.kernel) + self.bias)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[Any, ...]:
        return (input_shape[0], self.members, self.units)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "members": self.members, "units": self.units,
                "activation": keras.activations.serialize(self.activation)}


def build_model(spec: Any, *, input_shape: tuple[int, ...], units: int,
                members: int) -> keras.Model:
    """The built-in MLP of ``spec`` (``models.build``) for ``members`` trials at once: the
    same layers, each holding every member's weights; outputs (batch, members, units)."""
    model = spec.model
    if model.kind != "mlp":
        raise ValueError(f"only the mlp has stacked layers, not {model.kind!r}")
    layers: list[Any] = [keras.Input(input_shape), keras.layers.Flatten()]
    for width in model.hidden:
        layers.append(StackedDense(members, width, "relu"))
        if model.dropout:
            layers.append(keras.layers.Dropout(model.dropout))
    layers.append(StackedDense(members, units, dtype="float32"))
    return keras.Sequential(layers, name=f"losstune_{model.kind}_population")


@keras.saving.register_keras_serializable(package="losstune")
class SideBySide(keras.Model):
    """K copies of any Keras model in one model, outputs stacked to (batch, K, ...): the route
    for a model losstune cannot stack (a factory's, a Python function's). Each member runs its
    own copy's layers, so it computes exactly what the model computes alone; one compiled step
    still trains all K, which is what saves the per-step and per-trial costs."""

    def __init__(self, copies: list[keras.Model], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.copies = list(copies)

    def call(self, x: Any, training: Any = None) -> Any:
        return ops.stack([copy(x, training=training) for copy in self.copies], axis=1)


def _layouts(model: keras.Model, members: int) -> list[tuple[str, int]]:
    """Where each trainable variable (in ``model.trainable_variables`` order) keeps its
    members: a leading axis (stacked dense layers), or one member's own copy (side by side)."""
    if isinstance(model, SideBySide):
        return [("member", k) for k, copy in enumerate(model.copies)
                for _ in copy.trainable_variables]
    out = []
    for layer in model.layers:
        if layer.trainable_variables and not isinstance(layer, StackedDense):
            raise ValueError(f"layer {layer.name!r} of a stacked model has no member axis")
        out += [("leading", 0)] * len(layer.trainable_variables)
    if len(out) != len(model.trainable_variables):
        raise ValueError("the population model's variables are not all in its layers")
    return out


def copy_weights(population: keras.Model, alone: keras.Model, members: int) -> None:
    """Give every member the initial weights of ``alone``, the model its trial builds alone."""
    if isinstance(population, SideBySide):
        weights = alone.get_weights()
        for copy in population.copies:
            copy.set_weights(weights)
        return
    targets = [layer for layer in population.layers if layer.weights]
    sources = [layer for layer in alone.layers if layer.weights]
    if len(targets) != len(sources):
        raise ValueError("the population model does not match the model it stacks")
    for target, source in zip(targets, sources):
        for t, s in zip(target.weights, source.weights):
            value = ops.convert_to_numpy(s)
            t.assign(np.broadcast_to(value, (members, *value.shape)))


def member_optimizer(name: str, members: int,
                     layouts: list[tuple[str, int]]) -> keras.optimizers.Optimizer:
    """Keras's optimizer ``name`` with one learning rate per member (``member_lr``).

    Adam, AdamW, SGD and RMSprop multiply their update by the learning rate, elementwise; a
    member's rate broadcast over its own weights gives each member its own rate, at the cost of
    one multiply. The update itself is Keras's own (``update_step``); only the per-variable
    loop is taken back from the fused torch version, which takes one scalar rate."""
    base = type(keras.optimizers.get(name))

    class MemberOptimizer(base):
        def build(self, variables: list[Any]) -> None:
            if self.built:  # Keras's optimizers build once; so does the member rate
                return
            super().build(variables)
            self.member_lr = self.add_variable((members,), initializer="ones",
                                               name="member_lr")

        def _scale(self, variable: Any) -> Any:
            rate = ops.cast(self.member_lr, variable.dtype)
            kind, member = layouts[self._get_variable_index(variable)]
            if kind == "member":  # one member's own copy of a variable
                return rate[member]
            return ops.reshape(rate, (members,) + (1,) * (len(variable.shape) - 1))

        def _backend_update_step(self, grads: list[Any], variables: list[Any],
                                 learning_rate: Any) -> None:
            for grad, variable in zip(grads, variables):
                self.update_step(grad, variable, learning_rate)

        def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
            rate = ops.cast(learning_rate, variable.dtype) * self._scale(variable)
            super().update_step(gradient, variable, rate)

        def _apply_weight_decay(self, variables: list[Any]) -> None:
            if self.weight_decay is None:
                return
            for variable in variables:
                if self._use_weight_decay(variable):
                    rate = ops.cast(self.learning_rate, variable.dtype) * self._scale(variable)
                    decay = ops.cast(self.weight_decay, variable.dtype)
                    variable.assign(variable - variable * decay * rate)

    MemberOptimizer.__name__ = MemberOptimizer.__qualname__ = f"Member{base.__name__}"
    return MemberOptimizer(learning_rate=1.0)


# ------------------------------------------------------------------------------ the loss
class PopulationLoss(Tunable, keras.losses.Loss):
    """Σ over members of each member's mean loss, on predictions (batch, K, ...).

    ``groups``: stacked losses (one per loss structure) and how many consecutive members each
    computes. ``active`` (a variable): 1 for a member that trains, 0 for one that stopped.
    Keras averages the returned (batch, K) values over both axes; the factor K makes that the
    sum over members, so each member's gradient is the one it gets alone.
    """

    def __init__(self, groups: list[keras.losses.Loss], sizes: list[int]) -> None:
        super().__init__(name="population_loss")
        self.groups, self.sizes = list(groups), list(sizes)
        self.members = sum(sizes)
        self._init_hp(active=np.ones(self.members, "float32"))
        self._last: Any = None

    def member_losses(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        """Per sample and member, (batch, K); and DynamicLoss's terms, (batch, K, terms), for
        the members that have them (zeros elsewhere), or None when no member has."""
        if len(y_true.shape) < len(y_pred.shape):  # one target per sample for all members
            # (batch, K) + the target's own shape: an embedding's label is one column while
            # its prediction has the embedding's dimension.
            shape = ops.shape(y_pred)[:2] + tuple(y_true.shape[1:])
            y_true = ops.broadcast_to(ops.expand_dims(y_true, 1), shape)
        values, terms, start = [], [], 0
        any_terms = any(isinstance(g, DynamicLoss) for g in self.groups)
        for group, n in zip(self.groups, self.sizes):
            whole = len(self.groups) == 1
            yt = y_true if whole else y_true[:, start:start + n]
            yp = y_pred if whole else y_pred[:, start:start + n]
            if isinstance(group, DynamicLoss):
                parts = group.components(yt, yp)
                stacked = ops.stack([parts[c] for c in COMPONENTS], axis=-1)
                values.append(ops.sum(stacked, axis=-1))
                terms.append(stacked)
            else:
                values.append(ops.cast(group.call(yt, yp), y_pred.dtype))
                if any_terms:
                    terms.append(ops.zeros(ops.shape(values[-1]) + (len(COMPONENTS),),
                                           dtype=y_pred.dtype))
            start += n
        join = (lambda parts: parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=1))
        return join(values), (join(terms) if any_terms else None)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        values, terms = self.member_losses(y_true, y_pred)
        self._last = (y_true, y_pred, values, terms)  # for MemberMeans, in the same step
        return values * self._h("active", values.dtype) * float(self.members)

    def compile_metrics(self) -> list[keras.metrics.Metric]:
        self.member_means = MemberMeans(self)  # the trainer reads it after every epoch
        return [LossState(self), self.member_means]


class MemberMeans(keras.metrics.Metric):
    """Each member's mean training loss (and DynamicLoss terms) over the epoch: the curves a
    trial records alone. Reuses what the loss computed in the same step where the backend
    passes both the same tensors (as ``ComponentMeans`` does)."""

    def __init__(self, loss: PopulationLoss, name: str = "member_means", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.loss = loss
        k = loss.members
        self.sums = self.add_variable((k,), initializer="zeros", name="sums")
        self.term_sums = self.add_variable((k, len(COMPONENTS)), initializer="zeros",
                                           name="term_sums")
        self.count = self.add_variable((), initializer="zeros", name="count")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        last, self.loss._last = self.loss._last, None
        if last is not None and last[0] is y_true and last[1] is y_pred:
            values, terms = last[2], last[3]
        else:
            values, terms = self.loss.member_losses(y_true, y_pred)
        self.sums.assign_add(ops.cast(ops.sum(values, axis=0), self.dtype))
        if terms is not None:
            self.term_sums.assign_add(ops.cast(ops.sum(terms, axis=0), self.dtype))
        self.count.assign_add(ops.cast(ops.shape(y_pred)[0], self.dtype))

    def result(self) -> dict[str, Any]:
        return {}  # read per member by the trainer (means), not logged as one number

    def means(self) -> tuple[np.ndarray, np.ndarray]:
        count = max(float(ops.convert_to_numpy(self.count)), 1.0)
        return (ops.convert_to_numpy(self.sums) / count,
                ops.convert_to_numpy(self.term_sums) / count)


# ------------------------------------------------------------------------------ training
@dataclass
class Member:
    """One trial in a population: its design, and what training it recorded."""

    trial: Any
    description: dict[str, Any]
    training: dict[str, Any]
    loss: Any
    warnings: tuple[str, ...] = ()
    values: list[float] = field(default_factory=list)
    logs: dict[str, list[float]] = field(default_factory=dict)
    epoch_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0
    pruned_at: int | None = None
    diverged: str | None = None
    interrupted: bool = False
    val_out: np.ndarray | None = None
    test_out: np.ndarray | None = None
    val_scores: dict[str, Any] | None = None  # every metric, when scored with the others
    test_scores: dict[str, Any] | None = None
    index: int = 0

    @property
    def epochs(self) -> int:
        return int(self.training["epochs"])

    @property
    def key(self) -> str:
        return compiled_key(self.loss)


# Compiled population models a worker keeps, as losstune.compiled keeps single ones.
KEPT = CompiledModels(size=MAX_ENTRIES)


def _groups(members: list[Member]) -> list[list[Member]]:
    return [list(g) for _, g in itertools.groupby(members, key=lambda m: m.key)]


# Whether a loss structure stacks (:func:`unstackable`), by its compiled key, the number of
# members stacked, the targets' width and which of its values the members share: checked once
# a worker. Losses with one compiled key run the same code on values held in variables
# (losstune.losses.compiled_key), so a check holds for other values; but a value the members
# share would pass even when broadcast against the wrong axis, so a population whose members
# differ where the checked ones did not is checked again. The check is K + 1 eager loss calls,
# a tenth of a second in a population of 20.
_STACKS: dict[tuple[Any, ...], bool] = {}


def unstackable(members: list[Member], ctx: Any) -> list[Member]:
    """The members whose losses do not stack: stacked with the others of their structure,
    on random predictions for real targets, some member's value differs from what its loss
    computes alone (or raises). A family registered with a per-class value it does not declare
    ``_elementwise`` would broadcast it against the wrong axis; its trials train alone. Each
    structure is checked once a worker for a population size and the values its members
    share (:data:`_STACKS`)."""
    splits = ctx.splits
    y = trial_mod.training_targets(splits)[:16]
    bad: list[Member] = []
    for group in _groups(sorted(members, key=lambda m: m.key)):
        if len(group) < 2:
            continue
        values = [held_arrays(m.loss) for m in group]
        shared = tuple(all(np.array_equal(v[i], values[0][i]) for v in values[1:])
                       for i in range(len(values[0])))
        checked = (group[0].key, len(group), int(y.shape[-1]), shared)
        verdict = _STACKS.get(checked)
        if verdict is None:
            verdict = _stacks(group, y)
            if verdict is not None:  # a value that is not finite proves nothing: not kept
                _STACKS[checked] = verdict
        if not verdict:
            bad += group
    return bad


def _stacks(group: list[Member], y: np.ndarray) -> bool | None:
    """Whether ``group``'s losses (one structure), stacked, give each member's value alone;
    None where some value is not finite (this group trains alone, nothing is concluded)."""
    pred = np.random.default_rng(0).normal(
        size=(len(y), len(group), y.shape[-1])).astype("float32")
    try:
        together = ops.convert_to_numpy(stack([m.loss for m in group]).call(
            np.repeat(y[:, None], len(group), axis=1), pred))
        if together.shape != (len(y), len(group)):
            return False
        alone = np.stack([ops.convert_to_numpy(m.loss.call(y, pred[:, k]))
                          for k, m in enumerate(group)], axis=1)
    except Exception:  # noqa: BLE001 - a loss that cannot stack trains alone
        return False
    if not (np.all(np.isfinite(together)) and np.all(np.isfinite(alone))):
        return None
    return bool(np.allclose(together, alone, rtol=1e-4, atol=1e-6))


def _prepare(ctx: Any, members: list[Member], alone: keras.Model, sample: tuple[Any, Any]
             ) -> tuple[keras.Model, PopulationLoss]:
    """A compiled population model for these members, starting from ``alone``'s weights:
    a kept one (same shape, same loss structures, same training settings) made to match, or a
    new one."""
    spec, splits = ctx.spec, ctx.splits
    k, groups = len(members), _groups(members)
    optimizer = members[0].training["optimizer"]
    from losstune import models

    units = models.output_units(spec.task, splits.num_classes, spec.model.embedding_dim)
    steps = trial_mod.execution_steps(ctx, members[0].training["batch_size"])
    key = json.dumps([spec.model.model_dump(mode="json"), id(ctx.model_fn), k,
                      list(splits.input_shape), units,
                      [(g[0].key, len(g)) for g in groups], optimizer,
                      str(spec.training.jit_compile), steps,
                      keras.mixed_precision.global_policy().name], sort_keys=True, default=str)
    entry = KEPT.kept(key) if spec.training.reuse_compiled else None
    if entry is None:
        if spec.model.kind in SIDE_BY_SIDE:
            model = SideBySide([models.build(spec.model, input_shape=splits.input_shape,
                                             units=units, base_dir=ctx.base_dir,
                                             builder=ctx.model_fn, task=spec.task)
                                for _ in range(k)],
                               name="losstune_side_by_side")
            model(splits.x_train[:2])  # built: its variables exist before the optimizer's
        else:
            model = build_model(spec, input_shape=splits.input_shape, units=units, members=k)
        loss = PopulationLoss([stack([m.loss for m in g]) for g in groups],
                              [len(g) for g in groups])
        opt = member_optimizer(optimizer, k, _layouts(model, k))
        model.compile(optimizer=opt, loss=loss, metrics=loss.compile_metrics(),
                      jit_compile=spec.training.jit_compile, steps_per_execution=steps)
        # Built now, as a kept model is, so fit draws nothing to build them (see compiled.py).
        build_state(model, sample)
        if spec.training.reuse_compiled:
            KEPT.keep(key, model, loss)
        return _start(model, loss, alone, members)
    for stacked, g in zip(entry.loss.groups, groups):
        restack(stacked, [m.loss for m in g])
    return _start(entry.model, entry.loss, alone, members)


def _start(model: keras.Model, loss: PopulationLoss, alone: keras.Model,
           members: list[Member]) -> tuple[keras.Model, PopulationLoss]:
    """The population model from ``alone``'s weights, each member at its own learning rate,
    every member active."""
    copy_weights(model, alone, len(members))
    model.optimizer.member_lr.assign(
        np.array([m.training["learning_rate"] for m in members], "float32"))
    loss._hp["active"].assign(np.ones(len(members), "float32"))
    return model, loss


# The model every member starts from, and its outputs on the audit batch: the last one
# built, with its key and the splits it saw (one a worker; a population of the same seed,
# model and data starts from it again instead of building it again).
_STARTED: list[tuple[str, Any, keras.Model, np.ndarray]] = []


def _starting_model(ctx: Any, seed: int) -> tuple[keras.Model, np.ndarray]:
    """The model each trial would build alone on seed ``seed``, built the same way (its
    weights are every member's initial weights), and its outputs on the audit batch. Kept for
    the next population (``training.reuse_compiled``): building it again gives the same
    weights."""
    from losstune import models

    spec, splits = ctx.spec, ctx.splits
    units = models.output_units(spec.task, splits.num_classes, spec.model.embedding_dim)
    key = json.dumps([spec.model.model_dump(mode="json"), id(ctx.model_fn), str(ctx.base_dir),
                      seed, spec.task, list(splits.input_shape), units,
                      keras.mixed_precision.global_policy().name], sort_keys=True, default=str)
    for kept_key, kept_splits, alone, outputs in _STARTED:
        if kept_key == key and kept_splits is splits and spec.training.reuse_compiled:
            return alone, outputs
    keras.utils.set_random_seed(seed)
    alone = models.build(spec.model, input_shape=splits.input_shape, units=units,
                         base_dir=ctx.base_dir, builder=ctx.model_fn, task=spec.task)
    n = min(len(splits.x_train), trial_mod.AUDIT_BATCH)
    outputs = ops.convert_to_numpy(alone(splits.x_train[:n]))
    _STARTED[:] = [(key, splits, alone, outputs)] if spec.training.reuse_compiled else []
    return alone, outputs


def train(members: list[Member], ctx: Any, *, report: bool) -> list[Member]:
    """Train ``members`` (one seed index, one optimizer, one batch size) as one population.
    Each member ends finished (``val_out`` set), pruned, diverged or interrupted; the caller
    records and tells. Returns the members in population order (grouped by loss structure)."""
    from losstune import audit

    spec, splits = ctx.spec, ctx.splits
    members = sorted(members, key=lambda m: m.key)
    for i, m in enumerate(members):
        m.index = i
        m.trial.set_user_attr(results.POPULATION, len(members))
        m.trial.set_user_attr(results.MEMBER, i)
        m.trial.set_user_attr(results.COMPILED, "population")
    seed = trial_mod.run_seed(spec)
    if spec.training.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        alone, outputs = _starting_model(ctx, seed)
        cap = _fits_beside(alone) if spec.model.kind in SIDE_BY_SIDE else len(members)
        if len(members) > cap:  # more copies of this model than fit in memory: in parts
            done: list[Member] = []
            for start in range(0, len(members), cap):
                done += train(members[start:start + cap], ctx, report=report)
            return done
        y_train = trial_mod.training_targets(splits)
        n = len(outputs)
        trial_mod.check_outputs(spec, outputs, y_train[:n])
        # A new population model draws from the run's seed, whether or not the starting
        # model was built just now (its weights are then replaced by the starting model's).
        keras.utils.set_random_seed(seed)
        model, loss = _prepare(ctx, members, alone, (splits.x_train[:2], y_train[:2]))
        # Audited together: one evaluation and one gradient per loss structure, of the
        # population's own stacked losses.
        stacked = {g[0].key: s for g, s in zip(_groups(members), loss.groups)}
        reports = audit.check_members([m.loss for m in members], y_train[:n], outputs,
                                      stacked=stacked)
        for m, audited in zip(members, reports):
            m.warnings = trial_mod.keep_audit(m.trial, audited)
        watch = _Watch(members, ctx, loss, report=report)
        keras.utils.set_random_seed(seed)  # the batches each member sees alone
        start = time.perf_counter()
        model.fit(**trial_mod.fit_arguments(ctx, y_train, members[0].training["batch_size"],
                                            seed, max(m.epochs for m in members)),
                  verbose=0, callbacks=[watch])
        seconds = time.perf_counter() - start
    finally:
        activity.clear()  # also when fit raised: no stale epoch on the display
        if spec.training.mixed_precision:
            keras.mixed_precision.set_global_policy("float32")
    for m in members:
        m.seconds = seconds
        if m.val_out is None and m.pruned_at is None and m.diverged is None:
            m.interrupted = True  # training stopped before this member finished
    return members


class _Watch(keras.callbacks.Callback):
    """Per epoch: each member's epoch variables (DynamicLoss), then each member's training
    loss, objective on the validation split, report to Optuna and pruning (each member watched
    as a trial alone is: :func:`losstune.trial.watch_epoch`); members that stop get weight 0
    in the loss and learning rate 0."""

    def __init__(self, members: list[Member], ctx: Any, loss: PopulationLoss, *,
                 report: bool) -> None:
        super().__init__()
        self.members, self.ctx, self.loss, self.report = members, ctx, loss, report
        self.active = np.ones(len(members), bool)
        self.metric = ctx.spec.objective.metrics[0]
        starts = np.cumsum([0, *loss.sizes])
        self.dynamic = [(stacked, members[a:b]) for stacked, a, b
                        in zip(loss.groups, starts[:-1], starts[1:])
                        if isinstance(stacked, DynamicLoss)]
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for stacked, group in self.dynamic:
            for m in group:
                m.loss.set_epoch(epoch)
            restack(stacked, [m.loss for m in group])
        self._start = time.perf_counter()
        activity.epoch(int(self.active.sum()), epoch, int(self.params.get("epochs") or 0))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if STOP.is_set():
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._start
        if STOP.is_set():
            self.model.stop_training = True
            return
        splits = self.ctx.splits
        means, terms = self._means()
        # One prediction of the stacked model per split, every member scored from it at once.
        val = trial_mod.predict(self.model, splits.val_inputs)
        live = []
        for k, m in enumerate(self.members):
            if not self.active[k]:
                continue
            m.epoch_seconds.append(seconds)
            m.logs.setdefault("loss", []).append(float(means[k]))
            if isinstance(m.loss, DynamicLoss):
                for i, c in enumerate(COMPONENTS):
                    m.logs.setdefault(results.COMPONENT + c, []).append(float(terms[k, i]))
            m.diverged = trial_mod.loss_diverged(means[k], epoch)
            if m.diverged is not None:
                self.active[k] = False
                continue
            live.append(k)
        scored = trial_mod.score_members(splits, splits.val_inputs, splits.y_val, val[:, live],
                                         only=self.metric) if live else []
        done = []
        for k, value in zip(live, scored):  # as a trial alone is watched (trial.watch_epoch)
            m = self.members[k]
            if not trial_mod.watch_epoch(m, m.trial, epoch, value, self.metric, self.report):
                self.active[k] = False
                continue
            if epoch + 1 >= m.epochs:
                done.append(k)
                self.active[k] = False
        if done:
            self._finish(done, val)
        if not self.active.any():
            self.model.stop_training = True
            return
        self.loss._hp["active"].assign(self.active.astype("float32"))
        rates = [m.training["learning_rate"] if a else 0.0
                 for m, a in zip(self.members, self.active)]
        self.model.optimizer.member_lr.assign(np.array(rates, "float32"))

    def _finish(self, done: list[int], val: np.ndarray) -> None:
        """Members that finished this epoch: their outputs and every metric on the validation
        and test splits, scored together (one test prediction for all of them)."""
        splits = self.ctx.splits
        vals = trial_mod.score_members(splits, splits.val_inputs, splits.y_val, val[:, done])
        tests: list[Any] = [None] * len(done)
        test = None
        if len(splits.y_test):
            test = trial_mod.predict(self.model, splits.test_inputs)
            tests = trial_mod.score_members(splits, splits.test_inputs, splits.y_test,
                                            test[:, done])
        for k, v, t in zip(done, vals, tests):
            m = self.members[k]
            m.val_out = val[:, k]
            m.test_out = test[:, k] if test is not None else None
            # A FloatingPointError here is recorded by trial.record_scores, which scores again.
            m.val_scores = None if isinstance(v, Exception) else v
            m.test_scores = None if isinstance(t, Exception) else t

    def _means(self) -> tuple[np.ndarray, np.ndarray]:
        return self.loss.member_means.means()
