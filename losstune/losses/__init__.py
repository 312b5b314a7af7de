"""The loss library: the families a study searches over, DynamicLoss, and loss descriptions.

Everything is written with ``keras.ops``, so it runs on the TensorFlow, JAX and PyTorch backends,
and Keras's own losses are used wherever they exist. The public surface is this module; each
concept lives in a private module:

* ``_families``: the loss classes (cross-entropy, focal, Huber with their numbers in variables;
  class-balanced, Poly-1, soft F-beta), integer or one-hot labels alike;
* ``_multilabel``, ``_counts``, ``_embedding``, ``_autoencoder``: the losses of those tasks
  (losstune.tasks), and the autoencoder's sampled code and input-noise layers;
* ``_adversarial``: the GAN losses (a discriminator and a generator loss per family) and the
  gradient penalties on the discriminator's inputs;
* ``_penalty``: penalties a design adds through the model's ``add_loss``;
* ``_dynamic``: :class:`DynamicLoss`, its epoch callback and its per-term metric;
* ``_description``: loss descriptions (:func:`build_loss`, :func:`describe_loss`,
  :func:`describe_in_words`, :func:`load_loss`);
* ``_tunable``: the swap contract of compiled-model reuse (:class:`Tunable`,
  :func:`compiled_key`, :func:`retune`);
* ``_validation``: argument checks, with the catalog's rules.

Which families exist, and everything about them, is :mod:`losstune.catalog`.

Layer: domain.
"""

from losstune.catalog import format_number
from losstune.losses._description import (build_loss, describe_in_words, describe_loss,
                                           load_loss, read_description, save_description,
                                           with_fitted)
from losstune.losses._dynamic import (COMPONENTS, ComponentMeans, DynamicLoss,
                                      DynamicLossCallback, LossStateError, make_base_loss)
from losstune.losses._families import (CategoricalCrossentropy, CategoricalFocalCrossentropy,
                                       ClassBalancedCrossentropy, Huber, Poly1Crossentropy,
                                       SoftFBetaLoss, class_balanced_weights, one_hot_labels)
from losstune.losses._tunable import (LossState, Tunable, component_metrics, compiled_key,
                                      held_arrays, holding, loss_callbacks, loss_variables,
                                      restack, retune, stack)

__all__ = [
    # descriptions
    "build_loss", "describe_loss", "describe_in_words", "format_number", "load_loss",
    "read_description", "save_description", "with_fitted",
    # loss classes
    "CategoricalCrossentropy", "CategoricalFocalCrossentropy", "ClassBalancedCrossentropy",
    "Huber", "Poly1Crossentropy", "SoftFBetaLoss", "class_balanced_weights", "one_hot_labels",
    # DynamicLoss
    "COMPONENTS", "ComponentMeans", "DynamicLoss", "DynamicLossCallback", "LossStateError",
    "make_base_loss",
    # the swap contract, and what a loss adds to compile and fit
    "Tunable", "compiled_key", "retune", "component_metrics", "loss_callbacks",
    "LossState", "held_arrays", "holding", "loss_variables",
    # populations: many designs computed side by side
    "stack", "restack",
]
