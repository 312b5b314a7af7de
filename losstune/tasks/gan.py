"""GAN: unconditional image generation. A trial trains a generator and a discriminator in
alternation with the design's adversarial loss pair (:mod:`losstune.adversarial`) and is
scored on its generated samples, never by its losses.

Scoring: a classifier (scikit-learn's MLPClassifier, one hidden layer of 64) is trained once
per study on the training split, never on generated samples, and cached by the data's
fingerprint; its hidden layer is the feature space. On :data:`GENERATED` samples from fixed
latent vectors, against the held-out real split: KID (unbiased, the default objective: the
Fréchet distance is biased at these sample sizes), the Fréchet distance, precision and recall
(k = 3), and class coverage (the share of classes the classifier finds, and the KL divergence
of their histogram from the data's).

Layer: tasks (a task module: imported by ``losstune/__init__.py``, which registers it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

from losstune import catalog
from losstune.catalog import Family, Parameter
from losstune.tasks import MAXIMIZE, MINIMIZE, Task, register

GENERATED = 1000      # generated samples scored per split (Lucic et al. use 10k on larger sets)
SHOWN_SAMPLES = 12    # generated samples a trial keeps for the report's grid
LATENT_SEED = 20261203
_FEATURES: dict[str, Any] = {}  # data fingerprint -> the fitted feature classifier


def feature_classifier(splits: Any) -> Any:
    """The study's feature classifier, trained on its training split once (per process) and
    kept by the split's fingerprint."""
    import numpy as np
    from sklearn.neural_network import MLPClassifier

    x = np.ascontiguousarray(splits.x_train.reshape(len(splits.x_train), -1), dtype="float32")
    key = hashlib.sha256(x.tobytes() + np.asarray(splits.y_train).tobytes()).hexdigest()
    if key not in _FEATURES:
        clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=0)
        _FEATURES[key] = clf.fit(x, splits.y_train)
    return _FEATURES[key]


def features(clf: Any, x: Any) -> Any:
    """The classifier's hidden layer (ReLU) for samples ``x``."""
    import numpy as np

    flat = np.asarray(x, "float64").reshape(len(x), -1)
    return np.maximum(flat @ clf.coefs_[0] + clf.intercepts_[0], 0.0)


@dataclass(frozen=True)
class Factories:
    """A GAN's model functions given in Python (``losstune.search(task="gan", ...)``):
    ``generator(latent_dim, output_shape)`` and ``discriminator(input_shape)``, each
    returning a ``keras.Model``; None for the built-in MLP."""

    generator: Callable[..., Any] | None = None
    discriminator: Callable[..., Any] | None = None


class GAN(Task):
    def check_study(self, spec: Any, fail: Any) -> None:
        # "python": model functions given in Python (the study file refuses the kind).
        if spec.model.kind not in ("mlp", "cnn", "python"):
            fail("model.kind", f"a gan task trains the built-in generator and discriminator "
                               f"(model.kind \"mlp\" or \"cnn\"), or, from Python, "
                               f"build_generator and build_discriminator; got "
                               f"{spec.model.kind!r}")
        if spec.search.penalty.searched:
            fail("search.penalty", "penalties are added to the mlp and cnn models of the "
                                   "other tasks; a GAN's regularisers are its families' "
                                   "r1_gamma and gp_weight")
        if spec.training.mixed_precision:
            # Keras would wrap the generator's optimizer in a loss-scale optimizer whose
            # unscaling the GAN's own train step never matches (its steps shrink 2^15-fold).
            fail("training.mixed_precision", "a gan task trains in float32: its train step "
                                             "does not scale its losses as mixed precision "
                                             "needs")
        # Its step takes second-order gradients across two optimizers, one step a call.
        if spec.training.jit_compile is True:
            fail("training.jit_compile", "a gan task's train step runs without XLA; leave "
                                         "jit_compile out (or false)")
        steps = spec.training.steps_per_execution
        if steps != "auto" and steps > 1:
            fail("training.steps_per_execution", f"a gan task runs one step a call (its "
                                                 f"discriminator steps read the generator's "
                                                 f"latest weights); use 1 or 'auto', got {steps}")

    @property
    def backends_why(self) -> str:
        return ("its train step alternates two optimizers and takes second-order gradients; "
                "JAX's is stateless")

    def check_splits(self, spec: Any, splits: Any) -> None:
        """The samples must lie in the generator's range, [-1, 1] (a study's data is scaled
        there; arrays from Python are used as given)."""
        import numpy as np

        from losstune.errors import DataError

        low, high = float(np.min(splits.x_train)), float(np.max(splits.x_train))
        if low < -1.0 - 1e-6 or high > 1.0 + 1e-6:
            raise DataError(f"a gan task's samples must lie in [-1, 1], as its generator's tanh "
                            f"outputs do; the training samples span [{low:g}, {high:g}]: "
                            "scale them first (x / 127.5 - 1 for 8-bit images)")

    def from_python(self, functions: dict[str, Any], latent_dim: int) -> tuple[Any, dict]:
        """A GAN from Python: ``build_model`` None, and the user's ``build_generator`` and
        ``build_discriminator`` (either left out: the built-in MLP's part)."""
        from losstune.errors import LosstuneError
        from losstune.tasks import reference

        if functions.get("build_model") is not None:
            raise LosstuneError("a GAN trains a generator and a discriminator: give "
                                "build_generator and build_discriminator (or neither, for the "
                                "built-in MLPs), and build_model=None")
        given = {name: functions.get(name) for name in self.python_functions[1:]}
        for name, f in given.items():
            if f is not None and not callable(f):
                raise LosstuneError(f"{name} must be a function returning a keras.Model; got "
                                    f"{type(f).__name__}")
        named = [reference(f) for f in given.values() if f is not None]
        model = ({"kind": "python", "factory": " + ".join(named)} if named
                 else {"kind": "mlp", "hidden": [128]})
        return (Factories(given["build_generator"], given["build_discriminator"]),
                {**model, "latent_dim": latent_dim})

    def latent_width(self, spec: Any) -> int:
        return spec.model.latent_dim

    def trains_alone(self, spec: Any) -> str | None:
        return "a GAN (a generator and a discriminator in alternation) trains alone"

    def expected_outputs(self, spec: Any, targets: Any) -> tuple[int, ...] | None:
        return None  # the built-in generator: its task allows no other model

    def scored_inputs(self, splits: Any, x: Any, split: str) -> Any:
        """Fixed latent vectors: every trial, every epoch, is scored on the same ones; the
        test split on others than the validation split's."""
        import numpy as np

        rng = np.random.default_rng(LATENT_SEED + (split == "test"))
        return rng.normal(size=(GENERATED, splits.latent_dim)).astype("float32")

    def build_model(self, ctx: Any, description: dict[str, Any]) -> Any:
        from losstune import adversarial

        m = ctx.spec.model
        shape = ctx.splits.input_shape
        given = ctx.model_fn if m.kind == "python" else None
        if m.kind == "python" and not isinstance(given, Factories):
            from losstune.errors import LosstuneError

            raise LosstuneError("this GAN study's models are Python functions: give them again "
                                "(losstune.load_study(...).attach(None, x, y, "
                                "build_generator=..., build_discriminator=...))")
        kind = "mlp" if m.kind == "python" else m.kind
        generator = (given.generator(m.latent_dim, shape) if given and given.generator else
                     adversarial.build_generator(m.latent_dim, shape, kind, m.hidden, m.filters,
                                                 m.normalization))
        discriminator = (given.discriminator(shape) if given and given.discriminator else
                         adversarial.build_discriminator(shape, kind, m.hidden, m.filters,
                                                     m.normalization))
        adversarial.check_models(generator, discriminator, m.latent_dim, shape)
        return adversarial.GAN(generator, discriminator, m.latent_dim, seed=ctx.spec.seed)

    def check_built(self, trial: Any, ctx: Any, model: Any, loss: Any, y: Any) -> tuple:
        """Both losses on a real batch and generated samples, before training: a design whose
        losses are not finite is rejected; their values are recorded as its audit."""
        import numpy as np

        from losstune.audit import record_terms

        splits = ctx.splits
        z = np.random.default_rng(0).normal(size=(len(y), splits.latent_dim)).astype("float32")
        real = model.discriminator(splits.x_train[:len(y)])
        fake = model.discriminator(model(z))
        record_terms(trial, {"discriminator": loss.discriminator_loss(real, fake),
                             "generator": loss.generator_loss(fake, real)}, "on the audit batch")
        return ()

    def score(self, splits: Any, x: Any, y: Any, out: Any, only: str | None = None
              ) -> dict[str, Any]:
        """``out``: the generated samples; the real ones are the split ``y`` labels (the test
        split's, or else the validation split's)."""
        import numpy as np

        from losstune import metrics

        if not np.isfinite(out).all():
            raise FloatingPointError("the generated samples are not finite")
        real = splits.x_test if y is splits.y_test else splits.x_val
        clf = feature_classifier(splits)
        f_real, f_fake = features(clf, real), features(clf, out)
        computed: dict[str, Any] = {}
        wanted = (only,) if only else tuple(self.metrics)
        if "kid" in wanted:
            computed["kid"] = metrics.kernel_inception_distance(f_real, f_fake)
        if "fd" in wanted:
            computed["fd"] = metrics.frechet_distance(f_real, f_fake)
        if {"precision", "recall"} & set(wanted):
            computed["precision"], computed["recall"] = metrics.precision_recall(f_real, f_fake)
        if {"class_coverage", "class_kl"} & set(wanted):
            predicted = clf.predict(np.asarray(out, "float64").reshape(len(out), -1))
            computed["class_coverage"], computed["class_kl"] = metrics.class_coverage(
                predicted, np.bincount(splits.y_train, minlength=splits.num_classes))
            if not only:
                computed["class_histogram"] = np.bincount(
                    predicted, minlength=splits.num_classes).tolist()
        return {k: float(v) if not isinstance(v, list) else v for k, v in computed.items()
                if k in wanted or k == "class_histogram"}

    def record_outputs(self, trial: Any, splits: Any, val_out: Any) -> None:
        """The first generated samples, in [0, 1], for the report's grid."""
        from losstune import results

        shown = (val_out[:SHOWN_SAMPLES].reshape(min(SHOWN_SAMPLES, len(val_out)), -1) + 1) / 2
        trial.set_user_attr(results.GENERATED,
                            [[float(f"{v:.3g}") for v in row] for row in shown.tolist()])

    def record_data(self, study: Any, splits: Any) -> None:
        import numpy as np

        from losstune import results

        if splits.image_shape:
            study.set_user_attr(results.IMAGE_SHAPE, list(splits.image_shape))
        study.set_user_attr(results.CLASS_COUNTS,
                            np.bincount(splits.y_train, minlength=splits.num_classes).tolist())

    def report_figures(self, order: Any, attrs: Any, add: Any) -> None:
        """Generated samples of the top designs and the baselines; the generator's and the
        discriminator's losses per epoch; the winner's class histogram against the data's."""
        from losstune import results
        from losstune.report import info, plots

        shown = [t for t in order if results.GENERATED in t.user_attrs][:4]
        shown += [t for t in order if results.BASELINE in t.user_attrs
                  and results.GENERATED in t.user_attrs and t not in shown]
        add("Generated samples", "The first generated samples (fixed latent vectors) of the "
            "top designs and of the baselines, one row each.",
            plots.samples([(info.design_label(t), t.user_attrs[results.GENERATED])
                           for t in shown], attrs.get(results.IMAGE_SHAPE)) if shown else None,
            "no stored samples")
        def series(keys: dict[str, str]) -> list[dict[str, Any]]:
            """The top designs' curves: label suffix -> stored key."""
            found = [{"label": f"{info.design_label(t)}: {part}",
                      "values": t.user_attrs.get(key, [])}
                     for t in order[:3] for part, key in keys.items()]
            return [s for s in found if s["values"]]

        losses = series({p: f"{results.CURVE}{results.COMPONENT}{p}"
                         for p in ("discriminator", "generator")})
        add("Adversarial losses", "The discriminator's and the generator's losses per epoch "
            "(training batches) of the top designs: their balance, not their value, is what "
            "the losses say.",
            plots.lines(losses, "Adversarial losses per epoch", "loss") if losses else None,
            "no loss curves")
        distances = series({m: results.val_curve(m) for m in ("kid", "fd")})
        add("KID and FD per epoch", "The validation KID and Fréchet distance of the top "
            "designs after every epoch (fixed latent vectors; lower is better): a GAN's "
            "scores move from epoch to epoch, which is why designs compare over seeds.",
            plots.lines(distances, "KID and FD per epoch", "distance") if distances else None,
            "no KID/FD curves recorded")
        best = next((t for t in order if results.VAL + "class_histogram" in t.user_attrs), None)
        data = attrs.get(results.CLASS_COUNTS)
        add("Class coverage", "Classes of the verdict's winner's generated samples (as the "
            "feature classifier labels them) against the training data's share.",
            plots.class_histogram(best.user_attrs[results.VAL + "class_histogram"], data,
                                  info.design_label(best)) if best and data else None,
            "no class histogram recorded")


GAN_TASK = register(GAN(
    "gan", "inputs", "samples", "sample", "generated samples",
    {"kid": MINIMIZE, "fd": MINIMIZE, "precision": MAXIMIZE, "recall": MAXIMIZE,
     "class_coverage": MAXIMIZE, "class_kl": MINIMIZE}, ("digits",),
    ("kid", "fd", "precision", "recall"), settings=("model.latent_dim", "model.normalization"),
    feature_range=(-1.0, 1.0), backends=("tensorflow", "torch"),
    python_functions=("build_model", "build_generator", "build_discriminator"),
    curve_metrics=("kid", "fd")))


# ------------------------------------------------------------------------------ its families
_ADV = "losstune.losses._adversarial:"
_SMOOTHING = Parameter("label_smoothing", 0.0, "[0, 0.5)", symbol="s",
                       search={"low": 0.0, "high": 0.2}, quiet=(0.0,))
_SHARED = (Parameter("r1_gamma", 0.0, "[0, 1000]", symbol="γ",
                     search={"choices": [0.0, 0.1, 1.0, 10.0]}, quiet=(0.0,)),
           Parameter("d_steps", 1, "[1, 10]", kind="whole", symbol="n_D",
                     search={"low": 1, "high": 3}, quiet=(1,)),
           # 0: the discriminator never learns (a broken design: benchmarks, figure 16).
           Parameter("d_lr_ratio", 1.0, "[0, 100]", symbol="η_D/η_G",
                     search={"low": 0.5, "high": 4.0, "log": True}, quiet=(1.0,)))
# The reference designs: Goodfellow et al.'s two forms, unsmoothed, one D step, one rate.
_REFERENCE = {"label_smoothing": 0.0, "r1_gamma": 0.0, "d_steps": 1, "d_lr_ratio": 1.0}
_TASKS = ("gan",)
for _family in (
    Family("non_saturating", _TASKS, _ADV + "NonSaturatingGAN", (_SMOOTHING, *_SHARED),
           words="non-saturating GAN loss", title="Non-saturating GAN loss",
           default_for=_TASKS, baseline=_REFERENCE,
           note="G minimises −log σ(D(G(z))); D the cross-entropy of real against fake."),
    Family("minimax", _TASKS, _ADV + "MinimaxGAN", (_SMOOTHING, *_SHARED),
           words="minimax GAN loss", title="Minimax GAN loss", default_for=_TASKS,
           baseline=_REFERENCE, note="G minimises log(1 − σ(D(G(z)))), the saturating form."),
    Family("least_squares", _TASKS, _ADV + "LeastSquaresGAN",
           (Parameter("a", 0.0, "[-1, 1]"), Parameter("b", 1.0, "[-1, 1]"),
            Parameter("c", 1.0, "[-1, 1]"), *_SHARED),
           words="least-squares GAN loss", title="Least-squares GAN loss (LSGAN)",
           default_for=_TASKS, note="a, b: D's targets for fake and real; c: G's target."),
    Family("hinge", _TASKS, _ADV + "HingeGAN", _SHARED, words="hinge GAN loss",
           title="Hinge GAN loss", default_for=_TASKS),
    Family("wasserstein", _TASKS, _ADV + "WassersteinGAN",
           (Parameter("gp_weight", 10.0, "[0, 1000]", symbol="λ",
                      search={"low": 1.0, "high": 30.0, "log": True}), *_SHARED),
           words="Wasserstein loss with gradient penalty", title="WGAN-GP",
           default_for=_TASKS, note="λ weighs the gradient penalty on interpolates."),
    Family("relativistic", _TASKS, _ADV + "RelativisticGAN", (_SMOOTHING, *_SHARED),
           words="relativistic average GAN loss", title="Relativistic average GAN loss",
           default_for=_TASKS),
):
    catalog.register(_family)
