"""A GAN as one Keras model: a generator and a discriminator trained in alternation by the
model's own train step (Keras's "Customizing what happens in fit()" pattern), on TensorFlow
and PyTorch.

Each step draws latent vectors, takes ``d_steps`` discriminator steps on the batch of real
samples and as many generated ones, then one generator step, each with its own optimizer (the
discriminator's learning rate is the generator's times ``d_lr_ratio``: TTUR, Heusel et al.
2017). The losses are the design's :class:`losstune.losses._adversarial.AdversarialLoss`; the
gradient penalty (WGAN-GP) and the R1 penalty need the discriminator's gradient with respect
to its inputs, a second-order term, which is why the step is written per backend: Keras has no
backend-neutral gradient API. JAX's train step is stateless (its variables are passed in and
returned), a different program: a GAN study on JAX is refused with one line before anything is
stored (the task's ``backends``, checked by :func:`losstune.backend.check`).

Called on latent vectors, the model returns the generator's samples: that is what a trial
predicts and scores.

Layer: training.
"""

from __future__ import annotations

from typing import Any, Callable

import keras
from keras import ops

from losstune.losses._adversarial import gradient_penalty

def _norm(kind: str) -> keras.layers.Layer:
    """A normalisation layer: ``batch`` (DCGAN's), ``layer``, or none (an identity)."""
    layers = keras.layers
    return {"batch": layers.BatchNormalization, "layer": layers.LayerNormalization,
            "none": layers.Identity}[kind]()


def build_generator(latent_dim: int, output_shape: tuple[int, ...], kind: str,
                    hidden: tuple[int, ...], filters: tuple[int, ...],
                    normalization: str = "batch") -> keras.Model:
    """``mlp``: dense layers with normalisation (``normalization``: batch by default) and
    ReLU, then tanh outputs; ``cnn`` (images, DCGAN-style, Radford et al. 2016): a dense
    projection to a quarter-size map, transposed convolutions with normalisation and ReLU
    doubling it, tanh outputs."""
    import math

    layers = keras.layers
    z = keras.Input((latent_dim,))
    if kind == "cnn":
        h, w, channels = output_shape
        size = (math.ceil(h / 2 ** len(filters)), math.ceil(w / 2 ** len(filters)))
        x = layers.Dense(size[0] * size[1] * filters[-1])(z)
        x = layers.ReLU()(_norm(normalization)(x))
        x = layers.Reshape((*size, filters[-1]))(x)
        for f in reversed(filters):
            x = layers.Conv2DTranspose(f, 4, strides=2, padding="same")(x)
            x = layers.ReLU()(_norm(normalization)(x))
        x = layers.Conv2D(channels, 3, padding="same", activation="tanh")(x)
        x = layers.Cropping2D(((0, x.shape[1] - h), (0, x.shape[2] - w)))(x)
    else:
        x = z
        for width in hidden:
            x = layers.ReLU()(_norm(normalization)(layers.Dense(width)(x)))
        x = layers.Dense(int(math.prod(output_shape)), activation="tanh")(x)
        x = layers.Reshape(output_shape)(x)
    return keras.Model(z, x, name="generator")


def build_discriminator(input_shape: tuple[int, ...], kind: str, hidden: tuple[int, ...],
                        filters: tuple[int, ...], normalization: str = "batch") -> keras.Model:
    """One raw output per sample (a logit, or a critic's value). ``mlp``: dense layers with
    LeakyReLU(0.2); ``cnn``: strided convolutions with LeakyReLU(0.2). Never batch
    normalisation, which mixes a batch's samples where the gradient penalties are per
    sample: layer normalisation after each hidden layer when ``normalization`` is "layer"
    (as WGAN-GP's critic), else none."""
    layers = keras.layers
    x_in = keras.Input(input_shape)
    x = x_in
    norm = "layer" if normalization == "layer" else "none"
    if kind == "cnn":
        for f in filters:
            x = layers.LeakyReLU(0.2)(_norm(norm)(
                layers.Conv2D(f, 3, strides=2, padding="same")(x)))
    x = layers.Flatten()(x)
    for width in hidden if kind != "cnn" else ():
        x = layers.LeakyReLU(0.2)(_norm(norm)(layers.Dense(width)(x)))
    return keras.Model(x_in, layers.Dense(1)(x), name="discriminator")


def check_models(generator: Any, discriminator: Any, latent_dim: int,
                 shape: tuple[int, ...]) -> None:
    """A user's generator must map (batch, latent_dim) to (batch, *shape) and the
    discriminator (batch, *shape) to one value a sample: say so in one line instead of a
    backend's shape error inside the train step."""
    import numpy as np

    from losstune.errors import LosstuneError

    for name, model in (("build_generator", generator), ("build_discriminator", discriminator)):
        if not isinstance(model, keras.Model):
            raise LosstuneError(f"{name} returned {type(model).__name__}, not a keras.Model")
    fake = ops.convert_to_numpy(generator(np.zeros((2, latent_dim), "float32")))
    if tuple(fake.shape[1:]) != tuple(shape):
        raise LosstuneError(f"build_generator(latent_dim={latent_dim}, output_shape={shape}) "
                            f"returned a model whose samples have shape {tuple(fake.shape[1:])}"
                            f"; the data's are {tuple(shape)}")
    score = ops.convert_to_numpy(discriminator(fake))
    if score.shape not in ((2,), (2, 1)):
        raise LosstuneError(f"build_discriminator(input_shape={shape}) returned a model with "
                            f"outputs of shape (batch, {', '.join(map(str, score.shape[1:]))})"
                            "; it needs one raw value a sample (a logit or a critic's score: "
                            "Dense(1) with no activation)")


def value_and_grads(fn: Callable[[], Any], variables: list[Any]) -> tuple[Any, list[Any]]:
    """``fn()`` and its gradients with respect to ``variables``, by the backend's autodiff."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = fn()
        return value, tape.gradient(value, variables)
    import torch

    value = fn()
    grads = torch.autograd.grad(value, [v.value for v in variables], allow_unused=True)
    return value, [ops.zeros_like(v) if g is None else g for v, g in zip(variables, grads)]


def _input_gradients(discriminator: keras.Model, x: Any) -> Any:
    """The discriminator's gradient with respect to its inputs, one row per sample, kept
    differentiable (the penalties' second-order term)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            out = discriminator(x, training=True)
        return tape.gradient(out, x)
    import torch

    x = x.detach().requires_grad_(True)
    out = discriminator(x, training=True)
    (grad,) = torch.autograd.grad(ops.sum(out), x, create_graph=True)
    return grad


class GAN(keras.Model):
    """The generator and the discriminator; ``compile(optimizer, loss)`` takes the generator's
    optimizer and the design's adversarial loss, and makes the discriminator's optimizer."""

    def __init__(self, generator: keras.Model, discriminator: keras.Model, latent_dim: int,
                 seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim = int(latent_dim)
        self.noise = keras.random.SeedGenerator(seed)
        self.d_tracker = keras.metrics.Mean(name="loss_discriminator")
        self.g_tracker = keras.metrics.Mean(name="loss_generator")
        self.total_tracker = keras.metrics.Mean(name="loss")
        self.built = True  # its two models are built from their inputs

    def call(self, z: Any, training: bool = False) -> Any:
        return self.generator(z, training=training)

    def compile(self, optimizer: Any, loss: Any, metrics: Any = None, jit_compile: Any = False,
                steps_per_execution: int = 1, **kwargs: Any) -> None:
        optimizer = keras.optimizers.get(optimizer)
        config = optimizer.get_config()
        self.d_optimizer = type(optimizer).from_config(
            {**config, "learning_rate": float(config["learning_rate"]) * loss.d_lr_ratio,
             "name": "discriminator_optimizer"})
        self.adversarial = loss
        # Two optimizers in one step: no XLA (the penalties' nested gradients), and one step
        # a call (a step's discriminator updates read the generator's latest weights).
        # The losses are the step's own (no Keras compile loss to build on a batch).
        super().compile(optimizer=optimizer, jit_compile=False, steps_per_execution=1)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def get_config(self) -> dict[str, Any]:
        # Not describable: a compiled GAN is never reused for another trial
        # (losstune.compiled), whose discriminator's optimizer and steps would differ.
        raise NotImplementedError("a GAN model is built anew for every trial")

    @property
    def metrics(self) -> list[Any]:
        return [self.total_tracker, self.d_tracker, self.g_tracker]

    def _latent(self, n: Any) -> Any:
        return keras.random.normal((n, self.latent_dim), seed=self.noise)

    def _d_objective(self, real: Any, z: Any) -> Any:
        loss = self.adversarial
        fake = ops.stop_gradient(self.generator(z, training=True))
        d_real = self.discriminator(real, training=True)
        d_fake = self.discriminator(fake, training=True)
        value = loss.discriminator_loss(d_real, d_fake)
        if loss.gp_weight:  # WGAN-GP: on interpolates between real and generated samples
            shape = (ops.shape(real)[0],) + (1,) * (len(real.shape) - 1)
            t = keras.random.uniform(shape, seed=self.noise)
            between = t * real + (1.0 - t) * fake
            value = value + loss.gp_weight * gradient_penalty(
                _input_gradients(self.discriminator, between), "gp")
        if loss.r1_gamma:  # R1: on real samples
            value = value + loss.r1_gamma * gradient_penalty(
                _input_gradients(self.discriminator, real), "r1")
        return value

    def _g_objective(self, real: Any, z: Any) -> Any:
        loss = self.adversarial
        d_fake = self.discriminator(self.generator(z, training=True), training=True)
        # A discriminator pass over the real batch only for a loss that reads it.
        d_real = self.discriminator(real, training=True) if loss.generator_reads_real else None
        return loss.generator_loss(d_fake, d_real)

    def train_step(self, data: Any) -> dict[str, Any]:
        real = data[0] if isinstance(data, (tuple, list)) else data
        n = ops.shape(real)[0]
        d_vars, g_vars = (self.discriminator.trainable_variables,
                          self.generator.trainable_variables)
        d_loss = None
        for _ in range(self.adversarial.d_steps):
            z = self._latent(n)
            d_loss, grads = value_and_grads(lambda: self._d_objective(real, z), d_vars)
            self.d_optimizer.apply(grads, d_vars)
        z = self._latent(n)
        g_loss, grads = value_and_grads(lambda: self._g_objective(real, z), g_vars)
        self.optimizer.apply(grads, g_vars)
        return self._logs(d_loss, g_loss)

    def test_step(self, data: Any) -> dict[str, Any]:
        real = data[0] if isinstance(data, (tuple, list)) else data
        z = self._latent(ops.shape(real)[0])
        loss = self.adversarial
        d_real = self.discriminator(real)
        d_fake = self.discriminator(self.generator(z))
        return self._logs(loss.discriminator_loss(d_real, d_fake),
                          loss.generator_loss(d_fake, d_real))

    def _logs(self, d_loss: Any, g_loss: Any) -> dict[str, Any]:
        self.d_tracker.update_state(d_loss)
        self.g_tracker.update_state(g_loss)
        self.total_tracker.update_state(d_loss + g_loss)
        return {m.name: m.result() for m in self.metrics}
