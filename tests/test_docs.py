"""The README's Python example and every shipped experiment config actually run."""

import glob
import os
import re

import pytest

import vmaptune as vt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_readme_python_example_runs(capsys):
  with open(os.path.join(ROOT, "README.md")) as f:
    blocks = re.findall(r"^```python\n(.*?)^```", f.read(), flags=re.S | re.M)
  assert blocks, "README.md has no python example"
  namespace: dict = {}
  exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own README.
  result, final = namespace["result"], namespace["final"]
  assert len(result.rounds) == 3 and final.test_accuracy > 0.5
  assert "round 3/3" in capsys.readouterr().out


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py"))),
                         ids=os.path.basename)
def test_every_experiment_config_runs_shrunk(path, tmp_path):
  experiment = vt.load_experiment(path)
  shrunk = vt.override(experiment, ["population=2", "rounds=1", "epochs=1"])
  result = shrunk.tune(out=str(tmp_path / "run"))
  assert result.best.status == "finished"
  assert len(vt.read_trials(tmp_path / "run")) == 2
