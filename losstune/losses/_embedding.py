"""Loss classes for embeddings: each compares the samples of a batch with each other, by their
class labels. The batches come from a seeded P × K sampler (``training.samples_per_class``;
losstune.trial), so every sample has positives in its batch (Hermans et al. 2017).

Embeddings are L2-normalised first (FaceNet), so margins are on one scale for any model:
squared Euclidean distances lie in [0, 4] and cosine similarities in [-1, 1]. Each loss
returns one value per sample (the anchor's). A population's embeddings, shaped (batch,
members, dimension), are compared within each member.

Mining (triplet):
* ``all``: every valid (positive, negative) pair of an anchor, averaged, zeros included;
* ``hard``: the farthest positive and the nearest negative (batch-hard, Hermans et al.);
* ``semi_hard``: for each positive, the nearest negative farther than it (FaceNet's
  semi-hard negative); where there is none, the farthest negative, as TensorFlow Addons'
  ``TripletSemiHardLoss`` does; averaged over the anchor's positives.
The quadruplet loss (Chen et al. 2017) adds a second margin between the anchor's positive
distance and the distance of two negatives of different classes; its O(B⁴) sums are replaced
here by the batch-hard choices (the farthest positive, the nearest such negative pair).

Layer: domain.
"""

from __future__ import annotations

import keras
from keras import ops

from losstune.losses._families import PACKAGE, ConfigLoss
from losstune.losses._validation import check_params

BIG = 1e9  # a distance no real one reaches: masks out pairs for a min or a max


def _members_first(y_true, y_pred):
    """Labels (M, B) and normalised embeddings (M, B, D), with M = 1 for one model or the
    population's members; and how to give the per-sample result back its layout."""
    e = y_pred / ops.sqrt(ops.maximum(ops.sum(ops.square(y_pred), axis=-1, keepdims=True),
                                      1e-12))
    labels = ops.cast(y_true, "int32")
    if len(y_pred.shape) == 3:  # (batch, members, dim): a population
        e = ops.transpose(e, (1, 0, 2))
        labels = ops.reshape(labels, (ops.shape(labels)[0], ops.shape(labels)[1]))
        return ops.transpose(labels, (1, 0)), e, lambda v: ops.transpose(v, (1, 0))
    labels = ops.reshape(labels, (1, -1))
    return labels, e[None], lambda v: v[0]


def _pairs(y_true, y_pred):
    labels, e, back = _members_first(y_true, y_pred)
    gram = ops.matmul(e, ops.transpose(e, (0, 2, 1)))  # cosine similarities
    distance = ops.maximum(2.0 - 2.0 * gram, 0.0)  # squared Euclidean of unit vectors
    same = ops.cast(ops.equal(labels[:, :, None], labels[:, None, :]), e.dtype)
    eye = ops.eye(ops.shape(e)[1], dtype=e.dtype)[None]
    return gram, distance, same * (1.0 - eye), 1.0 - same, back


def _any(mask):
    """1 where an anchor has at least one pair of this kind in the batch, else 0."""
    return ops.cast(ops.greater(ops.sum(mask, axis=-1), 0.0), mask.dtype)


def _masked_mean(values, mask, axis):
    return ops.sum(values * mask, axis=axis) / ops.maximum(ops.sum(mask, axis=axis), 1.0)


def _per_member(value, rank: int):
    """A hyperparameter laid out against (members, anchors, ...) of ``rank`` axes: a scalar as
    it is; a population's (members,) values as (members, 1, ...)."""
    if len(value.shape) == 0:
        return value
    return ops.reshape(value, (-1,) + (1,) * (rank - 1))


@keras.saving.register_keras_serializable(package=PACKAGE)
class TripletLoss(ConfigLoss):
    """relu(d(a, p) − d(a, n) + margin), squared distances of unit embeddings (module
    docstring: mining)."""

    _config_keys = ("margin", "mining")
    _variable_keys = ("margin",)
    satisfied = "every triplet already satisfies its margin"

    def __init__(self, margin: float = 0.2, mining: str = "all",
                 reduction="sum_over_batch_size", name="triplet", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        check_params("triplet", {"margin": margin, "mining": mining})
        self.margin, self.mining = float(margin), mining
        self._init_hp(margin=self.margin)

    def call(self, y_true, y_pred):
        _, d, positive, negative, back = _pairs(y_true, y_pred)
        margin = self._h("margin", d.dtype)
        # An anchor without a positive or a negative in the batch has no triplet: 0. (P x K
        # batches give every anchor both; an exported loss may meet other batches.)
        has = _any(positive) * _any(negative)
        if self.mining == "hard":
            hardest_p = ops.max(d * positive, axis=-1)
            nearest_n = ops.min(d + BIG * (1.0 - negative), axis=-1)
            return back(has * ops.relu(hardest_p - nearest_n + _per_member(margin, 2)))
        # (members, anchor, positive, negative)
        d_ap, d_an = d[:, :, :, None], d[:, :, None, :]
        valid = positive[:, :, :, None] * negative[:, :, None, :]
        if self.mining == "all":
            per = ops.relu(d_ap - d_an + _per_member(margin, 4))
            return back(_masked_mean(per, valid, axis=(2, 3)))
        # semi-hard: the nearest negative farther than the positive, else the farthest one
        farther = valid * ops.cast(ops.greater(d_an, d_ap), d.dtype)
        semi = ops.min(d_an + BIG * (1.0 - farther), axis=-1)
        farthest = ops.max(d_an * valid - BIG * (1.0 - valid), axis=-1)
        found = ops.cast(ops.greater(ops.sum(farther, axis=-1), 0.0), d.dtype)
        chosen = found * semi + (1.0 - found) * farthest
        per = ops.relu(d - chosen + _per_member(margin, 3))
        return back(has * _masked_mean(per, positive, axis=-1))


class _PairLoss(ConfigLoss):
    """A loss over every pair of the batch with one margin (its family: ``family``)."""

    _config_keys = ("margin",)
    _variable_keys = ("margin",)
    satisfied = "every pair already satisfies its margin"
    family = ""

    def __init__(self, margin: float, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(name=name or self.family, reduction=reduction, dtype=dtype)
        check_params(self.family, {"margin": margin})
        self.margin = float(margin)
        self._init_hp(margin=self.margin)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ContrastiveLoss(_PairLoss):
    """Hadsell et al. (2006) over every pair of the batch: d² for a pair of one class,
    relu(margin − d)² for a pair of two, d the Euclidean distance of unit embeddings; the
    mean over the anchor's pairs."""

    family = "contrastive"

    def __init__(self, margin: float = 1.0, **kwargs):
        super().__init__(margin, **kwargs)

    def call(self, y_true, y_pred):
        _, d2, positive, negative, back = _pairs(y_true, y_pred)
        d = ops.sqrt(d2 + 1e-12)
        margin = _per_member(self._h("margin", d.dtype), 3)
        per = positive * d2 + negative * ops.square(ops.relu(margin - d))
        return back(_masked_mean(per, positive + negative, axis=-1))


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuadrupletLoss(ConfigLoss):
    """Chen et al. (2017), batch-hard: relu(d(a, p) − d(a, n) + margin) + relu(d(a, p) −
    d(n1, n2) + margin2), with the farthest positive, the nearest negative, and the nearest
    pair of negatives of two different classes, neither the anchor's."""

    _config_keys = ("margin", "margin2")
    _variable_keys = ("margin", "margin2")
    satisfied = "every quadruplet already satisfies both margins"

    def __init__(self, margin: float = 0.2, margin2: float = 0.1,
                 reduction="sum_over_batch_size", name="quadruplet", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        check_params("quadruplet", {"margin": margin, "margin2": margin2})
        self.margin, self.margin2 = float(margin), float(margin2)
        self._init_hp(margin=self.margin, margin2=self.margin2)

    def call(self, y_true, y_pred):
        labels, d, positive, negative, back = _pairs(y_true, y_pred)
        hardest_p = ops.max(d * positive, axis=-1)  # (M, B)
        nearest_n = ops.min(d + BIG * (1.0 - negative), axis=-1)
        # Pairs (i, j) of different classes, neither of the anchor's class: (M, B, B, B).
        other = negative[:, :, :, None] * negative[:, :, None, :] * negative[:, None, :, :]
        pair_d = ops.min(ops.reshape(d[:, None] + BIG * (1.0 - other),
                                     (ops.shape(d)[0], ops.shape(d)[1], -1)), axis=-1)
        first = ops.relu(hardest_p - nearest_n + _per_member(self._h("margin", d.dtype), 2))
        second = ops.relu(hardest_p - pair_d + _per_member(self._h("margin2", d.dtype), 2))
        # Each term only where its members exist in the batch (see TripletLoss).
        has_triplet = _any(positive) * _any(negative)
        has_pair = ops.cast(ops.less(pair_d, BIG / 2), d.dtype)
        return back(has_triplet * (first + has_pair * second))


@keras.saving.register_keras_serializable(package=PACKAGE)
class CosineEmbeddingLoss(_PairLoss):
    """Over every pair of the batch: 1 − cos for a pair of one class, relu(cos − margin) for
    a pair of two (PyTorch's ``CosineEmbeddingLoss``); the mean over the anchor's pairs. Its
    cosine is ``-keras.losses.cosine_similarity`` of the two embeddings."""

    family = "cosine_embedding"

    def __init__(self, margin: float = 0.0, **kwargs):
        super().__init__(margin, **kwargs)

    def call(self, y_true, y_pred):
        cos, _, positive, negative, back = _pairs(y_true, y_pred)
        margin = _per_member(self._h("margin", cos.dtype), 3)
        per = positive * (1.0 - cos) + negative * ops.relu(cos - margin)
        return back(_masked_mean(per, positive + negative, axis=-1))
