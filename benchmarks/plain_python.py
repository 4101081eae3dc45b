"""Scenario 4, the limit of this machine: the same creates with no Ansible at all.

    ISR_PORTAL_TOKEN=... python benchmarks/plain_python.py --url URL --count N [--workers 8] [--token-file FILE]

The token comes from ISR_PORTAL_TOKEN or --token-file, never from the command line (other users see it in ps).

One requests.Session, a ThreadPoolExecutor of --workers threads. It lists every page first (on an
empty portal: one request) and POSTs only the missing labels, so the same command is the rerun.
Prints one JSON line: {"created", "listed_pages", "seconds", "passwords"}.
"""
import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from requests.adapters import HTTPAdapter

API = "/api/v1/subscriber/publishers"


def portal_session(token, workers):
    """A requests session with the token and a connection pool as big as the worker threads."""
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + token
    adapter = HTTPAdapter(pool_connections=workers, pool_maxsize=workers)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def list_labels(session, base):
    """(labels on the portal, pages listed): every page, 1000 rows each."""
    existing, pages, url = set(), 0, base + API + "?page=1&page_size=1000"
    while url:
        answer = session.get(url, timeout=30)
        answer.raise_for_status()
        body = answer.json()
        pages += 1
        existing.update(row["label"] for row in body["items"])
        url = base + body["next"] if body.get("next") else None
    return existing, pages


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token-file", help="a file holding the token (default: the ISR_PORTAL_TOKEN environment variable)")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--prefix", default="bench-")
    args = parser.parse_args(argv)
    if args.token_file:
        with open(args.token_file) as handle:
            token = handle.read().strip()
    else:
        token = os.environ.get("ISR_PORTAL_TOKEN", "").strip()
    if not token:
        parser.error("no token: set ISR_PORTAL_TOKEN or give --token-file")
    started = time.monotonic()

    session = portal_session(token, args.workers)

    existing, pages = list_labels(session, args.url)

    labels = ["%s%05d" % (args.prefix, i) for i in range(args.count)]
    missing = [label for label in labels if label not in existing]
    passwords = {}

    def create(label):
        answer = session.post(args.url + API, json={"label": label, "allow_publish": True, "allow_subscribe": False},
                              timeout=30)
        answer.raise_for_status()
        passwords[label] = answer.json()["device"]["password"]

    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(create, missing))
    print(json.dumps({"created": len(missing), "listed_pages": pages, "seconds": round(time.monotonic() - started, 3),
                      "passwords": len(passwords)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
