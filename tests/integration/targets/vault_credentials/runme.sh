#!/usr/bin/env bash
# The vault_credentials plugin (the role uses it) needs the vault secret the run was started with, so this target
# runs its own playbook with a fresh vault password. Variables: integration_config.yml (written by
# scripts/integration.sh; tests/integration/test_targets.py names its own in ISR_INTEGRATION_CONFIG).
set -eu
vault_file="$OUTPUT_DIR/vault-pass"
(umask 077 && python -c 'import secrets; print(secrets.token_urlsafe(24))' > "$vault_file")
ansible-playbook runme.yml -i localhost, --vault-id "itest@$vault_file" -e "@${ISR_INTEGRATION_CONFIG:-../../integration_config.yml}" \
  -e "output_dir=$OUTPUT_DIR" "$@"
