"""Curriculum schedules: values at chosen epochs, edges included (epoch 0, last, past the end)."""

from __future__ import annotations

import math

import pytest

from losstune.schedules import SCHEDULES, Schedule, progress

EPOCHS = 5  # epochs 0..4; the ramp ends at epoch 4


@pytest.mark.parametrize("name, params, expected", [
    ("constant", {"value": 0.7}, [0.7, 0.7, 0.7, 0.7, 0.7]),
    ("linear", {"start": 0.0, "end": 1.0}, [0.0, 0.25, 0.5, 0.75, 1.0]),
    ("linear", {"start": 1.0, "end": 0.0, "warmup": 2}, [1.0, 1.0, 1.0, 0.5, 0.0]),
    ("step", {"start": 1.0, "gamma": 0.5, "milestones": [1, 3]}, [1.0, 0.5, 0.5, 0.25, 0.25]),
    ("cosine", {"start": 0.0, "end": 1.0},
     [0.0, (1 - math.cos(math.pi / 4)) / 2, 0.5, (1 - math.cos(3 * math.pi / 4)) / 2, 1.0]),
])
def test_values_at_every_epoch(name, params, expected):
    assert Schedule(name, params).values(EPOCHS) == pytest.approx(expected)


@pytest.mark.parametrize("name", ["linear", "exponential", "cosine", "sigmoid"])
def test_ramps_hit_start_and_end_exactly_and_clamp_past_the_end(name):
    s = Schedule(name, {"start": 0.2, "end": 0.9, "warmup": 1})
    assert s.value(0, EPOCHS) == pytest.approx(0.2)
    assert s.value(1, EPOCHS) == pytest.approx(0.2)  # end of warm-up
    assert s.value(EPOCHS - 1, EPOCHS) == pytest.approx(0.9)  # last planned epoch
    assert s.value(EPOCHS + 10, EPOCHS) == pytest.approx(0.9)  # past the end
    values = s.values(EPOCHS)
    assert all(a <= b + 1e-12 for a, b in zip(values, values[1:]))  # monotone


def test_exponential_is_front_loaded_and_sigmoid_is_centred():
    exp = Schedule("exponential", {"start": 0.0, "end": 1.0, "rate": 1.0})
    rate = 1.0
    assert exp.value(1, EPOCHS) == pytest.approx((1 - math.exp(-rate)) / (1 - math.exp(-4 * rate)))
    assert exp.value(2, EPOCHS) > 0.5  # most of the change happens early
    sig = Schedule("sigmoid", {"start": 0.0, "end": 1.0, "steepness": 8.0, "midpoint": 0.5})
    assert sig.value(2, EPOCHS) == pytest.approx(0.5)
    assert sig.value(1, EPOCHS) < 0.25


def test_single_epoch_run_is_defined():
    assert Schedule("linear").value(0, 1) == 0.0
    assert progress(0, 1) == 0.0
    assert [progress(e, 3) for e in range(4)] == [0.0, 0.5, 1.0, 1.0]


def test_round_trip_and_describe():
    s = Schedule("step", {"milestones": [2, 5], "gamma": 0.1})
    assert Schedule.from_dict(s.to_dict()) == s
    assert Schedule.from_dict("cosine") == Schedule("cosine")
    assert Schedule.from_dict(None).name == "constant"
    assert s.describe().startswith("step(")
    assert set(SCHEDULES) == {"constant", "linear", "step", "exponential", "cosine", "sigmoid"}


@pytest.mark.parametrize("name, params, fragment", [
    ("zigzag", {}, "schedule must be one of constant, linear, step"),
    ("linear", {"rate": 1.0}, "schedule 'linear' has no parameter 'rate'"),
    ("exponential", {"rate": 0.0}, "schedule.rate must be a number in [1e-6, inf), got 0.0"),
    ("sigmoid", {"midpoint": 1.5}, "schedule.midpoint must be a number in [0, 1], got 1.5"),
    ("sigmoid", {"steepness": 900.0}, "schedule.steepness must be a number in [1e-6, 500]"),
    ("linear", {"warmup": -1}, "schedule.warmup must be a whole number in [0, inf), got -1"),
    ("linear", {"warmup": 1.5}, "schedule.warmup must be a whole number in [0, inf), got 1.5"),
    ("linear", {"end": float("nan")}, "schedule.end must be a finite number, got nan"),
    ("step", {"milestones": [-2]}, "schedule.milestones must be epochs >= 0, got [-2]"),
    ("step", {"gamma": -1.0}, "schedule.gamma must be a number in [0, inf), got -1.0"),
])
def test_bad_schedules(name, params, fragment):
    with pytest.raises(ValueError) as info:
        Schedule(name, params)
    assert fragment in str(info.value)
