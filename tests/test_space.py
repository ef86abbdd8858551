"""Search space: validation, deterministic log-scale sampling, narrowing."""


import json

import numpy as np
import pytest

import vmaptune as vt


def test_sampling_is_deterministic_and_inside_the_range():
  space = vt.Space(lr=vt.LogUniform(1e-4, 1e-1), p=vt.Uniform(-1.0, 2.0))
  a = space.sample(seed=3, round_index=1, size=500)
  b = space.sample(seed=3, round_index=1, size=500)
  c = space.sample(seed=3, round_index=2, size=500)
  assert list(a) == ["lr", "p"]
  for name in a:
    np.testing.assert_array_equal(a[name], b[name])
    assert a[name].dtype == np.float32 and a[name].shape == (500,)
    assert not np.array_equal(a[name], c[name])
  assert a["lr"].min() >= 1e-4 and a["lr"].max() <= 1e-1
  assert a["p"].min() >= -1.0 and a["p"].max() <= 2.0


def test_space_rejects_non_distributions_and_empty_spaces():
  with pytest.raises(vt.SpaceError, match="'lr'.*not a distribution"):
    vt.Space(lr=0.1)
  with pytest.raises(vt.SpaceError, match="at least one parameter"):
    vt.Space()


def test_narrowing_spans_kept_values_in_log_scale_with_margin():
  original = vt.Space(lr=vt.LogUniform(1e-6, 1e0))  # Six decades wide.
  kept = {"lr": np.array([1e-4, 1e-3, 1e-2])}  # Two decades wide.
  narrowed = original.narrow(kept, margin=0.1, bounds=original)
  # 0.1 x six decades = 0.6 decades of margin on each side, in log space.
  assert narrowed["lr"].low == pytest.approx(10 ** -4.6, rel=1e-9)
  assert narrowed["lr"].high == pytest.approx(10 ** -1.4, rel=1e-9)
  assert isinstance(narrowed["lr"], vt.LogUniform)


def test_space_error_lists_every_kind_of_distribution():
  with pytest.raises(vt.SpaceError, match=r"'width'.*IntUniform\(low, high\) or Choice"):
    vt.Space(width=[16, 32])


def test_buckets_draw_their_own_traced_values_and_plain_spaces_keep_their_streams():
  space = vt.Space(learning_rate=vt.LogUniform(1e-4, 1.0))
  plain = space.sample(0, 1, 8)["learning_rate"]
  np.testing.assert_array_equal(plain, space.sample(0, 1, 8, bucket=None)["learning_rate"])
  draws = [space.sample(0, 1, 8, stream=s, bucket=b)["learning_rate"].tolist()
           for s in (0, 1) for b in (0, 1, 2)]
  assert len({tuple(d) for d in draws + [plain.tolist()]}) == 7


def test_space_splits_into_traced_and_structural_parts_and_serialises():
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0), steps=vt.IntUniform(1, 5),
                   hidden=vt.Choice([(16,), (32, 32)]),
                   depth=vt.IntUniform(1, 3, structural=True))
  assert space.structural_names == ("hidden", "depth")
  assert list(space.traced()) == ["learning_rate", "steps"]
  assert len(space.combinations()) == 6
  record = json.loads(json.dumps(space.to_dict()))
  assert record["hidden"] == {"type": "Choice", "values": [[16], [32, 32]]}
  assert record["depth"] == {"type": "IntUniform", "low": 1, "high": 3, "log": False,
                             "structural": True}
  assert record["learning_rate"] == {"type": "LogUniform", "low": 1e-3, "high": 1.0}
  with pytest.raises(vt.SpaceError, match="every parameter of the space is structural"):
    vt.Space(hidden=vt.Choice([16])).traced()


def _objects(values: list) -> np.ndarray:
  array = np.empty(len(values), object)
  for i, value in enumerate(values):
    array[i] = value
  return array


def test_a_space_description_is_read_back_exactly_or_refused():
  space = vt.Space(lr=vt.LogUniform(1e-4, 0.3), drop=vt.Uniform(0.0, 0.5),
                   width=vt.IntUniform(16, 512, log=True),
                   depth=vt.IntUniform(1, 3, structural=True),
                   act=vt.Choice(["relu", None, ("gelu", 2), 1.5]))
  narrowed = space.narrow({"lr": np.array([1e-3, 2e-3], np.float32),
                           "drop": np.array([0.1, 0.2], np.float32),
                           "width": np.array([32.0, 64.0], np.float32),
                           "depth": np.array([2, 3]), "act": _objects([("gelu", 2), None])},
                          0.1, space)
  assert narrowed["act"].values == (None, ("gelu", 2))
  for original in (space, narrowed):
    assert vt.Space.from_dict(json.loads(json.dumps(original.to_dict()))) == original
  with pytest.raises(vt.SpaceError, match="'lr'.*names no known distribution type"):
    vt.Space.from_dict({"lr": {"type": "Normal", "mean": 0.0}})
