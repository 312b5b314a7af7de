"""Neural style transfer as one Keras model: the image is the model's only trainable weight,
optimised from the content image by Adam on the design's composite loss (Gatys et al. 2016).

Gatys et al. optimise with L-BFGS; Keras has no L-BFGS, and Adam on the pixels is the common
replacement (as in Keras's own style-transfer example, which uses SGD): a fixed number of steps,
``training.epochs`` x ``training.steps_per_epoch``, at ``training.learning_rate``, pixels clipped
to [0, 1] after every step. The image starts from the content image plus a little Gaussian noise
drawn from the run's seed, so that seeds differ (the losses are otherwise deterministic).

Feature networks (no download at run time):

* ``random`` (the default, and in tests): a fixed random-weight multi-scale CNN. Ustyuzhaninov
  et al. (ICLR 2017) showed that random shallow networks with several filter sizes synthesise
  textures. Four blocks ``block1`` .. ``block4``, each a 3x3, a 5x5 and a 7x7 convolution
  (concatenated, ReLU) after a 2x2 average pooling (none before the first), with He-normal
  weights from a fixed seed; the style layers are all four blocks, the content layer
  ``block4`` by default (the analogue of VGG's ``conv4_2``: the deepest block);
* ``vgg19``: ``keras.applications.VGG19`` with ImageNet weights already on disk (the Keras
  cache, or ``model.vgg_weights``); ``block1`` .. ``block4`` are its ``block{i}_conv1`` layers
  (the paper's ``conv1_1`` .. ``conv4_1``); content on ``block4`` is conv4_1 (the paper's
  conv4_2 is the layer after it).

Layer: training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
from keras import ops

from losstune.losses._style import LAYERS

WIDTH = 16             # channels per filter size and block (48 a block)


def random_features(seed: int, height: int, width: int) -> keras.Model:
    """The random multi-scale CNN: the four blocks' outputs for an image in [0, 1]."""
    layers = keras.layers
    init = keras.initializers.HeNormal
    image = keras.Input((height, width, 3))
    x = image - 0.5
    outputs = []
    for i in range(len(LAYERS)):
        if i:
            x = layers.AveragePooling2D(2)(x)
        x = layers.Concatenate()([
            layers.Conv2D(WIDTH, k, padding="same", activation="relu",
                          kernel_initializer=init(seed=seed * 100 + i * 10 + k))(x)
            for k in (3, 5, 7)])
        outputs.append(x)
    model = keras.Model(image, outputs, name=f"random_features_{seed}")
    model.trainable = False
    return model


def vgg_features(weights: Path, height: int, width: int) -> keras.Model:
    """VGG19's ``block{i}_conv1`` outputs (the paper's conv1_1 .. conv4_1), for an image in
    [0, 1]. Content on ``block4`` is conv4_1 here; the paper's conv4_2 is the next layer."""
    vgg = keras.applications.VGG19(include_top=False, weights=str(weights),
                                   input_shape=(height, width, 3))
    vgg.trainable = False
    image = keras.Input((height, width, 3))
    x = keras.applications.vgg19.preprocess_input(image * 255.0)
    out = keras.Model(vgg.input, [vgg.get_layer(f"block{i + 1}_conv1").output
                                  for i in range(len(LAYERS))])(x)
    return keras.Model(image, out, name="vgg19_features")


class StyleModel(keras.Model):
    """The image being optimised. ``features``: the loss's feature network; ``content`` and
    ``style``: (1, H, W, 3) images in [0, 1]. ``compile(optimizer, loss)`` takes the design's
    :class:`~losstune.losses._style.StyleLoss`; called on anything, the model returns the
    image (1, H, W, 3)."""

    def __init__(self, features: keras.Model, content: Any, style: Any, seed: int = 0,
                 noise: float = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        import numpy as np

        self.features = features
        start = np.clip(content + np.random.default_rng(seed).normal(0, noise, content.shape),
                        0, 1).astype("float32")
        self.image = self.add_weight(shape=content.shape, name="image",
                                     initializer=keras.initializers.Constant(start))
        self.content_image = ops.convert_to_tensor(content, "float32")
        self.style_image = ops.convert_to_tensor(style, "float32")
        self.trackers = {k: keras.metrics.Mean(name="loss" if k == "loss" else f"loss_{k}")
                         for k in ("loss", "content", "style", "tv")}
        self.built = True

    def call(self, x: Any = None, training: bool = False) -> Any:
        return ops.convert_to_tensor(self.image)

    def compile(self, optimizer: Any, loss: Any, metrics: Any = None, jit_compile: Any = False,
                steps_per_execution: int = 1, **kwargs: Any) -> None:
        self.style_loss = loss
        content = self.features(self.content_image)
        self.content_target = content[LAYERS.index(loss.content_layer)]
        self.style_targets = [loss.statistic(f) for f in self.features(self.style_image)]
        super().compile(optimizer=optimizer, jit_compile=False,
                        steps_per_execution=steps_per_execution)

    def get_config(self) -> dict[str, Any]:
        # Not describable: a compiled style model holds one trial's image and targets.
        raise NotImplementedError("a style model is built anew for every trial")

    @property
    def metrics(self) -> list[Any]:
        return list(self.trackers.values())

    def _terms(self) -> dict[str, Any]:
        image = ops.convert_to_tensor(self.image)
        return self.style_loss.terms(image, self.features(image), self.content_target,
                                     self.style_targets)

    def train_step(self, data: Any) -> dict[str, Any]:
        from losstune.adversarial import value_and_grads

        found: dict[str, Any] = {}

        def total() -> Any:
            found.update(self._terms())
            return found["loss"]

        _, grads = value_and_grads(total, [self.image])
        self.optimizer.apply(grads, [self.image])
        self.image.assign(ops.clip(self.image, 0.0, 1.0))
        return self._logs(found)

    def test_step(self, data: Any) -> dict[str, Any]:
        return self._logs(self._terms())

    def _logs(self, terms: dict[str, Any]) -> dict[str, Any]:
        for key, tracker in self.trackers.items():
            tracker.update_state(terms[key])
        return {m.name: m.result() for m in self.metrics}
