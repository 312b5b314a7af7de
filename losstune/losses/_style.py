"""The composite loss of neural style transfer (Gatys et al., CVPR 2016), with three style
statistics.

On a fixed feature network's layers, with ``F_l`` the image's features at layer ``l`` (``M_l``
positions by ``N_l`` channels), ``P`` the content image's and ``S_l`` the style image's:

    L_total = ratio · L_content + L_style + tv_weight · L_tv

* ``L_content = ½ Σ (F_c − P_c)²`` at the content layer ``c`` (the paper's eq. 1);
* ``L_style = Σ_l w_l E_l`` over the style layers (``w_l``: ``style_weights``, normalised to
  sum 1 as the paper's 1/5 each), with ``E_l`` the family's statistic distance:

  - ``gatys``: Gram matrices, ``E_l = 1/(4 N_l² M_l²) Σ (G_l − A_l)²`` with ``G = FᵀF``
    (the paper's eq. 4; here ``¼ mean((FᵀF/M − SᵀS/M)²)``, the same number);
  - ``mean_std``: per-channel mean and standard deviation (the statistic AdaIN matches, Huang
    & Belongie 2017): ``E_l = mean((μ(F) − μ(S))²) + mean((σ(F) − σ(S))²)``;
  - ``sliced_wasserstein``: the sliced Wasserstein distance between the two sets of feature
    vectors (Heitz et al. 2021): project both on ``projections`` random unit directions
    (drawn anew every step), sort, and average the squared differences of the sorted values;
    the style's positions are resampled to the image's count where they differ.

* ``L_tv``: the total variation, the mean squared difference of neighbouring pixels.

``ratio`` is the paper's α/β, the content weight over the style weight (1e-3 in the paper's
figures). The seeds' text writes the total as ``α·L_content + β·L_style``; one ratio is what
matters for the image (an optimiser's step is what scales the rest), so the loss carries the
ratio and a style weight of 1.

The features come from :mod:`losstune.stylize`, which also optimises the image. A design's
values live in variables, as every tunable loss's do.

Layer: domain.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

from losstune.losses._families import PACKAGE
from losstune.losses._tunable import Tunable

LAYERS = ("block1", "block2", "block3", "block4")  # the style layers, shallow to deep


@keras.saving.register_keras_serializable(package=PACKAGE)
class StyleLoss(Tunable, keras.losses.Loss):
    """A style-transfer family: :meth:`total` of the image's features against the content's
    and the style's. ``ratio``: α/β; ``style_weights``: one per style layer (``w1`` … ``w4``,
    normalised to sum 1); ``content_layer``: the layer whose features carry content;
    ``tv_weight``: the total variation's weight."""

    family = "style"
    _variable_keys = ("ratio", "w1", "w2", "w3", "w4", "tv_weight")

    def __init__(self, ratio: float = 1e-3, w1: float = 1.0, w2: float = 1.0, w3: float = 1.0,
                 w4: float = 1.0, content_layer: str = "block4", tv_weight: float = 0.0,
                 reduction="sum_over_batch_size", name=None, dtype=None) -> None:
        super().__init__(name=name or self.family, reduction=reduction, dtype=dtype)
        self.ratio, self.tv_weight = float(ratio), float(tv_weight)
        self.weights = [float(w1), float(w2), float(w3), float(w4)]
        if content_layer not in LAYERS:
            raise ValueError(f"content_layer must be one of {', '.join(LAYERS)}, got "
                             f"{content_layer!r}")
        self.content_layer = content_layer
        self._init_hp(ratio=self.ratio, tv_weight=self.tv_weight,
                      **{f"w{i + 1}": w for i, w in enumerate(self.weights)})

    # ------------------------------------------------------------------ the terms
    def content_loss(self, features: Any, content: Any) -> Any:
        """½ Σ (F − P)² at the content layer."""
        return 0.5 * ops.sum(ops.square(features - content))

    def statistic(self, features: Any) -> Any:
        """What the style term compares at one layer (precomputed once for the style image)."""
        raise NotImplementedError

    def distance(self, features: Any, target: Any) -> Any:
        """E_l: the image's features at one layer against the style's statistic there."""
        raise NotImplementedError

    def style_loss(self, features: Sequence[Any], targets: Sequence[Any]) -> Any:
        """Σ_l w_l E_l, the weights normalised to sum 1."""
        weights = [self._h(f"w{i + 1}", "float32") for i in range(len(LAYERS))]
        total = weights[0] + weights[1] + weights[2] + weights[3]
        terms = [w * self.distance(f, t) for w, f, t in zip(weights, features, targets)]
        return (terms[0] + terms[1] + terms[2] + terms[3]) / ops.maximum(total, 1e-12)

    @staticmethod
    def tv_loss(image: Any) -> Any:
        """The mean squared difference of vertically and horizontally neighbouring pixels."""
        dy = image[:, 1:, :, :] - image[:, :-1, :, :]
        dx = image[:, :, 1:, :] - image[:, :, :-1, :]
        return ops.mean(ops.square(dy)) + ops.mean(ops.square(dx))

    def terms(self, image: Any, features: Sequence[Any], content: Any,
              targets: Sequence[Any]) -> dict[str, Any]:
        """The total and its three terms (unweighted), for the train step and its logs."""
        c = self.content_loss(features[LAYERS.index(self.content_layer)], content)
        s = self.style_loss(features, targets)
        tv = self.tv_loss(image)
        total = (self._h("ratio", "float32") * c + s
                 + self._h("tv_weight", "float32") * tv)
        return {"loss": total, "content": c, "style": s, "tv": tv}

    def call(self, y_true: Any, y_pred: Any) -> Any:
        # A Keras loss's signature, for completeness: the total variation of images y_pred.
        return self.tv_loss(y_pred)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ratio": self.ratio,
                **{f"w{i + 1}": w for i, w in enumerate(self.weights)},
                "content_layer": self.content_layer, "tv_weight": self.tv_weight}


def _flat(features: Any) -> Any:
    """(1, H, W, N) -> (M, N): one row per position."""
    return ops.reshape(features, (-1, ops.shape(features)[-1]))


def gram(features: Any) -> Any:
    """FᵀF / M, the Gram matrix over positions (N x N)."""
    f = _flat(features)
    return ops.matmul(ops.transpose(f), f) / ops.cast(ops.shape(f)[0], f.dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class GatysStyle(StyleLoss):
    family = "gatys"

    def statistic(self, features):
        return gram(features)

    def distance(self, features, target):
        return 0.25 * ops.mean(ops.square(gram(features) - target))


@keras.saving.register_keras_serializable(package=PACKAGE)
class MeanStdStyle(StyleLoss):
    family = "mean_std"

    def statistic(self, features):
        f = _flat(features)
        mean = ops.mean(f, axis=0)
        # sqrt(var + ε): a channel that is 0 everywhere (a ReLU's) has no finite gradient
        # of its standard deviation otherwise.
        std = ops.sqrt(ops.mean(ops.square(f - mean), axis=0) + 1e-8)
        return ops.stack([mean, std])

    def distance(self, features, target):
        mine = self.statistic(features)
        return ops.mean(ops.square(mine[0] - target[0])) + ops.mean(
            ops.square(mine[1] - target[1]))


@keras.saving.register_keras_serializable(package=PACKAGE)
class SlicedWassersteinStyle(StyleLoss):
    """``projections``: random directions per layer and step."""

    family = "sliced_wasserstein"

    def __init__(self, projections: int = 32, ratio: float = 1e-3, w1: float = 1.0,
                 w2: float = 1.0, w3: float = 1.0, w4: float = 1.0,
                 content_layer: str = "block4", tv_weight: float = 0.0, **kwargs: Any) -> None:
        self.projections = int(projections)
        super().__init__(ratio=ratio, w1=w1, w2=w2, w3=w3, w4=w4, content_layer=content_layer,
                         tv_weight=tv_weight, **kwargs)
        self.noise = keras.random.SeedGenerator(0)

    def statistic(self, features):
        return _flat(features)  # the style's feature vectors themselves

    def distance(self, features, target):
        f = _flat(features)
        n = ops.shape(f)[-1]
        directions = keras.random.normal((n, self.projections), seed=self.noise)
        directions = directions / ops.sqrt(ops.sum(ops.square(directions), axis=0,
                                                   keepdims=True))
        mine = ops.sort(ops.matmul(f, directions), axis=0)
        theirs = ops.sort(ops.matmul(target, directions), axis=0)
        if theirs.shape[0] != mine.shape[0]:  # resample the style's sorted values
            index = ops.cast(ops.linspace(0, theirs.shape[0] - 1, mine.shape[0]), "int32")
            theirs = ops.take(theirs, index, axis=0)
        return ops.mean(ops.square(mine - theirs))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "projections": self.projections}


STYLE = {cls.family: cls for cls in (GatysStyle, MeanStdStyle, SlicedWassersteinStyle)}
