"""Embedding: the model maps a sample to a vector; scored by the nearest training embeddings
of each validation embedding (k = 5 votes, and the single nearest). The losses compare the
samples of a batch with each other, by their class.

Layer: tasks (a task module: imported by ``losstune/__init__.py``, which registers it).
"""

from __future__ import annotations

from typing import Any

from losstune.tasks import MAXIMIZE, Task, register


class Embedding(Task):
    """Trained in P × K batches: ``batch_size // samples_per_class`` classes, that many
    samples each (:func:`losstune.data.pk_batches`), so every batch holds positives."""

    def check_study(self, spec: Any, fail: Any) -> None:
        """P x K batches need K >= 2 samples of a class (positives for every anchor) and
        P >= 2 classes (negatives); the quadruplet loss P >= 3."""
        from losstune.studyfile import param_bounds

        per_class = spec.training.samples_per_class
        if per_class < 2:
            fail("training.samples_per_class", f"an embedding task needs >= 2 samples of a "
                                               f"class per batch (every anchor needs a "
                                               f"positive), got {per_class}")
        smallest = param_bounds(spec.training.batch_size)[0]
        if "quadruplet" in spec.families and smallest < 3 * per_class:
            # Its second term compares two negatives of different classes, neither the anchor's.
            fail("training.batch_size", f"the quadruplet loss needs >= 3 classes per batch: "
                                        f"batch_size >= {3 * per_class}, got {smallest:g}")
        if smallest < 2 * per_class:
            fail("training.batch_size", f"an embedding batch holds batch_size // "
                                        f"samples_per_class classes and needs >= 2 "
                                        f"(negatives): batch_size >= {2 * per_class}, got "
                                        f"{smallest:g}")

    def check_splits(self, spec: Any, splits: Any) -> None:
        """The largest batch must find enough classes in the training split."""
        import numpy as np

        from losstune.errors import DataError
        from losstune.studyfile import param_bounds

        per_class = spec.training.samples_per_class
        largest = int(param_bounds(spec.training.batch_size)[1])
        classes = len(np.unique(splits.y_train))
        if largest // per_class > classes:
            raise DataError(f"training.batch_size {largest} with samples_per_class {per_class} "
                            f"asks for {largest // per_class} classes per batch; the training "
                            f"split has {classes}: use batch_size <= {classes * per_class}")

    def execution_steps(self, ctx: Any, steps: int, batch_size: int) -> int:
        """An epoch is ``steps_per_epoch`` batches of one long P × K order, and a call runs
        all its steps even past an epoch's end (taking the next epoch's batches): never more
        than an epoch's batches, and the epoch trimmed to a whole number of calls."""
        per_class = ctx.spec.training.samples_per_class
        return max(1, min(steps, len(ctx.splits.y_train) // (batch_size // per_class
                                                             * per_class)))

    def fit_arguments(self, ctx: Any, y: Any, batch_size: int, seed: int,
                      epochs: int) -> dict[str, Any] | None:
        from losstune import data
        from losstune.trial import execution_steps

        splits, per_class = ctx.splits, ctx.spec.training.samples_per_class
        order, steps = data.pk_batches(splits.y_train, batch_size, per_class, epochs, seed,
                                       multiple_of=execution_steps(ctx, batch_size))
        return {"x": splits.x_train[order], "y": y[order],
                "batch_size": batch_size // per_class * per_class, "shuffle": False,
                "steps_per_epoch": steps, "epochs": epochs}

    def expected_outputs(self, spec: Any, targets: Any) -> tuple[int, ...] | None:
        return (spec.model.embedding_dim,)

    def score(self, splits: Any, x: Any, y: Any, out: Any, only: str | None = None
              ) -> dict[str, Any]:
        """``x``: the split's features, then the training split's (the gallery)."""
        from losstune import metrics

        n = len(y)
        return metrics.embedding(y, out[:n], splits.y_train, out[n:], only=only)

    def record_outputs(self, trial: Any, splits: Any, val_out: Any) -> None:
        """A 2-D projection of the first validation embeddings, for the report."""
        from losstune import results
        from losstune.trial import projection

        trial.set_user_attr(results.PROJECTION, projection(val_out[:len(splits.y_val)]))

    def record_data(self, study: Any, splits: Any) -> None:
        """The classes of the projected embeddings."""
        from losstune import results
        from losstune.trial import MAX_PROJECTED

        study.set_user_attr(results.VAL_TARGETS,
                            [int(v) for v in splits.y_val[:MAX_PROJECTED].tolist()])

    def report_figures(self, order: Any, attrs: Any, add: Any) -> None:
        from losstune import results
        from losstune.report import info, plots

        shown = info.projection_info(order, attrs.get(results.VAL_TARGETS),
                                     attrs.get(results.CLASS_NAMES))
        add("Validation embeddings", "The verdict's winner's validation embeddings "
            "(L2-normalised) on their first two principal components (scikit-learn's PCA), "
            "one colour per class: classes apart are what the losses aim for.",
            plots.projection(shown) if shown else None, "no stored embeddings")


EMBEDDING = register(Embedding(
    "embedding", "classes", "embedding", "embedding dimension",
    "one linear unit per embedding dimension (model.embedding_dim)",
    {"knn_accuracy": MAXIMIZE, "recall_at_1": MAXIMIZE}, ("digits",),
    settings=("training.samples_per_class", "model.embedding_dim")))
