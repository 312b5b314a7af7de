"""Counts: a whole number >= 0, never scaled; the model outputs the log of the expected count.

Layer: training (a task module: imported by ``losstune/__init__.py``, which registers it).
"""

from __future__ import annotations

from typing import Any

from losstune.tasks import MINIMIZE, Task, register


class Count(Task):
    def score(self, splits: Any, x: Any, y: Any, out: Any, only: str | None = None
              ) -> dict[str, Any]:
        from losstune import metrics

        return metrics.counts(y, out)

    def record_outputs(self, trial: Any, splits: Any, val_out: Any) -> None:
        """The first expected counts, for the report's count plot."""
        from losstune import metrics, results
        from losstune.trial import MAX_STORED_PREDICTIONS, compact

        pred = metrics.expected_counts(val_out[:MAX_STORED_PREDICTIONS].reshape(-1))
        trial.set_user_attr(results.PREDICTIONS, compact(pred.tolist()))

    def record_data(self, study: Any, splits: Any) -> None:
        from losstune import results
        from losstune.trial import MAX_STORED_PREDICTIONS

        y = splits.y_val[:MAX_STORED_PREDICTIONS] * splits.y_scale + splits.y_center
        study.set_user_attr(results.VAL_TARGETS, [float(f"{v:.5g}") for v in y.tolist()])


COUNT = register(Count(
    "count", "counts", "value", "target", "a linear unit: the log of the expected count",
    {"poisson_deviance": MINIMIZE, "mae": MINIMIZE, "rmse": MINIMIZE}, ("counts",)))
