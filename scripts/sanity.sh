#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection at .../ansible_collections/isr/mqtt (ansible-test
# needs that path), with no ignore files. Offline: ansible-test's pip bootstrap download is replaced
# by a local script that uses ensurepip.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
cd "$REPO_ROOT"

if ! command -v shellcheck >/dev/null 2>&1; then
  # ansible-test would only skip its shellcheck test; CI must run it (.ci/run installs the Debian package).
  echo "shellcheck is not installed (apt-get install shellcheck): ansible-test skips its shellcheck test" >&2
  [ "${CI:-}" != true ] || exit 1
fi
python_version="${SANITY_PYTHON:-$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')}"
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
# The pip versions this ansible-test bootstraps (23.1.2 for ansible-core 2.17, 24.2 for 2.19, ...).
pip_versions="$(python - <<'PY'
import os, re, ansible_test
src = open(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(" ".join(sorted(set(re.findall(r"pip=\'([0-9.]+)\'", src)))))
PY
)"
for name in get_pip_24_2.py get_pip_25_2.py $(for v in $pip_versions; do echo "get_pip_${v//./_}.py"; done); do
  cat > "$cache/$name" <<'PY'
# Offline stand-in for the get-pip.py that ansible-test downloads.
import subprocess
import sys
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip"])
if args:
    subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
PY
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/isr/mqtt"
mkdir -p "$dest"
# Only what git would ship: tracked files plus new files that are not ignored.
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$dest"
cd "$dest"
git init -q && git add -A >/dev/null
ansible-test sanity --color no --python "$python_version" --venv --requirements "$@"
