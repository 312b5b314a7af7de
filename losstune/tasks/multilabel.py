"""Multilabel: 0/1 for each of several labels, one logit per label.

Layer: training (a task module: imported by ``losstune/__init__.py``, which registers it).
"""

from __future__ import annotations

from typing import Any

from losstune.tasks import MAXIMIZE, Task, register


class Multilabel(Task):
    def loss_targets(self, splits: Any, y: Any) -> Any:
        import numpy as np

        return np.asarray(y, dtype="float32")  # one 0/1 column per label

    def score(self, splits: Any, x: Any, y: Any, out: Any, only: str | None = None
              ) -> dict[str, Any]:
        from losstune import metrics

        return metrics.multilabel(y, out, only=only, per_label=True)


MULTILABEL = register(Multilabel(
    "multilabel", "labels", "scores", "label", "logits without an activation (one per label)",
    {"macro_f1": MAXIMIZE, "micro_f1": MAXIMIZE, "mean_average_precision": MAXIMIZE},
    ("multilabel",)))
