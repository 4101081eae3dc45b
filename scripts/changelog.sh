#!/usr/bin/env bash
# Changelog with antsibull-changelog.
#   bash scripts/changelog.sh            lint the fragments, then render the next release's CHANGELOG.md/.rst
#                                        in a throw-away copy (checks that a release would work; repo untouched)
#   bash scripts/changelog.sh release    the real thing: write changelogs/changelog.yaml, CHANGELOG.md and
#                                        CHANGELOG.rst in the repo for the version in galaxy.yml and remove the
#                                        fragments (commit the result; see docs/development.md "Releasing")
# antsibull-changelog lists new modules/plugins/roles with ansible-doc, so the collection must be visible at
# .../ansible_collections/isr/mqtt: both modes run in such a tree (a copy, or a symlink to the repo).
set -euo pipefail
source "$(dirname "$0")/venv.sh"
cd "$REPO_ROOT"
mode="${1:-check}"
version="$(python -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])')"

antsibull-changelog lint
echo "changelog fragments: lint ok"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ansible_collections/isr"
case "$mode" in
  check)
    dest="$work/ansible_collections/isr/mqtt"
    mkdir -p "$dest"
    git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
      [ -e "$f" ] && printf '%s\0' "$f"
    done | tar --null -T - -cf - | tar -xf - -C "$dest"
    ;;
  release)
    ln -s "$REPO_ROOT" "$work/ansible_collections/isr/mqtt"
    dest="$work/ansible_collections/isr/mqtt"
    ;;
  *)
    echo "usage: $0 [check|release]" >&2
    exit 2
    ;;
esac
cd "$dest"
ANSIBLE_COLLECTIONS_PATH="$work" antsibull-changelog release --version "$version"
for f in CHANGELOG.md CHANGELOG.rst changelogs/changelog.yaml; do
  grep -q "$version" "$f" || { echo "$f does not mention $version" >&2; exit 1; }
done
if [ "$mode" = check ]; then
  echo "--- CHANGELOG.md for $version (rendered in a copy; the repo is unchanged) ---"
  cat CHANGELOG.md
else
  echo "released $version: commit CHANGELOG.md CHANGELOG.rst changelogs/ (fragments were removed)"
fi
