"""losstune: hyperparameter search for loss design.

The package import is light on purpose: Keras, TensorFlow, Optuna and plotly are imported
by the modules that need them, so ``losstune --help`` answers at once.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
