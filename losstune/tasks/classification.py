"""Classification: one class per sample (``multiclass``, and ``binary`` with two), logits out.

Layer: tasks (a task module: imported by ``losstune/__init__.py``, which registers it).
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

    def report_figures(self, order: Any, attrs: Any, add: Any) -> None:
        """Per-class recall of the verdict's winner and the best baseline."""
        from losstune import results
        from losstune.report import info, plots

        shown = info.recall_info(order, attrs.get(results.CLASS_NAMES))
        add("Per-class recall", "Recall of every class for the verdict's winner and the "
            "best baseline.", plots.recall(shown) if shown else None,
            "no per-class recall recorded")


SHOWN = ("accuracy", "balanced_accuracy", "macro_f1")
MULTICLASS = register(Classification(
    "multiclass", "classes", "scores", "class", "logits without an activation", CLASS_METRICS,
    ("digits", "wine"), SHOWN))
BINARY = register(Classification(
    "binary", "classes", "scores", "class", "logits without an activation", CLASS_METRICS,
    ("breast_cancer",), SHOWN, classes=2))
