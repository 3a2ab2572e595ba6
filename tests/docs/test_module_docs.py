"""docs/modules/ is what the plugins' own documentation renders to, and that documentation passes antsibull-docs' lint."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from testbed import PROJECT_ROOT

RENDERED = PROJECT_ROOT / "docs" / "modules"
BIN = Path(sys.executable).parent


def render_module():
    spec = importlib.util.spec_from_file_location("render_modules", PROJECT_ROOT / "docs" / "render_modules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_module_pages_are_current(tmp_path):
    fresh = render_module().render(tmp_path)
    committed = {path.name: path.read_text() for path in RENDERED.glob("*.md")}
    stale = sorted(name for name in set(fresh) | set(committed) if fresh.get(name) != committed.get(name))
    assert stale == [], f"docs/modules/ is out of date for {stale}: run .venv/bin/python docs/render_modules.py"


def test_every_module_has_a_page_with_its_options_and_examples():
    names = sorted(path.stem for path in (PROJECT_ROOT / "plugins" / "modules").glob("*.py"))
    for name in names:
        page = (RENDERED / f"{name}_module.md").read_text()
        assert "## Options" in page and "## Examples" in page and "## Return values" in page, name
        assert f"(module)" in page.splitlines()[0]


def test_the_plugin_docs_pass_antsibull_docs_lint():
    collection = PROJECT_ROOT / "collections" / "ansible_collections" / "ray_vsphere" / "cluster"
    result = subprocess.run([str(BIN / "antsibull-docs"), "lint-collection-docs", "--plugin-docs", str(collection)],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}"))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
