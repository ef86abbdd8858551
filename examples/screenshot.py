"""Runs examples/quickstart.ipynb in a real kernel and screenshots the result's summary.

The summary is the HTML the notebook shows for the tuning result (its ``text/html``
output), put on a page of its own and drawn by headless Chromium into
docs/notebook_summary.png (see docs/notebooks.md).

    python examples/screenshot.py [--chromium /usr/bin/chromium] [--out docs/notebook_summary.png]

Needs the ``notebook`` extra (nbclient, nbformat, ipykernel) and Chromium.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import nbclient
import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "examples", "quickstart.ipynb")
PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:;
  style-src 'unsafe-inline'"></head><body style="margin: 12px">{}</body></html>"""


def run_notebook() -> nbformat.NotebookNode:
  """The quickstart executed, with the repository's vmaptune on the kernel's path."""
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])
  nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}}).execute()
  return notebook


def summary_html(notebook: nbformat.NotebookNode) -> str:
  """The first ``text/html`` output of the notebook: the tuning result's summary."""
  return next(output["data"]["text/html"] for cell in notebook.cells
              for output in cell.get("outputs", []) if "text/html" in output.get("data", {}))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--chromium", default="/usr/bin/chromium")
  parser.add_argument("--out", default=os.path.join(ROOT, "docs", "notebook_summary.png"))
  parser.add_argument("--size", default="940,1100", help="the window, WIDTH,HEIGHT pixels")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as folder:
    page = os.path.join(folder, "summary.html")
    with open(page, "w") as f:
      f.write(PAGE.format(summary_html(run_notebook())))
    subprocess.run([args.chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--no-first-run", "--disable-background-networking",
                    f"--user-data-dir={os.path.join(folder, 'profile')}", "--hide-scrollbars",
                    f"--window-size={args.size}", f"--screenshot={os.path.abspath(args.out)}",
                    "file://" + page], check=True, capture_output=True, timeout=120)
  print(args.out, os.path.getsize(args.out), "bytes")


if __name__ == "__main__":
  sys.exit(main())
