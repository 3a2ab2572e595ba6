"""docs/modules/: the collection's modules, roles, filters and inventory plugins as Markdown, from `ansible-doc --json`.

    .venv/bin/python docs/render_modules.py [DEST]   (DEST: docs/modules)

The text is the plugins' own DOCUMENTATION, EXAMPLES and RETURN (and the
roles' argument specs), exactly as `ansible-doc` reads them; Ansible's markup
(C(), O(), RV(), ...) becomes Markdown through antsibull-docs' own parser.
antsibull-docs renders RST only (its simplified-rst puts tables in raw HTML,
which GitHub and Galaxy do not show), hence Markdown here.
tests/docs/test_module_docs.py re-renders and compares.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from antsibull_docs_parser import dom, parser
from antsibull_docs_parser.md import to_md

COLLECTION = "ray_vsphere.cluster"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = ROOT / "docs" / "modules"
KINDS = [("module", "Modules"), ("role", "Roles"), ("filter", "Filters"), ("inventory", "Inventory plugins")]


def ansible_doc(*arguments):
    binary = Path(sys.executable).parent / "ansible-doc"
    environment = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"))
    result = subprocess.run([str(binary), *arguments], capture_output=True, text=True, check=True, cwd=ROOT,
                            env=environment)
    return result.stdout


def markup(text, fqcn):
    """Ansible markup → Markdown, links to this collection's options kept on the page."""
    paragraphs = text if isinstance(text, list) else [text]
    context = parser.Context(current_plugin=dom.PluginIdentifier(fqcn=fqcn, type="module"))
    parsed = [parser.parse(str(paragraph), context) for paragraph in paragraphs]
    return " ".join(to_md(paragraph).replace("\n", " ").replace("|", "\\|") for paragraph in parsed)


def option_rows(options, fqcn, prefix=""):
    rows = []
    for name in sorted(options):
        option = options[name]
        kind = option.get("type", "str")
        if option.get("elements"):
            kind += f" of {option['elements']}"
        facts = []
        if option.get("required"):
            facts.append("**required**")
        if "default" in option and option["default"] is not None:
            facts.append(f"default: `{json.dumps(option['default'])}`")
        if option.get("choices"):
            facts.append("choices: " + ", ".join(f"`{choice}`" for choice in option["choices"]))
        if option.get("aliases"):
            facts.append("aliases: " + ", ".join(f"`{alias}`" for alias in option["aliases"]))
        description = markup(option.get("description", ""), fqcn)
        rows.append(f"| `{prefix}{name}` | {kind} | {'; '.join(facts)} | {description} |")
        rows.extend(option_rows(option.get("suboptions") or {}, fqcn, f"{prefix}{name}."))
    return rows


def return_rows(values, fqcn, prefix=""):
    rows = []
    for name in sorted(values or {}):
        value = values[name]
        rows.append(f"| `{prefix}{name}` | {value.get('type', '')} | {value.get('returned', '')} | "
                    f"{markup(value.get('description', ''), fqcn)} |")
        rows.extend(return_rows(value.get("contains") or {}, fqcn, f"{prefix}{name}."))
    return rows


def options_table(options, fqcn):
    if not options:
        return ["None."]
    return ["| option | type | | description |", "|---|---|---|---|", *option_rows(options, fqcn)]


def plugin_page(kind, fqcn, entry):
    doc = entry["doc"]
    lines = [f"# {fqcn} ({kind})", "", markup(doc.get("short_description", ""), fqcn), "",
             "Generated from the plugin's own documentation by `docs/render_modules.py`; "
             f"`ansible-doc -t {kind} {fqcn}` shows the same.", "", "## Synopsis", ""]
    lines += [f"- {markup(paragraph, fqcn)}" for paragraph in doc.get("description", [])]
    if doc.get("requirements"):
        lines += ["", "## Requirements", ""] + [f"- {markup(item, fqcn)}" for item in doc["requirements"]]
    lines += ["", "## Options", ""] + options_table(doc.get("options"), fqcn)
    if doc.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {markup(note, fqcn)}" for note in doc["notes"]]
    if entry.get("examples"):
        lines += ["", "## Examples", "", "```yaml", entry["examples"].strip("\n"), "```"]
    returned = entry.get("return") or doc.get("return") or {}
    if isinstance(returned, dict) and returned:
        lines += ["", "## Return values", "", "| key | type | returned | description |", "|---|---|---|---|",
                  *return_rows(returned, fqcn)]
    return lines


def role_page(fqcn, entry):
    lines = [f"# {fqcn} (role)", "", "Generated from the role's `meta/argument_specs.yml` by "
             f"`docs/render_modules.py`; `ansible-doc -t role {fqcn}` shows the same."]
    for entry_point in sorted(entry["entry_points"]):
        spec = entry["entry_points"][entry_point]
        lines += ["", f"## Entry point `{entry_point}`: {markup(spec.get('short_description', ''), fqcn)}", ""]
        lines += [f"- {markup(paragraph, fqcn)}" for paragraph in spec.get("description") or []]
        lines += [""] + options_table(spec.get("options"), fqcn)
    return lines


def render(dest=DEFAULT_DEST):
    """{file name: text} of every page, written to dest (files of other names there are removed)."""
    pages = {}
    index = ["# ray_vsphere.cluster: modules, roles, filters and inventory plugins", "",
             "Generated by `docs/render_modules.py` from what `ansible-doc` shows; do not edit by hand.", ""]
    for kind, title in KINDS:
        names = sorted(json.loads(ansible_doc("-t", kind, "--json", "-l", COLLECTION)))
        documented = json.loads(ansible_doc("-t", kind, "--json", *names))
        index += [f"## {title}", ""]
        for fqcn in names:
            short = fqcn.split(".")[-1]
            page = f"{short}_{kind}.md"
            entry = documented[fqcn]
            lines = role_page(fqcn, entry) if kind == "role" else plugin_page(kind, fqcn, entry)
            pages[page] = "\n".join(lines).rstrip() + "\n"
            summary = (entry.get("doc") or {}).get("short_description") or \
                (entry.get("entry_points", {}).get("main") or {}).get("short_description", "")
            index.append(f"- [{fqcn}]({page}): {markup(summary, fqcn)}")
        index.append("")
    pages["README.md"] = "\n".join(index).rstrip() + "\n"
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for stale in set(path.name for path in dest.glob("*.md")) - set(pages):
        (dest / stale).unlink()
    for name, text in pages.items():
        (dest / name).write_text(text)
    return pages


if __name__ == "__main__":
    render(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DEST)
