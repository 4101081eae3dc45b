"""The full-job reference: what the role does for N new devices, with no Ansible at all.

    ISR_PORTAL_URL=... ISR_PORTAL_TOKEN=... VAULT_PASSWORD_FILE=... python benchmarks/full_job.py --count N --store PATH

Lists every page, POSTs the missing labels (one requests.Session, --workers threads), vault-encrypts each password
as its own `!vault` value (ansible's VaultLib: PBKDF2 with a fresh salt per value, in the same threads) and writes the
store atomically (0600 temporary file, fsync, rename). The token comes from the environment, never argv.
Prints one JSON line: {"created", "listed_pages", "seconds"}.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.parsing.vault import VaultLib, VaultSecret

from plain_python import API, list_labels, portal_session


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--prefix", default="bench-")
    args = parser.parse_args(argv)
    url, token = os.environ["ISR_PORTAL_URL"], os.environ["ISR_PORTAL_TOKEN"]
    with open(os.environ["VAULT_PASSWORD_FILE"], "rb") as handle:
        secret = VaultSecret(handle.read().strip())
    vault = VaultLib([("bench", secret)])
    started = time.monotonic()

    session = portal_session(token, args.workers)

    existing, pages = list_labels(session, url)

    labels = ["%s%05d" % (args.prefix, i) for i in range(args.count)]
    entries = {}

    def create(label):
        answer = session.post(url + API, json={"label": label, "allow_publish": True, "allow_subscribe": False}, timeout=30)
        answer.raise_for_status()
        device = answer.json()["device"]
        ciphertext = vault.encrypt(device["password"], secret, vault_id="bench").decode()
        entries[label] = (device.get("client_id"), ciphertext)

    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(create, [label for label in labels if label not in existing]))

    lines = ["isr_mqtt_credentials:"]
    for label in sorted(entries):
        client_id, ciphertext = entries[label]
        lines += ['  "%s":' % label, '    client_id: "%s"' % client_id, "    password: !vault |"]
        lines += ["      " + line for line in ciphertext.splitlines()]
    directory = os.path.dirname(os.path.abspath(args.store))
    fd, tmp = tempfile.mkstemp(dir=directory)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write("\n".join(lines) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(tmp, args.store)
    print(json.dumps({"created": len(entries), "listed_pages": pages, "seconds": round(time.monotonic() - started, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
