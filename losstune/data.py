"""Datasets, all offline: scikit-learn's bundled sets, or the user's CSV/NPZ files.

Splits are stratified (classification) and deterministic from the study seed. Everything that
makes loss design matter — a long tail, label noise, target outliers — is applied to the
training split only; validation and test stay clean and balanced, so they measure what the
user cares about. Feature scaling is fitted on the training split only; regression targets are
centred and scaled on the training split too — by the median and a robust standard deviation
(:func:`robust_scale`), so that injected outliers do not inflate the scale and Huber's δ is in robust
standard deviations of the training targets — and metrics are computed back in the original units.

Layer: domain.
"""

from __future__ import annotations

import csv
import math
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from losstune import tasks
from losstune.tasks import a_task
from losstune.errors import DataError
from losstune.studyfile import DatasetSpec


@dataclass
class Splits:
    """Train/validation/test arrays, ready for Keras (float32 features, int or float targets)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str
    num_classes: int = 0
    class_names: list[str] = field(default_factory=list)
    # Regression targets are robustly scaled: original units = y_scale * y + y_center, with the
    # median as centre and a robust standard deviation (:func:`robust_scale`) as scale.
    y_center: float = 0.0
    y_scale: float = 1.0
    description: str = ""
    # An autoencoder's code width (model.embedding_dim): its outputs after the reconstruction.
    latent_dim: int = 0
    # How one sample is drawn as a picture (digits: 8 x 8; (h, w, 3) for colour), flat or
    # not; () for other data.
    image_shape: tuple[int, ...] = ()

    @property
    def class_counts(self) -> list[int]:
        """Training samples per class; for labels, positives per label; else none."""
        targets = tasks.TASKS[self.task].targets
        if targets == "labels":
            return np.asarray(self.y_train).sum(axis=0).astype(int).tolist()
        if targets != "classes":
            return []
        return np.bincount(self.y_train, minlength=self.num_classes).tolist()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def val_inputs(self) -> np.ndarray:
        """What the model is run on to score the validation split: its features, then (for
        an embedding or an autoencoder's code, whose validation samples are scored by their
        nearest training samples) the training split's."""
        return tasks.TASKS[self.task].scored_inputs(self, self.x_val, "val")

    @property
    def test_inputs(self) -> np.ndarray:
        return tasks.TASKS[self.task].scored_inputs(self, self.x_test, "test")


def data_file(spec: DatasetSpec, base_dir: Path | str = ".") -> Path:
    """The csv/npz file a dataset names (relative paths from the study file's folder)."""
    path = Path(spec.path)
    path = path if path.is_absolute() else Path(base_dir) / path
    if path.is_dir():
        raise DataError(f"{path}: a folder, not a {spec.name} file (dataset.path)")
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    return path


def check_columns(spec: DatasetSpec, base_dir: Path | str = ".") -> None:
    """Cheap, for ``losstune validate``: the CSV's header line, or the NPZ archive's list of
    arrays, has the target and the features the study names. Nothing else is read."""
    if spec.name not in ("csv", "npz"):
        return
    path = data_file(spec, base_dir)
    if spec.name == "csv":
        with _csv_errors(path), path.open(newline="", encoding="utf-8-sig") as fh:
            _csv_needed(path, spec, next(csv.reader(fh), None))
    else:
        with _open_npz(path) as archive:
            _npz_needed(path, spec, list(archive.files))


@contextmanager
def _csv_errors(path: Path) -> Iterator[None]:
    """Reading a CSV file: every way it can fail becomes one DataError naming the file."""
    try:
        yield
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a UTF-8 text CSV file ({err.reason})") from None
    except csv.Error as err:
        raise DataError(f"{path}: not a valid CSV file ({err})") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the data file ({err.strerror or err})") from None


def _csv_needed(path: Path, spec: DatasetSpec, header: list[str] | None) -> list[str]:
    """The feature columns to read; the header must have them and the target, once each."""
    if not header or not any(c.strip() for c in header):
        raise DataError(f"{path}: no header line (the first line names the columns)")
    columns = [c.strip() for c in header]
    targets = spec.targets
    needed = list(spec.features or [c for c in columns if c not in targets])
    keys = [(f"dataset.target[{i}]" if len(targets) > 1 else "dataset.target", t)
            for i, t in enumerate(targets)]
    keys += [(f"dataset.features[{i}]", c) for i, c in enumerate(spec.features or ())]
    for key, column in keys:
        if column not in columns:
            raise DataError(f"{path}: {key}: column {column!r} not found; columns: "
                            f"{', '.join(columns)}")
    for column in [*targets, *needed]:
        if columns.count(column) > 1:
            raise DataError(f"{path}: column {column!r} appears {columns.count(column)} times "
                            "in the header; column names must be unique")
    if not needed:
        raise DataError(f"{path}: no feature columns besides the target "
                        f"{', '.join(map(repr, targets))}")
    return needed


def _read_csv(path: Path, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    with _csv_errors(path), path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        needed = _csv_needed(path, spec, header)
        columns = [c.strip() for c in header or []]
        where = [columns.index(c) for c in needed]
        target = [columns.index(t) for t in spec.targets]
        rows: list[list[float]] = []
        labels: list[list[str]] = []
        try:
            for row in reader:
                if not row:  # a blank line
                    continue
                line = reader.line_num
                if len(row) != len(columns):
                    raise DataError(f"{path}: row {line} has {len(row)} fields, the header has "
                                    f"{len(columns)}")
                values = []
                for j, column in zip(where, needed):
                    text = row[j].strip()
                    try:
                        value = float(text) if text else math.nan
                    except ValueError:
                        raise DataError(f"{path}: feature column {column!r} is not numeric "
                                        f"(row {line}: {text!r})") from None
                    if math.isinf(value):
                        raise DataError(f"{path}: feature column {column!r} is not finite "
                                        f"(row {line}: {text!r}); clean it first")
                    values.append(value)
                label = [row[j].strip() for j in target]
                for column, text in zip(spec.targets, label):
                    if not text:
                        raise DataError(f"{path}: target column {column!r} is empty "
                                        f"(row {line})")
                rows.append(values)
                labels.append(label)
        except csv.Error as err:
            raise DataError(f"{path}: not a valid CSV file (line {reader.line_num}): "
                            f"{err}") from None
    if not rows:
        raise DataError(f"{path}: no data rows")
    y = np.array(labels, dtype=object)
    return np.array(rows, dtype="float64"), (y[:, 0] if y.shape[1] == 1 else y)


@contextmanager
def _open_npz(path: Path) -> Iterator[Any]:
    """An NPZ archive opened without pickle (no code runs); one DataError for anything else."""
    try:
        fh = path.open("rb")  # ours to close, whatever np.load makes of it
    except OSError as err:
        raise DataError(f"{path}: cannot read the data file ({err.strerror or err})") from None
    with fh:
        try:
            archive = np.load(fh, allow_pickle=False)
        except OSError as err:
            raise DataError(f"{path}: cannot read the data file ({err.strerror or err})") from None
        except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            # NumPy's own message for unknown content suggests allow_pickle: never here.
            reason = "neither an NPZ archive nor a NumPy array" if "pickle" in str(err) else err
            raise DataError(f"{path}: not a readable NPZ file ({reason})") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: a single NumPy array (.npy), not an NPZ archive of named "
                            "arrays (np.savez(path, x=features, y=target))")
        with archive:
            yield archive


def _npz_needed(path: Path, spec: DatasetSpec, names: list[str]) -> list[str]:
    features = list(spec.features or ("x",))
    keys = [("dataset.target", spec.target),
            *((f"dataset.features[{i}]" if spec.features else "dataset.features", f)
              for i, f in enumerate(features))]
    for key, name in keys:
        if name not in names:
            default = "" if spec.features or key == "dataset.target" else (
                " (the features array when features is not set)")
            raise DataError(f"{path}: {key}: array {name!r} not found{default}; arrays: "
                            f"{', '.join(names) or 'none'}")
    return features


def _npz_array(path: Path, archive: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(archive[name])
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise DataError(f"{path}: array {name!r} holds Python objects (dtype=object); save "
                            "numbers or strings (pickled data is not loaded)") from None
        raise DataError(f"{path}: array {name!r} cannot be read ({err})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"{path}: array {name!r} cannot be read ({err})") from None
    if array.ndim == 0:
        raise DataError(f"{path}: array {name!r} is a single value (shape ()); it needs one "
                        "entry per sample")
    return array


def _read_npz(path: Path, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray, list[tuple]]:
    with _open_npz(path) as archive:
        features = _npz_needed(path, spec, list(archive.files))
        y = _npz_array(path, archive, spec.target)
        parts = [_npz_array(path, archive, f) for f in features]
    if y.ndim > 2 or (y.ndim == 2 and y.shape[1] < 2):  # (n, labels): a multilabel target
        if y.shape[1:] != (1,) * (y.ndim - 1):
            raise DataError(f"{path}: target {spec.target!r} must hold one value per sample, "
                            f"or one column per label, got shape {y.shape}")
        y = y.reshape(len(y))
    if y.dtype.kind not in "biufUS":
        raise DataError(f"{path}: target {spec.target!r} must be numbers or strings, got "
                        f"dtype {y.dtype}")
    if not len(y):
        raise DataError(f"{path}: no data rows")
    for name, p in zip(features, parts):
        if p.dtype.kind not in "iuf":
            raise DataError(f"{path}: feature array {name!r} must be numeric (integers or "
                            f"floats), got dtype {p.dtype}")
        if len(p) != len(y):
            raise DataError(f"{path}: feature array {name!r} has {len(p)} rows, target "
                            f"{spec.target!r} has {len(y)}")
        if p.size == 0 and len(p):
            raise DataError(f"{path}: feature array {name!r} has no values (shape {p.shape})")
        infinite = np.isinf(p.reshape(len(p), -1)).any(axis=1)
        if infinite.any():
            raise DataError(f"{path}: feature array {name!r} has infinite values in "
                            f"{int(infinite.sum())} row(s) (first: index "
                            f"{int(np.argmax(infinite))}); clean them first")
    shapes = [tuple(p.shape[1:]) for p in parts]
    parts = [p.reshape(len(p), -1) for p in parts]
    return np.concatenate(parts, axis=1).astype("float64"), y, shapes


def _load_raw(spec: DatasetSpec, base_dir: Path
              ) -> tuple[np.ndarray, np.ndarray, list[str], tuple[int, ...]]:
    """Features (one flat row a sample), targets, class names, and one image's shape
    (height, width, channels), or () for data that are not images."""
    if spec.name in ("csv", "npz"):
        path = data_file(spec, base_dir)
        if spec.name == "csv":
            (x, y), shapes = _read_csv(path, spec), []
        else:
            x, y, shapes = _read_npz(path, spec)
        if np.isnan(x).any():
            bad = int(np.isnan(x).any(axis=1).sum())
            raise DataError(f"{path}: {bad} row(s) have missing or NaN features; clean them first")
        return x, y, [], image_shape(spec, x.shape[1], shapes, path)
    from sklearn import datasets

    if spec.name == "multilabel":
        return (*multilabel_set(), ())
    if spec.name == "counts":
        return (*count_set(), ())
    loader = {"digits": datasets.load_digits, "wine": datasets.load_wine,
              "breast_cancer": datasets.load_breast_cancer,
              "diabetes": datasets.load_diabetes}[spec.name]
    bunch = loader()
    names = [str(n) for n in getattr(bunch, "target_names", [])] if spec.name != "diabetes" else []
    return (bunch.data.astype("float64"), bunch.target, names,
            (8, 8, 1) if spec.name == "digits" else ())


def image_shape(spec: DatasetSpec, width: int, shapes: list[tuple], where: Any
                ) -> tuple[int, ...]:
    """One image's (height, width, channels) in a csv or npz file of ``width`` features a
    row: ``dataset.image_shape``, or else an npz file's one image array of shape (samples,
    height, width[, channels]); () when neither says the data are images. ``shapes``: the
    per-sample shape of each feature array (npz). A shape the data do not fit is refused."""
    declared = tuple(spec.image_shape or ())
    arrays = [s for s in shapes if len(s) >= 2] if spec.name == "npz" else []
    if not (declared or spec.image):  # images only if the study says so; else drawn as
        one = arrays[0] if len(arrays) == 1 == len(shapes) and len(arrays[0]) <= 3 else ()
        if one and one[2:] in ((), (1,), (3,)):  # images where the file's one array is
            return one if len(one) == 3 else (*one, 1)
        return ()
    if len(arrays) > 1 or (arrays and len(shapes) > 1):
        raise DataError(f"{where}: images of inconsistent shape: the feature arrays "
                        f"{', '.join(map(str, shapes))} hold more than one image array; give "
                        "one array of shape (samples, height, width[, channels])")
    found = arrays[0] if arrays else ()
    if len(found) > 3:
        raise DataError(f"{where}: images of inconsistent shape: an array of images is "
                        f"(samples, height, width[, channels]), got samples of shape {found}")
    if declared and found and found not in (declared, (*declared, 1)) \
            and (*found, 1) != declared:
        raise DataError(f"{where}: images of inconsistent shape: dataset.image_shape is "
                        f"{list(declared)}, the file's images are {list(found)}")
    shape = declared or found
    if not shape:
        return ()
    shape = shape if len(shape) == 3 else (*shape, 1)
    if shape[2] not in (1, 3):
        raise DataError(f"{where}: images have 1 channel (grey) or 3 (colour), got "
                        f"{shape[2]} in {list(shape)}")
    if math.prod(shape) != width:
        raise DataError(f"{where}: images of inconsistent shape: dataset.image_shape "
                        f"{list(shape)} needs {math.prod(shape)} values a sample, the file has "
                        f"{width}")
    return shape


def _encode_labels(y: np.ndarray, names: list[str], where: str) -> tuple[np.ndarray, list[str]]:
    classes, encoded = np.unique(y.astype(str) if y.dtype == object else y, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"{where}: the target has a single class ({str(classes[0])!r}); "
                        "classification needs at least two")
    if not names:
        names = [str(c) for c in classes]
    return encoded.astype("int64"), names


def long_tail_indices(y: np.ndarray, imbalance: float, rng: np.random.Generator) -> np.ndarray:
    """Cui et al.'s exponential profile: class i keeps n_max · IF^(−i/(C−1)) samples."""
    classes = np.unique(y)
    counts = np.bincount(y)
    n_max = counts[classes].min()  # the most frequent class after subsampling
    keep = []
    for rank, c in enumerate(classes):
        n = max(1, int(round(n_max * imbalance ** (-rank / max(len(classes) - 1, 1)))))
        idx = np.flatnonzero(y == c)
        keep.append(rng.choice(idx, size=min(n, len(idx)), replace=False))
    return np.sort(np.concatenate(keep))


def flip_labels(y: np.ndarray, fraction: float, num_classes: int,
                rng: np.random.Generator) -> np.ndarray:
    """Symmetric label noise: a ``fraction`` of labels replaced by a different random class."""
    y = y.copy()
    n = int(round(fraction * len(y)))
    idx = rng.choice(len(y), size=n, replace=False)
    shift = rng.integers(1, num_classes, size=n)
    y[idx] = (y[idx] + shift) % num_classes
    return y


def add_outliers(y: np.ndarray, fraction: float, scale: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Gross target outliers: a ``fraction`` of targets moved by ±``scale`` standard deviations."""
    y = y.astype("float64").copy()
    n = int(round(fraction * len(y)))
    idx = rng.choice(len(y), size=n, replace=False)
    y[idx] += rng.choice([-1.0, 1.0], size=n) * scale * y.std()
    return y


def load(spec: DatasetSpec, task: str, *, seed: int, base_dir: Path | str = ".") -> Splits:
    """Load, split, transform (training split only) and scale a study's dataset."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    own = (the_task := tasks.TASKS[task]).load_data(spec, Path(base_dir), seed)
    if own is not None:  # a task with data of its own kind (style transfer's two images)
        return own
    kind = the_task.targets
    where = data_file(spec, base_dir) if spec.name in ("csv", "npz") else spec.name
    x, y, names, shape = _load_raw(spec, Path(base_dir))
    if y.ndim == 2 and kind != "labels":
        raise DataError(f"{where}: the target has {y.shape[1]} columns; {a_task(task)} has one "
                        "(several label columns are for a multilabel task)")
    if kind == "values":
        try:
            y = y.astype("float64")
        except ValueError:
            raise DataError(f"{where}: regression target {spec.target!r} is not numeric") from None
        if not np.isfinite(y).all():
            raise DataError(f"{where}: the target has NaN or infinite values in "
                            f"{int((~np.isfinite(y)).sum())} row(s); clean them first")
    elif kind == "counts":
        y = as_counts(y, where)
    elif kind == "labels":
        y, names = as_labels(y, names or list(spec.targets if spec.name == "csv" else ()),
                             where)
    else:
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise DataError(f"{where}: the target has NaN or infinite values in "
                            f"{int((~np.isfinite(y)).sum())} row(s); clean them first")
        y, names = _encode_labels(np.asarray(y), names, where)
        check_classes(the_task, names, where)
    rng = np.random.default_rng(seed)
    classes = the_task.stratified
    stratify = y if classes else None
    if spec.max_samples and len(y) > spec.max_samples:
        keep, _ = train_test_split(np.arange(len(y)), train_size=spec.max_samples,
                                   random_state=seed, stratify=stratify)
        x, y = x[keep], y[keep]
        stratify = y if classes else None
    holdout = spec.validation + spec.test
    try:
        x_train, x_rest, y_train, y_rest = train_test_split(
            x, y, test_size=holdout, random_state=seed, stratify=stratify)
        x_val, x_test, y_val, y_test = train_test_split(  # dataset.test > 0 (the schema)
            x_rest, y_rest, test_size=spec.test / holdout, random_state=seed + 1,
            stratify=y_rest if classes else None)
    except ValueError as err:
        raise DataError(f"{where}: cannot split {len(y)} samples ({err})") from None

    notes: list[str] = []  # the sizes go first, once the training split is final
    num_classes = len(names) if kind in ("classes", "labels", "inputs") else 0
    if kind == "classes":
        if spec.long_tail > 1:
            keep = long_tail_indices(y_train, spec.long_tail, rng)
            x_train, y_train = x_train[keep], y_train[keep]
            notes.append(f"long tail (imbalance factor {spec.long_tail:g}): train counts "
                         f"{np.bincount(y_train, minlength=num_classes).tolist()}")
        if spec.label_noise:
            y_train = flip_labels(y_train, spec.label_noise, num_classes, rng)
            notes.append(f"{spec.label_noise:.0%} of training labels flipped")
    elif kind == "labels" and spec.long_tail > 1:
        keep = long_tail_label_rows(y_train, spec.long_tail, rng)
        x_train, y_train = x_train[keep], y_train[keep]
        notes.append(f"long tail (imbalance factor {spec.long_tail:g}): train positives per "
                     f"label {y_train.sum(axis=0).tolist()}")
    elif kind == "values" and spec.outliers:
        y_train = add_outliers(y_train, spec.outliers, spec.outlier_scale, rng)
        notes.append(f"{spec.outliers:.0%} of training targets moved by "
                     f"±{spec.outlier_scale:g} SD")
    if kind == "counts":
        y_train, y_val, y_test = (a.astype("float32") for a in (y_train, y_val, y_test))
    notes.insert(0, f"{spec.name}: {len(y_train)} train / {len(y_val)} validation / "
                    f"{len(y_test)} test")

    with np.errstate(over="ignore", invalid="ignore"):
        if the_task.feature_range:  # the range of the model's outputs (a sigmoid, a tanh)
            scaler = MinMaxScaler(feature_range=the_task.feature_range, clip=True).fit(x_train)
        else:
            scaler = StandardScaler().fit(x_train)
        x_train, x_val, x_test = (scaler.transform(a).astype("float32")
                                  for a in (x_train, x_val, x_test))
    if not all(np.isfinite(a).all() for a in (x_train, x_val, x_test)):
        raise DataError(f"{where}: features too large to scale (largest |value| "
                        f"{np.abs(x).max():g}); rescale them first")
    if spec.image:
        if not shape:  # the study file's rules require a shape for csv files
            raise DataError(f"{where}: dataset.image = true, but the file's features are flat: "
                            "give dataset.image_shape")
        x_train, x_val, x_test = (a.reshape(-1, *shape) for a in (x_train, x_val, x_test))
    splits = Splits(x_train, y_train, x_val, y_val, x_test, y_test, task,
                    num_classes=num_classes, class_names=names, description="; ".join(notes),
                    image_shape=shape[:2] if shape[2:] == (1,) else shape)
    if kind == "values":
        with np.errstate(over="ignore", invalid="ignore"):
            splits.y_center, scale = float(np.median(y_train)), robust_scale(y_train)
            splits.y_scale = scale
            for name in ("y_train", "y_val", "y_test"):
                setattr(splits, name, ((getattr(splits, name) - splits.y_center)
                                       / splits.y_scale).astype("float32"))
        if not (math.isfinite(splits.y_scale) and all(
                np.isfinite(getattr(splits, n)).all() for n in ("y_train", "y_val", "y_test"))):
            raise DataError(f"{where}: target values too large to scale (largest |value| "
                            f"{np.abs(y).max():g}); rescale them first")
    return splits


def check_classes(task: tasks.Task, names: list[str], where: Any) -> None:
    """A task of a fixed number of classes (binary: 2) gets that many."""
    if task.classes and len(names) != task.classes:
        raise DataError(f"{where}: task {task.name!r} needs exactly {task.classes} classes, "
                        f"found {len(names)}")


def pk_batches(labels: np.ndarray, batch_size: int, per_class: int, epochs: int,
               seed: int, multiple_of: int = 1) -> tuple[np.ndarray, int]:
    """The training order of an embedding task: every batch holds P = batch_size // per_class
    classes drawn at random and per_class samples of each (Hermans et al. 2017's P × K
    batches: every anchor has positives and negatives in its batch). Samples of a class are
    drawn without replacement while the class has enough, with replacement otherwise.
    Returns the indices for all ``epochs`` one after another and the batches per epoch, a
    multiple of ``multiple_of`` (fit reads them with ``steps_per_epoch``, which continues one
    iterator across epochs, ``multiple_of`` steps per compiled call)."""
    labels = np.asarray(labels).reshape(-1).astype("int64")
    classes = np.unique(labels)
    p = batch_size // per_class
    if p > len(classes):
        raise DataError(f"training.batch_size {batch_size} with samples_per_class {per_class} "
                        f"asks for {p} classes per batch; the training split has "
                        f"{len(classes)}")
    rng = np.random.default_rng(seed)
    members = {c: np.flatnonzero(labels == c) for c in classes}
    steps = max(1, len(labels) // (p * per_class))
    steps = max(multiple_of, steps // multiple_of * multiple_of)
    order = []
    for _ in range(epochs * steps):
        for c in rng.choice(classes, size=p, replace=False):
            pool = members[c]
            order.append(rng.choice(pool, size=per_class, replace=len(pool) < per_class))
    return np.concatenate(order), steps


def as_labels(y: np.ndarray, names: list[str], where: Any) -> tuple[np.ndarray, list[str]]:
    """A multilabel target: one 0/1 column per label (numbers, booleans or the strings "0",
    "1", "true", "false"), as int64, and the label names."""
    y = np.asarray(y)
    if y.ndim != 2 or y.shape[1] < 2:
        raise DataError(f"{where}: a multilabel task needs one 0/1 column per label, two or "
                        f"more; got a target of shape {y.shape}")
    if y.dtype.kind in "OUS":
        text = np.char.lower(np.char.strip(y.astype(str)))
        bad = ~np.isin(text, ("0", "1", "0.0", "1.0", "true", "false"))
        if bad.any():
            raise DataError(f"{where}: label values must be 0 or 1, got {str(text[bad][0])!r}")
        y = np.isin(text, ("1", "1.0", "true"))
    elif not np.isin(y, (0, 1)).all():
        bad = y[~np.isin(y, (0, 1))][0].item()
        raise DataError(f"{where}: label values must be 0 or 1, got {bad!r}")
    names = list(names) if len(names) == y.shape[1] else [f"label_{i}" for i in range(y.shape[1])]
    return y.astype("int64"), names


def as_counts(y: np.ndarray, where: Any) -> np.ndarray:
    """A count target: whole numbers >= 0, as float64."""
    try:
        y = np.asarray(y).astype("float64")
    except ValueError:
        raise DataError(f"{where}: a count target must be whole numbers >= 0; it is not "
                        "numeric") from None
    bad = ~(np.isfinite(y) & (y >= 0) & (y == np.round(y)))
    if bad.any():
        raise DataError(f"{where}: a count target must be whole numbers >= 0, got "
                        f"{y[bad][0]:g} (row {int(np.argmax(bad))})")
    return y


def long_tail_label_rows(y: np.ndarray, imbalance: float,
                         rng: np.random.Generator) -> np.ndarray:
    """The multilabel long tail: labels ranked by their positives, label r keeps a share
    IF^(−r/(L−1)) of them (Cui's profile); a row is kept with the smallest share of its
    positive labels, so the rarest label it carries decides. Rows without a label stay."""
    order = np.argsort(-y.sum(axis=0), kind="stable")
    share = np.empty(y.shape[1])
    share[order] = imbalance ** (-np.arange(y.shape[1]) / max(y.shape[1] - 1, 1))
    keep_p = np.where(y.any(axis=1), np.min(np.where(y > 0, share, 1.0), axis=1), 1.0)
    return np.flatnonzero(rng.random(len(y)) < keep_p)


def multilabel_set() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The built-in multilabel set: scikit-learn's ``make_multilabel_classification`` with a
    fixed seed: 2000 samples, 20 count features, 8 labels, about 2 per sample."""
    from sklearn.datasets import make_multilabel_classification

    x, y = make_multilabel_classification(n_samples=2000, n_features=20, n_classes=8,
                                          n_labels=2, allow_unlabeled=False, random_state=0)
    return x.astype("float64"), y.astype("int64"), [f"label_{i}" for i in range(y.shape[1])]


COUNT_RATE_SEED = 20261126  # the known rate model of the built-in count set


def count_set() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The built-in count set: diabetes's 10 features, each standardised, and a count drawn
    from a known Poisson rate model, log μ = 1 + x·w with w ~ N(0, 0.25²) per feature, both
    drawn with the fixed seed :data:`COUNT_RATE_SEED` (mean count about 3, up to about 20)."""
    from sklearn.datasets import load_diabetes

    x = load_diabetes().data.astype("float64")
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    rng = np.random.default_rng(COUNT_RATE_SEED)
    w = rng.normal(0.0, 0.25, size=x.shape[1])
    counts = rng.poisson(np.exp(1.0 + z @ w))
    return x, counts.astype("int64"), []


def robust_scale(y: np.ndarray, reject: float = 3.5) -> float:
    """A standard deviation that gross outliers do not move: the IQR scaled to a normal sd
    (``scipy.stats.iqr(scale="normal")``) after one rejection step.

    The plain IQR is not enough: 15 % of targets moved by ±10 sd shift the quartiles outwards and
    inflate it by about 20 % on diabetes. Dropping the points beyond ``reject`` robust sd of the
    median (Hampel's rejection rule) and taking the IQR again of the rest brings it within 4 %
    of the clean targets' scale (tests/test_data.py).
    """
    from scipy.stats import iqr

    y = np.asarray(y, dtype="float64").reshape(-1)
    center, scale = np.median(y), iqr(y, scale="normal")
    if scale > 0:
        kept = y[np.abs(y - center) <= reject * scale]
        scale = iqr(kept, scale="normal")
    if not scale > 0:
        # More than half the targets share one value: the IQR is 0; fall back to the std
        # (and to 1 for a constant target) rather than divide by zero.
        scale = float(y.std()) or 1.0
    return float(scale)


# ------------------------------------------------------------------------------ in-memory data
def as_array(data: Any, what: str) -> np.ndarray:
    """NumPy from NumPy, pandas, lists, checked once where arrays come in from Python: a
    rectangular array, no missing label, numbers for features (``what`` starting with "x").
    Each problem is a DataError naming the argument."""
    import pandas as pd

    if data is None:
        raise DataError(f"{what}: no data given")
    features = what.startswith("x")
    if hasattr(data, "to_numpy"):  # pandas DataFrame / Series
        if features:
            frame = data.to_frame() if hasattr(data, "to_frame") else data
            text = [str(c) for c, dtype in frame.dtypes.items()
                    if not (pd.api.types.is_numeric_dtype(dtype)
                            or pd.api.types.is_bool_dtype(dtype))]
            if text:
                raise DataError(f"{what}: column{'s' if len(text) > 1 else ''} "
                                f"{', '.join(text[:5])}{' …' if len(text) > 5 else ''} "
                                f"{'are' if len(text) > 1 else 'is'} not numeric (text, "
                                "categories or dates); encode "
                                f"{'them' if len(text) > 1 else 'it'} first (for example "
                                "sklearn.preprocessing.OneHotEncoder)")
            # nullable Int64 / boolean columns: numbers, their missing values NaN
            data = frame.to_numpy(dtype="float64", na_value=np.nan)
        else:
            data = data.to_numpy()
    try:
        array = np.asarray(data)
    except ValueError:  # NumPy refuses rows of different lengths
        raise DataError(f"{what}: rows of different lengths; give a rectangular array "
                        "(pad the rows, or use a fixed number of features)") from None
    if not features and array.dtype.kind in "Of":
        missing = np.flatnonzero(pd.isna(array.reshape(-1)))  # None, NaN, pd.NA
        if len(missing):
            raise DataError(f"{what}: {len(missing)} missing value{'s' if len(missing) > 1 else ''}"
                            f" (None or NaN), the first at position {missing[0]}; remove or "
                            "fill them")
    if features and array.dtype.kind not in "biuf":
        raise DataError(f"{what}: holds {array.dtype.name} values, not numbers; encode text "
                        "features first (for example sklearn.preprocessing.OneHotEncoder)")
    return array


def from_datasets(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) from a ``tf.data.Dataset`` or ``keras.utils.PyDataset`` yielding (x, y) batches.

    Trials reshuffle, re-split and re-batch the data themselves (per seed), so it is read into
    memory once: loss design is tuned on data that fits in memory.
    """
    xs, ys = [], []
    if hasattr(data, "as_numpy_iterator"):  # tf.data
        batches = data.as_numpy_iterator()
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):  # PyDataset, Sequence
        batches = (data[i] for i in range(len(data)))
    else:
        raise DataError(f"cannot read data of type {type(data).__name__}: give arrays, a pandas "
                        "frame, a tf.data.Dataset or a keras.utils.PyDataset of (x, y) batches")
    for batch in batches:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise DataError("a dataset must yield (x, y) batches")
        xs.append(np.asarray(batch[0]))
        ys.append(np.asarray(batch[1]))
        if ys[-1].ndim == 0:
            raise DataError("the dataset yields single samples, not batches: batch it first "
                            "(dataset.batch(256))")
    if not xs:
        raise DataError("the dataset yielded no batch")
    return np.concatenate(xs), np.concatenate(ys)


def infer_task(y: np.ndarray) -> str:
    """The task ``y`` implies: 0/1 columns whose rows do not all sum to 1 are labels
    (multilabel); one-hot rows, integer, string or boolean labels are classes (binary for two);
    floating-point numbers are a regression target (whole-number floats too: diabetes
    progression is one). Pass ``task=`` to say otherwise (``count`` is never inferred)."""
    if y.ndim == 2 and y.shape[1] > 1:
        multi_hot = np.isin(y, (0, 1)).all() and (y.sum(axis=1) != 1).any()
        return "multilabel" if multi_hot else "multiclass" if y.shape[1] > 2 else "binary"
    flat = y.reshape(-1)
    if flat.dtype.kind == "f":
        if not np.all(np.isfinite(flat)):
            raise DataError("y has NaN or infinite values")
        return "regression"
    return "binary" if len(np.unique(flat)) == 2 else "multiclass"


def labels_to_indices(y: np.ndarray, names: list[str] | None,
                      where: str) -> tuple[np.ndarray, list[str]]:
    """Integer, string or one-hot labels → class indices 0..C−1 and the class names."""
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot (or probabilities): the arg-max class
        names = names or [str(i) for i in range(y.shape[1])]
        return y.argmax(axis=1).astype("int64"), names
    flat = y.reshape(-1)
    values = [str(v) for v in flat.tolist()]
    if names is None:
        unique = np.unique(flat)
        names = [str(v) for v in unique.tolist()]
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({v for v in values if v not in index})
    if unknown:
        raise DataError(f"{where}: labels {', '.join(unknown[:5])} are not among the training "
                        f"labels ({', '.join(names[:10])})")
    return np.asarray([index[v] for v in values], dtype="int64"), names


def from_arrays(x: Any, y: Any, *, task: str, validation_data: Any = None,
                validation_split: float | None = 0.2, seed: int = 0) -> Splits:
    """Splits from in-memory data (the Python API). The features are used as given (no
    scaling: a notebook's data is usually prepared already); regression targets are scaled
    robustly, as for every study, so that Huber's δ means the same everywhere. Without
    ``validation_data``, a stratified ``validation_split`` of the training data is held out,
    drawn anew for every seed."""
    from sklearn.model_selection import train_test_split

    kind = tasks.TASKS[task].targets
    if y is None:
        x, y = from_datasets(x)
    x, y = as_array(x, "x").astype("float32"), as_array(y, "y")
    if len(x) != len(y):
        raise DataError(f"x has {len(x)} rows but y has {len(y)}")
    if not np.all(np.isfinite(x)):
        raise DataError("x has NaN or infinite values")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise DataError("validation_data must be a pair (x_val, y_val)")
        x_val = as_array(validation_data[0], "x_val").astype("float32")
        y_val = as_array(validation_data[1], "y_val")
        if len(x_val) != len(y_val) or not len(x_val):
            raise DataError(f"x_val has {len(x_val)} rows but y_val has {len(y_val)}")
        if not np.all(np.isfinite(x_val)):
            raise DataError("x_val has NaN or infinite values")
        if x_val.shape[1:] != x.shape[1:]:
            raise DataError(f"x_val rows have shape {x_val.shape[1:]}, x rows {x.shape[1:]}")
        x_train, y_train = x, y
    else:
        if not validation_split or not 0 < validation_split < 1:
            raise DataError(f"validation_split must lie in (0, 1), got {validation_split}")
        stratify = None
        if kind == "classes":
            stratify = y.argmax(axis=1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1)
        try:
            x_train, x_val, y_train, y_val = train_test_split(
                x, y, test_size=validation_split, random_state=seed, stratify=stratify)
        except ValueError as err:  # a class too small to stratify, a split with no rows
            raise DataError(f"validation_split={validation_split}: {err}") from None
    empty = np.empty((0, *x_train.shape[1:]), dtype="float32")
    if kind == "labels":
        y_train, names = as_labels(y_train, [], "y")
        y_val, _ = as_labels(y_val, names, "y_val")
        splits = Splits(x_train, y_train, x_val, y_val, empty, np.empty((0, len(names)), "int64"),
                        task, num_classes=len(names), class_names=names)
    elif kind == "counts":
        splits = Splits(x_train, as_counts(y_train, "y").astype("float32"), x_val,
                        as_counts(y_val, "y_val").astype("float32"), empty,
                        np.empty(0, "float32"), task)
    elif kind == "values":
        try:
            y_train = y_train.astype("float64").reshape(-1)
            y_val = y_val.astype("float64").reshape(-1)
        except ValueError:
            raise DataError("regression targets must be numbers") from None
        if not (np.all(np.isfinite(y_train)) and np.all(np.isfinite(y_val))):
            raise DataError("y has NaN or infinite values")
        center, scale = float(np.median(y_train)), robust_scale(y_train)
        splits = Splits(x_train, ((y_train - center) / scale).astype("float32"), x_val,
                        ((y_val - center) / scale).astype("float32"), empty,
                        np.empty(0, "float32"), task, y_center=center, y_scale=scale)
    else:
        y_train, names = labels_to_indices(y_train, None, "y")
        y_val, _ = labels_to_indices(y_val, names, "y_val")
        if len(names) < 2:
            raise DataError(f"y has a single class ({names[0]}); a classifier needs two or more")
        check_classes(tasks.TASKS[task], names, "y")
        splits = Splits(x_train, y_train, x_val, y_val, empty, np.empty(0, "int64"), task,
                        num_classes=len(names), class_names=names)
    splits.description = (f"in-memory data: {len(splits.y_train)} train / {len(splits.y_val)} "
                          f"validation")
    if x_train.ndim in (3, 4):  # images, (n, height, width[, channels]): drawn as images
        shape = tuple(x_train.shape[1:])
        splits.image_shape = shape[:2] if shape[2:] in ((), (1,)) else shape
    return splits
