"""Objectives: the invariants hold for every built-in objective (lane equivalence, no
recompiles across rounds, a diverged lane isolated, the test split read once), searched loss
weights are traced per lane, batches may be any pytree, and a NaN metric is a diverged lane."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vmaptune as vt
from vmaptune.lanes.compilation import CompileCounter
from vmaptune.lanes.keys import round_keys
from vmaptune.lanes.population import Population
from vmaptune.models.optimizers import BUILTIN
from vmaptune.objectives import Metric

PARAM_ATOL = 1e-4  # As in test_population: a lane agrees with its lone run to float32 rounding.
LR = {"learning_rate": vt.LogUniform(1e-3, 1e-1)}


class TinyLM(nn.Module):
  """Embedding, one causal mixing layer and a readout: tokens [B, T] -> logits [B, T, V]."""
  vocabulary: int = 7

  @nn.compact
  def __call__(self, tokens, dropout_rate=None):
    h = nn.Embed(self.vocabulary, 8)(tokens)
    # Causal: each position sees itself and the one before.
    h = h + nn.Dense(8)(jnp.pad(h, ((0, 0), (1, 0), (0, 0)))[:, :-1])
    h = vt.models.Dropout()(nn.tanh(h), dropout_rate)
    return nn.Dense(self.vocabulary)(h)


def _classification(small_arrays):
  x, y = small_arrays
  data = vt.data.from_arrays(x[:300], y[:300], val_fraction=0.2, test_fraction=0.2, seed=0,
                             num_classes=10)
  return vt.models.MLP(hidden=(8,)), data


def _regression(small_arrays):
  x, y = small_arrays
  target = (x[:300].reshape(300, -1) @ np.linspace(-1, 1, 64)).astype(np.float32)
  data = vt.data.from_arrays(x[:300], (target - target.mean()) / target.std(),
                             val_fraction=0.2, test_fraction=0.2, seed=0)
  return vt.models.MLP(hidden=(8,), num_classes=1), data


def _language_model(small_arrays):
  rng = np.random.default_rng(0)
  # Sequences that follow a rule (next = previous + 1 mod 7) with some noise: learnable.
  start = rng.integers(0, 7, (300, 1))
  tokens = (start + np.arange(9)) % 7
  noise = rng.random(tokens.shape) < 0.1
  tokens[noise] = rng.integers(0, 7, int(noise.sum()))
  data = vt.Dataset(train=tokens[:180], val=tokens[180:240], test=tokens[240:])
  return TinyLM(), data


OBJECTIVES = {"classification": _classification, "regression": _regression,
              "language_model": _language_model}


@pytest.fixture(params=sorted(OBJECTIVES))
def problem(request, small_arrays):
  model, data = OBJECTIVES[request.param](small_arrays)
  return request.param, model, data


def _population(model, data, objective, epochs=2):
  return Population(model, BUILTIN["adamw"], data, epochs=epochs, batch_size=30,
                    eval_batch_size=64, objective=vt.objectives.parse(objective))


def _hparams(rates):
  return {"learning_rate": np.asarray(rates, np.float32)}


def test_each_lane_equals_its_configuration_trained_alone(problem):
  name, model, data = problem
  pop = _population(model, data, name)
  hparams = _hparams([3e-3, 3e-2, 1e-1])
  keys = round_keys(0, 0)
  out = pop.train(hparams, *keys)
  scores = pop.evaluate(out.params)
  assert set(scores) == set(vt.objectives.parse(name).scoring.names)
  for lane in range(3):
    alone = pop.alone.fit({"learning_rate": hparams["learning_rate"][lane]}, *keys)
    for got, want in zip(jax.tree.leaves(jax.tree.map(lambda p, i=lane: p[i], out.params)),
                         jax.tree.leaves(alone.params), strict=True):
      np.testing.assert_allclose(got, want, atol=PARAM_ATOL, rtol=0)
    lone = pop.alone.evaluate(alone.params)
    for metric in scores:
      np.testing.assert_allclose(float(scores[metric][lane]), float(lone[metric]), rtol=2e-3,
                                 atol=1 / 60)


def test_new_rounds_never_recompile_and_the_test_split_is_read_once(problem, tmp_path):
  name, model, data = problem
  compiles = []
  result = vt.tune(model, data, vt.Space(**LR), objective=name, population=4, rounds=3,
                   epochs=1, batch_size=30, confirm="off", out=str(tmp_path / "run"),
                   on_round=lambda r: compiles.append(r.compiles))
  assert compiles[0] > 0 and compiles[1:] == [0, 0]
  assert data.test_reads == 0  # The search never read it.
  final = result.final_fit()
  result.final_fit()
  assert data.test_reads == 1
  scoring = vt.objectives.parse(name).scoring
  assert set(final.test) == set(scoring.names) and np.isfinite(final.test_score)
  # Records keep every metric, and a reader ranks them in the objective's direction.
  run = vt.load_run(tmp_path / "run")
  record = run.records[0]
  assert all(scoring.field(metric) in record for metric in scoring.names)
  scores = [r[scoring.field(scoring.rank_by)] for r in run.top(12)]
  assert scores == sorted(scores, reverse=scoring.maximize)
  assert run.chosen[scoring.field(scoring.rank_by)] == scoring.best_of(run.trials.score)


def test_a_diverged_lane_is_marked_and_disturbs_no_other_lane(problem):
  name, model, data = problem
  pop = _population(model, data, name, epochs=1)
  keys = round_keys(0, 0)
  sane = pop.train(_hparams([1e-2, 3e-2, 1e-1]), *keys)
  mixed = pop.train(_hparams([1e-2, 3e-2, 1e12]), *keys)
  assert np.asarray(mixed.diverged)[:3].tolist() == [False, False, True]
  for a, b in zip(jax.tree.leaves(sane.params), jax.tree.leaves(mixed.params), strict=True):
    np.testing.assert_array_equal(np.asarray(a)[:2], np.asarray(b)[:2])


def test_the_search_ranks_in_the_objectives_direction_and_skips_diverged_lanes(small_arrays):
  model, data = _regression(small_arrays)
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e7))  # The top decade diverges.
  result = vt.tune(model, data, space, objective="regression", population=8, rounds=1,
                   epochs=1, batch_size=30, confirm="off", sampler="narrow(keep=0.25)")
  r = result.rounds[0]
  assert r.diverged.any() and not r.diverged.all()
  alive = ~r.diverged
  assert result.best.val_mse == np.min(r.val_mse[alive])  # Lowest error, not highest.
  assert r.kept.tolist() == np.argsort(np.where(alive, r.val_mse, np.inf))[:2].tolist()
  assert "val mse" in result.describe()


def _pair_objective(**kwargs):
  """A regression on dict batches ``{"x": [N, 64], "y": [N]}`` with a Huber loss whose
  delta is searched: ``huber_delta`` reaches the loss as each lane's traced value."""
  def loss(outputs, batch, hparams):
    error = outputs[:, 0] - batch["y"]
    delta = hparams["huber_delta"]
    return jnp.where(jnp.abs(error) < delta, 0.5 * error ** 2,
                     delta * (jnp.abs(error) - 0.5 * delta))

  metrics = {"mae": Metric(lambda outputs, batch: jnp.abs(outputs[:, 0] - batch["y"])),
             **kwargs.pop("metrics", {})}
  return vt.objectives.custom(loss=loss, metrics=metrics, rank_by="mae", name="huber", **kwargs)


def _dict_data(small_arrays, n=300):
  x, _ = small_arrays
  x = x[:n].reshape(n, -1)
  y = (x @ np.linspace(-1, 1, 64)).astype(np.float32)
  cut = lambda a, b: {"x": x[a:b], "y": y[a:b]}
  return vt.Dataset(train=cut(0, 180), val=cut(180, 240), test=cut(240, n))


def test_a_searched_loss_weight_is_traced_per_lane_and_never_recompiles(small_arrays):
  data = _dict_data(small_arrays)
  pop = Population(vt.models.MLP(hidden=(8,), num_classes=1), BUILTIN["adamw"], data, epochs=1,
                   batch_size=30, eval_batch_size=64, objective=_pair_objective())
  keys = round_keys(0, 0)
  hparams = {"learning_rate": np.full(3, 3e-2, np.float32),
             "huber_delta": np.array([0.01, 0.1, 10.0], np.float32)}
  out = pop.train(hparams, *keys)
  pop.evaluate(out.params)
  losses = np.asarray(out.epoch_loss)[:3, 0]
  assert losses[0] < losses[1] < losses[2]  # A smaller delta gives a smaller Huber loss.
  with CompileCounter() as compiled:
    again = pop.train({**hparams, "huber_delta": np.array([0.5, 2.0, 0.05], np.float32)},
                      *keys)
    pop.evaluate(again.params)
  assert compiled.compiles == 0
  # The lane with delta 10 trained on the squared error: a lone run of a plain mse objective.
  mse = vt.objectives.custom(loss=lambda o, b, h: 0.5 * (o[:, 0] - b["y"]) ** 2,
                             metrics={"mae": Metric(lambda o, b: jnp.abs(o[:, 0] - b["y"]))},
                             rank_by="mae")
  plain = Population(vt.models.MLP(hidden=(8,), num_classes=1), BUILTIN["adamw"], data,
                     epochs=1, batch_size=30, eval_batch_size=64, objective=mse)
  alone = plain.alone.fit({"learning_rate": np.float32(3e-2)}, *keys)
  for got, want in zip(jax.tree.leaves(jax.tree.map(lambda p: p[2], out.params)),
                       jax.tree.leaves(alone.params), strict=True):
    np.testing.assert_allclose(got, want, atol=PARAM_ATOL, rtol=0)


def test_a_searched_name_nothing_reads_is_refused_before_compiling(small_arrays,
                                                                   refused_before_compiling):
  data = _dict_data(small_arrays)
  space = vt.Space(**LR, huber_delta=vt.LogUniform(0.01, 1.0), kl_weight=vt.LogUniform(0.1, 1))
  refused_before_compiling(
      vt.SettingsError, r"\['kl_weight'\] are read by nothing.*nor by objective 'huber'",
      model=vt.models.MLP(hidden=(8,), num_classes=1), data=data, space=space,
      objective=_pair_objective(), population=2, rounds=1, epochs=1, batch_size=30)
  # The same name is refused by the classification objective, which reads only label_smoothing.
  refused_before_compiling(
      vt.SettingsError, r"\['huber_delta'\] are read by nothing",
      model=vt.models.MLP(hidden=(8,)), data=vt.data.from_arrays(*small_arrays),
      space=vt.Space(**LR, huber_delta=vt.LogUniform(0.01, 1.0)), population=2, rounds=1,
      epochs=1)


def test_a_nan_metric_is_a_diverged_lane(small_arrays):
  # The metric is NaN where the lane's weights grew large: only high learning rates get there.
  def odd(outputs, batch):
    return jnp.where(jnp.abs(outputs[:, 0]).max() > 1e3, jnp.nan, 0.0) + 0 * batch["y"]

  objective = _pair_objective(metrics={"odd": Metric(odd)})
  data = _dict_data(small_arrays)
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e3), huber_delta=vt.LogUniform(1, 2))
  result = vt.tune(vt.models.MLP(hidden=(8,), num_classes=1), data, space, objective=objective,
                   population=8, rounds=1, epochs=1, batch_size=30, confirm="off", seed=1)
  r = result.rounds[0]
  nan_metric = ~np.isfinite(r.metrics["odd"])
  assert nan_metric.any() and r.diverged[nan_metric].all()
  assert np.isnan(r.val_mae[nan_metric]).all()  # Every metric of a diverged lane is NaN.
  assert not r.diverged[~nan_metric].any()


@pytest.mark.parametrize("split, message", [
    ({"x": np.zeros((10, 3), np.float32), "y": np.zeros(9, np.float32)},
     r"train split's arrays have different lengths \{\"\['x'\]\": 10, \"\['y'\]\": 9\}"),
    ({"x": np.full((10, 3), np.nan, np.float32), "y": np.zeros(10, np.float32)},
     r"train \['x'\] contain 30 NaN/inf values \(first in row 0\)"),
    ({"x": np.zeros((10, 3), np.float32), "y": np.array(["a"] * 10)},
     r"train \['y'\] have dtype <U1; expected real numbers"),
    ((np.zeros((10, 3), np.float32), np.zeros(10), np.zeros((10, 0))),
     r"train \[2\] have shape \(10, 0\): no values per example"),
])
def test_a_bad_leaf_of_a_pytree_split_is_named(split, message):
  val = {"x": np.zeros((4, 3), np.float32), "y": np.zeros(4, np.float32)}
  with pytest.raises(vt.DataError, match=message):
    vt.Dataset(train=split, val=val if isinstance(split, dict) else split)


def test_splits_of_another_structure_or_leaf_shape_are_refused():
  split = lambda n, d=3: {"x": np.zeros((n, d), np.float32), "y": np.zeros(n, np.float32)}
  with pytest.raises(vt.DataError, match="splits have different structures"):
    vt.Dataset(train=split(10), val={"x": np.zeros((4, 3), np.float32)})
  with pytest.raises(vt.DataError, match=r"splits have different \['x'\] shapes"):
    vt.Dataset(train=split(10), val=split(4, d=2))
  with pytest.raises(vt.DataError, match="validation split is empty"):
    vt.Dataset(train=split(10), val=split(0))
  data = vt.Dataset(train=split(10), val=split(4))
  assert data.sizes == {"train": 10, "val": 4, "test": 0} and data.num_classes is None


def test_objectives_refuse_data_and_models_they_cannot_read(small_arrays,
                                                            refused_before_compiling):
  x, y = small_arrays
  tokens = np.zeros((40, 6), np.int32)
  refused_before_compiling(
      vt.DataError, "objective 'language_model' takes each split as one integer array",
      model=TinyLM(), data=vt.data.from_arrays(x, y), space=vt.Space(**LR),
      objective="language_model", population=2, rounds=1, epochs=1)
  refused_before_compiling(
      vt.DataError, r"train tokens reach 9 but the model's logits cover a vocabulary of 7",
      model=TinyLM(), data=vt.Dataset(train=tokens + 9, val=tokens), space=vt.Space(**LR),
      objective="language_model", population=2, rounds=1, epochs=1, batch_size=8)
  refused_before_compiling(
      vt.SettingsError, r"outputs shape \(64, 10\) for a batch of 64; expected the targets' "
      r"shape \(64,\) or \(64, 1\)",
      model=vt.models.MLP(hidden=(8,)), data=vt.data.from_arrays(x, y.astype(np.float32)),
      space=vt.Space(**LR), objective="regression", population=2, rounds=1, epochs=1)
  refused_before_compiling(
      vt.SettingsError, r"objective='ranking' is unknown; expected one of \['classification', "
      r"'language_model', 'regression'\]",
      model=vt.models.MLP(hidden=(8,)), data=vt.data.from_arrays(x, y), space=vt.Space(**LR),
      objective="ranking", population=2, rounds=1, epochs=1)
  refused_before_compiling(
      vt.SettingsError, r"rank_by='r2' is not a metric; expected one of \['mse', 'mae'\]",
      model=vt.models.MLP(hidden=(8,), num_classes=1),
      data=vt.data.from_arrays(x, y.astype(np.float32)), space=vt.Space(**LR),
      objective="regression(rank_by='r2')", population=2, rounds=1, epochs=1)


def test_custom_objectives_are_checked_when_made():
  metric = {"mae": Metric(lambda o, b: o)}
  with pytest.raises(vt.SettingsError, match="give exactly one of loss"):
    vt.objectives.custom(metrics=metric, rank_by="mae")
  with pytest.raises(vt.SettingsError, match="metric 'mae' is function; expected"):
    vt.objectives.custom(loss=lambda o, b, h: o, metrics={"mae": lambda o, b: o}, rank_by="mae")
  with pytest.raises(vt.SettingsError, match="direction 'lower'"):
    vt.objectives.custom(loss=lambda o, b, h: o, metrics={"mae": Metric(lambda o, b: o, "lower")},
                         rank_by="mae")
  objective = vt.objectives.parse("regression(rank_by='mae')")
  assert objective.describe() == "regression(rank_by='mae')"
  assert vt.objectives.parse("classification").describe() == "classification"
  assert objective.scoring.rank_by == "mae" and not objective.scoring.maximize


class _VAE(nn.Module):
  """x [B, 4] -> (reconstruction, mean, log variance); samples only with ``sample=True``."""

  @nn.compact
  def __call__(self, x, sample=False):
    h = nn.tanh(nn.Dense(8)(x))
    mean, log_var = nn.Dense(2)(h), nn.Dense(2)(h)
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(self.make_rng("sample"),
                                                          mean.shape) if sample else mean
    return nn.Dense(4)(nn.tanh(nn.Dense(8)(z))), mean, log_var


def _kl(mean, log_var):
  return 0.5 * (jnp.exp(log_var) + mean ** 2 - 1 - log_var).sum(-1)


def test_the_escape_hatch_trains_a_vae_with_a_searched_kl_weight_and_a_fresh_key_each_step():
  keys_seen = []

  def train_loss(model, params, batch, key, hparams):
    keys_seen.append(key)
    reconstruction, mean, log_var = model.apply({"params": params}, batch, sample=True,
                                                rngs={"sample": key})
    error = ((reconstruction - batch) ** 2).sum(-1)
    return (error + hparams["kl_weight"] * _kl(mean, log_var)).mean()

  def elbo(outputs, batch):
    reconstruction, mean, log_var = outputs
    return ((reconstruction - batch) ** 2).sum(-1) + _kl(mean, log_var)

  objective = vt.objectives.custom(train_loss=train_loss, metrics={"neg_elbo": Metric(elbo)},
                                   rank_by="neg_elbo", name="vae")
  x = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
  data = vt.Dataset(train=x[:120], val=x[120:160], test=x[160:])
  space = vt.Space(**LR, kl_weight=vt.LogUniform(0.01, 10.0))
  result = vt.tune(_VAE(), data, space, objective=objective, population=4, rounds=2, epochs=2,
                   batch_size=20, confirm="off")
  assert keys_seen, "the escape hatch was not traced"
  trials = result.trials()
  assert len({t.hparams["kl_weight"] for t in trials}) == 8
  assert all(np.isfinite(t.val_neg_elbo) for t in trials)
  # Lane equivalence holds with the hatch's key: lane i is its configuration trained alone.
  pop = Population(_VAE(), BUILTIN["adamw"], data, epochs=2, batch_size=20, eval_batch_size=64,
                   objective=objective)
  hparams = {"learning_rate": np.full(2, 1e-2, np.float32),
             "kl_weight": np.array([0.1, 5.0], np.float32)}
  keys = round_keys(0, 0)
  out = pop.train(hparams, *keys)
  alone = pop.alone.fit({"learning_rate": np.float32(1e-2), "kl_weight": np.float32(5.0)}, *keys)
  for got, want in zip(jax.tree.leaves(jax.tree.map(lambda p: p[1], out.params)),
                       jax.tree.leaves(alone.params), strict=True):
    np.testing.assert_allclose(got, want, atol=PARAM_ATOL, rtol=0)
  # Different steps draw different keys: the losses of two identical lanes on two data keys
  # differ, and the same data key gives the same losses.
  same = pop.train({k: np.repeat(v[:1], 2) for k, v in hparams.items()}, *keys)
  np.testing.assert_array_equal(np.asarray(same.epoch_loss)[0], np.asarray(same.epoch_loss)[1])


@pytest.mark.parametrize("sampler", ["narrow(keep=0.25)", "density", "evolution"])
def test_every_sampler_keeps_the_lowest_errors_of_a_minimised_metric(sampler, small_arrays):
  model, data = _regression(small_arrays)
  space = vt.Space(learning_rate=vt.LogUniform(1e-4, 1e0), weight_decay=vt.LogUniform(1e-6, 1e-1))
  result = vt.tune(model, data, space, objective="regression", population=8, rounds=2,
                   epochs=1, batch_size=30, confirm="off", sampler=sampler)
  for r in result.rounds:
    kept = r.kept.tolist()
    others = [i for i in range(r.num_trials) if i not in kept and not r.diverged[i]]
    assert kept and r.val_mse[kept].max() <= min(r.val_mse[others], default=np.inf)
    assert r.val_mse[kept[0]] == np.nanmin(r.val_mse)  # Best first: the lowest error.


def test_a_metric_must_give_one_value_per_example_and_copying_hparams_reads_nothing(
    small_arrays, refused_before_compiling):
  data = _dict_data(small_arrays)
  mean_only = _pair_objective(metrics={"mse": Metric(
      lambda outputs, batch: ((outputs[:, 0] - batch["y"]) ** 2).mean())})
  space = vt.Space(**LR, huber_delta=vt.LogUniform(0.1, 1.0))
  refused_before_compiling(
      vt.SettingsError, r"metrics \['mse'\] give shapes \{'mse': \(\)\} for a batch of 30; "
      r"expected one value per example", model=vt.models.MLP(hidden=(8,), num_classes=1),
      data=data, space=space, objective=mean_only, population=2, rounds=1, epochs=1,
      batch_size=30)

  def copying(hparams):  # Copies every name, reads one.
    hparams = dict(hparams)
    return vt.models.optimizers.BUILTIN["adamw"]({"learning_rate": hparams["learning_rate"]})

  refused_before_compiling(
      vt.SettingsError, r"\['unused'\] are read by nothing: not by optimizer '.*copying'",
      model=vt.models.MLP(hidden=(8,), num_classes=1), data=data,
      space=vt.Space(**space, unused=vt.Uniform(0.0, 1.0)), objective=_pair_objective(),
      optimizer=copying, population=2, rounds=1, epochs=1, batch_size=30)


class _TwoInputs(nn.Module):
  """Reads a dict of inputs ``{"a": [B, 3], "b": [B, 2]}``; outputs ``[B, 1]``."""

  @nn.compact
  def __call__(self, inputs):
    return nn.Dense(1)(jnp.concatenate([inputs["a"], inputs["b"]], axis=-1))


def test_nested_pytree_inputs_train_and_their_parameters_load_back(tmp_path):
  rng = np.random.default_rng(0)
  n = 120
  a, b = rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32)
  y = (a.sum(1) - b.sum(1)).astype(np.float32)
  cut = lambda s: {"inputs": {"a": a[s], "b": b[s]}, "y": y[s]}
  data = vt.Dataset(train=cut(slice(0, 80)), val=cut(slice(80, 100)), test=cut(slice(100, n)))
  objective = vt.objectives.custom(
      loss=lambda o, batch, h: (o[:, 0] - batch["y"]) ** 2,
      metrics={"mse": Metric(lambda o, batch: (o[:, 0] - batch["y"]) ** 2)}, rank_by="mse",
      inputs=lambda batch: batch["inputs"])
  result = vt.tune(_TwoInputs(), data, vt.Space(**LR), objective=objective, population=2,
                   rounds=1, epochs=2, batch_size=20, confirm="off", out=str(tmp_path / "run"))
  result.final_fit()
  params = vt.load_run(tmp_path / "run").best_params(_TwoInputs())
  assert params["Dense_0"]["kernel"].shape == (5, 1)
  with pytest.raises(ValueError, match="metric name 'mse_std' is taken"):
    vt.trials.scoring.Scoring((("mse", "minimize"), ("mse_std", "minimize")), "mse")


class _BagOfTokens(nn.Module):
  """Int tokens [B, T] -> logits [B, 2]: embeddings averaged over the sequence."""

  @nn.compact
  def __call__(self, tokens):
    return nn.Dense(2)(nn.Embed(5, 8)(tokens).mean(axis=1))


def test_a_text_classifier_reads_int_tokens_from_dict_splits():
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 5, (200, 6))
  labels = (tokens == 4).any(axis=1).astype(np.float64)  # Whole-valued floats pass as labels.
  cut = lambda s: {"x": tokens[s], "y": labels[s]}
  data = vt.Dataset(train=cut(slice(0, 120)), val=cut(slice(120, 160)), test=cut(slice(160, 200)))
  assert data.train["x"].dtype == np.int32  # A dict keeps int features (a pair casts them).
  assert data.num_classes is None  # Float targets: not labels until a classification run.
  result = vt.tune(_BagOfTokens(), data, vt.Space(learning_rate=vt.LogUniform(1e-2, 3e-1)),
                   population=4, rounds=1, epochs=3, batch_size=20, confirm="off")
  assert data.num_classes == 2 and data.train["y"].dtype == np.int32
  assert result.best.val_accuracy > 0.6
  regression = vt.Dataset(train={"x": tokens[:120].astype(np.float32), "y": labels[:120]},
                          val={"x": tokens[120:].astype(np.float32), "y": labels[120:]})
  found = vt.tune(vt.models.MLP(hidden=(4,), num_classes=1), regression,
                  vt.Space(**LR), objective="regression", population=2, rounds=1, epochs=1,
                  batch_size=20, confirm="off")
  assert np.isfinite(found.best.val_mse)
