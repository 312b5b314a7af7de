"""Autoencoder: the model reconstructs its inputs through a code; scored by the clean
validation inputs' reconstruction error, and by the code's k-nearest-neighbour accuracy.

Layer: tasks (a task module: imported by ``losstune/__init__.py``, which registers it).
"""

from __future__ import annotations

from typing import Any

from losstune.tasks import MAXIMIZE, MINIMIZE, Task, register


class Autoencoder(Task):
    def loss_targets(self, splits: Any, y: Any) -> Any:
        import numpy as np

        return np.eye(splits.num_classes, dtype="float32")[y]  # its labels score the code

    def training_targets(self, splits: Any) -> Any:
        """Its own (flattened) inputs."""
        return splits.x_train.reshape(len(splits.x_train), -1)

    def expected_outputs(self, spec: Any, targets: Any) -> tuple[int, ...] | None:
        return None  # the built-in autoencoder: its task allows no other model

    def check_study(self, spec: Any, fail: Any) -> None:
        """It trains the built-in autoencoder, whose regulariser is the VAE's KL term."""
        if spec.model.kind != "mlp":
            fail("model.kind", f"an autoencoder task trains the built-in autoencoder "
                               f"(model.kind = \"mlp\": hidden layers, a code of embedding_dim "
                               f"units, the mirrored decoder), got {spec.model.kind!r}"
                               + ("; write a study file for it" if spec.model.kind == "python"
                                  else ""))
        if spec.search.penalty.searched:
            fail("search.penalty", "penalties are added to the mlp and cnn models of the other "
                                   "tasks; the autoencoder's regulariser is the VAE's KL term")

    def trains_alone(self, spec: Any) -> str | None:
        return "an autoencoder (encoder, code and decoder) trains alone"

    def build_model(self, ctx: Any, description: dict[str, Any]) -> Any:
        """The built-in encoder and decoder: variational for a VAE family, with the design's
        input noise when it denoises."""
        from losstune import catalog, models

        return models.build_autoencoder(
            ctx.spec.model, input_shape=ctx.splits.input_shape,
            variational=catalog.family(description["family"]).model == "variational",
            noise=float((description.get("denoise") or {}).get("sigma", 0.0)))

    def score(self, splits: Any, x: Any, y: Any, out: Any, only: str | None = None
              ) -> dict[str, Any]:
        """``x``: the split's inputs, then the training split's (the code's neighbours)."""
        import numpy as np

        from losstune import metrics

        n, width = len(y), int(np.prod(splits.input_shape))
        clean = x[:n].reshape(n, -1)
        code = out[:, width:width + splits.latent_dim]
        return metrics.autoencoder(clean, out[:n, :width], y, code[:n], splits.y_train,
                                   code[n:], only=only)

    def record_outputs(self, trial: Any, splits: Any, val_out: Any) -> None:
        """The first reconstructions, for the report's pictures."""
        import numpy as np
        from scipy.special import expit

        from losstune import results
        from losstune.trial import SHOWN_RECONSTRUCTIONS

        width = int(np.prod(splits.input_shape))
        shown = expit(val_out[:SHOWN_RECONSTRUCTIONS, :width])
        trial.set_user_attr(results.RECONSTRUCTIONS,
                            [[float(f"{v:.3g}") for v in row] for row in shown.tolist()])

    def record_data(self, study: Any, splits: Any) -> None:
        """The inputs whose reconstructions the trials keep, and how to draw them."""
        from losstune import results
        from losstune.trial import SHOWN_RECONSTRUCTIONS

        shown = splits.x_val[:SHOWN_RECONSTRUCTIONS].reshape(
            min(SHOWN_RECONSTRUCTIONS, len(splits.x_val)), -1)
        study.set_user_attr(results.SHOWN_INPUTS,
                            [[float(f"{v:.3g}") for v in row] for row in shown.tolist()])
        if splits.image_shape:  # digits: drawn as images
            study.set_user_attr(results.IMAGE_SHAPE, list(splits.image_shape))

    def report_figures(self, order: Any, attrs: Any, add: Any) -> None:
        from losstune import results
        from losstune.report import info, plots

        shown = info.reconstructions_info(order, attrs.get(results.SHOWN_INPUTS),
                                          attrs.get(results.IMAGE_SHAPE))
        add("Reconstructions", "The first validation inputs (top) and the verdict's winner's "
            "reconstructions of them (bottom), from the clean inputs.",
            plots.reconstructions(shown) if shown else None, "no stored reconstructions")


# The reconstruction error of the clean validation inputs is the default objective; the code's
# k-nearest-neighbour accuracy (classes as labels) is recorded too, or chosen.
AUTOENCODER = register(Autoencoder(
    "autoencoder", "inputs", "reconstruction", "input feature",
    "reconstruction logits of every input feature, then the latent code "
    "(model.embedding_dim units; a VAE's log-variance after it)",
    {"reconstruction_mse": MINIMIZE, "latent_knn_accuracy": MAXIMIZE},
    ("digits", "breast_cancer"), settings=("model.embedding_dim", "search.denoise"),
    feature_range=(0.0, 1.0)))
