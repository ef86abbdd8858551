"""Integer and categorical distributions: whole numbers in their own scale, categories
that narrow to those kept, values checked with the parameter named."""

import math

import numpy as np
import pytest

import vmaptune as vt


@pytest.mark.parametrize("dist, message", [
    (vt.Choice("relu"), r"Choice values='relu' is a str; expected a list or tuple"),
    (vt.Choice({"relu", "tanh"}), r"is a set; expected a list or tuple"),
    (vt.Choice([]), r"values=\(\) is empty"),
    (vt.Choice([1, True]), r"values 1 and True are equal"),
    (vt.Choice([32, 32.0]), r"values 32 and 32.0 are equal"),
    (vt.Choice([0.1, float("nan")]), r"value nan is not finite"),
    (vt.Choice(["relu", print]), r"value <built-in function print> of type "
                                 r"builtin_function_or_method is not a bool, int"),
    (vt.Choice([(16,), (16, {"a": 1})]), r"value \{'a': 1\} of type dict"),
    (vt.IntUniform(1.5, 4), r"IntUniform low=1.5 is not a whole number"),
    (vt.IntUniform(1, True), r"IntUniform high=True is not a whole number"),
    (vt.IntUniform(5, 2), r"IntUniform\(low=5, high=2\) needs low <= high"),
    (vt.IntUniform(0, 8, log=True), r"IntUniform low=0 must be >= 1 for a log scale"),
    (vt.IntUniform(1, 8, structural="yes"), r"IntUniform structural='yes'; expected True"),
])
def test_bad_distributions_name_the_parameter_and_the_value(dist, message):
  with pytest.raises(vt.SpaceError, match=message) as info:
    vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0), width=dist)
  assert "parameter 'width'" in str(info.value)


def test_integers_sample_deterministically_inside_the_range_with_every_value_reached():
  space = vt.Space(steps=vt.IntUniform(-2, 3), depth=vt.IntUniform(1, 4, structural=True))
  a = space.sample(seed=1, round_index=0, size=600)
  b = space.sample(seed=1, round_index=0, size=600)
  for name in a:
    np.testing.assert_array_equal(a[name], b[name])
  # Traced integers are float32 lanes like any traced value; structural ones are ints.
  assert a["steps"].dtype == np.float32 and a["depth"].dtype == np.int64
  assert set(a["steps"].tolist()) == {-2.0, -1.0, 0.0, 1.0, 2.0, 3.0}
  assert set(a["depth"].tolist()) == {1, 2, 3, 4}
  counts = np.bincount(a["depth"])[1:] / 600  # Uniform: a quarter each (±6%).
  np.testing.assert_allclose(counts, 0.25, atol=0.06)


def test_log_integers_spread_evenly_over_decades():
  values = vt.IntUniform(1, 1000, log=True).sample(np.random.default_rng(0), 40_000)
  assert np.array_equal(values, np.round(values)) and values.min() >= 1 and values.max() <= 1000
  # Each integer owns [k - 1/2, k + 1/2]; the mass of [0.5, 10.5) in log([0.5, 1000.5]).
  expected = math.log(10.5 / 0.5) / math.log(1000.5 / 0.5)
  assert (values <= 10).mean() == pytest.approx(expected, abs=0.01)


def test_choice_samples_its_values_themselves_tuples_included():
  dist = vt.Choice([[16], (32, 32), "wide"])  # Lists become tuples (hashable, comparable).
  assert dist.values == ((16,), (32, 32), "wide")
  values = dist.sample(np.random.default_rng(0), 90)
  assert values.dtype == object and values.shape == (90,)
  assert {v for v in values} == {(16,), (32, 32), "wide"}
  again = dist.sample(np.random.default_rng(0), 90)
  assert values.tolist() == again.tolist()


def test_narrowing_keeps_integers_whole_inside_bounds_and_never_empty():
  original = vt.IntUniform(1, 64)
  narrowed = original.narrowed(np.array([10.0, 14.0]), margin=0.1, bounds=original)
  # Width of [0.5, 64.5] is 64: 6.4 on each side of [10, 14], rounded inwards.
  assert (narrowed.low, narrowed.high) == (4, 20)
  assert isinstance(narrowed.low, int) and isinstance(narrowed.high, int)
  edge = original.narrowed(np.array([64.0]), margin=0.5, bounds=original)
  assert edge.high == 64 and edge.low <= 64
  point = original.narrowed(np.array([7.0]), margin=0.0, bounds=original)
  assert (point.low, point.high) == (7, 7)  # A single integer: still a valid range.
  vt.Space(n=point)
  again = point.narrowed(np.array([7]), margin=0.3, bounds=original)
  assert again.low <= 7 <= again.high


def test_log_integers_narrow_in_log_scale():
  original = vt.IntUniform(16, 1024, log=True, structural=True)
  narrowed = original.narrowed(np.array([64, 128]), margin=0.1, bounds=original)
  pad = 0.1 * math.log(1024.5 / 15.5)
  assert narrowed.low == math.ceil(64 * math.exp(-pad))
  assert narrowed.high == math.floor(128 * math.exp(pad))
  assert narrowed.log and narrowed.structural


def test_choice_narrows_to_the_kept_categories_in_their_order():
  space = vt.Space(lr=vt.LogUniform(1e-3, 1.0), act=vt.Choice(["relu", "tanh", "gelu"]),
                   hidden=vt.Choice([(16,), (32,), (16, 16)]))
  kept = {"lr": np.array([1e-2, 1e-1, 2e-2]),
          "act": np.array(["gelu", "relu", "gelu"], object),
          "hidden": np.empty(3, object)}
  kept["hidden"][:] = [(16, 16), (16, 16), (16,)]
  narrowed = space.narrow(kept, margin=0.1, bounds=space)
  assert narrowed["act"] == vt.Choice(["relu", "gelu"])  # "tanh" was kept by no lane.
  assert narrowed["hidden"].values == ((16,), (16, 16))
  assert narrowed.combinations() == [
      {"act": "relu", "hidden": (16,)}, {"act": "relu", "hidden": (16, 16)},
      {"act": "gelu", "hidden": (16,)}, {"act": "gelu", "hidden": (16, 16)}]


def test_traced_integers_perturb_by_whole_steps_inside_the_range():
  dist = vt.IntUniform(1, 6, log=True)
  rng = np.random.default_rng(0)
  moves = [dist.perturbed(v, rng, 1.2) for v in (1.0, 3.0, 6.0) for _ in range(20)]
  assert all(m == round(m) and 1 <= m <= 6 for m in moves)
  assert {m for m in moves[:20]} == {1.0, 2.0}  # From 1, 1.2x rounds back: a whole step.
  with pytest.raises(TypeError, match="structural"):
    vt.IntUniform(1, 6, structural=True).perturbed(3, rng, 1.2)
