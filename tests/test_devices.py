"""Lanes sharded over several devices, and chunked within a device, give the results of
one device running every lane at once; padding lanes never reach the results."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import json, jax, numpy as np
    import vmaptune as vt
    from vmaptune.lanes.keys import round_keys
    from vmaptune.models.optimizers import BUILTIN
    from vmaptune.lanes.population import Population

    images, target = vt.data.digits_arrays(400)
    x = (images[:, :, :, None] / 16.0).astype(np.float32)
    data = vt.data.from_arrays(x, target, num_classes=10)
    hp = {"learning_rate": np.array([3e-3, 1e-2, 3e-2, 1e-1, 1e6], np.float32)}
    results = {}
    for name, devices, chunk in [("one device, one chunk", jax.devices()[:1], None),
                                 ("4 devices, chunks of 1", jax.devices(), 1),
                                 ("4 devices, one chunk", jax.devices(), None)]:
      pop = Population(vt.models.MLP(hidden=(16,)), BUILTIN["adamw"], data, epochs=2,
                          batch_size=32, eval_batch_size=64, devices=devices,
                          lanes_per_chunk=chunk)
      out = pop.train(hp, *round_keys(0, 0))
      scores = pop.evaluate(out.params)
      results[name] = {
          "padded": pop.padded_size(5), "devices": pop.num_devices,
          "accuracy": np.asarray(scores["accuracy"])[:5].tolist(),
          "diverged": np.asarray(out.diverged)[:5].tolist(),
          "kernel": np.asarray(out.params["Dense_0"]["kernel"][:4]).ravel()[::97].tolist()}
    space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0))
    tuned = vt.tune(vt.models.MLP(hidden=(16,)), data, space, population=5, rounds=2, epochs=1,
                    batch_size=32, confirm="off")  # The rounds' lanes, not the confirmation's.
    results["tune"] = {"lanes": [r.configurations for r in tuned.rounds],
                       "records": len(tuned.trials()), "devices": len(jax.devices())}
    print(json.dumps(results))
""")


@pytest.mark.slow  # A subprocess.
def test_sharded_and_chunked_lanes_equal_one_device_and_padding_is_dropped():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
  done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                        env=env, cwd=ROOT, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  results = json.loads(done.stdout.strip().splitlines()[-1])
  base = results.pop("one device, one chunk")
  tune = results.pop("tune")
  assert base["devices"] == 1 and base["padded"] == 5
  for name, got in results.items():
    assert got["devices"] == 4 and got["padded"] == 8, name  # 5 lanes padded to 2 per device.
    assert got["diverged"] == base["diverged"] == [False] * 4 + [True], name
    # Same lanes, rechunked: equal up to float32 summation order.
    assert all(abs(a - b) <= 1 / 80 for a, b in zip(got["accuracy"][:4], base["accuracy"][:4],
                                                   strict=True)), name
    assert all(abs(a - b) < 1e-4 for a, b in zip(got["kernel"], base["kernel"], strict=True)), name
  # The tuner sees exactly the population it asked for, on all 4 devices.
  assert tune == {"lanes": [5, 5], "records": 10, "devices": 4}


def _devices_after(cases: list[tuple[dict, str, str]]) -> list[subprocess.CompletedProcess]:
  """For each ``(environment, code run first, call)``, a fresh Python that imports
  vmaptune, makes the call and prints how many CPU devices JAX has; all side by side."""
  clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "VMAPTUNE_CPU_DEVICES")}
  procs = []
  for env, code, call in cases:
    script = (code + "import warnings; warnings.simplefilter('always')\n"
              f"import vmaptune, jax\n{call}\nprint(len(jax.devices('cpu')))")
    procs.append(subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env={**clean, **env},
                                  cwd=ROOT))
  done = []
  for proc in procs:
    out, err = proc.communicate(timeout=120)
    done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
  return done


@pytest.mark.slow  # Subprocesses.
def test_tune_sets_the_cpu_device_count_unless_told_otherwise_and_import_does_not():
  configure = "vmaptune.lanes.devices.configure_cpu_devices()"
  refused = ("try:\n  vmaptune.tune(None, None, None, population=0)\n"
             "except vmaptune.SettingsError:\n  pass")
  imported, tuned, off, flagged, bad, late = _devices_after([
      ({"VMAPTUNE_CPU_DEVICES": "3"}, "", ""),  # Importing changes no JAX setting.
      ({"VMAPTUNE_CPU_DEVICES": "3"}, "", refused),  # tune asks first, even when it refuses.
      ({"VMAPTUNE_CPU_DEVICES": "1"}, "", configure),
      # An explicit XLA flag wins.
      ({"VMAPTUNE_CPU_DEVICES": "3", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
       "", configure),
      # A bad value warns and falls back to the usable cores; it never breaks the call.
      ({"VMAPTUNE_CPU_DEVICES": "many"}, "", configure),
      # Too late (JAX already running): a warning that says what to do.
      ({"VMAPTUNE_CPU_DEVICES": "3"}, "import jax; jax.numpy.ones(2).block_until_ready()\n",
       configure)])
  assert imported.stdout.split() == ["1"] and tuned.stdout.split() == ["3"]
  assert off.stdout.split() == ["1"] and flagged.stdout.split() == ["2"]
  assert bad.returncode == 0 and "VMAPTUNE_CPU_DEVICES='many'" in bad.stderr
  assert late.stdout.split() == ["1"] and "before running any JAX code" in late.stderr
