# shellcheck shell=bash
# Sourced by scripts/sanity.sh and scripts/integration.sh (venv active, in the repository root).
# 1. copy_collection DEST: what git would ship (tracked plus new, not ignored, files) into DEST, a git repo there
#    (ansible-test needs .../ansible_collections/isr/mqtt and reads the file list from git).
# 2. Offline pip bootstrap: ansible-test --venv bootstraps pip with a get-pip.py it downloads from outside PyPI;
#    replace it in ansible-test's cache with a local script using ensurepip.
copy_collection() {
  mkdir -p "$1"
  git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"
  done | tar --null -T - -cf - | tar -xf - -C "$1"
  (cd "$1" && git init -q && git add -A >/dev/null)
}

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

