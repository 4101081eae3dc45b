#!/usr/bin/env bash
# Docs: render the guides (docs/*.md -> docs/docsite/rst/*.rst), lint the collection's docs with antsibull-docs,
# and build a static HTML site of the plugin, role and guide docs into docs/build/html (git-ignored). Offline:
# the collection is made visible through a temp dir (ANSIBLE_COLLECTIONS_PATH) with
# ansible_collections/isr/mqtt -> this repository, and Sphinx's intersphinx look-ups are switched off
# (ISR_DOCS_INTERSPHINX=1 keeps them, for a build with network).
#   bash scripts/docs.sh          render + lint + build
#   bash scripts/docs.sh check    fail if the .rst guides are stale; lint; no site build
set -euo pipefail
source "$(dirname "$0")/venv.sh"
cd "$REPO_ROOT"
mode="${1:-build}"
python -c 'import antsibull_docs, sphinx_ansible_theme, pypandoc' 2>/dev/null || python -m pip install -q -r docs/requirements.txt

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The collection as antsibull-docs sees it: this repository under ansible_collections/isr/mqtt.
mkdir -p "$work/collections/ansible_collections/isr"
ln -s "$REPO_ROOT" "$work/collections/ansible_collections/isr/mqtt"
export ANSIBLE_COLLECTIONS_PATH="$work/collections"
# The site's links come from galaxy.yml, the one place that names the repository, issues and docs URLs.
galaxy() { python -c 'import sys, yaml; print(yaml.safe_load(open("galaxy.yml"))[sys.argv[1]])' "$1"; }

if [ "$mode" = check ]; then
  python scripts/md2rst.py --check
else
  python scripts/md2rst.py
fi
lint_rc=0
antsibull-docs lint-collection-docs --plugin-docs . || lint_rc=$?
[ "$lint_rc" = 0 ] && echo "docs: lint-collection-docs OK" || echo "docs: lint-collection-docs FAILED (rc=$lint_rc)" >&2
[ "$mode" = check ] && exit "$lint_rc"

site="$work/site"
mkdir -m 700 "$site"
antsibull-docs sphinx-init --use-current --squash-hierarchy --lenient --dest-dir "$site" \
  --project isr.mqtt --copyright "isr.mqtt contributors" \
  --title "isr.mqtt: MQTT credentials of the iShareRadio portal, from Ansible" --html-short-title "isr.mqtt" \
  --extra-conf "html_title=isr.mqtt: MQTT credentials of the iShareRadio portal" \
  --extra-html-theme-options "documentation_home_url=$(galaxy documentation)" isr.mqtt >/dev/null
[ "${ISR_DOCS_INTERSPHINX:-0}" = 1 ] || echo 'intersphinx_mapping = {}  # offline build (scripts/docs.sh)' >> "$site/conf.py"
echo "html_theme_options['topbar_links'] = {'Repository': '$(galaxy repository)', 'Issues': '$(galaxy issues)'}" >> "$site/conf.py"
antsibull-docs --config-file "$site/antsibull-docs.cfg" collection --use-current --squash-hierarchy \
  --fail-on-error --cleanup everything --dest-dir "$site/rst" isr.mqtt
# antsibull-docs title-cases the collection name on the index page ("Isr.Mqtt"); it is spelt isr.mqtt.
sed -i 's/^Isr\.Mqtt$/isr.mqtt/' "$site/rst/index.rst"
rm -rf docs/build/html
# -q: only warnings; offline, references to docs.ansible.com labels stay unresolved (warnings, not errors).
sphinx-build -q -b html -c "$site" "$site/rst" docs/build/html
if ! grep -q "$(galaxy issues)" docs/build/html/index.html; then
  echo "docs: the index does not link to the issue tracker ($(galaxy issues))" >&2
  exit 1
fi
echo "docs: site in docs/build/html ($(find docs/build/html -name '*.html' | wc -l) pages)"
exit "$lint_rc"
