"""Built-in models and factories: shapes, logits, and clear errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from losstune import models
from losstune.errors import LosstuneError
from losstune.studyfile import ModelSpec


def test_mlp_and_cnn_end_in_logits_of_the_right_width():
    mlp = models.build(ModelSpec(kind="mlp", hidden=(8, 4), dropout=0.1), input_shape=(5,),
                       units=3)
    assert mlp.output_shape == (None, 3) and mlp.layers[-1].activation.__name__ == "linear"
    assert len([layer for layer in mlp.layers if isinstance(layer, keras.layers.Dropout)]) == 2
    cnn = models.build(ModelSpec(kind="cnn", filters=(4,), hidden=(8,)), input_shape=(8, 8, 1),
                       units=10)
    assert cnn.output_shape == (None, 10)
    assert cnn(np.zeros((2, 8, 8, 1), "float32")).shape == (2, 10)


def test_output_units():
    assert models.output_units("regression", 0) == 1
    assert models.output_units("multiclass", 7) == 7


def test_factory_import_errors_are_one_line(tmp_path):
    (tmp_path / "fac.py").write_text("def nothing(input_shape, output_units):\n    return 3\n")
    with pytest.raises(LosstuneError, match="cannot import 'nope'"):
        models.load_factory("nope:build", tmp_path)
    with pytest.raises(LosstuneError, match="has no function 'missing'"):
        models.load_factory("fac:missing", tmp_path)
    with pytest.raises(TypeError, match="returned int, not a keras.Model"):
        models.build(ModelSpec(kind="factory", factory="fac:nothing"), input_shape=(3,), units=2,
                     base_dir=tmp_path)


def test_a_python_model_function_is_called_and_required():
    seen = {}

    def build(input_shape, output_units):
        seen.update(shape=input_shape, units=output_units)
        return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(output_units)])

    model = models.build(ModelSpec(kind="python"), input_shape=(4,), units=2, builder=build)
    assert seen == {"shape": (4,), "units": 2} and model.output_shape == (None, 2)
    with pytest.raises(LosstuneError, match="give it again"):
        models.build(ModelSpec(kind="python"), input_shape=(4,), units=2)


def test_a_final_squash_is_refused_only_where_the_losses_take_logits():
    """softmax never; sigmoid on classification only (a bounded regression output may be
    meant); a factory whose parameters all have defaults is not handed (shape, units)."""
    import keras

    from losstune.errors import LosstuneError
    from losstune.models import build
    from losstune.studyfile import ModelSpec

    spec = ModelSpec(kind="python", factory="tests:any")

    def squashed(activation):
        return lambda input_shape, output_units: keras.Sequential(
            [keras.Input(input_shape), keras.layers.Dense(output_units, activation=activation)])

    assert build(spec, input_shape=(4,), units=1, builder=squashed("sigmoid"), task="regression")
    for activation, task in (("sigmoid", "binary"), ("softmax", "regression"),
                             ("softmax", "multiclass")):
        with pytest.raises(LosstuneError, match=f"the model ends in {activation}"):
            build(spec, input_shape=(4,), units=3, builder=squashed(activation), task=task)

    def defaults(hidden=8, dropout=0.0):
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(hidden),
                                 keras.layers.Dense(3)])

    model = build(spec, input_shape=(4,), units=3, builder=defaults, task="multiclass")
    assert model.layers[0].units == 8
