"""The loss library on the PyTorch and JAX backends of Keras: the backend-neutral tests run again
there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# The test files run again on each backend, in two groups so that a parallel run
# (pytest-xdist) can spread them over the cores.
GROUPS = {"losses": ["tests/test_losses.py", "tests/test_schedules.py", "tests/test_audit.py",
                     "tests/test_compiled.py", "tests/test_gan.py", "tests/test_style.py"],
          "populations": ["tests/test_population.py", "tests/test_tasks.py"]}


@pytest.mark.slow
@pytest.mark.parametrize("group", list(GROUPS))
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_loss_tests_pass_under_other_backends(backend, group):
    """On JAX this shows that a loss's variables (epoch, schedule factor, retuned
    hyperparameters) change inside the compiled step, which JAX's stateless step would
    otherwise freeze at trace time."""
    env = {**os.environ, "KERAS_BACKEND": backend}
    files = GROUPS[group]
    # On JAX the population studies are left out (each new model compiles for seconds there
    # and the suite's budget is short): the loss, retune and population unit tests run.
    # On torch the member-against-alone studies run, for every task (on JAX those take a
    # minute: left out); the others (the example studies, verdict, pruning, CNN, factory)
    # are backend-neutral orchestration, tested on TensorFlow.
    # Data, metric and spec tests of the tasks are NumPy and scikit-learn only: not again.
    skip = "torch_backend or cnn_population or pruned_members or factory_model" \
        " or verdict_of_the_same or metrics_are or builtin_ or long_tail or multilabel_csv" \
        " or counts_are_not or scaled_to or pk_batches or python_api or every_metric_has" \
        " or the_seeds or each_example_study or registered_in_one_module" + (
            " or a_member_computes or same_results_with_and_without_reuse"
            " or penalt or kept_population"
            # The GAN's train step is refused on JAX (losstune.adversarial): its losses run.
            " or alternates_and_updates or leaves_the_discriminator"
            " or reaches_the_discriminator" if backend == "jax" else "")
    if group == "losses":  # the GAN's and style transfer's studies: orchestration
        skip += (" or gan_example_study or gan_from_python or colour_images or known_answers"
                 " or vgg19_from")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *files,
         "-k", f"not ({skip})"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
    # Make sure it really ran on that backend.
    probe = subprocess.run(
        [sys.executable, "-c", "import keras; print(keras.backend.backend())"],
        env=env, capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == backend


@pytest.mark.slow
def test_tiny_study_runs_on_torch_backend(tmp_path):
    pytest.importorskip("torch")
    import optuna

    from tests.conftest import write_study

    study = write_study(tmp_path, {"n_trials": 3})
    url = f"sqlite:///{tmp_path / 't.db'}"
    exe = Path(sys.executable).parent / "losstune"
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    proc = subprocess.run([str(exe), "search", str(study), "--storage", url, "--backend", "torch"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert {t.user_attrs["backend"] for t in trials} == {"torch"}
    assert all(len(t.intermediate_values) == 3 for t in trials)
