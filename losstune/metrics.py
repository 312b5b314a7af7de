"""Objective and secondary metrics, computed with scikit-learn on model outputs.

The objective is never the loss's own value: losses of different families are not on one scale.

Layer: domain.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from losstune.results import AP_PER_LABEL_NAME, F1_PER_LABEL_NAME


CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "roc_auc")


def _checked_inputs():
    """scikit-learn's own switches for inputs already checked: the outputs are tested for
    finiteness here and the labels are integer arrays losstune made. Its per-call validation
    took most of the metrics' time on small splits (about 1.5 s of 20 trials' scoring)."""
    import sklearn

    return sklearn.config_context(assume_finite=True, skip_parameter_validation=True)


def classification(y_true: np.ndarray, logits: np.ndarray, num_classes: int,
                   only: str | None = None, recall: bool = False) -> dict[str, Any]:
    """Every classification metric, or ``only`` one (the per-epoch objective: computing all of
    them after every epoch cost more than the epoch itself on small data); ``recall``: also
    each class's recall (``recall_per_class``). One model's outputs: see
    :func:`classification_members`, which computes them."""
    scored = classification_members(y_true, np.asarray(logits)[None], num_classes, only=only,
                                    recall=recall)[0]
    if isinstance(scored, Exception):
        raise scored
    return scored


def classification_members(y_true: np.ndarray, logits: np.ndarray, num_classes: int,
                           only: str | None = None, recall: bool = False
                           ) -> list[dict[str, Any]]:
    """:func:`classification` for K members' outputs on one split at once, ``logits`` of
    shape (K, n, classes): a population scores its members from one prediction of the stacked
    model (and a trial alone is a population of one).

    Written by hand because scikit-learn scores one prediction a call, and its per-call
    checks cost more than the arithmetic on small splits (0.12 s a trial for every metric on
    the validation and test splits, a quarter of a digits trial's time outside ``fit``).
    Each metric is scikit-learn's definition, from the K confusion matrices (one
    ``np.bincount``) and, for ROC AUC, from average ranks (``scipy.stats.rankdata``: the
    Mann-Whitney form of the area, ties counted half, as ``roc_auc_score`` counts them);
    tests/test_metrics.py checks each against scikit-learn member by member. A member whose
    outputs are not finite gets a FloatingPointError in its place."""
    from scipy.special import softmax

    logits = np.asarray(logits, dtype="float64")
    k, n, c = logits.shape
    if c != num_classes:
        raise ValueError(f"outputs for {c} classes, {num_classes} expected")
    finite = np.isfinite(logits).all(axis=(1, 2))
    out: list[Any] = [FloatingPointError("the model's outputs are not finite")] * k
    if not finite.any():
        return out
    proba = softmax(np.where(finite[:, None, None], logits, 0.0), axis=-1)
    y = np.asarray(y_true).reshape(-1).astype("int64")
    y_pred = proba.argmax(axis=-1)
    confusion = np.bincount((np.arange(k)[:, None] * c * c + y[None, :] * c + y_pred).ravel(),
                            minlength=k * c * c).reshape(k, c, c)
    tp = np.diagonal(confusion, axis1=1, axis2=2).astype("float64")
    support, predicted = confusion.sum(axis=2), confusion.sum(axis=1)
    per_class = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    present = support[0] > 0  # every member sees the same targets
    names = (only,) if only else CLASSIFICATION_METRICS
    values: dict[str, np.ndarray] = {}
    for name in names:
        if name == "accuracy":
            values[name] = tp.sum(axis=1) / n
        elif name == "balanced_accuracy":  # classes absent from y_true left out, as sklearn
            values[name] = per_class[:, present].mean(axis=1)
        elif name == "macro_f1":  # 2tp / (2tp + fp + fn), 0 where undefined (zero_division)
            denominator = support + predicted
            values[name] = np.divide(2 * tp, denominator, out=np.zeros_like(tp),
                                     where=denominator > 0).mean(axis=1)
        elif name == "log_loss":  # clipped at 1e-15 here, then at float64 eps by sklearn
            eps = np.finfo("float64").eps
            p = np.clip(np.clip(proba[:, np.arange(n), y], 1e-15, 1), eps, 1 - eps)
            values[name] = -np.log(p).mean(axis=1)
        elif name == "roc_auc":
            values[name] = _roc_auc_members(y, proba, present)
    for i in np.flatnonzero(finite):
        member: dict[str, Any] = {name: float(v[i]) for name, v in values.items()}
        if recall:
            member["recall_per_class"] = [float(r) for r in per_class[i]]
        out[i] = member
    return out


def _roc_auc_members(y: np.ndarray, proba: np.ndarray, present: np.ndarray) -> np.ndarray:
    """One-vs-rest macro ROC AUC of each member (binary: the positive class's); NaN where a
    class has no sample or every sample (scikit-learn raises, :func:`classification` says
    NaN)."""
    from scipy.stats import rankdata

    k, n, c = proba.shape
    if not present.all() or present.sum() < 2:
        return np.full(k, math.nan)
    ranks = rankdata(proba, axis=1)  # each member's and class's average ranks over samples
    areas = []
    for col in ([1] if c == 2 else range(c)):
        positive = y == col
        n_pos = int(positive.sum())
        areas.append((ranks[:, positive, col].sum(axis=1) - n_pos * (n_pos + 1) / 2)
                     / (n_pos * (n - n_pos)))
    return np.mean(areas, axis=0)


def regression(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Targets and predictions in the original units."""
    from sklearn import metrics as skm

    y_pred = np.asarray(y_pred, dtype="float64").reshape(-1)
    if not np.all(np.isfinite(y_pred)):
        raise FloatingPointError("the model's outputs are not finite")
    y_true = np.asarray(y_true, dtype="float64").reshape(-1)
    with _checked_inputs():
        return {"mae": float(skm.mean_absolute_error(y_true, y_pred)),
                "rmse": float(math.sqrt(skm.mean_squared_error(y_true, y_pred))),
                "r2": float(skm.r2_score(y_true, y_pred))}


def _finite(out: np.ndarray) -> np.ndarray:
    out = np.asarray(out, dtype="float64")
    if not np.all(np.isfinite(out)):
        raise FloatingPointError("the model's outputs are not finite")
    return out


MULTILABEL_METRICS = ("macro_f1", "micro_f1", "mean_average_precision")
EMBEDDING_METRICS = ("knn_accuracy", "recall_at_1")
KNN_NEIGHBOURS = 5
# A count model's log-count is capped here before exp (losstune.losses._counts too): exp(80)
# ~ 5.5e34 stays finite in float32, so a diverging model scores huge, not inf.
MAX_LOG_COUNT = 80.0


def expected_counts(log_counts: np.ndarray) -> np.ndarray:
    """A count model's expected counts exp(η), η capped at MAX_LOG_COUNT."""
    return np.exp(np.minimum(np.asarray(log_counts, dtype="float64"), MAX_LOG_COUNT))


def _knn_accuracy(gallery: np.ndarray, y_gallery: np.ndarray, points: np.ndarray,
                  y: np.ndarray) -> float:
    """The share of ``points`` whose KNN_NEIGHBOURS nearest gallery points vote their class
    (scikit-learn's KNeighborsClassifier)."""
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=KNN_NEIGHBOURS).fit(gallery, y_gallery).score(
        points, y)


def autoencoder(x: np.ndarray, logits: np.ndarray, y: np.ndarray, code: np.ndarray,
                y_gallery: np.ndarray, gallery_code: np.ndarray,
                only: str | None = None) -> dict[str, float]:
    """``reconstruction_mse``: the mean squared error of the reconstruction sigmoid(logits)
    against the clean inputs (``mean_squared_error``); ``latent_knn_accuracy``: the vote of the
    5 nearest training codes on each code's class (``KNeighborsClassifier``)."""
    from scipy.special import expit
    from sklearn.metrics import mean_squared_error

    compute = {
        "reconstruction_mse": lambda: mean_squared_error(x, expit(_finite(logits))),
        "latent_knn_accuracy": lambda: _knn_accuracy(_finite(gallery_code), y_gallery,
                                                     _finite(code), y),
    }
    with _checked_inputs():
        return {name: float(compute[name]())
                for name in ((only,) if only else ("reconstruction_mse", "latent_knn_accuracy"))}


def embedding(y: np.ndarray, emb: np.ndarray, y_gallery: np.ndarray, gallery: np.ndarray,
              only: str | None = None) -> dict[str, float]:
    """How well a split's embeddings find their class among the training embeddings (the
    gallery), both L2-normalised as the losses see them: ``knn_accuracy``, the vote of the
    5 nearest training embeddings (``KNeighborsClassifier``), and ``recall_at_1``, whether the
    nearest one has the sample's class (Recall@1 of the retrieval literature)."""
    from sklearn.neighbors import NearestNeighbors
    from sklearn.preprocessing import normalize

    emb, gallery = normalize(_finite(emb)), normalize(_finite(gallery))
    y, y_gallery = np.asarray(y).reshape(-1), np.asarray(y_gallery).reshape(-1)
    compute = {
        "knn_accuracy": lambda: _knn_accuracy(gallery, y_gallery, emb, y),
        "recall_at_1": lambda: float(np.mean(y_gallery[NearestNeighbors(n_neighbors=1).fit(
            gallery).kneighbors(emb, return_distance=False)[:, 0]] == y)),
    }
    with _checked_inputs():
        return {name: float(compute[name]()) for name in ((only,) if only else EMBEDDING_METRICS)}


def multilabel(y_true: np.ndarray, logits: np.ndarray, only: str | None = None,
               per_label: bool = False) -> dict[str, Any]:
    """F1 at a 0.5 threshold (macro and micro over labels) and the mean over labels of
    ``average_precision_score`` (macro); ``per_label``: also each label's F1 and AP. A label
    without positives in ``y_true`` has no AP: it is left out of the mean (NaN per label)."""
    from scipy.special import expit
    from sklearn import metrics as skm

    proba = expit(_finite(logits))
    y_pred = (proba >= 0.5).astype("int64")
    present = y_true.sum(axis=0) > 0
    ap: list[np.ndarray] = []  # computed once, when first asked for

    def ap_per_label() -> np.ndarray:
        if not ap:
            ap.append(np.full(y_true.shape[1], math.nan))
            if present.any():
                ap[0][present] = skm.average_precision_score(
                    y_true[:, present], proba[:, present], average=None)
        return ap[0]

    compute = {
        "macro_f1": lambda: skm.f1_score(y_true, y_pred, average="macro", zero_division=0),
        "micro_f1": lambda: skm.f1_score(y_true, y_pred, average="micro", zero_division=0),
        "mean_average_precision": lambda: float(np.nanmean(ap_per_label()))
        if present.any() else math.nan,
    }
    with _checked_inputs():
        out: dict[str, Any] = {name: float(compute[name]())
                               for name in ((only,) if only else MULTILABEL_METRICS)}
        if per_label and not only:
            out[F1_PER_LABEL_NAME] = [float(v) for v in skm.f1_score(
                y_true, y_pred, average=None, zero_division=0)]
            out[AP_PER_LABEL_NAME] = [float(v) for v in ap_per_label()]
    return out


def counts(y_true: np.ndarray, log_counts: np.ndarray) -> dict[str, float]:
    """Mean Poisson deviance, MAE and RMSE of the expected counts exp(η) against the counts."""
    from sklearn import metrics as skm

    mu = expected_counts(_finite(log_counts).reshape(-1))
    if not np.all(mu > 0):  # exp underflowed: the deviance is undefined, the model diverged
        raise FloatingPointError("the model's expected counts underflowed to 0")
    y = np.asarray(y_true, dtype="float64").reshape(-1)
    with _checked_inputs():
        return {"poisson_deviance": float(skm.mean_poisson_deviance(y, mu)),
                "mae": float(skm.mean_absolute_error(y, mu)),
                "rmse": float(math.sqrt(skm.mean_squared_error(y, mu)))}


# ------------------------------------------------------------------ generated samples
# Written by hand: scikit-learn and SciPy have no sample-quality metrics of generative models;
# each is the cited paper's definition, checked against a brute-force reference in
# tests/test_gan.py.
def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017's
    FID in any features): ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½). Tr((Σ₁Σ₂)^½) is the sum of
    the square roots of the eigenvalues of Σ₁Σ₂ (real and >= 0 for covariances, up to
    rounding, which is clipped), the same number as ``scipy.linalg.sqrtm``'s trace without
    its complex round-off."""
    real, fake = np.asarray(real, "float64"), np.asarray(fake, "float64")
    mu = real.mean(axis=0) - fake.mean(axis=0)
    s1, s2 = np.atleast_2d(np.cov(real, rowvar=False)), np.atleast_2d(np.cov(fake, rowvar=False))
    eig = np.linalg.eigvals(s1 @ s2)
    covmean_trace = float(np.sum(np.sqrt(np.clip(eig.real, 0.0, None))))
    return float(mu @ mu + np.trace(s1) + np.trace(s2) - 2.0 * covmean_trace)


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, subsets: int = 10,
                              subset_size: int = 1000, seed: int = 0) -> float:
    """KID (Bińkowski et al. 2018): the unbiased estimate of the squared MMD with the cubic
    polynomial kernel k(x, y) = (x·y / d + 1)³, averaged over ``subsets`` random subsets of
    ``subset_size`` samples of each set (drawn without replacement; all of a smaller set).
    Unbiased: the kernel's diagonal is left out of the within-set means, so its expectation is
    0 when both sets come from one distribution, whatever their sizes."""
    real, fake = np.asarray(real, "float64"), np.asarray(fake, "float64")
    d = real.shape[1]
    m = min(subset_size, len(real), len(fake))
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx, kyy, kxy = ((a @ b.T / d + 1.0) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        estimates.append(within - 2.0 * kxy.mean())
    return float(np.mean(estimates))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the
    union of balls around its samples reaching their k-th nearest neighbour in the same set;
    precision is the share of generated samples inside the real manifold, recall the share of
    real samples inside the generated one. Distances by scikit-learn's NearestNeighbors."""
    from sklearn.metrics import pairwise_distances
    from sklearn.neighbors import NearestNeighbors

    real, fake = np.asarray(real, "float64"), np.asarray(fake, "float64")

    def radii(a: np.ndarray) -> np.ndarray:  # the k-th neighbour other than the sample itself
        return NearestNeighbors(n_neighbors=k + 1).fit(a).kneighbors(a)[0][:, k]

    def inside(points: np.ndarray, centres: np.ndarray, r: np.ndarray) -> float:
        return float(np.mean((pairwise_distances(points, centres) <= r[None, :]).any(axis=1)))

    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


def class_coverage(predicted: np.ndarray, data_counts: np.ndarray) -> tuple[float, float]:
    """How generated samples spread over the data's classes, as a classifier trained on the
    data labels them: the share of classes found at least once, and the KL divergence
    KL(generated ‖ data) of the class histograms (``scipy.stats.entropy``; 0 when they match,
    finite because every class of the data has samples)."""
    from scipy.stats import entropy

    counts = np.bincount(np.asarray(predicted, "int64"), minlength=len(data_counts))
    return (float(np.mean(counts > 0)),
            float(entropy(counts / counts.sum(), np.asarray(data_counts) / np.sum(data_counts))))


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004) of two images (H, W, C) in [0, 1]: the mean
    over pixels and channels of the SSIM map with a Gaussian window (σ = 1.5, truncated at
    3.5 σ), K1 = 0.01, K2 = 0.03, population statistics: scikit-image's
    ``structural_similarity(a, b, channel_axis=-1, data_range=1, gaussian_weights=True,
    use_sample_covariance=False)``, which the tests check it against. Written here with
    scipy.ndimage so that scikit-image is a test dependency only."""
    from scipy.ndimage import gaussian_filter

    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return gaussian_filter(x, sigma=sigma, truncate=3.5, mode="reflect")

    scores = []
    pad = int(3.5 * sigma + 0.5)
    for ch in range(a.shape[-1]):
        x, y = a[..., ch], b[..., ch]
        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        scores.append(s[pad:-pad, pad:-pad].mean())  # as scikit-image: the window's margin out
    return float(np.mean(scores))


def gram_style_distance(features: list[np.ndarray], targets: list[np.ndarray]) -> float:
    """The mean over layers of ¼ mean((G − A)²), G and A the Gram matrices FᵀF/M of the
    image's and the style's features (M positions by N channels) at each layer."""
    out = []
    for f, s in zip(features, targets):
        f = np.asarray(f, "float64").reshape(-1, f.shape[-1])
        s = np.asarray(s, "float64").reshape(-1, s.shape[-1])
        out.append(0.25 * np.mean(np.square(f.T @ f / len(f) - s.T @ s / len(s))))
    return float(np.mean(out))
