"""A run's fixed cost: what `vmaptune run` of the default experiment spends besides training
and evaluating lanes.

    python experiments/bench_fixed_cost.py             # writes results/fixed-cost-cpu.json
    python experiments/bench_fixed_cost.py --warm 1 --set rounds=1 --out /tmp/fixed.json

The default experiment (``experiments/digits_mlp.py``) runs ``1 + --warm`` times, each in a
fresh process, all with one new persistent compilation cache: the first compiles (cold), the
others load its programs (warm), as a second run of a researcher's session does. Each run is
split into:

* ``startup_s``: the interpreter, ``import vmaptune`` and loading the config, before ``tune``;
* ``lanes_s``: training and evaluating lanes: every call of a population's ``init``,
  ``advance``, ``select`` and ``evaluate``, waited on until the device finished, less the
  compiling and tracing those calls did (the rounds', the confirmation's and the final fit's);
* ``compile_s``: tracing and compiling (or loading from the cache) the programs;
* ``other_s``: everything else the command did: sampling, ranking, the estimate, recording the
  run directory, the progress, the final fit's own set-up, and leaving.

The fixed cost is ``wall_s - lanes_s``, the whole process's wall time less the lanes' training;
``call_fixed_s`` is that of the ``tune`` call and its final fit alone (``tune_s - lanes_s``: the
data loaded, compiling, everything but the lanes), what a notebook that already imported
vmaptune pays. The shares are measured in the child process
itself (``--child``), so nothing is mocked: the calls are wrapped, not replaced.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = os.path.join(HERE, "digits_mlp.py")
TIMED = ("init", "advance", "select", "evaluate")


def child(config: str, out: str, sets: list[str], started: float) -> dict:
  """One run in this process, with the population's calls timed; what it spent."""
  import jax

  import vmaptune as vt
  from vmaptune.config import load_experiment, override
  from vmaptune.lanes.compilation import CompileCounter, persistent_cache
  from vmaptune.lanes.population import Population

  spent = {"lanes": 0.0}
  counter = CompileCounter()
  compiling = lambda: counter.compile_seconds + counter.trace_seconds

  def timed(name):
    call = getattr(Population, name)

    def wrapper(*args, **kwargs):
      start, compiled = time.perf_counter(), compiling()
      value = jax.block_until_ready(call(*args, **kwargs))
      # A first call compiles its program: that is compiling, not training.
      spent["lanes"] += time.perf_counter() - start - (compiling() - compiled)
      return value
    return wrapper

  for name in TIMED:
    setattr(Population, name, timed(name))
  experiment = override(load_experiment(config), sets)
  ready = time.perf_counter()
  with persistent_cache(None), counter:
    result = experiment.tune(out=out, progress=None)
    result.final_fit()
  done = time.perf_counter()
  return {"startup_s": ready - started, "tune_s": done - ready,
          "lanes_s": spent["lanes"], "compile_s": compiling(),
          "compiles": counter.compiles, "rounds": len(result.rounds),
          "trials": sum(len(r) for r in result.rounds), "vmaptune": vt.__version__}


def run_once(config: str, cache: str, sets: list[str], tmp: str, index: int) -> dict:
  """One fresh process; its record, with the parent's wall time."""
  out = os.path.join(tmp, f"run-{index}")
  env = {**os.environ, "VMAPTUNE_CACHE_DIR": cache, "PYTHONPATH": os.path.dirname(HERE)}
  start = time.time()
  done = subprocess.run([sys.executable, __file__, "--child", "--config", config,
                         "--child-out", out, "--started", repr(start), "--set", *sets],
                        env=env, capture_output=True, text=True, check=False)
  wall = time.time() - start
  if done.returncode != 0:
    raise SystemExit(f"run {index} failed:\n{done.stderr[-3000:]}")
  record = json.loads(done.stdout.strip().splitlines()[-1])
  record["wall_s"] = wall
  record["fixed_s"] = wall - record["lanes_s"]
  record["call_fixed_s"] = record["tune_s"] - record["lanes_s"]
  record["other_s"] = wall - record["startup_s"] - record["lanes_s"] - record["compile_s"]
  return {key: round(value, 3) if isinstance(value, float) else value
          for key, value in record.items()}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default=DEFAULT)
  parser.add_argument("--warm", type=int, default=2, help="warm runs after the cold one")
  parser.add_argument("--set", nargs="*", default=[], dest="sets",
                      help="key=value overrides of the config, as `vmaptune run --set`")
  parser.add_argument("--out", default=os.path.join(HERE, "results", "fixed-cost-cpu.json"))
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--child-out", help=argparse.SUPPRESS)
  parser.add_argument("--started", type=float, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    # The parent's clock (time.time) started before this interpreter did.
    started = time.perf_counter() - (time.time() - args.started)
    print(json.dumps(child(args.config, args.child_out, args.sets, started)))
    return 0
  with tempfile.TemporaryDirectory() as tmp:
    cache = os.path.join(tmp, "cache")
    runs = [run_once(args.config, cache, args.sets, tmp, i) for i in range(1 + args.warm)]
  for i, record in enumerate(runs):
    print(f"{'cold' if i == 0 else 'warm'}: wall {record['wall_s']:.2f} s = start-up "
          f"{record['startup_s']:.2f} + compiling {record['compile_s']:.2f} + lanes "
          f"{record['lanes_s']:.2f} + other {record['other_s']:.2f}; fixed cost "
          f"{record['fixed_s']:.2f} s, of the tune call {record['call_fixed_s']:.2f} s")
  report = {"config": os.path.relpath(args.config, os.path.dirname(HERE)), "sets": args.sets,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "date": time.strftime("%Y-%m-%d"), "cold": runs[0], "warm": runs[1:],
            "warm_fixed_s": min((r["fixed_s"] for r in runs[1:]), default=None),
            "warm_call_fixed_s": min((r["call_fixed_s"] for r in runs[1:]), default=None)}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(report, f, indent=2)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
