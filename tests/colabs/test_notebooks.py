"""The Colab notebooks run top to bottom on a CPU (headless, nbclient), from the repository root
as after the README's set-up; any cell that raises fails the test. Each opens with an "Open in
Colab" badge and an install cell that only acts in Colab."""

import glob
import json
import os
import time

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "colabs", "*.ipynb")))
# Per notebook, values that replace its parameters cell (as papermill injects them).
PARAMETERS = {"sweep.ipynb": lambda tmp: {"ROOT": str(tmp / "sweep")}}


def _inject(nb, values):
  index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
  code = "\n".join(f"{k} = {v!r}" for k, v in values.items())
  nb.cells.insert(index + 1, nbformat.v4.new_code_cell("# injected by the test\n" + code))


def test_there_are_three_notebooks():
  names = {os.path.basename(p) for p in NOTEBOOKS}
  assert names == {"tour.ipynb", "lep_step_by_step.ipynb", "sweep.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_top_to_bottom(path, tmp_path):
  nb = nbformat.read(path, as_version=4)
  name = os.path.basename(path)
  assert nb.cells[0].cell_type == "markdown"
  assert f"colab.research.google.com/github/langshift-org/langshift/blob/main/colabs/{name}" in (
      nb.cells[0].source
  )
  assert 'IN_COLAB = "google.colab" in sys.modules' in nb.cells[1].source
  assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
  if name in PARAMETERS:
    _inject(nb, PARAMETERS[name](tmp_path))
  client = NotebookClient(
      nb,
      timeout=300,  # per cell
      kernel_name="python3",
      resources={"metadata": {"path": REPO}},
  )
  start = time.time()
  client.execute()  # CellExecutionError names the cell that raised
  seconds = time.time() - start
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  assert not [o for o in outputs if o.output_type == "error"]
  text = json.dumps([o.get("text", "") for o in outputs])
  assert f"working directory: {REPO}" in text
  print(f"{name}: {seconds:.1f} s")
