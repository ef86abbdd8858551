"""A new sampler or strategy is one class and a registry line: toys registered here run
through `tune` by name, and the sampler implements no more than the four round methods."""

import dataclasses

import numpy as np
import pytest

import vmaptune as vt
from vmaptune.samplers.base import Sampler, Told
from vmaptune.strategies.base import RoundContext, Strategy, close_all, record_losses
from vmaptune.trials.log import Trained
from vmaptune.trials.ranking import rank

SPACE = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1))


@dataclasses.dataclass
class Ladder(Sampler):
  """Learning rates evenly spaced in log scale over the current ranges; keeps the best half."""

  name = "ladder"

  def ask(self, count, *, round_index, bucket, stream=0):
    low, high = self.ranges["learning_rate"].low, self.ranges["learning_rate"].high
    return {"learning_rate": np.geomspace(low, high, count).astype(np.float32)}

  def tell(self, trials, *, round_index):
    return Told(rank(trials)[:max(1, len(trials) // 2)], self.ranges)


@dataclasses.dataclass(frozen=True)
class TwoSteps(Strategy):
  """Every configuration trains the budget in two segments (the same computation as one)."""

  name = "two_steps"

  def run(self, ctx: RoundContext) -> Trained:
    log = ctx.new_log()
    hparams = ctx.sample(ctx.configurations)
    trials = [log.open(i, {k: v[i] for k, v in hparams.items()}, 0)
              for i in range(ctx.configurations)]
    lanes = ctx.pop.init(hparams, ctx.init_key)
    half = ctx.budget // 2
    lanes, first = ctx.advance(lanes, 0, half)
    lanes, second = ctx.advance(lanes, half, ctx.budget - half)
    record_losses(log, trials, first)
    record_losses(log, trials, second)
    close_all(log, trials, ctx.budget, ctx.evaluate(lanes), lanes=lanes)
    return log.trained()


def _own_methods(cls: type) -> set[str]:
  return {name for name, value in vars(cls).items()
          if callable(value) and not name.startswith("__")}


def test_a_registered_toy_sampler_and_strategy_run_by_name(monkeypatch, tiny_mlp, small_data,
                                                           fast_settings, tmp_path):
  monkeypatch.setitem(vt.samplers.SAMPLERS, "ladder", Ladder)
  monkeypatch.setitem(vt.strategies.STRATEGIES, "two_steps", TwoSteps)
  settings = {**fast_settings, "rounds": 2, "epochs": 2}
  result = vt.tune(tiny_mlp, small_data, SPACE, out=str(tmp_path / "run"),
                   sampler="ladder", strategy="two_steps", **settings)
  expected = np.geomspace(1e-3, 1e-1, settings["population"]).astype(np.float32)
  for r in result.rounds:
    np.testing.assert_array_equal(r.hparams["learning_rate"], expected)
    assert len(r.kept) == settings["population"] // 2 and r.strategy == "two_steps"
  assert vt.load_run(tmp_path / "run").settings["sampler"] == "ladder"
  # Trained in two segments, each configuration equals the same run trained by random search.
  plain = vt.tune(tiny_mlp, small_data, SPACE, sampler="ladder", **settings)
  np.testing.assert_allclose(result.rounds[0].score, plain.rounds[0].score, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(vt.samplers.SAMPLERS))
def test_every_sampler_implements_at_most_four_round_methods(name):
  """The round calls start, plan, ask and tell; check refuses settings; the rest of the
  base class (bucket sizes from ``bucket_share``, describe) is not overridden."""
  cls = vt.samplers.SAMPLERS[name]
  overridden = {m for m in _own_methods(Sampler) if getattr(cls, m) is not getattr(Sampler, m)}
  assert overridden - {"check", "describe"} <= {"start", "plan", "ask", "tell"}, overridden
  assert _own_methods(Ladder) == {"ask", "tell"}
