"""Memory-aware chunking: lanes split into chunks that run one after
another in one program give the unchunked results; a device running out of memory
costs a rerun of the round in smaller chunks, never a finished round."""


import jax
import numpy as np
import pytest

import vmaptune as vt
from vmaptune.lanes.compilation import CompileCounter
from vmaptune.lanes.keys import round_keys
from vmaptune.lanes.population import Population
from vmaptune.models.optimizers import BUILTIN

LANES = 12


def _hparams() -> dict[str, np.ndarray]:
  return {"learning_rate": np.geomspace(1e-3, 3e-1, LANES).astype(np.float32)}


def _population(data, **kwargs) -> Population:
  return Population(vt.models.MLP(hidden=(64,)), BUILTIN["adamw"], data, epochs=2,
                       batch_size=32, eval_batch_size=64, devices=jax.devices()[:1], **kwargs)


def _run(pop: Population):
  out = pop.train(_hparams(), *round_keys(0, 0))
  scores = pop.evaluate(out.params)
  return np.asarray(out.epoch_loss)[:LANES], np.asarray(scores["accuracy"])[:LANES]


def test_memory_budget_splits_lanes_into_chunks_with_unchanged_results(small_data):
  whole = _population(small_data, lanes_per_chunk=LANES)
  memory = whole.training_memory(["learning_rate"], whole.layout(LANES))
  assert memory.resident > 0 and memory.working > 0
  # Room for the lanes' state and half the one-chunk temporaries.
  budget = memory.resident + memory.working // 2
  chunked = _population(small_data, lanes_per_chunk=LANES, memory_budget_bytes=budget)
  init_key, data_key = round_keys(0, 0)
  lanes = chunked.init(_hparams(), init_key)  # Fits the layout to the budget.
  layout = chunked.layout(LANES)
  assert 1 < layout.chunks and layout.chunk <= LANES // 2, layout
  assert chunked.training_memory(["learning_rate"], layout).total <= budget
  with CompileCounter() as compiled:
    lanes, losses = chunked.advance(lanes, data_key, 0, 2)
    accuracy = np.asarray(chunked.evaluate(lanes.state.params)["accuracy"])[:LANES]
  assert compiled.compiles == 1  # Evaluation; training reuses the program it measured.
  base_losses, base_accuracy = _run(whole)
  np.testing.assert_allclose(np.asarray(losses)[:LANES], base_losses, rtol=1e-5)
  np.testing.assert_allclose(accuracy, base_accuracy, atol=1e-6)


def test_state_larger_than_the_budget_is_refused_before_training(small_data):
  pop = _population(small_data, memory_budget_bytes=1024)
  with pytest.raises(vt.OutOfMemoryError, match=r"12 lanes needs .* MiB per device .* budget"):
    pop.init(_hparams(), round_keys(0, 0)[0])


def test_bad_chunk_settings_are_named(small_data):
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1))
  with pytest.raises(vt.SettingsError, match="max_lanes_per_chunk=0; expected a whole number"):
    vt.tune(vt.models.MLP(hidden=(8,)), small_data, space, max_lanes_per_chunk=0)
  with pytest.raises(vt.SettingsError, match="memory_budget_bytes=1.5"):
    vt.tune(vt.models.MLP(hidden=(8,)), small_data, space, memory_budget_bytes=1.5)


def test_lanes_consumed_by_training_are_refused_with_a_clear_error(small_data):
  pop = _population(small_data)
  init_key, data_key = round_keys(0, 0)
  lanes = pop.init(_hparams(), init_key)
  trained, _ = pop.advance(lanes, data_key, 0, 1)  # Donates (consumes) lanes.state.
  with pytest.raises(ValueError, match="consumed by an earlier Population.advance"):
    pop.advance(lanes, data_key, 1, 1)
  with pytest.raises(ValueError, match="consumed by an earlier Population.advance"):
    pop.evaluate(lanes.state.params)
  trained, _ = pop.advance(trained, data_key, 1, 1)  # The returned lanes go on.
  with pytest.raises(ValueError, match=r"epochs \[1, 3\) are outside the budget of 2"):
    pop.advance(trained, data_key, 1, 2)
