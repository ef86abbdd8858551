"""Structural hyperparameters: Choice and integer distributions, one population per
combination of structural values, ranking and narrowing across buckets."""

import json
import math
import os

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import vmaptune as vt
from vmaptune.keys import round_keys
from vmaptune.optimizers import BUILTIN, scheduled
from vmaptune.population import Population
from vmaptune.rundir import SUMMARY_FILE
from vmaptune.samplers import Narrow
from vmaptune.structural import Buckets
from vmaptune.trials import TrialTable

# --- the distributions ------------------------------------------------------------------


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


def test_space_error_lists_every_kind_of_distribution():
  with pytest.raises(vt.SpaceError, match=r"'width'.*IntUniform\(low, high\) or Choice"):
    vt.Space(width=[16, 32])


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


def test_buckets_draw_their_own_traced_values_and_plain_spaces_keep_their_streams():
  space = vt.Space(learning_rate=vt.LogUniform(1e-4, 1.0))
  plain = space.sample(0, 1, 8)["learning_rate"]
  np.testing.assert_array_equal(plain, space.sample(0, 1, 8, bucket=None)["learning_rate"])
  draws = [space.sample(0, 1, 8, stream=s, bucket=b)["learning_rate"].tolist()
           for s in (0, 1) for b in (0, 1, 2)]
  assert len({tuple(d) for d in draws + [plain.tolist()]}) == 7


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


# --- buckets -----------------------------------------------------------------------------


def test_each_combination_gets_an_equal_share_of_the_lanes():
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0), hidden=vt.Choice([8, 16, 32]),
                   activation=vt.Choice(["relu", "tanh"]))
  buckets = Buckets(vt.models.MLP(), space, population=16, batch_size=32, num_train=360)
  sampler = Narrow()
  sampler.start(space, seed=0)
  plan = sampler.buckets(16, 0)
  assert len(buckets) == 6 and [count for _, count in plan] == [3] * 6  # ceil(16 / 6).
  narrowed = vt.Space(dict(space, activation=vt.Choice(["tanh"])))
  sampler.start(narrowed, seed=0)
  plan = sampler.buckets(16, 0)
  assert [values for values, _ in plan] == [
      {"hidden": w, "activation": "tanh"} for w in (8, 16, 32)]
  assert [count for _, count in plan] == [6] * 3
  # Bucket numbers come from the original space, so a bucket's draws do not depend on
  # which other categories survive.
  assert [buckets.find(values).index for values, _ in plan] == [1, 3, 5]
  built = buckets.find({"hidden": 16, "activation": "tanh", "learning_rate": 0.1})
  assert (built.model.hidden, built.model.activation, built.batch_size) == (16, "tanh", 32)
  batches = Buckets(vt.models.MLP(), vt.Space(lr=vt.LogUniform(1e-3, 1.0),
                                              batch_size=vt.Choice([30, 60])),
                    population=4, batch_size=32, num_train=360)
  assert [(b.values, b.batch_size, b.model) for b in batches] == [
      ({"batch_size": 30}, 30, vt.models.MLP()), ({"batch_size": 60}, 60, vt.models.MLP())]


def test_merged_trials_keep_lanes_unique_and_parents_inside_their_bucket():
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0), hidden=vt.Choice([8, 16]))
  buckets = list(Buckets(vt.models.MLP(), space, population=4, batch_size=32, num_train=360))

  def table(parents):
    count = len(parents)
    ints = lambda values: np.array(values, np.int64)
    return TrialTable(
        hparams={"learning_rate": np.full(count, 0.1, np.float32)}, round=ints([0] * count),
        trial=np.arange(count), lane=ints([0, 1, 0][:count]), bracket=ints([-1] * count),
        start_epoch=ints([0, 0, 1][:count]), epochs=ints([1] * count), parent=ints(parents),
        status=np.array(["exploited", "finished", "finished"][:count], object),
        val_accuracy=np.full(count, 0.5), val_loss=np.full(count, 1.0),
        epoch_loss=np.ones((count, 2), np.float32))

  merged = TrialTable.merge_buckets([(buckets[0].values, table([-1, -1, 0])),
                                     (buckets[1].values, table([-1, -1]))], space)
  assert merged.lane.tolist() == [0, 1, 0, 2, 3]
  assert merged.parent.tolist() == [-1, -1, 0, -1, -1]
  assert merged.trial.tolist() == [0, 1, 2, 3, 4]
  assert merged.hparams["hidden"].tolist() == [8, 8, 8, 16, 16]
  assert list(merged.hparams) == ["learning_rate", "hidden"]


# --- tuning with buckets -----------------------------------------------------------------


@pytest.fixture(scope="module")
def width_search(tmp_path_factory, small_arrays):
  """Hidden width 8 or 16, both kept every round (keep=1): 2 rounds of 2 buckets x 2 lanes."""
  x, y = small_arrays
  data = vt.data.from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, seed=0, num_classes=10)
  out = str(tmp_path_factory.mktemp("run") / "widths")
  space = vt.Space(learning_rate=vt.LogUniform(1e-2, 3e-1),
                   weight_decay=vt.LogUniform(1e-6, 1e-2), hidden=vt.Choice([8, 16]))
  result = vt.tune(vt.models.MLP(), data, space, out=out, population=4, rounds=2, epochs=2,
                   batch_size=32, sampler="narrow(keep=1.0)", seed=0)
  return result, data, out


def test_every_round_trains_each_bucket_and_recurring_buckets_compile_nothing(width_search):
  result, _, _ = width_search
  first, second = result.rounds
  for r in result.rounds:
    assert r.configurations == 4 and r.hparams["hidden"].tolist() == [8, 8, 16, 16]
    assert r.lane.tolist() == [0, 1, 2, 3]
    assert [(values, trials.tolist()) for values, trials in r.buckets()] == \
        [({"hidden": 8}, [0, 1]), ({"hidden": 16}, [2, 3])]
  assert first.compiles >= 4  # Two programs (train, evaluate) per bucket at least.
  assert second.compiles == 0 and second.space != first.space


def test_a_lane_equals_its_configuration_trained_alone(width_search, small_data):
  result, _, _ = width_search
  r = result.rounds[1]
  factory = scheduled(BUILTIN["adamw"], "auto", 2 * (len(small_data.train) // 32))
  for trial in (2,):  # The first lane of the second bucket: lane 2 of the round, 0 of its own.
    width = int(r.hparams["hidden"][trial])
    alone = Population(vt.models.MLP(hidden=width), factory, small_data, epochs=2,
                          batch_size=32, eval_batch_size=1024)
    trained = alone.alone.fit(r.traced_values(trial, r.space), *round_keys(0, 1))
    scored = alone.alone.evaluate(trained.params)
    assert float(scored.accuracy) == pytest.approx(r.val_accuracy[trial], abs=1e-6)
    assert float(scored.loss) == pytest.approx(r.val_loss[trial], abs=1e-4)


def test_ranking_across_buckets_keeps_the_truly_best_trial(width_search):
  result, _, _ = width_search
  for r in result.rounds:
    order = np.lexsort((np.arange(r.num_trials), r.val_loss, -r.val_accuracy))
    assert r.kept.tolist() == order.tolist()  # keep=1: every trial, best first.
    assert r.best_trial == order[0]
  best = max((t for t in result.trials()), key=lambda t: (t.val_accuracy, -t.val_loss))
  assert result.best == best


def test_records_carry_structural_values_and_the_final_fit_uses_the_best_bucket(width_search):
  result, data, out = width_search
  records = vt.read_trials(out)
  assert len(records) == 8
  assert [r["hparams"]["hidden"] for r in records] == [8, 8, 16, 16] * 2
  assert all(isinstance(r["hparams"]["hidden"], int) for r in records)
  assert len({(r["round"], r["lane"]) for r in records}) == 8
  assert data.test_reads == 0
  final = result.final_fit()
  assert data.test_reads == 1
  assert result.final_fit() is final and data.test_reads == 1
  width = result.best.hparams["hidden"]
  assert final.model.hidden == width
  assert final.params["Dense_0"]["kernel"].shape == (64, width)
  assert final.val_accuracy == pytest.approx(result.best.val_accuracy, abs=1e-6)
  with open(os.path.join(out, SUMMARY_FILE)) as f:
    summary = json.load(f)
  assert summary["chosen"]["hparams"]["hidden"] == width
  assert summary["final_fit"]["config"]["hidden"] == width
  assert summary["space"]["hidden"] == {"type": "Choice", "values": [8, 16]}
  buckets = summary["rounds"][0]["buckets"]
  assert [b["values"] for b in buckets] == [{"hidden": 8}, {"hidden": 16}]
  assert [b["configurations"] for b in buckets] == [2, 2]
  assert "by bucket:" in result.rounds[0].describe(2)
  assert f"hidden={width}" in result.describe()


class _Poisoned(nn.Module):
  """A tiny classifier whose ``poison`` bucket always produces NaN logits."""

  poison: bool = False

  @nn.compact
  def __call__(self, x):
    logits = nn.Dense(10)(x.reshape((x.shape[0], -1)))
    return logits * jnp.nan if self.poison else logits


def test_a_bucket_whose_lanes_all_diverge_is_dropped_and_its_lanes_go_to_the_survivor(
    small_data, tmp_path):
  space = vt.Space(learning_rate=vt.LogUniform(1e-2, 1e-1), poison=vt.Choice([True, False]))
  result = vt.tune(_Poisoned(), small_data, space, out=str(tmp_path / "run"), population=4,
                   rounds=3, epochs=1, batch_size=32, sampler="narrow(keep=0.5)", seed=0)
  first, second, third = result.rounds
  assert first.hparams["poison"].tolist() == [True, True, False, False]
  assert first.diverged.tolist() == [True, True, False, False]
  # No kept trial has poison=True, so the category is gone from the next round...
  assert first.next_space["poison"] == vt.Choice([False])
  # ... whose four lanes all go to the survivor: a new shape, compiled once, then reused.
  for later in (second, third):
    assert later.hparams["poison"].tolist() == [False] * 4 and not later.diverged.any()
  assert second.compiles > 0 and third.compiles == 0
  assert result.best.hparams["poison"] is False
  buckets = first.bucket_summaries()
  assert buckets[0]["values"] == {"poison": True}
  assert buckets[0]["diverged"] == 2 and buckets[0]["best_val_accuracy"] is None
  assert buckets[1]["best_trial"] == first.best_trial
  records = vt.read_trials(tmp_path / "run")
  assert [r["status"] for r in records[:2]] == ["diverged"] * 2
  assert [r["hparams"]["poison"] for r in records] == [True, True] + [False] * 10


def _mlp_of_depth(depth: int) -> nn.Module:
  return vt.models.MLP(hidden=(16,) * depth)


def test_a_model_function_a_structural_integer_and_batch_size_with_pbt(small_data):
  space = vt.Space(learning_rate=vt.LogUniform(1e-2, 1e-1),
                   depth=vt.IntUniform(1, 2, structural=True), batch_size=vt.Choice([60]))
  result = vt.tune(_mlp_of_depth, small_data, space, population=4, rounds=1, epochs=2,
                   batch_size=32,
                   sampler="narrow(keep=0.5)", seed=0, strategy="pbt(interval=1, fraction=0.5)")
  r = result.rounds[0]
  assert [values for values, _ in r.buckets()] == [{"depth": 1, "batch_size": 60},
                                                   {"depth": 2, "batch_size": 60}]
  assert r.configurations == 4 and r.lane.tolist()[:2] == [0, 1]
  exploited = np.flatnonzero(r.parent >= 0)
  assert len(exploited) == 2  # One per bucket: two lanes, a quota of one.
  for trial in exploited:  # A lineage never leaves its bucket.
    assert r.structural(trial) == r.structural(int(r.parent[trial]))
  final = result.final_fit()
  best = result.best
  assert final.batch_size == 60 and result.settings["batch_size"] is None
  assert len(final.params) == best.hparams["depth"] + 1  # Hidden layers and the head.
  assert final.val_accuracy == pytest.approx(best.val_accuracy, abs=1e-6)


def test_a_traced_integer_reaches_the_optimizer_and_is_recorded_as_an_int(small_data, tiny_mlp):
  def clipped(hparams):  # Reads a traced integer: a float32 scalar in the program.
    return optax.chain(optax.clip_by_global_norm(hparams["clip"]),
                       optax.inject_hyperparams(optax.adam)(learning_rate=hparams["lr"]))

  space = vt.Space(lr=vt.LogUniform(1e-2, 1e-1), clip=vt.IntUniform(1, 4))
  result = vt.tune(tiny_mlp, small_data, space, optimizer=clipped, population=4, rounds=1,
                   epochs=1, batch_size=32)
  r = result.rounds[0]
  assert r.hparams["clip"].dtype == np.float32 and len(r.buckets()) == 1
  assert all(isinstance(t.hparams["clip"], int) and 1 <= t.hparams["clip"] <= 4
             for t in r.trials())


def _returns_a_dict(hidden):
  return {"hidden": hidden}


@pytest.mark.parametrize("change, message", [
    ({"space": vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0), widht=vt.Choice([8, 16]))},
     r"structural parameters \['widht'\] are neither 'batch_size' nor taken by model MLP "
     r"\(it takes activation, hidden, num_classes\)"),
    ({"space": vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0), width=vt.Choice([8])),
      "model": _mlp_of_depth},
     r"\['width'\] .* taken by model function _mlp_of_depth \(it takes depth\)"),
    ({"space": vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0), batch_size=vt.Uniform(8, 64))},
     r"'batch_size' changes array shapes, so it must be structural"),
    ({"space": vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0),
                        batch_size=vt.Choice([32, 400]))},
     r"'batch_size': value 400 is not a whole number in \[1, 360\]"),
    ({"space": vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0), hidden=vt.Choice([4, 8, 16]),
                        activation=vt.Choice(["relu", "tanh"]))},
     r"population=4 cannot give a lane to each of the 6 combinations .*\(hidden 3 x "
     r"activation 2\)"),
    ({"space": vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0),
                        activation=vt.Choice(["relu", "swish"]))},
     r"with activation='swish': model MLP failed to initialise .*activation='swish'; expected "
     r"one of"),
    ({"space": vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0), hidden=vt.Choice([8])),
      "model": _returns_a_dict},
     r"model function _returns_a_dict returned dict for hidden=8; expected a flax.linen Module"),
    ({"space": vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0), hidden=vt.Choice([8, 16])),
      "strategy": "pbt(interval=1)", "population": 2, "epochs": 2},
     r"population=1; population-based training needs >= 2 lanes \(each combination of "
     r"structural values gets 1 lane\)"),
])
def test_bad_structural_settings_fail_before_anything_compiles(change, message, small_data,
                                                               refused_before_compiling):
  args = dict(model=vt.models.MLP(hidden=8), data=small_data, population=4, rounds=1,
              epochs=1, batch_size=32)
  refused_before_compiling(vt.SettingsError, message, **{**args, **change})


def test_a_space_of_structural_parameters_alone_is_refused(small_data, tiny_mlp,
                                                          refused_before_compiling):
  refused_before_compiling(vt.SpaceError, "add at least one", model=tiny_mlp, data=small_data,
                           space=vt.Space(hidden=vt.Choice([8, 16])), population=2)
