"""Datasets: offline loaders, training-only transforms, deterministic stratified splits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from losstune import data
from losstune.errors import DataError
from losstune.studyfile import DatasetSpec


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


@pytest.mark.parametrize("image", [True, False])
def test_user_images_load_as_the_bundled_digits_do(tmp_path, image):
    """The digits written to an npz file as (samples, 8, 8) images, and to a csv file of 64
    pixel columns with image_shape [8, 8], give the splits the bundled digits give: the same
    rows, the same scaling, the same image shape."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    np.savez(tmp_path / "d.npz", x=bunch.images, y=bunch.target)
    header = ",".join(f"p{i}" for i in range(64)) + ",label\n"
    (tmp_path / "d.csv").write_text(header + "".join(
        ",".join(f"{v:g}" for v in row) + f",{t}\n" for row, t in zip(bunch.data, bunch.target)))
    want = data.load(DatasetSpec(name="digits", image=image), "gan", seed=3)
    for spec in (DatasetSpec(name="npz", path=str(tmp_path / "d.npz"), target="y", image=image),
                 DatasetSpec(name="csv", path=str(tmp_path / "d.csv"), target="label",
                             image=image, image_shape=(8, 8))):
        got = data.load(spec, "gan", seed=3)
        assert got.image_shape == want.image_shape == (8, 8)
        for name in ("x_train", "x_val", "x_test", "y_train", "y_test"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
        assert got.input_shape == ((8, 8, 1) if image else (64,))


def test_colour_images_keep_their_channels(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "c.npz", x=rng.integers(0, 256, (60, 6, 5, 3)), y=np.arange(60) % 3)
    spec = DatasetSpec(name="npz", path=str(tmp_path / "c.npz"), target="y", image=True)
    s = data.load(spec, "gan", seed=0)
    assert s.input_shape == (6, 5, 3) and s.image_shape == (6, 5, 3)
    assert data.load(spec.model_copy(update={"image": False}), "gan", seed=0).input_shape == (90,)
    with pytest.raises(DataError, match=r"image_shape is \[5, 6, 3\], the file's images are "
                                        r"\[6, 5, 3\]"):
        data.load(spec.model_copy(update={"image_shape": (5, 6, 3)}), "gan", seed=0)


def test_image_shapes_are_asked_for_and_otherwise_only_inferred():
    """Without dataset.image or image_shape, an npz file's arrays load flat as before (several
    arrays, one of many dimensions); one (samples, h, w[, 1 or 3]) array is drawn as images.
    Asked for, images have 1 or 3 channels."""
    spec = DatasetSpec(name="npz", path="x.npz", target="y")
    assert data.image_shape(spec, 67, [(8, 8), (3,)], "f") == ()
    assert data.image_shape(spec, 120, [(2, 3, 4, 5)], "f") == ()
    assert data.image_shape(spec, 64, [(8, 8)], "f") == (8, 8, 1)
    assert data.image_shape(spec, 128, [(4, 8, 4)], "f") == ()
    with pytest.raises(DataError, match="images have 1 channel .grey. or 3 .colour., got 4"):
        data.image_shape(spec.model_copy(update={"image": True}), 128, [(4, 8, 4)], "f")


def _csv(tmp_path, text, **kw):
    path = tmp_path / "d.csv"
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
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
    ("a,b,y\n1,2,0\n3,1\n", "y", "binary", "row 3 has 2 fields, the header has 3"),
    ("a,b,y\n1,2,0\n3,1,1,9\n", "y", "binary", "row 3 has 4 fields, the header has 3"),
    ("a,y\n1,0\ninf,1\n", "y", "binary", "feature column 'a' is not finite (row 3: 'inf')"),
    ("a,y\n1,0\n-1e999,1\n", "y", "binary", "feature column 'a' is not finite"),
    ("a,y\n1,0\n2,inf\n3,1\n", "y", "regression", "the target has NaN or infinite values in 1"),
    ("a,y\n1,0\n2,\n", "y", "binary", "target column 'y' is empty (row 3)"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "y", "binary", "not a UTF-8 text CSV file"),
    ("", "y", "binary", "no header line"),
    ("a,y\n", "y", "binary", "no data rows"),
    ("a,a,y\n1,2,0\n", "y", "binary", "column 'a' appears 2 times in the header"),
    ("y\n0\n1\n", "y", "binary", "no feature columns besides the target 'y'"),
    ("a,y\n1,0\n" + "1" * 200_000 + ",1\n", "y", "binary",
     "not a valid CSV file (line 3): field larger than field limit"),
    ("a,y\n" + "".join(f"{1e300 if i == 3 else i},{i % 2}\n" for i in range(40)), "y", "binary",
     "features too large to scale"),
])
def test_csv_errors(tmp_path, text, target, task, fragment):
    spec = _csv(tmp_path, text, target=target)
    with pytest.raises(DataError) as info:
        data.load(spec, task, seed=0)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "d.csv"))  # names the file


def test_csv_header_check_reads_only_the_header(tmp_path):
    """validate's check: the target and features named in the header; the rows unread."""
    spec = _csv(tmp_path, "a,b,y\n1,2\nnot,even,csv,rows\n", target="y", features=("a", "b"))
    data.check_columns(spec)  # the ragged rows are search's to find
    with pytest.raises(DataError, match="row 2 has 2 fields, the header has 3"):
        data.load(spec, "binary", seed=0)
    bad = _csv(tmp_path, "a,b,y\n1,2,0\n", target="y", features=("a", "c"))
    with pytest.raises(DataError, match=r"d.csv: dataset.features\[1\]: column 'c' not found; "
                                        "columns: a, b, y"):
        data.check_columns(bad)
    data.check_columns(DatasetSpec(name="digits"))  # built in: nothing to read


def test_csv_with_byte_order_mark_and_spaces_in_the_header(tmp_path):
    rows = "".join(f"{i % 7}, {i % 3},{'ab'[i % 2]}\n" for i in range(40))
    spec = _csv(tmp_path, "\ufeffa, b ,y\n" + rows, target="y", features=("a", "b"))
    data.check_columns(spec)
    assert data.load(spec, "binary", seed=0).input_shape == (2,)


def test_unreadable_data_file_is_a_data_error(tmp_path):
    """chmod 000 where it stops the reader; as root (which it does not stop), /proc/self/mem,
    a regular file no process can read from its start (EIO)."""
    path = tmp_path / "d.csv"
    path.write_text("a,y\n1,0\n")
    path.chmod(0)
    if os.access(path, os.R_OK):
        path = Path("/proc/self/mem")
        if not path.is_file():
            pytest.skip("running as root and no /proc/self/mem: no file root cannot read")
    for name in ("csv", "npz"):
        spec = DatasetSpec(name=name, path=str(path), target="y")
        for check in (data.check_columns, lambda s: data.load(s, "binary", seed=0)):
            with pytest.raises(DataError, match=f"^{path}: cannot read the data file"):
                check(spec)


def test_a_folder_is_not_a_data_file(tmp_path):
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(DataError, match="d.csv: a folder, not a csv file"):
        data.check_columns(DatasetSpec(name="csv", path=str(tmp_path / "d.csv"), target="y"))


def test_npz_user_data(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.normal(size=(80, 3)), y=rng.integers(0, 3, size=80))
    s = data.load(DatasetSpec(name="npz", path=str(path), target="y"), "multiclass", seed=0)
    assert s.num_classes == 3
    with pytest.raises(DataError, match="array 'label' not found; arrays: x, y"):
        data.load(DatasetSpec(name="npz", path=str(path), target="label"), "multiclass", seed=0)


def _npz(tmp_path, **arrays):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return path


X, Y = np.ones((40, 2)), np.arange(40) % 2


@pytest.mark.parametrize("arrays, features, fragment", [
    ({"x": np.array([{"a": 1}, None] * 20, dtype=object), "y": Y}, None,
     "array 'x' holds Python objects (dtype=object)"),
    ({"x": X, "y": np.array(["a", None] * 20, dtype=object)}, None,
     "array 'y' holds Python objects"),
    ({"x": np.float64(3.0), "y": Y}, None, "array 'x' is a single value (shape ())"),
    ({"x": X, "y": np.int64(1)}, None, "array 'y' is a single value"),
    ({"x": X[:30], "y": Y}, None, "feature array 'x' has 30 rows, target 'y' has 40"),
    ({"x": np.where(np.arange(80).reshape(40, 2) == 5, np.inf, 1.0), "y": Y}, None,
     "feature array 'x' has infinite values in 1 row(s) (first: index 2)"),
    ({"x": X + 1j, "y": Y}, None, "feature array 'x' must be numeric"),
    ({"x": X.astype(str), "y": Y}, None, "feature array 'x' must be numeric"),
    ({"x": X, "y": np.ones((40, 3))}, None, "the target has 3 columns; a binary task has one"),
    ({"x": X, "y": np.where(Y == 1, np.nan, 0.0)}, None,
     "the target has NaN or infinite values in 20 row(s)"),
    ({"x": X, "y": Y}, ("x", "z"), "dataset.features[1]: array 'z' not found; arrays: x, y"),
    ({"features": X, "y": Y}, None, "dataset.features: array 'x' not found (the features array "
                                    "when features is not set); arrays: features, y"),
    ({"x": X, "label": Y}, None, "dataset.target: array 'y' not found; arrays: x, label"),
    ({"x": np.ones((40, 0)), "y": Y}, None, "feature array 'x' has no values (shape (40, 0))"),
    ({"x": np.ones((0, 2)), "y": Y[:0]}, None, "no data rows"),
])
def test_npz_errors(tmp_path, arrays, features, fragment):
    path = _npz(tmp_path, **arrays)
    spec = DatasetSpec(name="npz", path=str(path), target="y", features=features)
    with pytest.raises(DataError) as info:
        data.load(spec, "binary", seed=0)
    assert str(info.value).startswith(f"{path}: ") and fragment in str(info.value), info.value
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content, fragment", [
    (bytes(range(256)) * 4, "not a readable NPZ file (neither an NPZ archive nor a NumPy array)"),
    (b"PK\x03\x04" + bytes(100), "not a readable NPZ file"),
    (None, "a single NumPy array (.npy), not an NPZ archive"),
])
def test_npz_files_that_are_not_archives(tmp_path, content, fragment):
    path = tmp_path / "d.npz"
    if content is None:
        with path.open("wb") as fh:
            np.save(fh, X)
    else:
        path.write_bytes(content)
    spec = DatasetSpec(name="npz", path=str(path), target="y")
    for check in (data.check_columns, lambda s: data.load(s, "binary", seed=0)):
        with pytest.raises(DataError) as info:
            check(spec)
        assert str(info.value).startswith(f"{path}: ") and fragment in str(info.value)
        assert "allow_pickle" not in str(info.value)  # never advise loading pickles


def test_npz_check_lists_names_without_loading_arrays(tmp_path):
    """validate's check reads the archive's names only: an object array passes it (loading it
    would need pickle) and fails the full load."""
    path = _npz(tmp_path, x=np.array([{"a": 1}] * 40, dtype=object), y=Y)
    spec = DatasetSpec(name="npz", path=str(path), target="y")
    data.check_columns(spec)
    with pytest.raises(DataError, match="holds Python objects"):
        data.load(spec, "binary", seed=0)
    with pytest.raises(DataError, match="array 'label' not found"):
        data.check_columns(DatasetSpec(name="npz", path=str(path), target="label"))


def test_the_data_line_gives_the_training_size_after_the_long_tail():
    """It said "106 train" for wine with a long tail that left 31 samples to train on."""
    from losstune import data, studyfile as spec_mod
    from tests.conftest import TINY, merge

    spec = spec_mod.parse(merge(TINY, {"dataset": {"long_tail": 1e9}}))
    splits = data.load(spec.dataset, spec.task, seed=3, base_dir=".")
    assert splits.description.startswith(f"wine: {len(splits.y_train)} train / ")
    assert len(splits.y_train) == 31
