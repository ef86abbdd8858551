"""Throughput: vmaptune against the two ways people tune a small JAX model today.

In one process, on the same data, model, epochs, batch size and search space:

* vmaptune: the population trainer as the tuner runs it (P lanes, one program,
  sharded over every local device, lanes in chunks that fit the cache on CPU);
* sequential: the same single-configuration training program (``lax.scan``
  inside ``jit``), compiled once and called P times from a Python loop;
* optuna: Optuna's RandomSampler over the same ranges for P trials, each trained
  the way the Flax examples train: a jitted ``train_step`` per minibatch, fed
  NumPy batches from a Python loop (``pip install -e '.[bench]'``).

For each: compile and run seconds (the best of two passes for vmaptune and the
sequential loop, whose runs are cheap to repeat; one study for Optuna), trials
per second, and peak host memory
(resident set size sampled every 5 ms, above the level before the method ran).
Also: the population trainer's achieved FLOP/s (XLA's cost analysis of one
training step, times steps and lanes, over the training time) against a
measured fp32 matmul peak (a 2048 x 2048 ``jnp.dot`` timed in the same run),
and the persistent compilation cache (two ``vmaptune run`` processes).

    python experiments/bench_throughput.py --quick      # under 3 minutes on 2 CPU cores
    python experiments/bench_throughput.py              # the README's table

Results go to ``experiments/results/throughput-<platform>.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Importing vmaptune (before any JAX computation) gives one CPU device per core.
import vmaptune as vt
from vmaptune.lanes.compilation import CompileCounter, compiler_options
from vmaptune.lanes.keys import round_keys
from vmaptune.lanes.population import Population
from vmaptune.lanes.train import eval_batches, make_evaluate, make_init, make_step
from vmaptune.models.optimizers import BUILTIN, scheduled
from vmaptune.objectives import Classification
from vmaptune.rundir import write_json

HERE = os.path.dirname(os.path.abspath(__file__))
# vmaptune and the sequential loop report the best of this many timed passes
# (after the compiling one); an Optuna study runs once.
REPEATS = 2
# Every workload here is a classifier: the trainer's default objective.
OBJECTIVE = Classification()
SPACE = vt.Space(learning_rate=vt.LogUniform(1e-4, 1e0), weight_decay=vt.LogUniform(1e-8, 1e-1))


@dataclasses.dataclass(frozen=True)
class Workload:
  name: str
  model: Any
  data: Callable[[], vt.Dataset]
  epochs: int
  batch_size: int


WORKLOADS = {
    "digits_mlp": Workload("digits_mlp", vt.models.MLP(hidden=(128,)), vt.data.digits, 10, 64),
    "digits_cnn": Workload("digits_cnn", vt.models.CNN(), vt.data.digits, 2, 64),
    "synthetic_mlp": Workload("synthetic_mlp", vt.models.MLP(hidden=(128,)), functools.partial(
        vt.data.teacher, n=50_000, features=256, val_fraction=0.1, test_fraction=0.1), 1, 256),
}


class PeakMemory:
  """Samples this process's resident set size while a block runs."""

  def __init__(self, interval: float = 0.005):
    self.interval = interval
    self.peak = self.start = self._rss()
    self._stop = threading.Event()

  @staticmethod
  def _rss() -> int:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

  def _sample(self):
    while not self._stop.wait(self.interval):
      self.peak = max(self.peak, self._rss())

  def __enter__(self):
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, self._rss())

  @property
  def growth_mb(self) -> float:
    return (self.peak - self.start) / 2**20


def matmul_peak_gflops(repeats: int = 10, n: int | None = None) -> float:
  """Measured fp32 matmul peak of everything vmaptune runs on.

  On CPU one matmul already uses every core (the CPU "devices" share them);
  on accelerators it is one device's peak times the device count. Full fp32
  passes (``HIGHEST``: no TF32), ``n x n`` (default: a size that fills the hardware,
  2048 on CPU, 8192 elsewhere; a smoke run gives a small one).
  """
  platform = jax.devices()[0].platform
  n = n or (2048 if platform == "cpu" else 8192)
  a = jnp.ones((n, n), jnp.float32)
  dot = jax.jit(lambda a: jnp.dot(a, a, precision=jax.lax.Precision.HIGHEST))
  dot(a).block_until_ready()
  best = float("inf")
  for _ in range(3):
    start = time.perf_counter()
    for _ in range(repeats):
      out = dot(a)
    out.block_until_ready()
    best = min(best, (time.perf_counter() - start) / repeats)
  devices = 1 if platform == "cpu" else len(jax.devices())
  return devices * 2 * n**3 / best / 1e9


def sample_configs(lanes: int, seed: int = 0) -> dict[str, np.ndarray]:
  return SPACE.sample(seed, 0, lanes)


def _factory(workload: Workload, num_train: int):
  steps = workload.epochs * (num_train // workload.batch_size)
  return scheduled(BUILTIN["adamw"], "cosine", steps)


def _dot_flops(jaxpr) -> float:
  """FLOPs of the dot_general operations in a jaxpr, nested jaxprs included."""
  import jax.extend

  total = 0.0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      (lhs_contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs[d] for d in lhs_contract])
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      total += _dot_flops(sub)
  return total


def step_flops(workload: Workload, data: vt.Dataset) -> dict[str, float]:
  """FLOPs of one training step of one lane: its matmuls (dot_general, counted
  from the jaxpr) and everything XLA's cost analysis counts."""
  factory = _factory(workload, len(data.train))
  hp = {k: v[0] for k, v in sample_configs(1).items()}
  # Shapes suffice: the step is lowered and traced, never run.
  state = jax.eval_shape(make_init(workload.model, factory), hp, jax.random.key(0),
                         data.train.x[:1])
  batch = vt.data.Split(data.train.x[:workload.batch_size], data.train.y[:workload.batch_size])
  step = make_step(workload.model, factory, OBJECTIVE)
  cost = jax.jit(step).lower(hp, state, batch).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return {"matmul": _dot_flops(jax.make_jaxpr(step)(hp, state, batch).jaxpr),
          "xla_total": float(cost["flops"])}


def _program_bytes(compiled) -> int | None:
  """Device memory a compiled program needs: arguments, outputs and temporaries."""
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  return int(stats.argument_size_in_bytes + stats.output_size_in_bytes
             + stats.temp_size_in_bytes)


def run_vmaptune(workload: Workload, data: vt.Dataset, lanes: int, devices=None,
                 lanes_per_chunk=None) -> dict:
  with PeakMemory() as memory:
    pop = Population(workload.model, _factory(workload, len(data.train)), data,
                        epochs=workload.epochs, batch_size=workload.batch_size,
                        eval_batch_size=1024, devices=devices, lanes_per_chunk=lanes_per_chunk)
    hparams = sample_configs(lanes)
    keys = round_keys(0, 0)
    with CompileCounter() as compiled:
      start = time.perf_counter()
      out = pop.train(hparams, *keys)
      np.asarray(pop.evaluate(out.params)["accuracy"])
      first = time.perf_counter() - start
    train_s = eval_s = float("inf")
    for _ in range(REPEATS):
      start = time.perf_counter()
      out = pop.train(hparams, *keys)
      jax.block_until_ready(out)
      train_s = min(train_s, time.perf_counter() - start)
      start = time.perf_counter()
      accuracy = np.asarray(pop.evaluate(out.params)["accuracy"])[:lanes]
      eval_s = min(eval_s, time.perf_counter() - start)
  layout = pop.layout(lanes)
  advance, args = pop.advance_program(hparams)
  program = advance.lower(*args).compile()  # The trained program, from the jit cache.
  return {"compile_s": compiled.compile_seconds + compiled.trace_seconds,
          "first_pass_extra_s": first - train_s - eval_s,
          "run_s": train_s + eval_s, "train_s": train_s, "eval_s": eval_s,
          "peak_rss_growth_mb": memory.growth_mb, "program_bytes": _program_bytes(program),
          "lanes_per_chunk": layout.chunk, "devices": pop.num_devices,
          "padded_lanes": layout.padded, "best_val_accuracy": float(accuracy.max())}


def run_vmaptune_one_device(workload: Workload, data: vt.Dataset, lanes: int) -> dict:
  """vmaptune restricted to the first device: what batching alone buys, without
  the extra cores that sharding over CPU devices brings."""
  return run_vmaptune(workload, data, lanes, devices=jax.devices()[:1])


def run_sequential(workload: Workload, data: vt.Dataset, lanes: int) -> dict:
  device = jax.devices()[0]
  options = compiler_options(device.platform)  # The same XLA options as vmaptune's.
  with PeakMemory() as memory:
    train_one = jax.jit(vt.lanes.train.make_train(
        workload.model, _factory(workload, len(data.train)), OBJECTIVE, epochs=workload.epochs,
        batch_size=workload.batch_size, num_train=len(data.train)), compiler_options=options)
    evaluate = jax.jit(make_evaluate(workload.model, OBJECTIVE), compiler_options=options)
    train = jax.device_put(data.train, device)
    val = vt.lanes.train.EvalBatches(*jax.device_put(tuple(eval_batches(data.val, 1024)), device))
    keys = jax.device_put(round_keys(0, 0), device)
    hparams = sample_configs(lanes)
    configs = [{k: v[i] for k, v in hparams.items()} for i in range(lanes)]
    with CompileCounter() as compiled:
      start = time.perf_counter()
      float(evaluate(train_one(configs[0], *keys, train).params, val)["accuracy"])
      first = time.perf_counter() - start
    run_s = float("inf")
    for _ in range(REPEATS):
      start = time.perf_counter()
      accuracy = [float(evaluate(train_one(c, *keys, train).params, val)["accuracy"])
                  for c in configs]
      run_s = min(run_s, time.perf_counter() - start)
  program = train_one.lower(configs[0], *keys, train).compile()
  return {"compile_s": compiled.compile_seconds + compiled.trace_seconds,
          "first_pass_extra_s": first - run_s / lanes, "run_s": run_s,
          "peak_rss_growth_mb": memory.growth_mb, "program_bytes": _program_bytes(program),
          "best_val_accuracy": max(accuracy)}


def run_optuna(workload: Workload, data: vt.Dataset, lanes: int) -> dict:
  import optuna

  optuna.logging.set_verbosity(optuna.logging.WARNING)
  factory = _factory(workload, len(data.train))
  options = compiler_options(jax.devices()[0].platform)  # The same as vmaptune's.
  init = jax.jit(make_init(workload.model, factory), compiler_options=options)
  train_step = jax.jit(make_step(workload.model, factory, OBJECTIVE), compiler_options=options)
  evaluate = jax.jit(make_evaluate(workload.model, OBJECTIVE), compiler_options=options)
  val = vt.lanes.train.EvalBatches(*jax.device_put(tuple(eval_batches(data.val, 1024))))
  x, y = data.train.x, data.train.y
  steps = len(y) // workload.batch_size
  init_key = round_keys(0, 0)[0]

  def objective(trial) -> float:
    hp = {name: np.float32(trial.suggest_float(name, d.low, d.high,
                                               log=isinstance(d, vt.LogUniform)))
          for name, d in SPACE.items()}
    state = init(hp, init_key, x[:1])
    order = np.random.default_rng(trial.number)
    for _ in range(workload.epochs):
      perm = order.permutation(len(y))
      for s in range(steps):
        batch = perm[s * workload.batch_size:(s + 1) * workload.batch_size]
        state, _ = train_step(hp, state, vt.data.Split(x[batch], y[batch]))
    return float(evaluate(state.params, val)["accuracy"])

  study = optuna.create_study(direction="maximize",
                              sampler=optuna.samplers.RandomSampler(seed=0))
  with PeakMemory() as memory, CompileCounter() as compiled:
    start = time.perf_counter()
    study.optimize(objective, n_trials=lanes)
    wall = time.perf_counter() - start
  compile_s = compiled.compile_seconds + compiled.trace_seconds
  return {"compile_s": compile_s, "run_s": wall - compile_s,
          "peak_rss_growth_mb": memory.growth_mb, "best_val_accuracy": study.best_value}


METHODS = {"vmaptune": run_vmaptune, "vmaptune_1dev": run_vmaptune_one_device,
           "sequential": run_sequential, "optuna": run_optuna}
# Timed passes each method makes after its compiling one (Optuna: one study).
PASSES = {"vmaptune": REPEATS, "vmaptune_1dev": REPEATS, "sequential": REPEATS, "optuna": 0}


def layout_ablation(lanes: int = 256) -> dict:
  """The digits MLP population at P lanes under different layouts, side by side:
  one device or all of them, one vmap over a device's lanes or chunks of G."""
  workload, data = WORKLOADS["digits_mlp"], WORKLOADS["digits_mlp"].data()
  first = jax.devices()[:1]
  cases = [("1 device, one vmap", first, lanes), ("all devices, one vmap", None, lanes)]
  cases += [(f"all devices, chunks of {g}", None, g) for g in (2, 4, 8, 16, 32, 64)]
  cases.append(("all devices, automatic chunks", None, None))
  rows = {}
  print(f"\nlayout ablation, digits_mlp, P={lanes} (train seconds, best of {REPEATS})")
  for label, devices, chunk in cases:
    r = run_vmaptune(workload, data, lanes, devices=devices, lanes_per_chunk=chunk)
    rows[label] = {"train_s": r["train_s"], "devices": r["devices"],
                   "lanes_per_chunk": r["lanes_per_chunk"]}
    print(f"  {label:32s} {r['train_s']:7.3f}s  (chunks of {r['lanes_per_chunk']})", flush=True)
  return {"lanes": lanes, "rows": rows}


def compile_cache_check(timeout: int = 600) -> dict:
  """Two `vmaptune run` processes on the default experiment, one cache directory."""
  runs = []
  with tempfile.TemporaryDirectory() as tmp:
    for attempt in range(2):
      out = os.path.join(tmp, f"run{attempt}")
      command = [sys.executable, "-m", "vmaptune.cli", "run",
                 os.path.join(HERE, "digits_mlp.py"), "--quiet", "--set", "rounds=1",
                 "--cache-dir", os.path.join(tmp, "cache"), "--out", out]
      subprocess.run(command, check=True, capture_output=True, timeout=timeout)
      with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
      runs.append({"compile_s": summary["compile_s"], "trace_s": summary["trace_s"]})
  first, second = runs
  return {"command": "vmaptune run experiments/digits_mlp.py --set rounds=1 --cache-dir DIR "
                     "(twice)", "first": first, "second": second,
          "compile_ratio": second["compile_s"] / first["compile_s"],
          "compile_and_trace_ratio": (second["compile_s"] + second["trace_s"])
          / (first["compile_s"] + first["trace_s"])}


def machine() -> dict:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  device = jax.devices()[0]
  return {"platform": device.platform, "device_kind": device.device_kind,
          "devices": len(jax.devices()), "cpu": cpu, "cores": os.cpu_count(),
          "jax": jax.__version__, "python": platform.python_version()}


def estimate_s(results: dict, method: str, lanes: int) -> float | None:
  """Seconds a method would take for ``lanes`` (compiling pass and timed passes),
  from its largest finished size."""
  done = [(p, r[method]) for p, r in results.items() if method in r and "run_s" in r[method]]
  if not done:
    return None
  p, r = max(done)
  return r["compile_s"] + r["run_s"] * lanes / p * (1 + PASSES[method])


def fmt(value, spec=".2f", suffix="") -> str:
  return "-" if value is None else format(value, spec) + suffix


def markdown_table(report: dict) -> str:
  """The README's table: per workload and P, trials/s of each method and the ratios."""
  lines = ["| workload | P | vmaptune | vmaptune, 1 device | sequential | Optuna + step loop | "
           "vs sequential (run) | 1 device vs sequential | vs Optuna (with compile) | "
           "% of matmul peak |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for name, entry in report["workloads"].items():
    for lanes, results in entry["sizes"].items():
      def cell(method, results=results):
        r = results.get(method, {})
        if "trials_per_s" not in r:
          return "skipped" if "skipped" in r else "-"
        return f"{r['trials_per_s']:.1f} ({r['compile_s']:.1f})"
      ratios = results.get("ratios", {})
      lines.append(
          f"| {name} | {lanes} | {cell('vmaptune')} | {cell('vmaptune_1dev')} | "
          f"{cell('sequential')} | {cell('optuna')} | "
          f"{fmt(ratios.get('vs_sequential'), suffix='x')} | "
          f"{fmt(ratios.get('one_device_vs_sequential'), suffix='x')} | "
          f"{fmt(ratios.get('vs_optuna'), suffix='x')} | "
          f"{fmt(100 * ratios['fraction_of_matmul_peak'] if ratios else None, '.0f', '%')} |")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  vt.lanes.devices.configure_cpu_devices()  # One CPU device per core, as tune asks.
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--table", metavar="RESULTS_JSON",
                      help="print the markdown table of an earlier run's results and exit")
  parser.add_argument("--quick", action="store_true",
                      help="digits MLP and CNN at small sizes; under 3 minutes on 2 CPU cores")
  parser.add_argument("--sizes", type=int, nargs="+", help="population sizes P")
  parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS))
  parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=list(METHODS))
  parser.add_argument("--budget-s", type=float,
                      help="skip a (method, P) whose estimated time exceeds this (default 120, "
                           "quick 15)")
  parser.add_argument("--no-ablation", action="store_true",
                      help="skip the devices x chunk comparison on the digits MLP")
  parser.add_argument("--no-cache-check", action="store_true",
                      help="skip the two-process compilation cache measurement")
  parser.add_argument("--matmul-size", type=int, metavar="N",
                      help="the matmul peak's N x N product (default 2048 on CPU, 8192 "
                           "elsewhere; a smoke run's small one measures no real peak)")
  parser.add_argument("--out", help="results JSON (default experiments/results/"
                                    "throughput-<platform>[-quick].json)")
  args = parser.parse_args(argv)
  if args.table:
    with open(args.table) as f:
      print(markdown_table(json.load(f)))
    return 0
  quick = args.quick
  sizes = args.sizes or ([1, 16, 64, 256] if quick else [1, 16, 64, 256, 1024])
  if not quick and not args.sizes and jax.devices()[0].platform != "cpu":
    sizes.append(4096)
  workloads = args.workloads or (["digits_mlp", "digits_cnn"] if quick else list(WORKLOADS))
  args.no_ablation = args.no_ablation or quick or bool(args.sizes or args.workloads)
  budget = args.budget_s or (15.0 if quick else 120.0)
  methods = list(args.methods)
  try:
    import optuna  # noqa: F401
  except ImportError:
    if "optuna" in methods:
      print("optuna is not installed: pip install -e '.[bench]' to include the Optuna baseline")
      methods.remove("optuna")

  peak = matmul_peak_gflops(n=args.matmul_size)
  info = machine()
  print(f"{info['cpu']} | {info['platform']} x{info['devices']} | jax {info['jax']} | "
        f"fp32 matmul peak {peak:.0f} GFLOP/s", flush=True)
  report: dict[str, Any] = {
      "command": " ".join(["python", "experiments/bench_throughput.py"] + sys.argv[1:]
                          if argv is None else argv),
      "date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": info,
      "matmul_peak_gflops": peak, "budget_s": budget, "workloads": {}, "skipped": []}

  header = (f"{'workload':14s} {'P':>5s} {'method':13s} {'compile s':>9s} {'run s':>8s} "
            f"{'trials/s':>9s} {'run tr/s':>9s} {'mem MB':>7s} {'best acc':>8s}")
  for name in workloads:
    workload = WORKLOADS[name]
    data = workload.data()
    flops = step_flops(workload, data)
    steps = workload.epochs * (len(data.train) // workload.batch_size)
    entry = {"data": repr(data), "model": repr(workload.model), "epochs": workload.epochs,
             "batch_size": workload.batch_size, "flops_per_lane_step": flops, "sizes": {}}
    report["workloads"][name] = entry
    print(f"\n{name}: {data!r}, {workload.epochs} epochs, batch {workload.batch_size}, "
          f"{flops['matmul'] / 1e6:.2f} matmul MFLOP per lane-step "
          f"({flops['xla_total'] / 1e6:.2f} in XLA's count)\n{header}", flush=True)
    for lanes in sizes:
      results: dict[str, Any] = {}
      entry["sizes"][lanes] = results
      for method in methods:
        estimate = estimate_s(entry["sizes"], method, lanes)
        if estimate is not None and estimate > budget:
          note = f"{name} P={lanes} {method}: skipped, estimated {estimate:.0f}s > {budget:.0f}s"
          report["skipped"].append(note)
          results[method] = {"skipped": note}
          print(f"  {note}", flush=True)
          continue
        r = METHODS[method](workload, data, lanes)
        r["trials_per_s"] = lanes / (r["compile_s"] + r["run_s"])
        r["run_trials_per_s"] = lanes / r["run_s"]
        results[method] = r
        print(f"{name:14s} {lanes:5d} {method:13s} {r['compile_s']:9.2f} {r['run_s']:8.2f} "
              f"{r['trials_per_s']:9.1f} {r['run_trials_per_s']:9.1f} "
              f"{r['peak_rss_growth_mb']:7.0f} {r['best_val_accuracy']:8.4f}", flush=True)
      v = results.get("vmaptune", {})
      if "train_s" in v:
        # Lanes actually computed: padding lanes do real work too.
        computed = v["padded_lanes"]
        v["achieved_gflops"] = flops["matmul"] * steps * computed / v["train_s"] / 1e9
        v["fraction_of_matmul_peak"] = v["achieved_gflops"] / peak
        v["xla_counted_gflops"] = flops["xla_total"] * steps * computed / v["train_s"] / 1e9
        ratios = {"achieved_gflops": v["achieved_gflops"],
                  "fraction_of_matmul_peak": v["fraction_of_matmul_peak"]}
        seq, one, opt = (results.get(m, {}) for m in ("sequential", "vmaptune_1dev", "optuna"))
        if "run_s" in seq:
          ratios["vs_sequential"] = seq["run_s"] / v["run_s"]
          if "run_s" in one:
            ratios["one_device_vs_sequential"] = seq["run_s"] / one["run_s"]
        if "trials_per_s" in opt:
          ratios["vs_optuna"] = v["trials_per_s"] / opt["trials_per_s"]
        results["ratios"] = ratios
        print(f"{'':14s} {'':5s} ratios: " + ", ".join(
            f"{k} {fmt(val)}" for k, val in ratios.items()), flush=True)

  if not args.no_ablation:
    report["ablation"] = layout_ablation()

  if not args.no_cache_check:
    cache = compile_cache_check()
    report["compile_cache"] = cache
    print(f"\ncompilation cache, second run / first run: XLA compile "
          f"{cache['compile_ratio']:.1%} ({cache['second']['compile_s']:.2f}s / "
          f"{cache['first']['compile_s']:.2f}s), compile + tracing "
          f"{cache['compile_and_trace_ratio']:.1%}", flush=True)

  out = args.out or os.path.join(HERE, "results", f"throughput-{info['platform']}"
                                 f"{'-quick' if quick else ''}.json")
  print(f"\nresults written to {write_json(out, report)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
