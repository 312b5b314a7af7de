"""The Keras backend: which one (TensorFlow by default, torch, JAX), what it can run, the
device it trains on, and its threads and GPU memory.

``select`` must run before Keras is imported; worker processes inherit the choice through the
environment (KERAS_BACKEND).

Layer: domain.
"""

from __future__ import annotations

import os
from pathlib import Path

from losstune.errors import LosstuneError, SpecError
from losstune.studyfile import StudySpec


def select(name: str | None) -> None:
    """Use Keras backend ``name`` (None: KERAS_BACKEND, else TensorFlow). Must run before Keras
    is imported; worker processes inherit the choice through the environment."""
    import sys

    if name is None:
        return
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            raise LosstuneError(f"--backend {name}: Keras is already running on "
                                f"{keras.backend.backend()} in this process")
        return
    if name == "torch" or name == "jax":
        try:
            __import__(name)
        except ImportError:
            raise LosstuneError(f"--backend {name}: {name} is not installed "
                                f"(pip install {name})") from None
    os.environ["KERAS_BACKEND"] = name


def check(spec: StudySpec, study_file: Path) -> None:
    """Settings the chosen Keras backend cannot run, refused before anything is stored (the
    backend is read from KERAS_BACKEND, as Keras will, without importing Keras)."""
    from losstune import tasks

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    task = tasks.TASKS[spec.task]
    if task.backends and backend not in task.backends:
        raise SpecError(str(study_file), "task",
                        f"{tasks.a_task(spec.task)} trains on {' or '.join(task.backends)} "
                        f"({task.backends_why}); KERAS_BACKEND={backend} is not supported")
    steps = spec.training.steps_per_execution
    if backend == "torch" and steps != "auto" and steps > 1:
        raise SpecError(str(study_file), "training.steps_per_execution",
                        f"the torch backend runs 1 step per execution; use 1 or 'auto', "
                        f"got {steps}")


def describe_device() -> str:
    """'CPU' or the accelerator's name, for the active Keras backend."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return f"GPU: {details.get('device_name', gpus[0].name)}"
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"GPU: {torch.cuda.get_device_name(0)}"
        elif backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "cpu":
                return f"GPU: {device.device_kind}"
    except Exception:  # noqa: BLE001 - a device query must never fail a study
        pass
    return "CPU"


def configure(threads: int | None = None) -> None:
    """TensorFlow: grow GPU memory instead of taking all of it (workers may share a GPU).
    ``threads``: CPU threads for this process's kernels; local workers split the cores between
    them instead of each starting one thread per core (oversubscription).

    Must run before the backend initialises its runtime, i.e. before the first op.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "torch" and threads:
        import torch

        torch.set_num_threads(threads)
    if backend != "tensorflow":
        return
    import tensorflow as tf

    # TensorFlow warns when it traces many functions; each population of other loss
    # structures is a new model with its own traced step, by design (losstune/population.py).
    tf.get_logger().setLevel("ERROR")
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # runtime already initialised: nothing to change now
            pass
