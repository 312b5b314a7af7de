"""Counts: a whole number >= 0, never scaled; the model outputs the log of the expected count.

Layer: tasks (a task module: imported by ``losstune/__init__.py``, which registers it).
"""

from __future__ import annotations

from typing import Any

from losstune.tasks import MINIMIZE, register
from losstune.tasks.regression import Regression


class Count(Regression):
    """As regression, but never scaled, and the model's value is the log of the expected
    count."""

    def in_units(self, splits: Any, out: Any) -> Any:
        from losstune import metrics

        return metrics.expected_counts(out)

    def score(self, splits: Any, x: Any, y: Any, out: Any, only: str | None = None
              ) -> dict[str, Any]:
        from losstune import metrics

        return metrics.counts(y, out)

    def report_figures(self, order: Any, attrs: Any, add: Any) -> None:
        from losstune import results
        from losstune.report import info, plots

        shown = info.predictions_info(order, attrs.get(results.VAL_TARGETS))
        add("Expected against true counts", "The verdict's winner's expected count exp(η) of "
            "every validation sample against its count; the line is a perfect prediction.",
            plots.counts(shown) if shown else None, "no stored predictions")


COUNT = register(Count(
    "count", "counts", "value", "target", "a linear unit: the log of the expected count",
    {"poisson_deviance": MINIMIZE, "mae": MINIMIZE, "rmse": MINIMIZE}, ("counts",)))
