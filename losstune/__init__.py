"""losstune: hyperparameter search for loss design.

    import losstune
    study = losstune.search(build_model, x_train, y_train, validation_data=(x_val, y_val))
    study.verdict.sentence        # the answer, with its paired tests
    loss = study.best_loss()      # a ready keras.losses.Loss

The package import is light on purpose: Keras, TensorFlow, Optuna, pandas and plotly are
imported by the functions that need them, so ``import losstune`` and ``losstune --help`` answer
at once.

Layer: interface.
"""

__version__ = "0.5.0"

# The built-in tasks, registered before any module reads the registry (losstune/tasks/), in
# the order their names are listed.
from losstune.tasks import classification  # noqa: E402,F401 - multiclass, binary
from losstune.tasks import regression  # noqa: E402,F401
from losstune.tasks import multilabel  # noqa: E402,F401
from losstune.tasks import count  # noqa: E402,F401
from losstune.tasks import autoencoder  # noqa: E402,F401
from losstune.tasks import embedding  # noqa: E402,F401
from losstune.tasks import gan  # noqa: E402,F401
from losstune.tasks import style_transfer  # noqa: E402,F401
from losstune.api import Study, load_study, search  # noqa: E402 - after the version

__all__ = ["Study", "__version__", "load_study", "search"]
