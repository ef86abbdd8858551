"""Strategies: segments and compaction are exact, successive halving and Hyperband stop
bad lanes early, population-based training copies lanes and replays its lineage."""

import json

import jax
import numpy as np
import optax
import pytest

import vmaptune as vt
from vmaptune.lanes.compilation import CompileCounter
from vmaptune.lanes.keys import round_keys
from vmaptune.lanes.population import Population
from vmaptune.models.optimizers import BUILTIN, scheduled
from vmaptune.strategies import parse as parse_strategy
from vmaptune.strategies.halving import halving_budgets, ladder_size
from vmaptune.trials.ranking import order_lanes as rank

SEEDS = 3
PARAM_ATOL = 1e-4  # As in test_population: rechunked lanes agree to float32 rounding.


@pytest.fixture(scope="module")
def population(small_arrays):
  x, y = small_arrays
  data = vt.data.from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, seed=0, num_classes=10)
  return Population(vt.models.MLP(hidden=(16,)), BUILTIN["adamw"], data, epochs=4,
                    batch_size=32, eval_batch_size=60)


def _hparams(learning_rates):
  lr = np.asarray(learning_rates, np.float32)
  return {"learning_rate": lr, "weight_decay": np.full_like(lr, 1e-4)}


def _lane(tree, index):
  return jax.tree.map(lambda a: np.asarray(a[index]), tree)


def test_training_in_segments_equals_training_at_once(population):
  init_key, data_key = round_keys(0, 0)
  hparams = _hparams([1e-2, 3e-2, 1e-1])
  whole, whole_losses = population.advance(population.init(hparams, init_key), data_key, 0, 4)
  half, first_losses = population.advance(population.init(hparams, init_key), data_key, 0, 2)
  half, second_losses = population.advance(half, data_key, 2, 2)
  for a, b in zip(jax.tree.leaves(whole.state), jax.tree.leaves(half.state), strict=True):
    np.testing.assert_array_equal(np.asarray(a)[:3], np.asarray(b)[:3])
  np.testing.assert_array_equal(np.asarray(whole_losses)[:3, 2:], np.asarray(second_losses)[:3, 2:])
  assert np.isnan(np.asarray(second_losses)[:3, :2]).all()  # Only the epochs trained here.
  assert np.isfinite(np.asarray(first_losses)[:3, :2]).all()


# Chunked (1, 2: slow tier) as well as whole: test_chunks.py checks chunking fast.
@pytest.mark.parametrize("lanes_per_chunk", [None, pytest.param(1, marks=pytest.mark.slow),
                                             pytest.param(2, marks=pytest.mark.slow)])
def test_a_surviving_lane_continues_exactly_as_without_compaction(small_data, lanes_per_chunk):
  # 5 lanes compacted to 3: padded over the devices, and looped over chunks.
  population = Population(vt.models.MLP(hidden=(16,)), BUILTIN["adamw"], small_data,
                             epochs=4, batch_size=32, eval_batch_size=60,
                             lanes_per_chunk=lanes_per_chunk)
  init_key, data_key = round_keys(0, 1)
  hparams = _hparams([3e-3, 1e-2, 3e-2, 1e-1, 3e-1])
  full, full_losses = population.advance(population.init(hparams, init_key), data_key, 0, 4)
  full_scores = population.evaluate(full.state.params)
  rung, _ = population.advance(population.init(hparams, init_key), data_key, 0, 1)
  survivors = population.select(rung, np.array([3, 0, 4]))
  assert survivors.count == 3 and survivors.hparams["learning_rate"][:3].tolist() == \
      pytest.approx([1e-1, 3e-3, 3e-1])
  survivors, losses = population.advance(survivors, data_key, 1, 3)
  scores = population.evaluate(survivors.state.params)
  for new, old in ((0, 3), (1, 0), (2, 4)):
    # Parameters and optimizer state (moments, step count, injected hyperparameters).
    for a, b in zip(jax.tree.leaves(_lane(survivors.state, new)),
                    jax.tree.leaves(_lane(full.state, old)), strict=True):
      np.testing.assert_allclose(a, b, atol=PARAM_ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(losses)[new, 1:], np.asarray(full_losses)[old, 1:],
                               rtol=1e-4)
    assert abs(float(scores["accuracy"][new]) - float(full_scores["accuracy"][old])) <= 1 / 120
    assert float(scores["loss"][new]) == pytest.approx(float(full_scores["loss"][old]), rel=1e-3)


def test_changing_a_lanes_hyperparameters_mid_run_takes_effect(population):
  """What population-based training relies on: inject_hyperparams state follows hparams."""
  init_key, data_key = round_keys(0, 2)
  lanes, _ = population.advance(population.init(_hparams([1e-2, 1e-2]), init_key), data_key, 0, 1)
  frozen = population.select(lanes, np.array([0, 1]),
                             {"learning_rate": np.array([1e-2, 0.0], np.float32),
                              "weight_decay": np.full(2, 1e-4, np.float32)})
  after, _ = population.advance(frozen, data_key, 1, 1)
  before = jax.tree.leaves(lanes.state.params)
  moved = jax.tree.leaves(after.state.params)
  assert all(np.array_equal(np.asarray(b)[1], np.asarray(m)[1]) for b, m in zip(before, moved,
                                                                                strict=True))
  assert not all(np.array_equal(np.asarray(b)[0], np.asarray(m)[0])
                 for b, m in zip(before, moved, strict=True))


def _inject_sgd(learning_rate):
  return optax.inject_hyperparams(optax.sgd)(learning_rate=learning_rate)


@pytest.mark.parametrize("factory, names", [
    (lambda h: _inject_sgd(h["lr"]), ("lr",)),  # A name the optimizer calls otherwise.
    (lambda h: _inject_sgd(h["learning_rate"] * h["scale"]), ("learning_rate", "scale")),
])
def test_custom_factories_follow_the_values_they_compute_even_mid_run(small_data, factory,
                                                                      names):
  pop = Population(vt.models.MLP(hidden=(16,)), factory, small_data, epochs=2,
                      batch_size=32, eval_batch_size=60)
  init_key, data_key = round_keys(0, 3)
  start = {name: np.full(2, 0.1, np.float32) for name in names}
  lanes, _ = pop.advance(pop.init(start, init_key), data_key, 0, 1)
  before = [np.asarray(leaf) for leaf in jax.tree.leaves(lanes.state.params)]
  # Lane 1's computed step size becomes 0 mid-run: its parameters must stop moving.
  stopped = {name: np.array([0.1, 0.0 if name == names[-1] else 0.1], np.float32)
             for name in names}
  after, _ = pop.advance(pop.select(lanes, np.array([0, 1]), stopped), data_key, 1, 1)
  moved = [np.asarray(leaf) for leaf in jax.tree.leaves(after.state.params)]
  assert all(np.array_equal(b[1], m[1]) for b, m in zip(before, moved, strict=True))
  assert not all(np.array_equal(b[0], m[0]) for b, m in zip(before, moved, strict=True))
  # And the injected value is what the factory computed, not a raw searched value.
  injected = after.state.opt_state.hyperparams["learning_rate"]
  assert np.asarray(injected)[:2].tolist() == pytest.approx([0.01 if len(names) > 1 else 0.1, 0.0])


def test_halving_budgets_and_the_ladder():
  assert halving_budgets(20, 3, 256, 1) == [2, 7, 20]
  assert halving_budgets(20, 3, 4, 1) == [7, 20]  # Only one halving fits 4 lanes.
  assert halving_budgets(5, 2, 64, 2) == [2, 5]
  assert halving_budgets(1, 3, 256, 1) == [1]
  assert [ladder_size(n) for n in (1, 2.5, 5, 85.3, 28, 10)] == [1, 3, 6, 96, 32, 12]


@pytest.mark.parametrize("spec, message", [
    ("bogus", "strategy='bogus' is unknown"),
    ("halving(eta=1)", "eta=1; expected a whole number >= 2"),
    ("halving(foo=1)", r"has no setting \['foo'\]"),
    ("pbt(interval=0)", r"interval=0; expected a whole number of epochs in \[1, 2\]"),
    ("halving(min_epochs=9)", r"min_epochs=9; expected a whole number in \[1, 2\]"),
    ("pbt(3)", "expected name"),
    ("halving(eta=3)", "cannot halve 4 lanes over 2 epochs .* it would be random search"),
    ("pbt(interval=2)", "interval=2 with epochs=2: no lane would ever be exploited"),
])
def test_bad_strategies_are_refused_before_anything_compiles(spec, message, small_data,
                                                              tiny_mlp, lr_space):
  from vmaptune.lanes.compilation import CompileCounter
  with CompileCounter() as compiled, pytest.raises(vt.SettingsError, match=message):
    vt.tune(tiny_mlp, small_data, lr_space, population=4, rounds=1, epochs=2, batch_size=32,
            strategy=spec)
  assert compiled.compiles == 0


def test_parse_strategy_reads_names_and_settings():
  assert parse_strategy("pbt(interval=3, fraction=0.5)") == \
      vt.strategies.PopulationBasedTraining(interval=3, fraction=0.5)
  assert parse_strategy("hyperband").describe() == "hyperband(eta=3, min_epochs=1)"


RUN = dict(population=12, rounds=2, epochs=6, batch_size=32, sampler="narrow(keep=0.25)", seed=0)
# Without the confirmation stage, for the tests of the rounds alone (halving's test keeps it: it
# counts the confirmation's lane-epochs).
ROUNDS_ONLY = dict(RUN, confirm="off")


def _trainer(data, model) -> Population:
  """A population trainer set up as ``tune(**RUN)`` sets up its own."""
  steps = RUN["epochs"] * (len(data.train) // RUN["batch_size"])
  return Population(model, scheduled(BUILTIN["adamw"], "cosine", steps), data,
                    epochs=RUN["epochs"], batch_size=RUN["batch_size"], eval_batch_size=1024)


def _ranking_after(data, model, hparams, epochs):
  """Lanes best first (diverged last) after ``epochs`` of round 0 of a ``RUN``
  search: the same configs trained the way tune trains them, without a strategy."""
  pop = _trainer(data, model)
  init_key, data_key = round_keys(RUN["seed"], 0)
  lanes, _ = pop.advance(pop.init(hparams, init_key), data_key, 0, epochs)
  scores = pop.evaluate(lanes.state.params)
  count = len(next(iter(hparams.values())))
  diverged = np.asarray(lanes.state.diverged)[:count]
  metrics = {name: np.asarray(values)[:count] for name, values in scores.items()}
  return rank(pop.objective.scoring, metrics, diverged)


def test_successive_halving_stops_lanes_at_rungs_and_spends_less(small_data, tiny_mlp, lr_space,
                                                                 tmp_path):
  result = vt.tune(tiny_mlp, small_data, lr_space, strategy="halving(eta=3)",
                   out=str(tmp_path / "run"), **RUN)
  budgets = halving_budgets(6, 3, 12, 1)  # [2, 6]: 12 lanes to 2 epochs, 12 / 3 = 4 to 6.
  assert budgets == [2, 6]
  for r in result.rounds:
    statuses = dict(zip(*np.unique(r.status, return_counts=True), strict=True))
    assert statuses == {"finished": 4, "halved": 8}
    assert sorted(set(r.epochs.tolist())) == [2, 6]
    assert r.lane_epochs == 12 * 2 + 4 * 4 == 40  # vs 12 * 6 = 72 for random search.
    # Finished trials outrank halved ones and beat them at their last common rung.
    assert all(r.status[t] == "finished" for t in r.kept[:3])
  assert [r.compiles for r in result.rounds[1:]] == [0]
  # The 4 that went on are the best 4 after the first rung (trial i is lane i).
  first = result.rounds[0]
  order = _ranking_after(small_data, tiny_mlp, first.hparams, 2)
  assert set(np.flatnonzero(first.status == "finished").tolist()) == set(order[:4].tolist())
  summary = result.summary()
  assert summary["programs_compiled"] == result.rounds[0].compiles > 0
  assert summary["lane_epochs"] == 2 * 40 + result.confirmation.lane_epochs
  records = vt.read_trials(tmp_path / "run")
  assert {r["status"] for r in records} == {"finished", "halved"}
  assert all(r["epochs"] == (6 if r["status"] == "finished" else 2) for r in records)
  final = result.final_fit()
  assert result.best.status == "finished"
  assert abs(final.val_accuracy - result.best.val_accuracy) <= 1 / len(small_data.val)


def test_hyperband_runs_brackets_that_start_later_with_fewer_lanes(small_data, tiny_mlp,
                                                                   lr_space):
  strategy = vt.strategies.Hyperband(eta=3)
  plan = strategy.brackets(6, 12)
  # s_max = 1; bracket 0: 12 lanes halved at 2 epochs; bracket 1: ceil(12 * 2 / 1 / 3) = 8.
  assert plan == [(12, [2, 6]), (8, [6])]
  result = vt.tune(tiny_mlp, small_data, lr_space, strategy=strategy, **ROUNDS_ONLY)
  first = result.rounds[0]
  assert first.configurations == 20 and first.num_trials == 20
  assert (first.bracket == 0).sum() == 12 and (first.bracket == 1).sum() == 8
  assert (first.epochs[first.bracket == 1] == 6).all()  # The last bracket trains fully.
  # Each bracket samples its own configurations.
  assert not set(first.hparams["learning_rate"][first.bracket == 0].tolist()) & \
      set(first.hparams["learning_rate"][first.bracket == 1].tolist())


def test_population_based_training_copies_lanes_and_replays_the_best_lineage(
    small_data, tiny_mlp, lr_space, tmp_path):
  result = vt.tune(tiny_mlp, small_data, lr_space, out=str(tmp_path / "run"),
                   strategy="pbt(interval=2, fraction=0.25)", **ROUNDS_ONLY)
  first = result.rounds[0]
  # Every 2 epochs the worst 3 of 12 lanes are overwritten: 2 exploits x 3 lanes.
  assert (first.status == "exploited").sum() + (first.status == "diverged").sum() >= 6
  children = np.flatnonzero(first.parent >= 0)
  assert len(children) >= 6
  for child in children:
    parent = first.parent[child]
    assert first.start_epoch[parent] < first.start_epoch[child]
    assert first.start_epoch[parent] + first.epochs[parent] >= first.start_epoch[child]
  # Every lane finishes the budget on exactly one trial; lineages cover [0, 6) without gaps.
  finished = np.flatnonzero(first.completed)
  assert sorted(first.lane[finished].tolist()) == list(range(12))
  for trial in finished:
    schedule = first.schedule(int(trial))
    assert schedule[0][0] == 0 and schedule[-1][1] == 6
    assert all(a[1] == b[0] for a, b in zip(schedule, schedule[1:], strict=False))
  # Replaying the chosen lineage as one run reproduces the search's result.
  final = result.final_fit()
  assert final.schedule == result.rounds[result.best.round].schedule(result.best.trial)
  assert abs(final.val_accuracy - result.best.val_accuracy) <= 1 / len(small_data.val)
  assert len(final.schedule) > 1 or any(len(first.schedule(int(t))) > 1 for t in finished)
  # A lineage with copies in it, replayed alone, ends where the search's lane ended.
  copied = int(max(finished, key=lambda t: (len(first.schedule(int(t))), -t)))
  assert len(first.schedule(copied)) > 1
  pop = _trainer(small_data, tiny_mlp)
  replayed = pop.alone.fit_schedule(first.schedule(copied), *round_keys(RUN["seed"], 0))
  scores = pop.alone.evaluate(replayed.params)
  assert float(scores["loss"]) == pytest.approx(first.val_loss[copied], rel=1e-4)
  # The lanes replaced after the first interval were the bottom 3; their parents in the top 3.
  order = _ranking_after(small_data, tiny_mlp, {k: v[:12] for k, v in first.hparams.items()}, 2)
  replaced = first.lane[(first.start_epoch == 0) & (first.epochs == 2)]
  assert set(replaced.tolist()) == set(order[-3:].tolist())
  parents = first.parent[first.start_epoch == 2]
  assert len(parents) == 3 and set(first.lane[parents].tolist()) <= set(order[:3].tolist())
  records = vt.read_trials(tmp_path / "run")
  assert {"exploited", "finished"} <= {r["status"] for r in records}


@pytest.mark.parametrize("strategy", ["halving(eta=3)", "hyperband(eta=3)", "pbt(interval=2)"])
def test_diverged_lanes_are_never_kept_copied_or_used_for_narrowing(strategy, small_data,
                                                                     tiny_mlp):
  # AdamW steps of up to 1e30 overflow the logits: about half the lanes diverge.
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e30))
  result = vt.tune(tiny_mlp, small_data, space, strategy=strategy, **dict(ROUNDS_ONLY, rounds=1))
  r = result.rounds[0]
  diverged = np.flatnonzero(r.status == "diverged")
  assert len(diverged) >= 2
  assert not np.isin(diverged, r.parent).any()  # PBT never copies from a diverged lane.
  assert not np.isin(diverged, r.kept).any()
  kept_high = float(r.hparams["learning_rate"][r.kept].max())
  margin = (30 - -3) * RUN["margin"] if "margin" in RUN else 33 * 0.1  # decades
  assert r.next_space["learning_rate"].high <= kept_high * 10 ** margin * (1 + 1e-6)
  if strategy.startswith("halving"):  # A lane that diverged stops at the rung it diverged by.
    assert (r.epochs[diverged] == 2).sum() >= 1 and (r.status[r.epochs == 6] != "diverged").any()


def test_pbt_explore_moves_each_value_one_step_or_resamples_it(lr_space):
  rng = np.random.default_rng(0)
  ctx = vt.strategies.RoundContext(pop=None, space=lr_space, index=0, configurations=4,
                                   init_key=None, data_key=None, rng=rng, ask=None)
  start = {"learning_rate": 0.01, "weight_decay": 1e-4}
  stepped = vt.strategies.PopulationBasedTraining(perturb=2.0, resample=0.0)
  moves = {round(stepped.explore(ctx, start)["learning_rate"], 6) for _ in range(20)}
  assert moves == {0.02, 0.005}
  resampled = vt.strategies.PopulationBasedTraining(resample=1.0)
  values = [resampled.explore(ctx, start)["learning_rate"] for _ in range(20)]
  assert len(set(values)) == 20 and all(1e-3 <= v <= 1.0 for v in values)


def test_tune_with_seeds_ranks_configurations_by_their_mean_and_records_the_spread(
    small_data, tiny_mlp, lr_space, tmp_path):
  with CompileCounter() as compiled:
    result = vt.tune(tiny_mlp, small_data, lr_space, population=4, rounds=2, epochs=2,
                     batch_size=32, seeds=SEEDS, confirm="off", out=str(tmp_path / "run"))
  first, second = result.rounds
  assert second.compiles == 0 and compiled.compiles == first.compiles
  assert first.seed_accuracy.shape == (4, SEEDS) and first.seeds == SEEDS
  assert first.lane_epochs == 4 * 2 * SEEDS
  alive = ~first.diverged
  np.testing.assert_allclose(first.val_accuracy[alive], first.seed_accuracy[alive].mean(axis=1))
  # Seeds differ: not every configuration scores the same under every seed.
  assert (first.seed_accuracy[alive].std(axis=1) > 0).any()
  best = first.kept[0]
  assert first.val_accuracy[best] == np.nanmax(first.val_accuracy)
  records = [r for r in vt.read_trials(tmp_path / "run") if r["round"] == 0]
  assert len(records) == 4
  for record, row in zip(records, first.seed_accuracy, strict=True):
    assert record["seed_accuracy"] == pytest.approx(row.tolist())
    assert record["val_accuracy_std"] == pytest.approx(float(np.std(row)))
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert summary["settings"]["seeds"] == SEEDS
  # The final fit retrains the chosen configuration with the first seed.
  final = result.final_fit()
  chosen = result.rounds[result.best.round]
  first_seed = chosen.seed_accuracy[result.best.trial, 0]
  assert abs(final.val_accuracy - first_seed) <= 1 / len(small_data.val)
  assert small_data.test_reads == 1


@pytest.mark.parametrize("settings, message", [
    ({"seeds": 0}, "seeds=0; expected a whole number >= 1"),
    ({"seeds": 2, "strategy": "halving"}, "seeds=2 needs strategy='random'"),
])
def test_bad_seeds_are_refused_before_anything_compiles(small_data, tiny_mlp, lr_space,
                                                        settings, message):
  with CompileCounter() as compiled, pytest.raises(vt.SettingsError, match=message):
    vt.tune(tiny_mlp, small_data, lr_space, population=4, rounds=1, epochs=3, batch_size=32,
            **settings)
  assert compiled.compiles == 0


SPECS = {"random": "random", "halving": "halving(eta=2)", "hyperband": "hyperband(eta=2)",
         "pbt": "pbt(interval=1)"}


@pytest.mark.slow  # Every strategy again; test_samplers.py tests the Optuna sampler fast.
@pytest.mark.parametrize("name", sorted(vt.strategies.STRATEGIES))
def test_every_strategy_trains_what_the_optuna_sampler_proposes(name, small_data, tiny_mlp,
                                                               lr_space):
  """Every strategy with a sampler other than the default narrow one (which the tests
  above run with every strategy): the same invariants of the round's trials."""
  pytest.importorskip("optuna")
  spec = SPECS[name]
  result = vt.tune(tiny_mlp, small_data, lr_space, population=4, rounds=1, epochs=2,
                   batch_size=32, sampler="optuna(sampler='random')", strategy=spec,
                   confirm="off")  # The choice is then the round's best.
  r = result.rounds[0]
  assert r.strategy == parse_strategy(spec).describe() == result.settings["strategy"]
  assert set(r.status) <= {"finished", "halved", "exploited", "diverged"}
  assert (r.reached <= 2).all() and r.completed.any()
  assert r.configurations >= 4 and r.lane_epochs == int(r.epochs.sum())
  assert result.best.status == "finished" and r.best_trial == result.best.trial
