#!/bin/sh
# Vault password script of the molecule scenario: prints the scenario run's vault password, generating a
# random one (mode 0600, in the scenario's ephemeral directory) on first use. destroy.yml removes it.
set -eu
file="${MOLECULE_EPHEMERAL_DIRECTORY:?this script is for molecule runs only}/vault-pass"
if [ ! -s "$file" ]; then
  umask 077
  tmp="$file.$$"
  od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > "$tmp"
  mv -f "$tmp" "$file"
fi
cat "$file"
