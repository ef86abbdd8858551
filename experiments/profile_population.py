"""Where the population trainer's time goes: one profiled round, grouped by HLO op.

Runs the digits MLP population (as ``bench_throughput.py`` does) under JAX's
profiler, then sums the time of every XLA operation of the training program,
classified by what it is (matmul, layout copy, elementwise) and by where it
comes from (forward pass, backward pass, or outside the model: the optimizer
update, the shuffle and minibatch gather, the loss mean), using the op metadata
in the compiled HLO.

    python experiments/profile_population.py [--lanes 256] [--epochs 2]

Writes ``experiments/results/profile-<platform>.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

import jax

import vmaptune as vt
from vmaptune.lanes.keys import round_keys
from vmaptune.lanes.population import Population
from vmaptune.models.optimizers import BUILTIN, scheduled
from vmaptune.rundir import write_json

HERE = os.path.dirname(os.path.abspath(__file__))
CONTAINERS = ("while", "call", "conditional")


def op_origins(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> the JAX op_name recorded in its metadata."""
  origins = {}
  for line in hlo_text.splitlines():
    match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = .*metadata=\{[^}]*op_name=\"([^\"]*)\"", line)
    if match:
      origins[match.group(1)] = match.group(2)
  return origins


def classify(name: str, origin: str) -> tuple[str, str]:
  """(kind, phase) of one XLA operation."""
  if "dot" in name or "ynn" in name or "conv" in name:
    kind = "matmul"
  elif "copy" in name or "transpose" in name:
    kind = "layout copy"
  else:
    kind = "elementwise/other"
  if "transpose(jvp(" in origin:
    phase = "backward"
  elif "jvp(" in origin:
    phase = "forward"
  elif origin:
    phase = "outside the model"  # Optimizer update, shuffle, minibatch gather, loss mean.
  else:
    phase = "unattributed"
  return kind, phase


def main(argv: list[str] | None = None) -> int:
  vt.lanes.devices.configure_cpu_devices()  # One CPU device per core, as tune asks.
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--lanes", type=int, default=256)
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--out")
  args = parser.parse_args(argv)

  data = vt.data.digits()
  steps = args.epochs * (len(data.train) // 64)
  pop = Population(vt.models.MLP(hidden=(128,)), scheduled(BUILTIN["adamw"], "cosine", steps),
                      data, epochs=args.epochs, batch_size=64, eval_batch_size=1024)
  hparams = vt.Space(learning_rate=vt.LogUniform(1e-4, 1.0),
                     weight_decay=vt.LogUniform(1e-8, 1e-1)).sample(0, 0, args.lanes)
  keys = round_keys(0, 0)
  jax.block_until_ready(pop.train(hparams, *keys))  # Compile outside the profile.
  advance, example = pop.advance_program(hparams)
  hlo = advance.lower(*example).compile().as_text()
  origins = op_origins(hlo)

  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    start = time.perf_counter()
    jax.block_until_ready(pop.train(hparams, *keys))
    wall = time.perf_counter() - start
    jax.profiler.stop_trace()
    trace_file = sorted(glob.glob(os.path.join(trace_dir, "**", "*.json.gz"), recursive=True))[-1]
    with gzip.open(trace_file) as f:
      trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  totals: dict[tuple[str, str], float] = collections.Counter()
  for event in events:
    name = event.get("name", "")
    if event.get("ph") != "X" or name not in origins or name.startswith(CONTAINERS):
      continue  # Host-side events and containers (loops hold the ops they run) are not ops.
    totals[classify(name, origins[name])] += event.get("dur", 0) / 1e6
  op_seconds = sum(totals.values())
  rows = [{"kind": k, "phase": p, "seconds": s, "share": s / op_seconds}
          for (k, p), s in sorted(totals.items(), key=lambda kv: -kv[1])]
  device = jax.devices()[0]
  report = {"command": "python experiments/profile_population.py " + " ".join(argv or sys.argv[1:]),
            "platform": device.platform, "devices": len(jax.devices()),
            "lanes": args.lanes, "padded_lanes": pop.padded_size(args.lanes),
            "lanes_per_chunk": pop.lanes_per_chunk, "epochs": args.epochs, "steps": steps,
            "wall_s_under_profiler": wall,
            "op_seconds_summed_over_devices": op_seconds, "rows": rows}
  print(f"{args.lanes} lanes on {len(jax.devices())} {device.platform} device(s), chunks of "
        f"{pop.lanes_per_chunk}, {steps} steps: {wall:.2f}s under the profiler; op time summed "
        f"over devices {op_seconds:.2f}s")
  for row in rows:
    print(f"  {row['kind']:18s} {row['phase']:16s} {row['seconds']:7.3f}s {row['share']:6.1%}")
  out = args.out or os.path.join(HERE, "results", f"profile-{device.platform}.json")
  print(f"results written to {write_json(out, report)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
