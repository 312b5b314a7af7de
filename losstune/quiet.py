"""Optuna's own output kept off losstune's. Layer: bottom (no losstune import).

Optuna's INFO lines, its per-failure tracebacks and its experimental-feature warnings would
drown losstune's output; a failed trial's reason is kept in its ``error`` user attribute.

Layer: foundation.
"""

from __future__ import annotations


def quiet_optuna() -> None:
    """Optuna's logging at ERROR, and the warnings losstune expects silenced."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # A baseline may lie outside the searched space on purpose (focal's γ = 2 against a
    # search of γ in [0, 1]): it is enqueued with its own values, which Optuna then warns
    # about, over several lines, at every baseline trial.
    warnings.filterwarnings("ignore", message=r"Fixed parameter \S+ with value .* is out of "
                            r"range for distribution", category=UserWarning)


__all__ = ["quiet_optuna"]
