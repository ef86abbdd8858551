"""The docs' examples run, and the docs hold together.

Every ```python block right after a ``<!-- test: NAME -->`` line in README.md or
docs/*.md runs here, in a fresh namespace with the repository root as the
working directory, and its results are checked by ``CHECKS[NAME]``. Runs skip
the confirmation stage unless the example sets ``confirm`` or ``CONFIRMED`` names it.
"""

import glob
import importlib.util
import os
import re
from collections.abc import Callable
from typing import NamedTuple

import pytest

import vmaptune as vt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md"),
         *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]
MARKER = re.compile(r"^<!-- test: (\S+) -->$")
README_MAX_LINES = 200
# Pages written apart from the guide pages; until they exist, links to them are not errors.


class Example(NamedTuple):
  name: str
  page: str  # Relative to the repository root.
  line: int  # 1-based line of the marker.
  fence: str  # The line after the marker.
  code: str  # The block, with blank lines before it so line numbers match the page.


def _examples() -> list[Example]:
  found = []
  for path in PAGES:
    with open(path) as f:
      lines = f.read().splitlines()
    for i, line in enumerate(lines):
      match = MARKER.match(line.strip())
      if not match:
        continue
      fence = lines[i + 1] if i + 1 < len(lines) else ""
      end = next((j for j in range(i + 2, len(lines)) if lines[j].startswith("```")),
                 len(lines))
      code = "\n" * (i + 2) + "\n".join(lines[i + 2:end]) + "\n"
      found.append(Example(match.group(1), os.path.relpath(path, ROOT), i + 1, fence, code))
  return found


EXAMPLES = _examples()


def _readme(ns: dict, out: str) -> None:
  result, final = ns["result"], ns["final"]
  assert len(result.rounds) == 3 and final.test_accuracy > 0.5
  assert "round 3/3" in out
  assert result.settings["sampler"] == "narrow(keep=0.2, margin=0.1)"
  # "The chosen trial": the confirmation's choice.
  assert result.confirmation is not None and result.best == result.confirmation.trial


def _regularized(ns: dict, out: str) -> None:
  result = ns["result"]
  assert set(result.best.hparams) == {"learning_rate", "b1", "b2", "dropout_rate",
                                      "label_smoothing", "warmup_epochs"}
  assert [r.compiles for r in result.rounds][1:] == [0]  # New values, same program.


def _structural(ns: dict, out: str) -> None:
  result, final = ns["result"], ns["final"]
  assert set(result.best.hparams) == {"learning_rate", "weight_decay", "depth"}
  assert final.model.hidden == (64,) * result.best.hparams["depth"]
  assert "'depth': " in out


def _seeds(ns: dict, out: str) -> None:
  best = ns["best"]
  assert len(best.seed_accuracy) == 3 and best.val_accuracy_std is not None
  assert str(best.val_accuracy) in out


def _nnx(ns: dict, out: str) -> None:
  result, trained = ns["result"], ns["trained"]
  assert set(result.best.hparams) == {"learning_rate", "dropout_rate", "hidden"}
  assert isinstance(trained, ns["Net"])
  assert trained.hidden.kernel.shape == (64, result.best.hparams["hidden"])


def _optuna(ns: dict, out: str) -> None:
  study, final = ns["study"], ns["final"]
  assert len(study.trials) == 48 and final.test_accuracy > 0.5
  assert str(study.best_value) in out
  assert {t.user_attrs["vmaptune_round"] for t in study.trials} == {0, 1, 2}


def _strategies(ns: dict, out: str) -> None:
  halving, pbt = ns["halving"], ns["pbt"]
  first = halving.rounds[0]
  assert "halved" in set(first.status) and first.lane_epochs < 9 * 3
  assert "exploited" in set(pbt.rounds[0].status)
  schedule = pbt.final_fit().schedule
  assert schedule[0][0] == 0 and schedule[-1][1] == 4 and "[(0, " in out


def _experiment_config(ns: dict, out: str) -> None:
  experiment = ns["get_config"]()
  assert isinstance(experiment, vt.Experiment)
  assert vt.samplers.parse(experiment.sampler) == vt.samplers.Narrow(keep=0.2, margin=0.1)
  assert experiment.load_data().sizes == {"train": 1079, "val": 359, "test": 359}


def _run_directory(ns: dict, out: str) -> None:
  run, logits = ns["run"], ns["logits"]
  assert run.complete and len(run.records) == 16 and len(run.top(3)) == 3
  assert run.config["format"] == 2 and run.final_fit["test_accuracy"] > 0.5
  assert logits.shape == (359, 10)
  assert str(run.chosen["hparams"]["learning_rate"]) in out


def _progress(ns: dict, out: str) -> None:
  events, found = [e["event"] for e in ns["events"]], ns["found"]
  assert events[0] == "run_start" and events[-1] == "run_end"
  assert events.count("round_end") == 2 and "segment" in events
  assert found.importance[0].name == "learning_rate" and found.table in out
  if importlib.util.find_spec("matplotlib") is not None:
    assert os.path.isfile(found.figures["overview"])


def _custom_objective(ns: dict, out: str) -> None:
  result = ns["result"]
  assert set(result.best.hparams) == {"learning_rate", "huber_delta"}
  assert result.settings["objective"] == "huber"
  assert [r.compiles for r in result.rounds][1:] == [0]  # New deltas, same program.


# Assertions per marker name; every marker needs one (and every entry a marker).
CHECKS: dict[str, Callable[[dict, str], None]] = {
    "readme": _readme, "regularized": _regularized, "structural": _structural,
    "seeds": _seeds, "nnx": _nnx, "optuna": _optuna, "strategies": _strategies,
    "experiment-config": _experiment_config, "run-directory": _run_directory,
    "progress": _progress, "custom_objective": _custom_objective,
}
# Examples that need an optional dependency: skipped without it.
REQUIRES = {"optuna": "optuna"}
# The confirmation stage (``confirm="auto"``, the default) compiles and trains one more program
# after a run's last round; test_confirmation.py tests it. The README's example runs exactly as
# shown, confirmation included (its check asks for it); the other examples, each about something
# else, run with ``confirm="off"`` unless they set ``confirm`` themselves.
CONFIRMED = {"readme"}


@pytest.mark.slow  # Full-size examples; the features they show have fast tests.
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_the_example_runs(example, capsys, monkeypatch):
  if example.name in REQUIRES:
    pytest.importorskip(REQUIRES[example.name])
  monkeypatch.chdir(ROOT)
  if example.name not in CONFIRMED:
    tune = vt.tune
    monkeypatch.setattr(vt, "tune", lambda *a, **kw: tune(*a, **{"confirm": "off", **kw}))
  namespace: dict = {}
  exec(compile(example.code, os.path.join(ROOT, example.page), "exec"), namespace)  # noqa: S102
  CHECKS[example.name](namespace, capsys.readouterr().out)


def test_markers_name_unique_python_blocks_that_have_checks():
  assert EXAMPLES, "no <!-- test: NAME --> marker in README.md or docs/*.md"
  names = [e.name for e in EXAMPLES]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  assert not duplicates, f"marker names used more than once: {duplicates}"
  not_python = [f"{e.page}:{e.line}" for e in EXAMPLES if e.fence != "```python"]
  assert not not_python, f"markers not followed by a ```python block: {not_python}"
  assert set(names) == set(CHECKS), (
      f"markers without checks: {sorted(set(names) - set(CHECKS))}; "
      f"checks without markers: {sorted(set(CHECKS) - set(names))}")
  assert "readme" in names and EXAMPLES[names.index("readme")].page == "README.md"


def test_the_readme_is_short_and_keeps_its_two_setup_commands():
  with open(os.path.join(ROOT, "README.md")) as f:
    text = f.read()
  lines = text.splitlines()
  assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"
  # .ci/run runs the line after the second ```bash under this heading (the fast tier) ...
  section = text.split("\n## Set-up: two commands\n", 1)[1].split("\n## ", 1)[0]
  blocks = re.findall(r"^```bash\n(.*?)^```", section, flags=re.S | re.M)
  assert len(blocks) == 2 and len(blocks[1].splitlines()) == 1
  assert "vmaptune run experiments/digits_mlp.py" in blocks[0]
  assert "uv pip install -e '.[test]'" in blocks[1] and "python -m pytest" in blocks[1]
  # ... then, in the same environment, the slow tier's command, which the section gives.
  assert "`uv pip install -e '.[notebook]' && python -m pytest -q -n auto -m slow`" in section


def _anchors(path: str) -> set[str]:
  """GitHub's anchors for the headings of a page: lower case, punctuation dropped."""
  with open(path) as f:
    headings = re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", f.read(), flags=re.S | re.M),
                          flags=re.M)
  return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_relative_link_points_at_a_file_and_heading():
  missing = []
  for path in PAGES:
    with open(path) as f:
      text = f.read()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
      if re.match(r"[a-z]+:", target):
        continue  # A URL.
      file, _, anchor = target.partition("#")
      resolved = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
      where = f"{os.path.relpath(path, ROOT)}: {target}"
      if not os.path.exists(resolved):
        missing.append(where)
      elif anchor and anchor not in _anchors(resolved):
        missing.append(where)
  assert not missing, f"links to missing files or headings: {missing}"
