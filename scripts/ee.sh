#!/usr/bin/env bash
# Execution environment: build the collection tarball, then `ansible-builder create` a build context from
# extensions/ee/execution-environment.yml (no container engine needed) and check what it produced:
# a Containerfile, the tarball inside the context, and that ansible-builder's own introspection finds the
# collection's Python requirement (requests) through meta/execution-environment.yml.
# Build the image afterwards with: ansible-builder build -f extensions/ee/execution-environment.yml (see docs/awx.md).
set -euo pipefail
source "$(dirname "$0")/venv.sh"
cd "$REPO_ROOT"
command -v ansible-builder >/dev/null || python -m pip install -q ansible-builder

version="$(python -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])')"
tarball="isr-mqtt-$version.tar.gz"
grep -q "$tarball" extensions/ee/execution-environment.yml || {
  echo "extensions/ee/execution-environment.yml does not name $tarball: update it to galaxy.yml's version" >&2
  exit 1
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp extensions/ee/execution-environment.yml "$work/"
ansible-galaxy collection build --force --output-path "$work" . >/dev/null
ansible-builder create --file "$work/execution-environment.yml" --context "$work/context" --output-filename Containerfile -v 1

ctx="$work/context"
test -f "$ctx/Containerfile" || { echo "no Containerfile in the build context" >&2; exit 1; }
test -f "$ctx/_build/collections/$tarball" || { echo "the tarball is not in the build context" >&2; exit 1; }
grep -q "/build/collections/$tarball" "$ctx/_build/requirements.yml" || { echo "requirements.yml does not install the tarball" >&2; exit 1; }

# What the image build will do with the collection: install it, then introspect its dependencies.
ansible-galaxy collection install --offline -p "$work/installed" "$work/$tarball" >/dev/null
introspect="$(python "$ctx/_build/scripts/introspect.py" introspect "$work/installed")"
echo "$introspect"
echo "$introspect" | grep -q "requests" || { echo "introspection did not find requests" >&2; exit 1; }
echo "ee: build context OK ($(find "$ctx" -type f | wc -l) files; Containerfile, $tarball, requests found)"
