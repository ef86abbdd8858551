"""Human-readable lines for rounds and final results (used by the CLI and ``verbose``)."""

from __future__ import annotations

import math

from vmaptune.results import FinalFit, RoundResult, Trial, TuneResult
from vmaptune.space import Space


def format_space(space: Space, indent: str = "    ") -> str:
  width = max(len(name) for name in space)
  return "\n".join(f"{indent}{name:<{width}}  {dist.describe()}" for name, dist in space.items())


def format_config(config: dict[str, float]) -> str:
  return "  ".join(f"{name}={value:.4g}" for name, value in config.items())


def format_round(result: RoundResult, rounds: int) -> str:
  """A few lines: the ranges sampled, throughput, and scores of one round."""
  compile_note = f", {result.compile_s:.1f}s compiling" if result.compiles else ""
  lines = [
      f"round {result.index + 1}/{rounds}: {result.population} lanes in "
      f"{result.wall_s:.1f}s ({result.trials_per_s:.1f} trials/s{compile_note})",
      "  sampled ranges:", format_space(result.space),
      f"  val accuracy: best {result.best_accuracy:.4f} (lane {result.best_lane})  "
      f"median {result.median_accuracy:.4f}  diverged {result.num_diverged}/{result.population}",
  ]
  return "\n".join(lines)


def _percent(value: float) -> str:
  return "n/a (empty test split)" if math.isnan(value) else f"{value:.4f}"


def format_final(result: TuneResult, final: FinalFit | None) -> str:
  """The chosen configuration, its validation and test accuracy, and where records are."""
  best: Trial = result.best
  lines = [
      f"chosen config (round {best.round + 1}/{len(result.rounds)}, lane {best.lane}): "
      f"{format_config(best.hparams)}",
      f"  val accuracy  {best.val_accuracy:.4f} (search)",
  ]
  if final is not None:
    lines[-1] += f"  {final.val_accuracy:.4f} (refit alone)"
    lines.append(f"  test accuracy {_percent(final.test_accuracy)} (test split read once)")
  lines.append(f"  search wall time {result.wall_s:.1f}s, of which compiling "
               f"{result.compile_s:.1f}s")
  if result.out_dir is not None:
    lines.append(f"records: {result.out_dir}/trials.jsonl, {result.out_dir}/summary.json")
  return "\n".join(lines)
