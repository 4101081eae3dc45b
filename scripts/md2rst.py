"""Render the guides docs/*.md into docs/docsite/rst/*.rst for antsibull-docs (which reads only RST there).

The Markdown files are the source (readable on a git host); the RST files are generated and committed so the
collection's docs (Galaxy, docs sites) have them. Links between guides become :ref: links to the antsibull
labels; mermaid diagrams become literal blocks. Needs pypandoc_binary (docs/requirements.txt).
Usage: python scripts/md2rst.py [--check]
"""
import re
import sys
from pathlib import Path

import pypandoc

REPO = Path(__file__).resolve().parent.parent
GUIDES = {"quickstart.md": "quickstart", "fleet-role.md": "fleet_role", "device-role.md": "device_role",
          "rotation.md": "rotation", "awx.md": "awx", "inventory.md": "inventory"}
PREFIX = "ansible_collections.isr.mqtt.docsite."


def render(md_name, stem):
    rst = pypandoc.convert_file(str(REPO / "docs" / md_name), "rst", format="gfm-gfm_auto_identifiers", extra_args=["--wrap=preserve"])

    def link(match):
        text, target = match.group(1).strip(), match.group(2)
        name = target.split("#")[0]
        if name in GUIDES:
            return ":ref:`%s <%s%s>`" % (text, PREFIX, GUIDES[name])
        return match.group(0)

    # A link inside a grid table would change the cell's width and break the table: keep links out of tables.
    rst = re.sub(r"`([^`<]+?)\s*<([^>`]+)>`__", link, rst)
    rst = rst.replace(".. code:: mermaid", ".. code:: text")
    header = (".. Generated from docs/%s by scripts/md2rst.py; edit the Markdown file, not this one.\n\n"
              ".. _%s%s:\n\n" % (md_name, PREFIX, stem))
    return header + rst


def main():
    check = "--check" in sys.argv[1:]
    out_dir = REPO / "docs" / "docsite" / "rst"
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = []
    for md_name, stem in GUIDES.items():
        target = out_dir / (stem + ".rst")
        text = render(md_name, stem)
        if target.exists() and target.read_text() == text:
            continue
        stale.append(str(target.relative_to(REPO)))
        if not check:
            target.write_text(text)
    if check and stale:
        print("out of date (run: bash scripts/docs.sh): %s" % ", ".join(stale), file=sys.stderr)
        return 1
    print("%s: %s" % ("stale" if stale else "up to date", ", ".join(stale) or "all guides") if check else
          "rendered: %s" % (", ".join(stale) or "nothing changed"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
