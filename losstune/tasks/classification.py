"""Classification: one class per sample (``multiclass``, and ``binary`` with two), logits out.

Layer: training (a task module: imported by ``losstune/__init__.py``, which registers it).
"""

from __future__ import annotations

from typing import Any

from losstune.tasks import CLASS_METRICS, Task, register


class Classification(Task):
    def loss_targets(self, splits: Any, y: Any) -> Any:
        import numpy as np

        return np.eye(splits.num_classes, dtype="float32")[y]  # one-hot

    def score(self, splits: Any, x: Any, y: Any, out: Any, only: str | None = None
              ) -> dict[str, Any]:
        from losstune import metrics

        return metrics.classification(y, out, splits.num_classes, only=only, recall=not only)

    def score_members(self, splits: Any, x: Any, y: Any, outs: Any, only: str | None = None
                      ) -> list[Any]:
        """Every member at once (metrics.classification_members: scikit-learn's per-call
        checks cost more than the arithmetic)."""
        import numpy as np

        from losstune import metrics

        return metrics.classification_members(y, np.moveaxis(outs, 1, 0), splits.num_classes,
                                              only=only, recall=only is None)


MULTICLASS = register(Classification(
    "multiclass", "classes", "scores", "class", "logits without an activation", CLASS_METRICS,
    ("digits", "wine")))
BINARY = register(Classification(
    "binary", "classes", "scores", "class", "logits without an activation", CLASS_METRICS,
    ("breast_cancer",)))
