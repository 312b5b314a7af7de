"""A task losstune does not ship, in one module with its loss: ordinal regression.

Classes 0 < 1 < … < K−1 are ordered. The model outputs K−1 cumulative logits, z_k for
"the class is above k", and the loss is a cumulative-link loss: the binary cross-entropy of
each threshold's logit against 1[y > k] (the all-threshold form of McCullagh's proportional
odds model without the shared slope), averaged over thresholds, with the targets smoothed
towards 1/2 by a searched ε. The predicted class is the number of thresholds passed (z_k > 0); the objective is
its mean absolute error in classes (scikit-learn's ``mean_absolute_error``), with accuracy and
the quadratic-weighted kappa (``cohen_kappa_score``) beside it.

tests/test_tasks.py registers both for one test (``tasks.registered``, ``catalog.registered``):
nothing else in the package or the tests knows them.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from losstune import catalog, losses
from losstune.tasks import MAXIMIZE, MINIMIZE, Task


class CumulativeLogitLoss(losses.Tunable, keras.losses.Loss):
    """Mean over thresholds k of BCE((1 − ε)·1[y > k] + ε/2, z_k). Its ε lives in a variable
    (the swap contract), so one compiled model serves every trial and a population stacks
    it."""

    _variable_keys = ("smoothing",)
    _elementwise = ("smoothing",)  # applied to every threshold's target

    def __init__(self, smoothing: float = 0.0, from_logits: bool = True,
                 reduction="sum_over_batch_size", name="cumulative_logit", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.smoothing, self.from_logits = float(smoothing), from_logits
        self._init_hp(smoothing=self.smoothing)

    def call(self, y_true, y_pred):
        eps = self._h("smoothing", y_pred.dtype)
        y_true = keras.ops.cast(y_true, y_pred.dtype) * (1.0 - eps) + 0.5 * eps
        return keras.losses.binary_crossentropy(y_true, y_pred, from_logits=self.from_logits)

    def get_config(self):
        return {**super().get_config(), "smoothing": self.smoothing,
                "from_logits": self.from_logits}


def predicted_class(out: Any) -> np.ndarray:
    """The number of thresholds each sample passes."""
    return (np.asarray(out) > 0).sum(axis=-1)


class Ordinal(Task):
    def units(self, num_classes: int, embedding_dim: int = 0) -> int:
        return num_classes - 1  # one logit per threshold

    def loss_targets(self, splits: Any, y: Any) -> Any:
        """1[y > k] for every threshold k."""
        thresholds = np.arange(splits.num_classes - 1)
        return (np.asarray(y).reshape(-1, 1) > thresholds).astype("float32")

    def score(self, splits: Any, x: Any, y: Any, out: Any, only: str | None = None
              ) -> dict[str, Any]:
        from sklearn.metrics import accuracy_score, cohen_kappa_score, mean_absolute_error

        if not np.isfinite(out).all():
            raise FloatingPointError("outputs are not finite")
        pred = predicted_class(out)
        scores = {"mae": lambda: mean_absolute_error(y, pred),
                  "accuracy": lambda: accuracy_score(y, pred),
                  "quadratic_kappa": lambda: cohen_kappa_score(y, pred, weights="quadratic")}
        return {name: float(scores[name]()) for name in ((only,) if only else scores)}


ORDINAL = Ordinal(
    "ordinal", "classes", "scores", "threshold", "one logit per threshold between classes",
    {"mae": MINIMIZE, "accuracy": MAXIMIZE, "quadratic_kappa": MAXIMIZE})

CUMULATIVE_LOGIT = catalog.Family(
    "cumulative_logit", ("ordinal",), f"{__name__}:CumulativeLogitLoss",
    (catalog.Parameter("smoothing", 0.0, "[0, 1)", symbol="ε",
                       search={"low": 0.0, "high": 0.4}),),
    words="cumulative-link loss", title="Cumulative-link loss", needs={"logits": None},
    default_for=("ordinal",), baseline={"smoothing": 0.0},
    note="ε smooths each threshold's target towards 1/2.")
