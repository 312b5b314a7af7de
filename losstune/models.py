"""Models a trial trains: a built-in MLP or small CNN, or the user's own factory.

Classification models output logits (one unit per class, binary included) and the losses are
built with ``from_logits=True``: numerically safer than a softmax layer followed by a log.
Regression models output one linear unit.

Layer: training.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

from losstune import tasks
from losstune.errors import LosstuneError
from losstune.studyfile import ModelSpec


def output_units(task: str, num_classes: int, embedding_dim: int = 0) -> int:
    return tasks.units(task, num_classes, embedding_dim)


def build_autoencoder(spec: ModelSpec, *, input_shape: tuple[int, ...], variational: bool,
                      noise: float = 0.0):
    """The autoencoder task's model: an MLP encoder (``spec.hidden``) to a code of
    ``spec.embedding_dim`` units, the mirrored decoder, and one reconstruction logit per input
    feature; it outputs the logits, then the code (a VAE: the code's mean μ and log-variance,
    with a code sampled from them in training and μ itself otherwise). ``noise``: the standard
    deviation of Gaussian noise added to the inputs in training (a denoising autoencoder)."""
    import keras

    from losstune.losses._autoencoder import InputNoise, SampledCode

    inputs = keras.Input(input_shape)
    h = keras.layers.Flatten()(inputs)
    width = h.shape[-1]
    if noise:
        h = InputNoise(noise, name="input_noise")(h)
    for units in spec.hidden:
        h = keras.layers.Dense(units, activation="relu")(h)
    mean = keras.layers.Dense(spec.embedding_dim, name="code")(h)
    parts = [mean]
    code = mean
    if variational:
        log_var = keras.layers.Dense(spec.embedding_dim, name="code_log_var")(h)
        parts.append(log_var)
        code = SampledCode(name="sampled_code")([mean, log_var])
    h = code
    for units in reversed(spec.hidden):
        h = keras.layers.Dense(units, activation="relu")(h)
    logits = keras.layers.Dense(width, dtype="float32", name="reconstruction")(h)
    outputs = keras.layers.Concatenate(dtype="float32")([logits, *parts])
    return keras.Model(inputs, outputs, name="losstune_vae" if variational else "losstune_ae")


def load_factory(reference: str, base_dir: Path | str = "."):
    """Import ``package.module:function``. This runs the user's code, as the README says."""
    module_name, _, func_name = reference.partition(":")
    base = str(Path(base_dir).resolve())
    if base not in sys.path:
        sys.path.insert(0, base)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise LosstuneError(f"model.factory: cannot import {module_name!r} ({err})") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise LosstuneError(f"model.factory: {module_name!r} has no function {func_name!r}")
    return func


def final_activation(model: Any) -> str | None:
    """"softmax" or "sigmoid" (or "log_softmax") when the model's last layer applies it, else
    None. A loss with ``from_logits=True`` on probabilities trains, badly, without a word."""
    import keras

    last = model.layers[-1] if getattr(model, "layers", None) else None
    if isinstance(last, keras.layers.Softmax):
        return "softmax"
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", None)
    return name if name in ("softmax", "sigmoid", "log_softmax") else None


# Tasks whose losses take logits, which a final sigmoid would squash (softmax never belongs).


def build(spec: ModelSpec, *, input_shape: tuple[int, ...], units: int,
          base_dir: Path | str = ".", builder: Any = None,
          penalty: dict[str, float] | None = None, task: str | None = None):
    """A fresh, uncompiled ``keras.Model``. ``builder``: the model function of a study made
    from Python (``model.kind = "python"``). ``penalty``: a design's penalties, added to a
    built-in model (losstune.losses._penalty); a study checks that its model is built in."""
    import keras

    from losstune.losses._penalty import layers_for

    if spec.kind == "python" and builder is None:
        raise LosstuneError("this study's model is a Python function: give it again "
                            "(losstune.load_study(...).attach(build_model, x, y))")
    if spec.kind in ("factory", "python"):
        func = builder if spec.kind == "python" else load_factory(spec.factory, base_dir)
        kwargs = {"input_shape": input_shape, "output_units": units}
        accepted = inspect.signature(func).parameters
        positional = [p for p in accepted.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if (not set(kwargs) & set(accepted) and len(positional) >= 2
                and all(p.default is p.empty for p in positional[:2])):
            model = func(input_shape, units)  # (shape, units) under other names
        else:
            model = func(**{k: v for k, v in kwargs.items() if k in accepted})
        if not isinstance(model, keras.Model):
            raise TypeError(f"model.factory {spec.factory!r} returned "
                            f"{type(model).__name__}, not a keras.Model")
        squash = final_activation(model)
        # A sigmoid may bound a regression's output on purpose; on logits it never belongs.
        if squash and (squash != "sigmoid" or (task is not None and tasks.TASKS[task].outputs_logits)):
            raise LosstuneError(
                f"the model ends in {squash}; losstune's losses take the raw outputs (logits) "
                f"and apply {squash} themselves, where it is numerically safe: end in "
                f"Dense(output_units) with no activation")
        return model
    penalties, decay = layers_for(penalty)
    layers = [keras.Input(input_shape)]
    if spec.kind == "cnn":
        for filters in spec.filters:
            layers += [keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                           kernel_regularizer=decay),
                       keras.layers.MaxPooling2D(2, padding="same")]
        layers.append(keras.layers.GlobalAveragePooling2D())
    else:
        layers.append(keras.layers.Flatten())
    for width in spec.hidden:
        layers.append(keras.layers.Dense(width, activation="relu", kernel_regularizer=decay))
        if spec.dropout:
            layers.append(keras.layers.Dropout(spec.dropout))
    if penalties is not None:  # on the penultimate layer's output
        layers.append(penalties)
    # float32 output even under mixed precision, so the loss is computed in float32.
    layers.append(keras.layers.Dense(units, dtype="float32", kernel_regularizer=decay))
    return keras.Sequential(layers, name=f"losstune_{spec.kind}")
