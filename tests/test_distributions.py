"""Continuous distributions: ranges checked with the parameter named, sampling in their
own scale, narrowing that never leaves the original range nor collapses it."""

import math

import numpy as np
import pytest

import vmaptune as vt


def test_log_uniform_spreads_evenly_over_decades():
  values = vt.Space(lr=vt.LogUniform(1e-4, 1e0)).sample(0, 0, 40_000)["lr"]
  counts, _ = np.histogram(np.log10(values), bins=4, range=(-4, 0))
  # Uniform in log10: each of the four decades gets a quarter (±3%).
  np.testing.assert_allclose(counts / len(values), 0.25, atol=0.03)


@pytest.mark.parametrize("dist, message", [
    (vt.LogUniform(1e-2, 1e-3), "low < high"),
    (vt.Uniform(1.0, 1.0), "low < high"),
    (vt.LogUniform(0.0, 1.0), "must be > 0"),
    (vt.LogUniform(-1e-3, 1.0), "must be > 0"),
    (vt.Uniform(float("nan"), 1.0), "not finite"),
    (vt.LogUniform(1e-3, float("inf")), "not finite"),
    (vt.Uniform("0.1", 1.0), "not a number"),
])
def test_bad_ranges_name_the_parameter_and_the_value(dist, message):
  with pytest.raises(vt.SpaceError, match=message) as info:
    vt.Space(learning_rate=dist)
  assert "'learning_rate'" in str(info.value)


def test_narrowing_uniform_is_linear_and_clipped_to_the_original_range():
  original = vt.Space(p=vt.Uniform(0.0, 1.0))
  narrowed = original.narrow({"p": np.array([0.05, 0.5])}, margin=0.1, bounds=original)
  assert narrowed["p"].low == 0.0  # 0.05 - 0.1 clipped to the original low.
  assert narrowed["p"].high == pytest.approx(0.6)


def test_narrowing_to_one_value_keeps_a_positive_width_inside_bounds():
  original = vt.Space(lr=vt.LogUniform(1e-4, 1e-2))
  narrowed = original.narrow({"lr": np.array([1e-2])}, margin=0.05, bounds=original)
  assert narrowed["lr"].high == 1e-2
  assert 1e-4 < narrowed["lr"].low < 1e-2
  assert math.log(narrowed["lr"].high / narrowed["lr"].low) == pytest.approx(0.05 * math.log(100))
  # Narrowing again from the narrowed space never leaves the original bounds.
  again = narrowed.narrow({"lr": np.array([1e-2])}, margin=0.5, bounds=original)
  assert again["lr"].low >= 1e-4 and again["lr"].high <= 1e-2


def test_narrowing_without_margin_never_collapses_the_range():
  original = vt.Space(lr=vt.LogUniform(1e-4, 1e-2), p=vt.Uniform(0.0, 1.0))
  narrowed = original.narrow({"lr": np.array([1e-2]), "p": np.array([0.3])}, margin=0.0,
                             bounds=original)
  assert narrowed["lr"].low < narrowed["lr"].high == 1e-2
  assert narrowed["p"].low < 0.3 < narrowed["p"].high
  assert narrowed["p"].width() == pytest.approx(1e-3)
  vt.Space(dict(narrowed))  # Still a valid space.
