#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection at .../ansible_collections/isr/mqtt (ansible-test
# needs that path), with no ignore files. Offline pip bootstrap: scripts/ansible_test_offline.sh.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
cd "$REPO_ROOT"

if ! command -v shellcheck >/dev/null 2>&1; then
  # ansible-test would only skip its shellcheck test; CI must run it (.ci/run installs the Debian package).
  echo "shellcheck is not installed (apt-get install shellcheck): ansible-test skips its shellcheck test" >&2
  [ "${CI:-}" != true ] || exit 1
fi
python_version="${SANITY_PYTHON:-$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')}"
source scripts/ansible_test_env.sh

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/isr/mqtt"
copy_collection "$dest"
cd "$dest"
ansible-test sanity --color no --python "$python_version" --venv --requirements "$@"
