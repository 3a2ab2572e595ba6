"""Every link between the README and docs/ pages leads to a file that exists and, with #anchor, to a heading of it."""

import re

from testbed import PROJECT_ROOT

PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page):
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def broken_links():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.relative_to(PROJECT_ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{page.relative_to(PROJECT_ROOT)}: {target} (no such heading)")
    return broken


def test_every_local_link_resolves():
    assert broken_links() == []


def test_the_readme_links_every_docs_page():
    readme = (PROJECT_ROOT / "README.md").read_text()
    pages = sorted(path.name for path in (PROJECT_ROOT / "docs").glob("*.md"))
    assert [name for name in pages if f"docs/{name}" not in readme] == []
