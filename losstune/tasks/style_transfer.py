"""Style transfer: a trial optimises one image from the content image, with the design's
composite loss (Gatys et al. 2016; :mod:`losstune.losses._style`, :mod:`losstune.stylize`), and
is scored, never by that loss, on two objectives under *other* feature networks:

* ``content_ssim`` (maximise): SSIM of the result with the content image
  (:func:`losstune.metrics.ssim`, equal to scikit-image's ``structural_similarity``);
* ``style_distance`` (minimise): the Gram-matrix distance to the style image
  (:func:`losstune.metrics.gram_style_distance`) in a random multi-scale CNN seeded
  differently from the loss's (validation: seed 1001; the test split: seed 2002), so that a
  design cannot win by matching the very features it optimised.

The study is multi-objective by default (``studies/style_transfer.toml``): content fidelity and
style match pull against each other, and the verdict is a front (:mod:`losstune.pareto`).

Images: scikit-learn's bundled photographs (``dataset.name = "sample_images"``: china.jpg the
content, flower.jpg the style), or the user's (``name = "images"``, ``content`` and ``style``
paths), scaled down with Pillow so that the long side is ``dataset.size`` pixels (96: about 5 s
a trial of 100 steps on 2 cores); the style image is scaled to the content's size.

Layer: tasks (a task module: imported by ``losstune/__init__.py``, which registers it).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from losstune import catalog
from losstune.catalog import Family, Parameter
from losstune.tasks import MAXIMIZE, MINIMIZE, Task, register

THUMBNAIL = 64  # the report's pictures: long side in pixels
_NETWORKS: dict[tuple, Any] = {}  # (seed, height, width) -> a scoring network
RANDOM_SEED = 0        # the losses' random feature network
SCORING_SEEDS = {"val": 1001, "test": 2002}  # the scoring networks (never the losses')
LAYERS = 4             # the feature network's blocks (losses._style.LAYERS), halved between
MIN_SIDE = 2 ** (LAYERS - 1) * 4  # a 4 x 4 map (at least) at the deepest block: 32 px
VGG_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"


def vgg_weights(path: str | None) -> Path | None:
    """The VGG19 weights file: ``path`` as given, or Keras's cache (``$KERAS_HOME/models``,
    default ``~/.keras/models``); None when neither is on disk (a given path that is missing
    is the study file's to refuse)."""
    import os

    if path:
        return Path(path).expanduser()
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    cached = home / "models" / VGG_FILE
    return cached if cached.is_file() else None


def _resolved(path: str, base_dir: Any) -> Path:
    """A path from the study file: relative to its folder."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base_dir) / p


def read_image(path: Path, key: str, size: int) -> Any:
    """An image file as floats in [0, 1] (H, W, 3), scaled down to long side ``size``."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from losstune.errors import DataError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.load()
    except FileNotFoundError:
        raise DataError(f"dataset.{key}: image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"dataset.{key}: cannot read image {path} ({err})") from None
    return _scaled(np.asarray(im), size)


def _scaled(pixels: Any, size: int, shape: tuple[int, int] | None = None) -> Any:
    """Pixels (uint8) scaled down (never up) to long side ``size``, or to ``shape``."""
    import numpy as np
    from PIL import Image

    im = Image.fromarray(pixels)
    if shape is None:
        w, h = im.size
        scale = min(1.0, size / max(w, h))
        shape = (max(1, round(h * scale)), max(1, round(w * scale)))
    if (im.size[1], im.size[0]) != shape:
        im = im.resize((shape[1], shape[0]), Image.LANCZOS)
    return np.asarray(im, "float32") / 255.0


def data_uri(pixels: Any, side: int = THUMBNAIL) -> str:
    """An image in [0, 1] (H, W, 3) as a small PNG data URI (the report's pictures)."""
    import numpy as np
    from PIL import Image

    im = Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype("uint8"))
    im.thumbnail((side, side), Image.LANCZOS)
    buffer = io.BytesIO()
    im.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def scoring_network(split: str, height: int, width: int) -> Any:
    """The random network that scores a split's style distance (never the loss's)."""
    from losstune import stylize

    key = (SCORING_SEEDS[split], height, width)
    if key not in _NETWORKS:
        _NETWORKS[key] = stylize.random_features(key[0], height, width)
    return _NETWORKS[key]


class StyleTransfer(Task):
    def check_study(self, spec: Any, fail: Any) -> None:
        d = spec.dataset
        if d.name == "images":
            for key in ("content", "style"):
                if not getattr(d, key):
                    fail(f"dataset.{key}", f"dataset 'images' needs {key} = 'image file'")
        else:
            for key in ("content", "style"):
                if getattr(d, key):
                    fail(f"dataset.{key}", f"only for dataset 'images' (the user's images); "
                                           f"{d.name!r} has its own")
        if spec.model.kind != "mlp":  # the default, which it ignores
            fail("model.kind", "a style_transfer task optimises an image: it has no model "
                               "kind; set model.features ('random' or 'vgg19')")
        if spec.search.penalty.searched:
            fail("search.penalty", "penalties weigh a model's weights; a style_transfer task "
                                   "has none (its regulariser is the families' tv_weight)")
        if spec.training.mixed_precision:
            fail("training.mixed_precision", "a style_transfer task optimises its image in "
                                             "float32")
        if spec.model.features != "vgg19" and spec.model.vgg_weights is not None:
            fail("model.vgg_weights", "only with model.features = 'vgg19'")

    def check_files(self, spec: Any, fail: Any, base_dir: Any) -> None:
        if spec.dataset.name == "images":
            for key in ("content", "style"):
                path = _resolved(getattr(spec.dataset, key), base_dir)
                if not path.is_file():
                    fail(f"dataset.{key}", f"image not found: {path}")
        if spec.model.features != "vgg19":
            return
        if spec.model.vgg_weights is not None:
            path = _resolved(spec.model.vgg_weights, base_dir)
            if not path.is_file():
                fail("model.vgg_weights", f"file not found: {path} (VGG19's ImageNet weights, "
                                          f"{VGG_FILE}; nothing is downloaded)")
        elif vgg_weights(None) is None:
            fail("model.features", f"VGG19's ImageNet weights are not on disk "
                                   f"({VGG_FILE} in Keras's cache): give "
                                   "model.vgg_weights, or use features = 'random'")

    def load_data(self, spec: Any, base_dir: Any, seed: int) -> Any:
        import numpy as np

        from losstune.data import Splits
        from losstune.errors import DataError

        if spec.name == "images":
            paths = {k: _resolved(getattr(spec, k), base_dir) for k in ("content", "style")}
            content = read_image(paths["content"], "content", spec.size)
            style_pixels = np.round(read_image(paths["style"], "style", 10 ** 6) * 255)
            names = [str(paths["content"]), str(paths["style"])]
        else:
            from sklearn.datasets import load_sample_images

            bundle = load_sample_images()
            content = _scaled(bundle.images[0], spec.size)
            style_pixels = bundle.images[1]
            names = ["china.jpg", "flower.jpg"]
        side = min(content.shape[:2])
        if side < MIN_SIDE:
            raise DataError(f"dataset: the content image is {content.shape[1]} x "
                            f"{content.shape[0]} px at dataset.size = {spec.size}; the feature "
                            f"network's deepest block needs at least {MIN_SIDE} px a "
                            "side: give a larger image (or size)")
        style_small = min(np.asarray(style_pixels).shape[:2])
        if style_small < MIN_SIDE:
            raise DataError(f"dataset.style: the style image's short side is {style_small} px; "
                            f"the feature network's deepest block needs at least "
                            f"{MIN_SIDE} px")
        style = _scaled(np.asarray(style_pixels, "uint8"), spec.size, content.shape[:2])
        content, style = content[None], style[None]
        # The model ignores its inputs: the markers say which split is scored (0 validation,
        # 1 test), and so which scoring network.
        splits = Splits(content, style, np.zeros((1, 1), "float32"), style,
                        np.ones((1, 1), "float32"), style, self.name,
                        image_shape=tuple(content.shape[1:]),
                        description=f"content {names[0]}, style {names[1]}, "
                                    f"{content.shape[2]} x {content.shape[1]} px")
        return splits

    @property
    def backends_why(self) -> str:
        return "its train step updates the image in place; JAX's is stateless"

    def trains_alone(self, spec: Any) -> str | None:
        return "a style transfer optimises its own image (no model to stack)"

    def expected_outputs(self, spec: Any, targets: Any) -> tuple[int, ...] | None:
        return None

    def training_targets(self, splits: Any) -> Any:
        return splits.y_train

    def build_model(self, ctx: Any, description: dict[str, Any]) -> Any:
        import numpy as np

        from losstune import stylize

        m, splits = ctx.spec.model, ctx.splits
        height, width = splits.x_train.shape[1:3]
        if m.features == "vgg19":
            weights = vgg_weights(m.vgg_weights and str(_resolved(m.vgg_weights,
                                                                          ctx.base_dir)))
            features = stylize.vgg_features(weights, height, width)
        else:
            features = stylize.random_features(RANDOM_SEED, height, width)
        # The image's starting noise from NumPy's global stream, which the trial seeds with
        # the run's seed (keras.utils.set_random_seed) before building.
        return stylize.StyleModel(features, splits.x_train, splits.y_train,
                                  seed=int(np.random.randint(2 ** 31 - 1)))

    def check_built(self, trial: Any, ctx: Any, model: Any, loss: Any, y: Any) -> tuple:
        """The composite loss's terms on the starting image (recorded as the audit); a design
        whose terms are not finite is rejected."""
        from losstune.audit import record_terms

        model.compile(optimizer="sgd", loss=loss)  # the targets, for the terms
        record_terms(trial, model._terms(), "on the starting image")
        return ()

    def execution_steps(self, ctx: Any, steps: int, batch_size: int) -> int:
        return max(1, min(steps, ctx.spec.training.steps_per_epoch))

    def fit_arguments(self, ctx: Any, y: Any, batch_size: int, seed: int,
                      epochs: int) -> dict[str, Any] | None:
        """``steps_per_epoch`` steps an epoch (the batch size has no meaning here)."""
        import numpy as np

        return {"x": np.zeros((ctx.spec.training.steps_per_epoch, 1), "float32"),
                "batch_size": 1, "epochs": epochs, "shuffle": False}

    def score(self, splits: Any, x: Any, y: Any, out: Any, only: str | None = None
              ) -> dict[str, Any]:
        import numpy as np
        from keras import ops

        from losstune import metrics

        if not np.isfinite(out).all():
            raise FloatingPointError("the image is not finite")
        image = np.asarray(out[0], "float32")
        computed: dict[str, float] = {}
        wanted = (only,) if only else tuple(self.metrics)
        if "content_ssim" in wanted:
            computed["content_ssim"] = metrics.ssim(image, splits.x_train[0])
        if "style_distance" in wanted:
            net = scoring_network("test" if float(x[0, 0]) == 1 else "val", *image.shape[:2])
            mine = [ops.convert_to_numpy(f) for f in net(image[None])]
            theirs = [ops.convert_to_numpy(f) for f in net(splits.y_train)]
            computed["style_distance"] = metrics.gram_style_distance(mine, theirs)
        return computed

    def record_outputs(self, trial: Any, splits: Any, val_out: Any) -> None:
        from losstune import results

        trial.set_user_attr(results.STYLIZED, data_uri(val_out[0]))

    def record_data(self, study: Any, splits: Any) -> None:
        from losstune import results

        study.set_user_attr(results.STYLE_IMAGES, {"content": data_uri(splits.x_train[0]),
                                                   "style": data_uri(splits.y_train[0])})

    def report_figures(self, order: Any, attrs: Any, add: Any) -> None:
        """The designs' results at their place on the two objectives; content, style and the
        results of the top designs and the baselines side by side."""
        from losstune import results
        from losstune.report import info, plots

        shown = [t for t in order if results.STYLIZED in t.user_attrs]
        points = [(info.design_label(t), t.user_attrs.get(results.VAL + "content_ssim"),
                   t.user_attrs.get(results.VAL + "style_distance"),
                   t.user_attrs[results.STYLIZED], results.BASELINE in t.user_attrs)
                  for t in shown]
        points = [p for p in points if p[1] is not None and p[2] is not None]
        add("Results on the two objectives", "Each design's result (its search trial) at its "
            "content SSIM and style distance: the front runs from the content image (right, "
            "high) to the style's texture (left, low).",
            plots.image_scatter(points, "content_ssim", "style_distance") if points else None,
            "no results recorded")
        model = (attrs.get(results.SPEC) or {}).get("model") or {}
        network = ("VGG19 (ImageNet weights from disk; conv1_1 … conv4_1)"
                   if model.get("features") == "vgg19" else
                   f"a random multi-scale CNN (fixed weights, seed {RANDOM_SEED})")
        scored = (f"scored under random networks seeded {SCORING_SEEDS['val']} "
                  f"(validation) and {SCORING_SEEDS['test']} (test)")
        pictures = attrs.get(results.STYLE_IMAGES) or {}
        top = shown[:4] + [t for t in shown if results.BASELINE in t.user_attrs
                           and t not in shown[:4]]
        row = ([("content", pictures["content"]), ("style", pictures["style"])]
               if pictures else [])
        row += [(f"#{t.number}" + (" (baseline)" if results.BASELINE in t.user_attrs else ""),
                 t.user_attrs[results.STYLIZED]) for t in top]
        add("Content, style and results", f"Feature network of the losses: {network}; "
            f"{scored}. The content and style images, then the results of "
            "the top designs and of the baselines, by trial number: "
            + "; ".join(f"#{t.number} {info.design_label(t)}" for t in top) + ".",
            plots.pictures(row) if row else None, "no results recorded")


STYLE_TASK = register(StyleTransfer(
    "style_transfer", "images", "image", "pixel", "the optimised image",
    {"content_ssim": MAXIMIZE, "style_distance": MINIMIZE}, ("sample_images", "images"),
    ("content_ssim", "style_distance"),
    settings=("dataset.content", "dataset.style", "dataset.size", "model.features",
              "model.vgg_weights", "training.steps_per_epoch"),
    backends=("tensorflow", "torch"), curve_metrics=("content_ssim", "style_distance")))


# ------------------------------------------------------------------------------ its families
_STYLE = "losstune.losses._style:"
_TASKS = ("style_transfer",)
_COMMON = (
    Parameter("ratio", 1e-3, "[1e-12, 1e12]", symbol="α/β",
              search={"low": 1e-6, "high": 1e2, "log": True}),
    *(Parameter(f"w{i}", 1.0, "[0, 100]", symbol=f"w{i}", search={"low": 0.1, "high": 1.0},
                quiet=(1.0,)) for i in range(1, 5)),
    Parameter("content_layer", "block4", kind="name",
              names=("block1", "block2", "block3", "block4"), symbol="content",
              search={"choices": ["block2", "block3", "block4"]}, quiet=("block4",)),
    Parameter("tv_weight", 0.0, "[0, 1e9]", symbol="λ_TV",
              search={"choices": [0.0, 0.1, 1.0, 10.0]}, quiet=(0.0,)),
)
# Gatys et al.'s published setting: α/β = 1e-3, equal layer weights, content on the deepest
# block (conv4_2 on VGG; block4 of the random network), no total variation.
_GATYS = {"ratio": 1e-3, "w1": 1.0, "w2": 1.0, "w3": 1.0, "w4": 1.0, "content_layer": "block4",
          "tv_weight": 0.0}
for _family in (
    Family("gatys", _TASKS, _STYLE + "GatysStyle", _COMMON, words="Gatys style loss",
           title="Gatys et al.: Gram matrices", default_for=_TASKS, baseline=_GATYS,
           note="Style as Gram matrices of the feature network's layers."),
    Family("mean_std", _TASKS, _STYLE + "MeanStdStyle", _COMMON,
           words="mean/std style loss", title="Per-channel mean and standard deviation",
           default_for=_TASKS, note="Style as each channel's mean and standard deviation "
                                    "(AdaIN's statistic)."),
    Family("sliced_wasserstein", _TASKS, _STYLE + "SlicedWassersteinStyle",
           (*_COMMON, Parameter("projections", 32, "[1, 1024]", kind="whole", symbol="K",
                                quiet=(32,))),
           words="sliced Wasserstein style loss", title="Sliced Wasserstein style loss",
           default_for=_TASKS, note="Style as the distribution of feature vectors, compared "
                                    "along random directions (Heitz et al. 2021)."),
):
    catalog.register(_family)
