"""The samplers that propose a whole round from every finished trial (density,
evolution): proposals inside the space, the same for the same seed, diverse,
better than random on a cheap known function, the same after a resume, and
buckets of structural values sized by how good they are. No training: the
trials are scored by a function of their values."""

import numpy as np
import pytest

import vmaptune as vt
from vmaptune.samplers import Density, Evolution, parse
from vmaptune.samplers.history import allocate
from vmaptune.space.structural import Bucket
from vmaptune.trials.scoring import CLASSIFICATION
from vmaptune.trials.table import TrialTable

MODEL_BASED = ["density", "evolution"]
SPACE = vt.Space(learning_rate=vt.LogUniform(1e-5, 1.0), weight_decay=vt.LogUniform(1e-8, 1e-1),
                 b1=vt.Uniform(0.5, 0.99), warmup_epochs=vt.IntUniform(0, 5))
OPTIMUM = SPACE.to_unit({"learning_rate": [3e-3], "weight_decay": [1e-5], "b1": [0.9],
                         "warmup_epochs": [1]})[0]
PLAIN = Bucket(index=None, values={}, model=None, batch_size=32)
# Proposals closer than this in the unit cube (1% of every range) are near-duplicates;
# at most NEAR_DUPLICATES of a round may have one.
CLOSE, NEAR_DUPLICATES = 0.01, 0.05


def score(hparams: dict) -> np.ndarray:
  """A cheap known function of the values: 1 at OPTIMUM, falling with distance."""
  return 1.0 - np.linalg.norm(SPACE.to_unit(hparams) - OPTIMUM, axis=1)


def table(hparams: dict, accuracy: np.ndarray, round_index: int) -> TrialTable:
  count = len(accuracy)
  diverged = np.isnan(accuracy)
  return TrialTable(
      hparams={k: np.asarray(v) for k, v in hparams.items()},
      round=np.full(count, round_index), trial=np.arange(count), lane=np.arange(count),
      bracket=np.full(count, -1), start_epoch=np.zeros(count, int), epochs=np.ones(count, int),
      parent=np.full(count, -1), status=np.where(diverged, "diverged", "finished").astype(object),
      metrics={"accuracy": accuracy, "loss": 1.0 - accuracy},
      epoch_loss=np.zeros((count, 1), np.float32), scoring=CLASSIFICATION)


def search(name: str, seed: int, rounds: int = 4, count: int = 48) -> list[dict]:
  """Each round's proposals of sampler ``name``, every round told its scores."""
  sampler = parse(name)
  sampler.check(SPACE, vt.strategies.parse("random"), CLASSIFICATION)
  sampler.start(SPACE, seed, scoring=CLASSIFICATION)
  proposed = []
  for index in range(rounds):
    hparams = sampler.ask(count, round_index=index, bucket=PLAIN)
    proposed.append(hparams)
    sampler.tell(table(hparams, score(hparams), index), round_index=index)
  return proposed


@pytest.mark.parametrize("name", MODEL_BASED)
def test_proposals_stay_inside_the_space_and_repeat_for_the_same_seed(name):
  rounds = search(name, seed=1, rounds=3)
  for hparams in rounds:
    for param, dist in SPACE.items():
      values = hparams[param]
      assert values.dtype == np.float32 and values.shape == (48,)
      assert (values >= dist.low).all() and (values <= dist.high).all(), param
    np.testing.assert_array_equal(hparams["warmup_epochs"], np.rint(hparams["warmup_epochs"]))
  again, other = search(name, seed=1, rounds=3), search(name, seed=2, rounds=3)
  for param in SPACE:
    np.testing.assert_array_equal(rounds[-1][param], again[-1][param])
    assert not np.array_equal(rounds[-1][param], other[-1][param])


@pytest.mark.parametrize("name", MODEL_BASED)
def test_a_round_has_few_near_duplicates(name):
  last = SPACE.to_unit(search(name, seed=0)[-1])
  distances = np.linalg.norm(last[:, None] - last[None], axis=-1) + np.eye(len(last)) * 9
  assert (distances.min(axis=1) < CLOSE).mean() <= NEAR_DUPLICATES


@pytest.mark.parametrize("name", MODEL_BASED)
def test_the_optimum_of_a_known_function_is_approached_faster_than_by_random_sampling(name):
  """Best score after 4 rounds of 48, over 5 seeds, against as many uniform draws."""
  learned = [max(score(h).max() for h in search(name, seed)) for seed in range(5)]
  uniform = [score(SPACE.sample(seed, 0, 4 * 48)).max() for seed in range(5)]
  assert np.mean(learned) > np.mean(uniform) + 0.02, (learned, uniform)


@pytest.mark.parametrize("name", MODEL_BASED)
def test_a_resumed_sampler_told_the_same_rounds_proposes_the_same(name):
  """A resume tells restored rounds without asking first: proposals must not change."""
  uninterrupted = search(name, seed=4, rounds=3)
  resumed = parse(name)
  resumed.start(SPACE, 4, scoring=CLASSIFICATION)
  for index, hparams in enumerate(uninterrupted[:2]):
    resumed.tell(table(hparams, score(hparams), index), round_index=index)
  proposed = resumed.ask(48, round_index=2, bucket=PLAIN)
  for param in SPACE:
    np.testing.assert_array_equal(proposed[param], uninterrupted[2][param])


def test_the_first_round_is_the_narrow_samplers_uniform_draw():
  for name in MODEL_BASED:
    first = search(name, seed=5, rounds=1)[0]
    for param in SPACE:
      np.testing.assert_array_equal(first[param], SPACE.sample(5, 0, 48)[param])


def test_diverged_trials_count_as_bad_and_the_best_trial_is_kept():
  sampler = Density()
  sampler.start(SPACE, 0, scoring=CLASSIFICATION)
  hparams = sampler.ask(20, round_index=0, bucket=PLAIN)
  accuracy = score(hparams)
  accuracy[:5] = np.nan
  told = sampler.tell(table(hparams, accuracy, 0), round_index=0)
  assert told.kept[0] == np.nanargmax(accuracy) and not set(told.kept) & set(range(5))
  assert told.next_space == SPACE  # Nothing is narrowed.
  assert not sampler.is_good[:5].any()


def test_buckets_are_sized_by_how_often_their_configurations_are_good():
  space = vt.Space(learning_rate=vt.LogUniform(1e-4, 1.0), width=vt.Choice([8, 16, 32]))
  sampler = Density(good=0.2)
  sampler.start(space, 0, scoring=CLASSIFICATION)
  plan = sampler.plan(30, 0).buckets
  assert [count for _, count in plan] == [10, 10, 10]  # Nothing learned yet: equal shares.
  width = np.repeat([8, 16, 32], 10)
  accuracy = np.where(width == 16, 0.9, 0.5) + np.tile(np.linspace(0, 0.01, 10), 3)
  hparams = {"learning_rate": np.full(30, 1e-2, np.float32), "width": width}
  sampler.tell(table(hparams, accuracy, 0), round_index=0)
  plan = dict((values["width"], count) for values, count in sampler.plan(30, 1).buckets)
  floor = sampler.fewest_configurations(space, 30)
  assert sum(plan.values()) == 30 and min(plan.values()) >= floor == 5
  assert plan[16] > plan[8] and plan[16] > plan[32]
  assert sampler.lane_sizes(space, 30) == (1, 2, 4, 8, 16, 30)


def test_allocate_gives_each_bucket_its_floor_and_the_rest_by_weight():
  assert allocate(np.array([1.0, 1.0, 2.0]), 12, 2).tolist() == [4, 3, 5]
  assert allocate(np.array([0.2, 0.2]), 5, 1).tolist() == [3, 2]


@pytest.mark.parametrize("spec, message", [
    ("density(good=1.0)", "good=1.0"), ("density(explore=1.5)", "explore=1.5"),
    ("density(candidates=0)", "candidates=0"), ("evolution(sigma=0)", "sigma=0")])
def test_bad_settings_are_refused_before_anything_compiles(spec, message, small_data, tiny_mlp,
                                                            refused_before_compiling):
  refused_before_compiling(vt.SettingsError, message, model=tiny_mlp, data=small_data,
                           space=SPACE, population=4, rounds=1, epochs=1, sampler=spec)


@pytest.mark.slow  # End to end; the sampler's behaviour has the fast tests above.
def test_a_structural_space_tunes_end_to_end_with_the_density_sampler(small_data):
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 0.3), hidden=vt.Choice([(8,), (16,)]))
  result = vt.tune(vt.models.MLP, small_data, space, population=8, rounds=2, epochs=1,
                   batch_size=32, sampler="density", confirm="off")
  assert [r.configurations for r in result.rounds] == [8, 8]
  assert sorted(result.rounds[1].hparams["hidden"].tolist()) != []
  assert isinstance(parse("evolution"), Evolution)
