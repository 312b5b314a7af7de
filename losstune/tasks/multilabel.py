"""Multilabel: 0/1 for each of several labels, one logit per label.

Layer: tasks (a task module: imported by ``losstune/__init__.py``, which registers it).
"""

from __future__ import annotations

from typing import Any

from losstune.tasks import MAXIMIZE, Task, register


class Multilabel(Task):
    def check_study(self, spec: Any, fail: Any) -> None:
        """A CSV file's labels are two or more columns."""
        if spec.dataset.name == "csv" and len(spec.dataset.targets) < 2:
            fail("dataset.target", "a multilabel task needs two or more label columns, as a "
                                   f"list (target = [\"a\", \"b\"]), got "
                                   f"{spec.dataset.target!r}")

    def loss_targets(self, splits: Any, y: Any) -> Any:
        import numpy as np

        return np.asarray(y, dtype="float32")  # one 0/1 column per label

    def score(self, splits: Any, x: Any, y: Any, out: Any, only: str | None = None
              ) -> dict[str, Any]:
        from losstune import metrics

        return metrics.multilabel(y, out, only=only, per_label=True)

    def report_figures(self, order: Any, attrs: Any, add: Any) -> None:
        """Per-label F1 and average precision of the verdict's winner and the best
        baseline."""
        from losstune import results
        from losstune.report import info, plots

        for key, score, words in ((results.F1_PER_LABEL, "F1", "F1 at a 0.5 threshold"),
                                  (results.AP_PER_LABEL, "AP", "average precision")):
            shown = info.recall_info(order, attrs.get(results.CLASS_NAMES), key=key)
            add(f"Per-label {score}", f"{words[0].upper() + words[1:]} of every label for the "
                "verdict's winner and the best baseline (validation).",
                plots.recall(shown, score, "label") if shown else None,
                f"no per-label {score} recorded")


MULTILABEL = register(Multilabel(
    "multilabel", "labels", "scores", "label", "logits without an activation (one per label)",
    {"macro_f1": MAXIMIZE, "micro_f1": MAXIMIZE, "mean_average_precision": MAXIMIZE},
    ("multilabel",)))
