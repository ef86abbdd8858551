"""Objectives: the classifier's speed before and after the general trainer, and a
language model's throughput.

In one run:

* classifier, before / after: the default experiment's model (``MLP(hidden=(128,),
  num_classes=10)``) on ``digits()`` (val 0.2, test 0.2, seed 0), P lanes, AdamW
  with cosine decay, learning rate and weight decay traced per lane, batch 64,
  trained by ``Population(...).train(hparams, init_key, data_key)`` with the
  trainer's default objective. "Before" is the package at ``--before`` (a
  commit to compare against, e.g. the last one before objectives: ``git archive``
  into a temporary directory), "after" is this working tree. Each pair starts one
  worker process of each version (this script with ``--worker``, the same
  Python, ``PYTHONPATH`` naming the version), compiles both (one untimed call
  each), then alternates timed calls between them (before, after, after,
  before, ...), so both see the same machine load. Only the compiled training
  call is timed (``train`` until its outputs are ready). Per pair: the ratio of
  the median after time to the median before time; over the pairs: the
  median ratio and the spread.
* language model: ``experiments/char_lm.py``'s model and data
  (``vt.models.CharTransformer``, generated text in sequences of T characters)
  with ``vt.objectives.LanguageModel()``, the experiment's space sampled for P
  lanes (dropout and warmup traced per lane), trained the same way; tokens per
  second over the population: ``P * steps * batch * (T - 1) / train seconds``.

    python experiments/bench_objectives.py            # a few minutes on 2 CPU cores
    python experiments/bench_objectives.py --quick    # smaller populations, fewer calls

Results go to ``experiments/results/objectives-<platform>[-quick].json`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MARK = "RESULT "  # Prefix of the worker's protocol lines on its stdout.

# ---------------------------------------------------------------------------
# Worker: imports whichever vmaptune PYTHONPATH names; works with both APIs.
# ---------------------------------------------------------------------------


def _trainer(*names: str) -> tuple:
  """``Population`` and the optimizer names asked for, from whichever layout the
  imported vmaptune has (modules in folders, or flat)."""
  import importlib
  try:
    population, optimizers = (importlib.import_module("vmaptune.lanes.population"),
                              importlib.import_module("vmaptune.models.optimizers"))
  except ImportError:
    population, optimizers = (importlib.import_module("vmaptune.population"),
                              importlib.import_module("vmaptune.optimizers"))
  return (population.Population, *(getattr(optimizers, name) for name in names))


def _reply(payload: dict) -> None:
  sys.stdout.write(MARK + json.dumps(payload) + "\n")
  sys.stdout.flush()


def _best(evaluation: Any, name: str, maximize: bool) -> float:
  """The best lane's value of a metric: ``{metric: [L]}`` now, a NamedTuple before."""
  import numpy as np

  values = np.asarray(evaluation[name] if isinstance(evaluation, dict)
                      else getattr(evaluation, name))
  values = values[np.isfinite(values)]
  if not values.size:
    return float("nan")
  return float(values.max() if maximize else values.min())


def _classifier(args) -> tuple[Any, Any, dict]:
  """The default experiment's population: P lanes of the digits MLP."""
  import vmaptune as vt
  Population, BUILTIN, scheduled = _trainer("BUILTIN", "scheduled")

  data = vt.data.digits(val_fraction=0.2, test_fraction=0.2, seed=0)
  model = vt.models.MLP(hidden=(128,), num_classes=10)
  space = vt.Space(learning_rate=vt.LogUniform(1e-4, 1e0),
                   weight_decay=vt.LogUniform(1e-8, 1e-1))
  steps_per_epoch = len(data.train) // args.batch_size
  factory = scheduled(BUILTIN["adamw"], "cosine", args.epochs * steps_per_epoch,
                      steps_per_epoch=steps_per_epoch)
  # No objective argument: the code before had none, the code after defaults to it.
  population = Population(model, factory, data, epochs=args.epochs,
                          batch_size=args.batch_size, eval_batch_size=1024)
  info = {"model": repr(model), "data": repr(data), "steps_per_epoch": steps_per_epoch,
          "metric": "accuracy", "maximize": True}
  return population, space.sample(0, 0, args.population), info


def _language_model(args) -> tuple[Any, Any, dict]:
  """``experiments/char_lm.py``'s model, data and space, P lanes."""
  import vmaptune as vt
  Population, BUILTIN, WARMUP_EPOCHS, scheduled = _trainer("BUILTIN", "WARMUP_EPOCHS",
                                                           "scheduled")

  experiment = vt.load_experiment(args.config)
  data = experiment.load_data()
  num_train, length = data.train.shape
  steps_per_epoch = num_train // args.batch_size
  schedule = "cosine" if experiment.schedule == "auto" else experiment.schedule
  factory = scheduled(BUILTIN[experiment.optimizer], schedule, args.epochs * steps_per_epoch,
                      steps_per_epoch=steps_per_epoch,
                      warmup=WARMUP_EPOCHS in experiment.space)
  population = Population(experiment.model, factory, data, epochs=args.epochs,
                          batch_size=args.batch_size,
                          eval_batch_size=experiment.eval_batch_size,
                          objective=vt.objectives.LanguageModel())
  tokens = args.population * args.epochs * steps_per_epoch * args.batch_size * (length - 1)
  info = {"config": os.path.relpath(args.config, ROOT), "model": repr(experiment.model),
          "data": repr(data), "sequence_length": int(length), "steps_per_epoch": steps_per_epoch,
          "space": sorted(experiment.space), "schedule": schedule,
          "tokens_per_call": int(tokens), "metric": "loss", "maximize": False}
  return population, experiment.space.sample(0, 0, args.population), info


def worker(args) -> int:
  """Builds the population, compiles it (one untimed call), then answers
  ``time`` lines on stdin with one timed training call each, until EOF."""
  import importlib

  import jax

  import vmaptune as vt

  # Modules in folders, or flat: whichever vmaptune PYTHONPATH names.
  lanes = getattr(vt, "lanes", None)
  keys_module = "vmaptune.lanes.keys" if lanes is not None else "vmaptune.keys"
  round_keys = importlib.import_module(keys_module).round_keys
  (vt.devices if lanes is None else lanes.devices).configure_cpu_devices()  # As tune asks.
  build = {"classifier": _classifier, "lm": _language_model}[args.worker]
  population, hparams, info = build(args)
  keys = round_keys(0, 0)

  def train():
    start = time.perf_counter()
    out = population.train(hparams, *keys)
    jax.block_until_ready(out)
    return out, time.perf_counter() - start

  out, first_s = train()
  best = _best(population.evaluate(out.params), info["metric"], info["maximize"])
  device = jax.devices()[0]
  _reply({"ready": True, "vmaptune": os.path.dirname(os.path.abspath(vt.__file__)),
          "first_call_s": first_s, f"best_val_{info['metric']}": best,
          "padded_lanes": int(population.padded_size(args.population)),
          "lanes_per_chunk": population.layout(args.population).chunk,
          "platform": device.platform, "device_kind": device.device_kind,
          "devices": len(jax.devices()), "jax": jax.__version__, **info})
  for line in sys.stdin:
    if line.strip() != "time":
      break
    _, seconds = train()
    _reply({"train_s": seconds})
  return 0


# ---------------------------------------------------------------------------
# Orchestrator.
# ---------------------------------------------------------------------------


class Worker:
  """One worker process of one vmaptune version, driven over a pipe."""

  def __init__(self, label: str, package_dir: str, options: list[str], log_dir: str):
    self.label = label
    env = {**os.environ, "PYTHONPATH": package_dir}
    self.log_path = os.path.join(log_dir, f"{label}-{time.monotonic_ns()}.log")
    self._log = open(self.log_path, "w")
    # Run from the temporary directory: the working tree's package is reached
    # only through PYTHONPATH, never through the current directory.
    self.process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), *options], cwd=log_dir, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True)
    self.ready = self._read()
    expected = os.path.join(os.path.realpath(package_dir), "vmaptune")
    if os.path.realpath(self.ready["vmaptune"]) != expected:
      self.close()
      raise RuntimeError(f"{label} worker imported {self.ready['vmaptune']}, not {expected}")

  def _read(self) -> dict:
    for line in self.process.stdout:
      if line.startswith(MARK):
        return json.loads(line[len(MARK):])
    self.process.wait()
    self._log.close()
    with open(self.log_path) as f:
      tail = f.read()[-3000:]
    raise RuntimeError(f"{self.label} worker exited ({self.process.returncode}):\n{tail}")

  def time(self) -> float:
    self.process.stdin.write("time\n")
    self.process.stdin.flush()
    return self._read()["train_s"]

  def close(self) -> None:
    if self.process.poll() is None:
      self.process.stdin.close()
      self.process.wait(timeout=60)
    self._log.close()


def extract(commit: str, into: str) -> str:
  """The ``vmaptune`` package of ``commit``, unpacked under ``into``."""
  archive = subprocess.run(["git", "-C", ROOT, "archive", commit, "vmaptune"], check=True,
                           capture_output=True).stdout
  os.makedirs(into, exist_ok=True)
  subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
  return into


def tree_digest(package_dir: str) -> str:
  """SHA-256 over the package's Python files (names and contents), to tell
  which uncommitted state of the working tree was measured."""
  digest = hashlib.sha256()
  base = os.path.join(package_dir, "vmaptune")
  for folder, _, files in sorted(os.walk(base)):
    for name in sorted(f for f in files if f.endswith(".py")):
      path = os.path.join(folder, name)
      digest.update(os.path.relpath(path, base).encode() + b"\0")
      with open(path, "rb") as f:
        digest.update(f.read())
  return digest.hexdigest()


def cpu_name() -> str:
  """The CPU's model name (``/proc/cpuinfo``), else the machine type."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def git(*command: str) -> str:
  return subprocess.run(["git", "-C", ROOT, *command], check=True, capture_output=True,
                        text=True).stdout.strip()


def classifier_pairs(before_dir: str, after_dir: str, options: list[str], pairs: int,
                     calls: int, log_dir: str) -> list[dict]:
  """``pairs`` pairs of worker processes; in each, ``calls`` timed calls per
  version, alternating which goes first."""
  results = []
  for index in range(pairs):
    versions = [("before", before_dir), ("after", after_dir)]
    if index % 2:  # Alternate which version compiles (and times) first.
      versions.reverse()
    workers = {}
    try:
      for label, folder in versions:
        workers[label] = Worker(label, folder, options, log_dir)
      times: dict[str, list[float]] = {"before": [], "after": []}
      order = [label for label, _ in versions]
      for call in range(calls):
        for label in (order if call % 2 == 0 else order[::-1]):
          times[label].append(workers[label].time())
    finally:
      for w in workers.values():
        w.close()
    before, after = times["before"], times["after"]
    pair = {"first": order[0], "before_s": before, "after_s": after,
            "ready": {label: w.ready for label, w in workers.items()},
            "ratio_median": statistics.median(after) / statistics.median(before),
            "ratio_min": min(after) / min(before)}
    results.append(pair)
    print(f"  pair {index + 1}: before {_seconds(before)}  after {_seconds(after)}  "
          f"after/before {pair['ratio_median']:.3f} (medians), {pair['ratio_min']:.3f} (minima)",
          flush=True)
  return results


def _seconds(values: list[float]) -> str:
  return " ".join(f"{v:.3f}" for v in values)


def language_model(after_dir: str, args, population: int, log_dir: str) -> dict:
  """One worker of the working tree's code: the char LM's tokens per second."""
  options = ["--worker", "lm", "--config", args.config, "--population", str(population),
             "--epochs", str(args.lm_epochs), "--batch-size", str(args.lm_batch_size)]
  w = Worker("lm", after_dir, options, log_dir)
  try:
    times = [w.time() for _ in range(args.lm_calls)]
  finally:
    w.close()
  tokens = w.ready["tokens_per_call"]
  best = statistics.median(times)
  result = {"population": population, "epochs": args.lm_epochs,
            "batch_size": args.lm_batch_size, "ready": w.ready, "train_s": times,
            "tokens_per_call": tokens, "tokens_per_s_median": tokens / best,
            "tokens_per_s_best": tokens / min(times),
            "tokens_per_s_per_lane_median": tokens / best / population}
  print(f"  P={population:4d}: {_seconds(times)} s per call, {tokens} tokens -> "
        f"{result['tokens_per_s_median']:,.0f} tokens/s (median; best "
        f"{result['tokens_per_s_best']:,.0f}), first call {w.ready['first_call_s']:.1f}s, "
        f"val loss {w.ready['best_val_loss']:.3f}", flush=True)
  return result


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="smaller populations, 2 pairs of 3 calls")
  parser.add_argument("--before", required=True,
                      help="the commit to compare against (e.g. the last before objectives)")
  parser.add_argument("--population", type=int, help="classifier lanes (default 256, quick 64)")
  parser.add_argument("--epochs", type=int, help="classifier epochs per call (default 4, "
                                                 "quick 2)")
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--pairs", type=int, help="before/after worker pairs (default 4, quick 2)")
  parser.add_argument("--calls", type=int,
                      help="timed calls per worker (default 5, quick 3)")
  parser.add_argument("--lm-populations", type=int, nargs="+",
                      help="language-model lanes (default 16 64, quick 16)")
  parser.add_argument("--lm-epochs", type=int, default=1)
  parser.add_argument("--lm-calls", type=int, help="timed language-model calls (default 3, "
                                                    "quick 2)")
  parser.add_argument("--lm-batch-size", type=int, default=64)
  parser.add_argument("--config", default=os.path.join(HERE, "char_lm.py"),
                      help="the language model's experiment")
  parser.add_argument("--skip-classifier", action="store_true")
  parser.add_argument("--skip-lm", action="store_true")
  parser.add_argument("--out", help="results JSON (default experiments/results/"
                                    "objectives-<platform>[-quick].json)")
  parser.add_argument("--worker", choices=("classifier", "lm"), help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  args.config = os.path.abspath(args.config)
  if args.worker:
    return worker(args)

  quick = args.quick
  args.population = args.population or (64 if quick else 256)
  args.epochs = args.epochs or (2 if quick else 4)
  args.pairs = args.pairs or (2 if quick else 4)
  args.calls = args.calls or (3 if quick else 5)
  args.lm_calls = args.lm_calls or (2 if quick else 3)
  lm_populations = args.lm_populations or ([16] if quick else [16, 64])
  report: dict[str, Any] = {
      "command": " ".join(["python", "experiments/bench_objectives.py"]
                          + (sys.argv[1:] if argv is None else argv)),
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "host": {"cpu": cpu_name(), "cores": os.cpu_count(),
               "python": platform.python_version(),
               "load_average_at_start": os.getloadavg()},
      "git": {"head": git("rev-parse", "HEAD"),
              "uncommitted_changes": bool(git("status", "--porcelain", "--", "vmaptune")),
              "before": git("rev-parse", args.before)}}
  started = time.perf_counter()
  log_dir = tempfile.mkdtemp(prefix="bench-objectives-")
  try:
    before_dir = extract(args.before, os.path.join(log_dir, "before"))
    report["git"]["after_package_sha256"] = tree_digest(ROOT)
    report["git"]["before_package_sha256"] = tree_digest(before_dir)
    if not args.skip_classifier:
      options = ["--worker", "classifier", "--population", str(args.population),
                 "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
      print(f"classifier: digits MLP, P={args.population}, {args.epochs} epochs, batch "
            f"{args.batch_size}; {args.pairs} pairs x {args.calls} timed calls per version "
            f"(seconds per training call)", flush=True)
      pairs = classifier_pairs(before_dir, ROOT, options, args.pairs, args.calls, log_dir)
      ratios = [p["ratio_median"] for p in pairs]
      summary = {"median_ratio": statistics.median(ratios), "ratios": ratios,
                 "spread": [min(ratios), max(ratios)],
                 "median_ratio_of_minima": statistics.median(p["ratio_min"] for p in pairs)}
      report["classifier"] = {"population": args.population, "epochs": args.epochs,
                              "batch_size": args.batch_size, "calls": args.calls,
                              "pairs": pairs, "summary": summary}
      ready = pairs[0]["ready"]["after"]
      report["machine"] = {k: ready[k] for k in ("platform", "device_kind", "devices", "jax")}
      print(f"  after/before: median {summary['median_ratio']:.3f} over pairs "
            f"{', '.join(f'{r:.3f}' for r in ratios)}", flush=True)
    if not args.skip_lm:
      print(f"language model: {os.path.relpath(args.config, ROOT)}, {args.lm_epochs} epoch(s), "
            f"batch {args.lm_batch_size}, {args.lm_calls} timed calls", flush=True)
      report["language_model"] = [language_model(ROOT, args, p, log_dir)
                                  for p in lm_populations]
      report.setdefault("machine", {k: report["language_model"][0]["ready"][k]
                                    for k in ("platform", "device_kind", "devices", "jax")})
  finally:
    shutil.rmtree(log_dir, ignore_errors=True)
  report["wall_s"] = time.perf_counter() - started
  report["host"]["load_average_at_end"] = os.getloadavg()
  name = f"objectives-{report.get('machine', {}).get('platform', 'cpu')}" \
         f"{'-quick' if quick else ''}.json"
  out = args.out or os.path.join(HERE, "results", name)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(report, f, indent=2)
    f.write("\n")
  print(f"\n{report['wall_s']:.0f}s; results written to {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
