"""Datasets: offline loaders, training-only transforms, deterministic stratified splits."""

from __future__ import annotations

import numpy as np
import pytest

from losstune import data
from losstune.errors import DataError
from losstune.spec import DatasetSpec


def load(task="multiclass", seed=0, **kw):
    return data.load(DatasetSpec(**kw), task, seed=seed)


def test_splits_are_deterministic_stratified_and_disjoint():
    a, b = load(name="digits", seed=4), load(name="digits", seed=4)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    c = load(name="digits", seed=5)
    assert not np.array_equal(a.y_train, c.y_train)
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 1797
    # Stratified: every class about 10% of each split.
    for y in (a.y_train, a.y_val, a.y_test):
        share = np.bincount(y, minlength=10) / len(y)
        assert share.min() > 0.08 and share.max() < 0.12


def test_scaling_is_fitted_on_the_training_split_only():
    s = load(name="wine")
    assert np.allclose(s.x_train.mean(0), 0, atol=1e-5)
    assert np.allclose(s.x_train.std(0), 1, atol=1e-3)
    assert not np.allclose(s.x_val.mean(0), 0, atol=1e-3)  # would be 0 if fitted on val too


def test_long_tail_follows_cui_profile_on_train_only():
    s = load(name="digits", long_tail=10.0)
    counts = np.bincount(s.y_train, minlength=10)
    n_max = counts[0]
    expected = [round(n_max * 10 ** (-i / 9)) for i in range(10)]
    assert counts.tolist() == expected
    assert counts[0] / counts[-1] == pytest.approx(10, rel=0.1)
    val = np.bincount(s.y_val, minlength=10)
    assert val.max() - val.min() <= 2  # validation stays balanced
    assert s.class_counts == counts.tolist()


def test_label_noise_flips_the_asked_fraction_of_training_labels():
    clean = load(name="digits", seed=2)
    noisy = load(name="digits", seed=2, label_noise=0.2)
    flipped = np.mean(clean.y_train != noisy.y_train)
    assert flipped == pytest.approx(0.2, abs=0.005)
    assert np.array_equal(clean.y_val, noisy.y_val)


def test_outliers_move_training_targets_only_and_targets_are_scaled():
    clean = load("regression", name="diabetes", seed=1)
    dirty = load("regression", name="diabetes", seed=1, outliers=0.1, outlier_scale=6.0)
    raw_train_clean = clean.y_train * clean.y_scale + clean.y_center
    raw_train_dirty = dirty.y_train * dirty.y_scale + dirty.y_center
    moved = np.abs(raw_train_dirty - raw_train_clean) > 1
    assert moved.mean() == pytest.approx(0.1, abs=0.01)
    assert np.allclose(clean.y_val * clean.y_scale + clean.y_center,
                       dirty.y_val * dirty.y_scale + dirty.y_center, atol=1e-3)
    assert np.median(dirty.y_train) == pytest.approx(0, abs=1e-5)


@pytest.mark.parametrize("seed", [0, 3])
def test_target_scale_is_robust_to_injected_outliers(seed):
    # Huber's δ is in units of y_scale: 15 % of training targets moved by ±10 sd must not
    # stretch that unit (the plain std grows ~4× here, making δ = 1 nearly MSE; the plain IQR
    # still grows ~1.2×).
    from losstune.data import robust_scale

    clean = load("regression", name="diabetes", seed=seed)
    dirty = load("regression", name="diabetes", seed=seed, outliers=0.15, outlier_scale=10.0)
    # Same seed, same split: the clean run's training targets are the dirty run's before outliers.
    raw_clean = clean.y_train.astype("float64") * clean.y_scale + clean.y_center
    assert dirty.y_scale == pytest.approx(robust_scale(raw_clean), rel=0.10)
    assert clean.y_scale == pytest.approx(robust_scale(raw_clean), rel=1e-4)


def test_digits_as_images():
    s = load(name="digits", image=True)
    assert s.input_shape == (8, 8, 1)


def _csv(tmp_path, text, **kw):
    path = tmp_path / "d.csv"
    path.write_text(text)
    return DatasetSpec(name="csv", path=str(path), **kw)


def test_csv_user_data(tmp_path):
    rows = "\n".join(f"{i % 7},{(i * 3) % 5},{'ab'[i % 2]}" for i in range(60))
    spec = _csv(tmp_path, "f1,f2,label\n" + rows + "\n", target="label")
    s = data.load(spec, "binary", seed=0)
    assert s.num_classes == 2 and s.class_names == ["a", "b"] and s.input_shape == (2,)


@pytest.mark.parametrize("text, target, task, fragment", [
    ("a,b\n1,2\n3,4\n", "y", "binary", "column 'y' not found; columns: a, b"),
    ("a,y\n1,0\nx,1\n", "y", "binary", "feature column 'a' is not numeric (row 3: 'x')"),
    ("a,y\n1,0\n,1\n", "y", "binary", "1 row(s) have missing or NaN features"),
    ("a,y\n1,0\n2,0\n3,0\n", "y", "binary", "the target has a single class ('0')"),
    ("a,y\n1,x\n2,y\n", "y", "regression", "regression target 'y' is not numeric"),
])
def test_csv_errors(tmp_path, text, target, task, fragment):
    with pytest.raises(DataError) as info:
        data.load(_csv(tmp_path, text, target=target), task, seed=0)
    assert fragment in str(info.value)


def test_npz_user_data(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.normal(size=(80, 3)), y=rng.integers(0, 3, size=80))
    s = data.load(DatasetSpec(name="npz", path=str(path), target="y"), "multiclass", seed=0)
    assert s.num_classes == 3
    with pytest.raises(DataError, match="array 'label' not found; arrays: x, y"):
        data.load(DatasetSpec(name="npz", path=str(path), target="label"), "multiclass", seed=0)
