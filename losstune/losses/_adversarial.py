"""The adversarial losses of a GAN: each family one object holding a discriminator loss and a
generator loss, on the discriminator's raw outputs (logits, or critic values).

With ``r`` the discriminator's outputs on real samples and ``f`` on generated ones (each a
batch), and softplus(x) = log(1 + eˣ):

* ``minimax`` (Goodfellow et al. 2014): D minimises softplus(−r) + softplus(f), the binary
  cross-entropy of real against fake; G minimises −softplus(f) = log(1 − σ(f)), the
  saturating form of the game's value;
* ``non_saturating`` (the same paper's practical form): D as minimax; G minimises
  softplus(−f) = −log σ(f);
* ``least_squares`` (LSGAN, Mao et al. 2017): D minimises ½(r − b)² + ½(f − a)², G
  minimises ½(f − c)², with the paper's targets a (fake), b (real), c (what G wants D to
  say); a = 0, b = c = 1 by default (its 0-1 coding);
* ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): D minimises relu(1 − r) + relu(1 + f); G
  minimises −f;
* ``wasserstein`` (WGAN-GP, Gulrajani et al. 2017): D minimises f − r, plus λ times the
  gradient penalty (‖∇D(x̂)‖ − 1)² on interpolates x̂, which the train step computes
  (:func:`gradient_penalty`); G minimises −f;
* ``relativistic`` (RaGAN, Jolicoeur-Martineau 2018, the standard-GAN form): with
  r̃ = r − mean(f) and f̃ = f − mean(r), D minimises softplus(−r̃) + softplus(f̃) and G
  minimises softplus(−f̃) + softplus(r̃).

Every loss is a batch mean. Searchable settings beside the family: one-sided label smoothing
(Salimans et al. 2016: the real target 1 − s in the discriminator's cross-entropy, for the
families that have one), the R1 penalty γ (Mescheder et al. 2018: γ/2 · ‖∇D(x)‖² on real
samples), the discriminator's steps per generator step n_D and its learning rate over the
generator's η_D/η_G (TTUR). Label smoothing (and LSGAN's a, b, c) live in variables, as every
tunable loss's values do; γ, λ, n_D and η_D/η_G are Python numbers that shape the train step
(:mod:`losstune.adversarial`, which computes the penalties with :func:`gradient_penalty`).

Layer: domain.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from losstune.losses._families import PACKAGE
from losstune.losses._tunable import Tunable


def _bce_real(r: Any, smoothing: Any) -> Any:
    """The discriminator's cross-entropy for real samples with target 1 − s, from logits."""
    return (1.0 - smoothing) * ops.softplus(-r) + smoothing * ops.softplus(r)


@keras.saving.register_keras_serializable(package=PACKAGE)
class AdversarialLoss(Tunable, keras.losses.Loss):
    """A GAN family: :meth:`discriminator_loss` and :meth:`generator_loss` on the
    discriminator's outputs. ``label_smoothing``: one-sided, on the real target (families with
    a cross-entropy); ``r1_gamma``: the R1 penalty's γ; ``gp_weight``: WGAN-GP's λ (0 for the
    other families); ``d_steps``: discriminator steps per generator step; ``d_lr_ratio``: the
    discriminator's learning rate over the generator's. Called as a Keras loss, ``loss(_, f)`` is the generator's loss on the
    discriminator's outputs ``f`` for generated samples (real outputs are needed by the
    relativistic family only, which then compares with a mean of 0)."""

    # Held in variables: the values the losses read. The penalties' weights, the
    # discriminator's steps and its learning rate shape the train step itself (Python).
    _variable_keys = ("label_smoothing",)

    def __init__(self, label_smoothing: float = 0.0, r1_gamma: float = 0.0,
                 gp_weight: float = 0.0, d_steps: int = 1, d_lr_ratio: float = 1.0,
                 reduction="sum_over_batch_size", name=None, dtype=None) -> None:
        super().__init__(name=name or self.family, reduction=reduction, dtype=dtype)
        self.label_smoothing, self.r1_gamma = float(label_smoothing), float(r1_gamma)
        self.gp_weight = float(gp_weight)
        # How the train step alternates (losstune.adversarial): discriminator steps per
        # generator step, and the discriminator's learning rate over the generator's (TTUR).
        self.d_steps, self.d_lr_ratio = int(d_steps), float(d_lr_ratio)
        self._init_hp(label_smoothing=self.label_smoothing, **self._extra_values())

    family = "adversarial"
    # Whether the generator's loss reads the discriminator's outputs on real samples (the
    # train step then computes them in the generator's step too).
    generator_reads_real = False

    def _extra_values(self) -> dict[str, float]:
        return {}

    def _s(self, dtype: Any) -> Any:
        return self._h("label_smoothing", dtype)

    # Per sample; the public methods average.
    def _d(self, r: Any, f: Any) -> Any:
        raise NotImplementedError

    def _g(self, f: Any, r: Any) -> Any:
        raise NotImplementedError

    def discriminator_loss(self, real: Any, fake: Any) -> Any:
        real, fake = ops.reshape(real, (-1,)), ops.reshape(fake, (-1,))
        return ops.mean(self._d(real, fake))

    def generator_loss(self, fake: Any, real: Any = None) -> Any:
        fake = ops.reshape(fake, (-1,))
        real = ops.zeros_like(fake) if real is None else ops.reshape(real, (-1,))
        return ops.mean(self._g(fake, real))

    def call(self, y_true: Any, y_pred: Any) -> Any:
        fake = ops.reshape(y_pred, (-1,))
        return self._g(fake, ops.zeros_like(fake))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing,
                "r1_gamma": self.r1_gamma, "gp_weight": self.gp_weight,
                "d_steps": self.d_steps, "d_lr_ratio": self.d_lr_ratio}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MinimaxGAN(AdversarialLoss):
    family = "minimax"

    def _d(self, r, f):
        return _bce_real(r, self._s(r.dtype)) + ops.softplus(f)

    def _g(self, f, r):
        return -ops.softplus(f)  # log(1 − σ(f)), minimised: saturates where D is sure


@keras.saving.register_keras_serializable(package=PACKAGE)
class NonSaturatingGAN(MinimaxGAN):
    family = "non_saturating"

    def _g(self, f, r):
        return ops.softplus(-f)  # −log σ(f)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LeastSquaresGAN(AdversarialLoss):
    """``a``, ``b``, ``c``: Mao et al.'s targets for fake and real samples in D's loss, and the
    value G wants D to give its samples."""

    family = "least_squares"
    _variable_keys = (*AdversarialLoss._variable_keys, "a", "b", "c")

    def __init__(self, a: float = 0.0, b: float = 1.0, c: float = 1.0,
                 label_smoothing: float = 0.0, r1_gamma: float = 0.0, gp_weight: float = 0.0,
                 d_steps: int = 1, d_lr_ratio: float = 1.0, **kwargs: Any) -> None:
        self.a, self.b, self.c = float(a), float(b), float(c)
        super().__init__(label_smoothing=label_smoothing, r1_gamma=r1_gamma,
                         gp_weight=gp_weight, d_steps=d_steps, d_lr_ratio=d_lr_ratio, **kwargs)

    def _extra_values(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b, "c": self.c}

    def _d(self, r, f):
        a, b = self._h("a", r.dtype), self._h("b", r.dtype)
        return 0.5 * ops.square(r - b) + 0.5 * ops.square(f - a)

    def _g(self, f, r):
        return 0.5 * ops.square(f - self._h("c", f.dtype))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "a": self.a, "b": self.b, "c": self.c}


@keras.saving.register_keras_serializable(package=PACKAGE)
class HingeGAN(AdversarialLoss):
    family = "hinge"

    def _d(self, r, f):
        return ops.relu(1.0 - r) + ops.relu(1.0 + f)

    def _g(self, f, r):
        return -f


@keras.saving.register_keras_serializable(package=PACKAGE)
class WassersteinGAN(AdversarialLoss):
    """The critic's loss without its penalty; the train step adds ``gp_weight`` times
    :func:`gradient_penalty` of the interpolates (Gulrajani et al.'s λ = 10 by default)."""

    family = "wasserstein"

    def __init__(self, gp_weight: float = 10.0, label_smoothing: float = 0.0,
                 r1_gamma: float = 0.0, d_steps: int = 1, d_lr_ratio: float = 1.0,
                 **kwargs: Any) -> None:
        super().__init__(label_smoothing=label_smoothing, r1_gamma=r1_gamma,
                         gp_weight=gp_weight, d_steps=d_steps, d_lr_ratio=d_lr_ratio, **kwargs)

    def _d(self, r, f):
        return f - r

    def _g(self, f, r):
        return -f


@keras.saving.register_keras_serializable(package=PACKAGE)
class RelativisticGAN(AdversarialLoss):
    family = "relativistic"
    generator_reads_real = True

    def _d(self, r, f):
        rr, ff = r - ops.mean(f), f - ops.mean(r)
        return _bce_real(rr, self._s(r.dtype)) + ops.softplus(ff)

    def _g(self, f, r):
        ff, rr = f - ops.mean(r), r - ops.mean(f)
        return ops.softplus(-ff) + ops.softplus(rr)


def gradient_penalty(gradients: Any, kind: str) -> Any:
    """The penalties on the discriminator's input gradients (one row per sample): ``"gp"``,
    WGAN-GP's mean (‖g‖ − 1)²; ``"r1"``, R1's mean ½‖g‖² (times γ by the caller)."""
    flat = ops.reshape(gradients, (ops.shape(gradients)[0], -1))
    norm = ops.sqrt(ops.sum(ops.square(flat), axis=1) + 1e-12)
    if kind == "gp":
        return ops.mean(ops.square(norm - 1.0))
    if kind == "r1":
        return 0.5 * ops.mean(ops.sum(ops.square(flat), axis=1))
    raise ValueError(f"kind must be 'gp' or 'r1', got {kind!r}")


ADVERSARIAL = {cls.family: cls for cls in (MinimaxGAN, NonSaturatingGAN, LeastSquaresGAN,
                                           HingeGAN, WassersteinGAN, RelativisticGAN)}
