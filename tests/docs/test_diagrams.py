"""The pictures in docs/diagrams/ are what their sources render to, and the plot's numbers are the page's.

Rendered by docs/render_diagrams.py: Graphviz `dot` (Debian's graphviz, a
testbed prerequisite) and matplotlib, from docs/diagrams/*.dot and
docs/measured.json, whose every figure docs/measured.md must print.
"""

import importlib.util
import json
import re

from testbed import PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"
DIAGRAMS = DOCS / "diagrams"


def renderer():
    spec = importlib.util.spec_from_file_location("render_diagrams", DOCS / "render_diagrams.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_picture_is_current_with_its_source(testbed_prerequisites, tmp_path):
    fresh = renderer().render(tmp_path)
    assert fresh == ["architecture.svg", "benchmarks.svg", "ray-up-flow.svg"]
    assert sorted(path.name for path in DIAGRAMS.glob("*.svg")) == fresh
    stale = [name for name in fresh if (tmp_path / name).read_text() != (DIAGRAMS / name).read_text()]
    assert stale == [], f"{stale} differ from their sources: run .venv/bin/python docs/render_diagrams.py"


def test_the_plotted_figures_are_the_ones_docs_measured_md_prints():
    page = (DOCS / "measured.md").read_text()
    figures = {name: chart for name, chart in json.loads((DOCS / "measured.json").read_text()).items()
               if not name.startswith("_")}
    for chart in figures.values():
        for row in chart["rows"]:
            for quote in row["quotes"]:
                assert quote in page, f"docs/measured.md no longer prints {quote!r}"
            printed = {float(number) for quote in row["quotes"] for number in re.findall(r"\d+(?:\.\d+)?", quote)}
            for series, value in row["values"].items():
                assert value in printed, f"{row['label']}, {series}: {value} is not among the page's {sorted(printed)}"


def test_the_plot_shows_each_figure(testbed_prerequisites, tmp_path):
    renderer().render(tmp_path)
    svg = (tmp_path / "benchmarks.svg").read_text()
    figures = json.loads((DOCS / "measured.json").read_text())
    for name, chart in figures.items():
        if name.startswith("_"):
            continue
        assert chart["title"] in svg.replace("&#39;", "'")
        for row in chart["rows"]:
            for value in row["values"].values():
                assert f">{value:g}<" in svg, f"the plot does not label {value}"


def test_the_readme_and_docs_link_the_pictures():
    readme = (PROJECT_ROOT / "README.md").read_text()
    for name in ["architecture.svg", "ray-up-flow.svg", "benchmarks.svg"]:
        assert f"docs/diagrams/{name}" in readme
