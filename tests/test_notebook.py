"""Sweeps in a Jupyter notebook, executed by a real kernel (nbclient): the saved progress
output ends on the final counts in a form any viewer shows (text and HTML, not a widget),
and results, runs and handles render as HTML, each once."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
if importlib.util.find_spec("ipykernel") is None:  # the kernel's, not imported here
    pytest.skip("ipykernel is not installed (uv sync)", allow_module_level=True)

TESTS = Path(__file__).parent

SETUP = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import metalab
from sweeps import draw

exp = metalab.Experiment(
    name="notebook",
    version="1",
    context={{}},
    operation=draw,
    params=metalab.grid(scale=list(range(1, 21)), shift=[0.5]),
    seeds=metalab.seeds(base=7, replicates=2),
)
"""


def _texts(outputs: list[dict], mime: str) -> list[str]:
    """The `mime` payloads of a cell's display outputs (and streams for text/plain)."""
    found = []
    for output in outputs:
        if output["output_type"] in ("display_data", "execute_result"):
            data = output.get("data", {})
            if mime in data:
                value = data[mime]
                found.append("".join(value) if isinstance(value, list) else value)
        elif output["output_type"] == "stream" and mime == "text/plain":
            text = output["text"]
            found.append("".join(text) if isinstance(text, list) else text)
    return found


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    directory = tmp_path_factory.mktemp("notebook")
    cells = [
        SETUP,
        "handle = metalab.run(exp, 'store', progress=True)\nresults = handle.result()",
        "again = metalab.run(exp, 'store', progress=True)\nskipped = again.result()",
        "results",
        "results[0]",
        "handle",
        "results.display(group_by='scale')",
        "results.display()",
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(directory)}},
    )
    client.execute()
    path = directory / "sweep.ipynb"
    nbformat.write(nb, path)  # what a static viewer reads
    return json.loads(path.read_text())


def _cell(notebook, index: int) -> list[dict]:
    return notebook["cells"][index]["outputs"]


@pytest.mark.slow
def test_progress_ends_on_the_final_counts_in_text_and_html(notebook):
    outputs = _cell(notebook, 1)
    text = "\n".join(_texts(outputs, "text/plain"))
    markup = "\n".join(_texts(outputs, "text/html"))
    assert "notebook:1: 40/40 | ok 40 | failed 0" in text, outputs
    assert "40/40" in markup and "ok 40" in markup and "<progress value='40' max='40'" in markup
    assert "dashboard" in text and "/metalab" in text
    for output in outputs:  # no widget: nothing a static viewer cannot show
        assert "application/vnd.jupyter.widget-view+json" not in output.get("data", {})
    assert all(o["output_type"] != "error" for o in outputs)


@pytest.mark.slow
def test_a_fully_skipped_sweep_shows_its_final_counts(notebook):
    text = "\n".join(_texts(_cell(notebook, 2), "text/plain"))
    assert "40/40" in text and "skipped 40" in text, _cell(notebook, 2)
    assert "0/40" not in text.replace("40/40", "")


@pytest.mark.slow
def test_results_run_and_handle_render_as_html(notebook):
    (results_html,) = _texts(_cell(notebook, 3), "text/html")
    assert "<table>" in results_html and "40 runs (40 completed)" in results_html
    assert results_html.count("<tr>") == 1 + 20 + 1  # header, first and last 10, and a gap
    (run_html,) = _texts(_cell(notebook, 4), "text/html")
    assert "completed" in run_html and "param scale" in run_html
    (handle_html,) = _texts(_cell(notebook, 5), "text/html")
    assert "notebook:1" in handle_html and "finished: 40/40" in handle_html


@pytest.mark.slow
def test_display_shows_its_table_once(notebook):
    for index, marker in ((6, "40 runs by scale"), (7, "replicate")):
        outputs = _cell(notebook, index)
        assert all(o["output_type"] != "execute_result" for o in outputs), outputs
        # one output (a display may carry its table as text and as HTML: one rendering)
        showing = [o for o in outputs if marker in json.dumps(o)]
        assert len(showing) == 1, outputs
        text = "\n".join(_texts(showing, "text/plain"))
        assert len(re.findall(re.escape(marker), text)) == 1, text
