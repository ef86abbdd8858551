"""Structural hyperparameters: Choice and integer distributions, one population per
combination of structural values, ranking and narrowing across buckets."""

import json
import os

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import vmaptune as vt
from vmaptune.lanes.compilation import CompileCounter
from vmaptune.lanes.keys import round_keys
from vmaptune.lanes.population import Population
from vmaptune.models.optimizers import BUILTIN, scheduled
from vmaptune.rundir import SUMMARY_FILE
from vmaptune.samplers import Narrow
from vmaptune.search import confirmation as confirmation_stage
from vmaptune.space.structural import Buckets
from vmaptune.trials.scoring import CLASSIFICATION

# --- the distributions ------------------------------------------------------------------


# --- buckets -----------------------------------------------------------------------------


def test_each_combination_gets_an_equal_share_of_the_lanes():
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0), hidden=vt.Choice([8, 16, 32]),
                   activation=vt.Choice(["relu", "tanh"]))
  buckets = Buckets(vt.models.MLP(), space, population=16, batch_size=32, num_train=360)
  sampler = Narrow()
  sampler.start(space, seed=0, scoring=CLASSIFICATION)
  plan = sampler.plan(16, 0).buckets
  assert len(buckets) == 6 and [count for _, count in plan] == [3] * 6  # ceil(16 / 6).
  narrowed = vt.Space(dict(space, activation=vt.Choice(["tanh"])))
  sampler.start(narrowed, seed=0, scoring=CLASSIFICATION)
  plan = sampler.plan(16, 0).buckets
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


# --- tuning with buckets -----------------------------------------------------------------


@pytest.fixture(scope="module")
def width_search(tmp_path_factory, small_arrays):
  """Hidden width 8 or 16, both kept every round (keep=1): 2 rounds of 2 buckets x 2 lanes."""
  x, y = small_arrays
  data = vt.data.from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, seed=0, num_classes=10)
  out = str(tmp_path_factory.mktemp("run") / "widths")
  space = vt.Space(learning_rate=vt.LogUniform(1e-2, 3e-1),
                   weight_decay=vt.LogUniform(1e-6, 1e-2), hidden=vt.Choice([8, 16]))
  stage, compiles = confirmation_stage.confirm, []

  def counted(*args, **kwargs):
    with CompileCounter() as compiled:
      confirmed = stage(*args, **kwargs)
    compiles.append(compiled.compiles)
    return confirmed

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(confirmation_stage, "confirm", counted)
    result = vt.tune(vt.models.MLP(), data, space, out=out, population=4, rounds=2, epochs=2,
                     batch_size=32, sampler="narrow(keep=1.0)", seed=0)
  return result, data, out, compiles


def test_every_round_trains_each_bucket_and_recurring_buckets_compile_nothing(width_search):
  result, *_ = width_search
  first, second = result.rounds
  for r in result.rounds:
    assert r.configurations == 4 and r.hparams["hidden"].tolist() == [8, 8, 16, 16]
    assert r.lane.tolist() == [0, 1, 2, 3]
    assert [(values, trials.tolist()) for values, trials in r.buckets()] == \
        [({"hidden": 8}, [0, 1]), ({"hidden": 16}, [2, 3])]
  assert first.compiles >= 4  # Two programs (train, evaluate) per bucket at least.
  assert second.compiles == 0 and second.space != first.space


def test_the_confirmation_trains_each_bucket_in_sizes_its_rounds_compiled(width_search):
  """Buckets share a round's lanes (2 each here), so a bucket's programs hold fewer
  lanes than the population: its candidates go in calls of those sizes, not a new one
  (which compiled 6 programs, 8 s of a 16 s run)."""
  result, *_, compiles = width_search
  confirmation = result.confirmation
  assert compiles == [0] and confirmation.seed_scores.shape == (4, 2)
  assert {c.hparams["hidden"] for c in confirmation.candidates} == {8, 16}
  assert np.isfinite(confirmation.seed_scores).all()


def test_a_lane_equals_its_configuration_trained_alone(width_search, small_data):
  result, *_ = width_search
  r = result.rounds[1]
  factory = scheduled(BUILTIN["adamw"], "auto", 2 * (len(small_data.train) // 32))
  for trial in (2,):  # The first lane of the second bucket: lane 2 of the round, 0 of its own.
    width = int(r.hparams["hidden"][trial])
    alone = Population(vt.models.MLP(hidden=width), factory, small_data, epochs=2,
                          batch_size=32, eval_batch_size=1024)
    trained = alone.alone.fit(r.traced_values(trial, r.space), *round_keys(0, 1))
    scored = alone.alone.evaluate(trained.params)
    assert float(scored["accuracy"]) == pytest.approx(r.val_accuracy[trial], abs=1e-6)
    assert float(scored["loss"]) == pytest.approx(r.val_loss[trial], abs=1e-4)


def test_ranking_across_buckets_keeps_the_truly_best_trial(width_search):
  result, *_ = width_search
  for r in result.rounds:
    order = np.lexsort((np.arange(r.num_trials), r.val_loss, -r.val_accuracy))
    assert r.kept.tolist() == order.tolist()  # keep=1: every trial, best first.
    assert r.best_trial == order[0]
  best = max((t for t in result.trials()), key=lambda t: (t.val_accuracy, -t.val_loss))
  assert result.best == best


def test_records_carry_structural_values_and_the_final_fit_uses_the_best_bucket(width_search):
  result, data, out, _ = width_search
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


@pytest.mark.slow  # Covered fast piecewise: buckets above, model functions in test_rundir, PBT.
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
     r"population=1; population-based training needs >= 2 configurations \(a combination of "
     r"structural values gets as few as 1 configuration\)"),
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
