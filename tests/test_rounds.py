"""The round loop: a round that runs out of device memory runs again in smaller chunks
with the same results; finished rounds are kept."""

import dataclasses
import json
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import vmaptune as vt


@dataclasses.dataclass(frozen=True)
class Hungry(vt.strategies.RandomSearch):
  """Random search that, from round 2 on, asks XLA for a 16 TiB buffer while
  chunks hold more than ``fits`` lanes: a real out-of-memory error."""

  name = "hungry"
  fits: int = 2

  def run(self, ctx):
    if ctx.index >= 1 and ctx.pop.layout(ctx.configurations).chunk > self.fits:
      jnp.zeros(2**42, jnp.float32).block_until_ready()
    return super().run(ctx)


# No confirmation stage: the results compared are the rounds'.
SETTINGS = dict(population=8, rounds=2, epochs=2, batch_size=32, max_lanes_per_chunk=8,
                confirm="off")


def _tune(data, strategy, out=None):
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1))
  return vt.tune(vt.models.MLP(hidden=(8,)), data, space, strategy=strategy, out=out,
                 **SETTINGS)


def test_out_of_memory_reruns_the_round_in_smaller_chunks_with_the_same_results(small_data):
  plain = _tune(small_data, vt.strategies.RandomSearch())
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    hungry = _tune(small_data, Hungry(fits=2))
  retries = [str(w.message) for w in caught if w.category is RuntimeWarning]
  # Halved from the lanes of a device (8 over however many CPU devices) down to 2.
  assert retries and retries[-1] == (
      "round 2 ran out of device memory; running it again with at most 2 lanes per chunk")
  for a, b in zip(plain.rounds, hungry.rounds, strict=True):
    np.testing.assert_allclose(a.val_accuracy, b.val_accuracy, atol=1e-6)
  assert plain.best.hparams == pytest.approx(hungry.best.hparams)


def test_out_of_memory_with_one_lane_per_chunk_keeps_the_finished_rounds(small_data, tmp_path):
  with pytest.raises(vt.OutOfMemoryError, match="round 2/2 ran out of device memory with one "
                     "lane per chunk: RESOURCE_EXHAUSTED") as raised, \
      pytest.warns(RuntimeWarning, match=r"at most \d+ lanes? per chunk"):
    _tune(small_data, Hungry(fits=0), out=tmp_path / "run")
  partial = raised.value.partial
  assert [r.index for r in partial.rounds] == [0]
  records = vt.read_trials(tmp_path / "run")
  assert len(records) == 8 and {r["round"] for r in records} == {0}
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert "RESOURCE_EXHAUSTED" in summary["error"] and len(summary["rounds"]) == 1
  assert small_data.test_reads == 0
