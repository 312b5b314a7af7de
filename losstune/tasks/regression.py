"""Regression: a real target, robustly scaled for training; scored in its own units.

Layer: tasks (a task module: imported by ``losstune/__init__.py``, which registers it).
"""

from __future__ import annotations

from typing import Any

from losstune.tasks import MAXIMIZE, MINIMIZE, Task, register


class Regression(Task):
    """One value per sample; the report keeps the first predictions in the target's units."""

    def in_units(self, splits: Any, out: Any) -> Any:
        """Model outputs in the target's own units."""
        return out * splits.y_scale + splits.y_center

    def score(self, splits: Any, x: Any, y: Any, out: Any, only: str | None = None
              ) -> dict[str, Any]:
        import numpy as np

        from losstune import metrics

        def units(a: Any) -> Any:  # back to the target's own units
            return np.asarray(a, "float64").reshape(-1) * splits.y_scale + splits.y_center

        return metrics.regression(units(y), units(out))

    def record_outputs(self, trial: Any, splits: Any, val_out: Any) -> None:
        """The first predictions, in the target's units, for the report's residual (or
        count) plot."""
        from losstune import results
        from losstune.trial import MAX_STORED_PREDICTIONS, compact

        pred = self.in_units(splits, val_out[:MAX_STORED_PREDICTIONS].reshape(-1))
        trial.set_user_attr(results.PREDICTIONS, compact(pred.tolist()))

    def record_data(self, study: Any, splits: Any) -> None:
        from losstune import results
        from losstune.trial import MAX_STORED_PREDICTIONS

        y = splits.y_val[:MAX_STORED_PREDICTIONS] * splits.y_scale + splits.y_center
        study.set_user_attr(results.VAL_TARGETS, [float(f"{v:.5g}") for v in y.tolist()])

    def report_figures(self, order: Any, attrs: Any, add: Any) -> None:
        from losstune import results
        from losstune.report import info, plots

        shown = info.residuals_info(order, attrs.get(results.VAL_TARGETS))
        add("Residuals", "Prediction − target for the verdict's winner, validation split.",
            plots.residuals(shown) if shown else None, "no stored predictions")


REGRESSION = register(Regression(
    "regression", "values", "value", "target", "one linear unit",
    {"mae": MINIMIZE, "rmse": MINIMIZE, "r2": MAXIMIZE}, ("diabetes",)))
