"""Start the portal emulator: `python tests/emulator/serve.py --port 0 --state-file emulator.json`.

Seeds one account (with the Mgmt add-on) and an API token, prints the portal URL, account id and
token, and writes them as JSON to --state-file once the server accepts connections. SIGTERM or
Ctrl-C shut it down cleanly (and the Mosquitto broker too, with --broker).
"""
import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script from any cwd: make the `emulator` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator import runner  # noqa: E402
from emulator.app import create_app  # noqa: E402
from emulator.dialects import DIALECTS  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Local emulator of the iShareRadio MQTT portal's Mgmt REST API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default): pick a free port")
    parser.add_argument("--db", default="emulator.sqlite", help="SQLite file, or :memory: (default: %(default)s in the cwd)")
    parser.add_argument("--state-file", help="write {portal_url, control_url, account_id, token, pid, ...} here as JSON")
    parser.add_argument("--max-clients", type=int, default=100000)
    parser.add_argument("--max-subscribers", type=int, default=10)
    parser.add_argument("--hourly-budget", type=int, default=5000, help="requests per token and window")
    parser.add_argument("--window-seconds", type=float, default=3600.0, help="length of the rate-limit window")
    parser.add_argument("--no-mgmt-addon", action="store_true", help="seed an account without the Mgmt add-on")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="private key of --tls-cert (PEM)")
    parser.add_argument("--broker", action="store_true", help="run a Mosquitto broker behind the portal")
    parser.add_argument("--record-secrets", help="append every issued password and token to this file (tests only)")
    parser.add_argument("--dialect", default="default", choices=DIALECTS,
                        help="answer shapes to serve (see tests/emulator/dialects.py); default: %(default)s")
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def write_json(path, data):
    tmp = "%s.tmp%d" % (path, os.getpid())
    # 0600: the state file holds the API token
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)  # readers never see half a file


def _exit(signum, frame):
    raise SystemExit(0)


def main(argv=None):
    args = parse_args(argv)
    os.umask(0o077)  # what it writes (state file, database, recorded secrets, broker files) holds the token or passwords
    # uvicorn handles SIGTERM itself while it runs, then re-raises it; this handler turns that (and a
    # SIGTERM during start-up) into a normal exit, so the `finally` below still stops the broker.
    signal.signal(signal.SIGTERM, _exit)
    broker = workdir = None
    if args.broker:
        from emulator.broker import Broker
        workdir = tempfile.mkdtemp(prefix="isr-emulator-broker-")
        broker = Broker(workdir)
        broker.start()
    try:
        app = create_app(args.db, broker=broker, record_secrets=args.record_secrets, dialect=args.dialect)
        account_id, token = app.store.create_account(
            mgmt_addon=not args.no_mgmt_addon, max_clients=args.max_clients, max_subscribers=args.max_subscribers,
            hourly_budget=args.hourly_budget, window_seconds=args.window_seconds)
        sock = runner.bind(args.host, args.port)
        scheme = "https" if args.tls_cert else "http"
        host = "[%s]" % args.host if ":" in args.host else args.host
        origin = "%s://%s:%d" % (scheme, host, sock.getsockname()[1])
        state = {"portal_url": origin, "control_url": origin + "/_emulator", "account_id": account_id,
                 "token": token, "pid": os.getpid()}
        if broker is not None:
            state.update(broker_host=broker.host, broker_port=broker.port)

        def started():
            print("Portal URL:  %s\nOpenAPI UI:  %s/api/v1/subscriber/docs\nAccount id:  %s\nAPI token:   %s"
                  % (origin, origin, account_id, token), flush=True)
            if args.state_file:
                write_json(args.state_file, state)

        server = runner.Server(runner.config(app, args.tls_cert, args.tls_key, args.log_level), on_started=started)
        server.run(sockets=[sock])
    finally:
        if broker is not None:
            broker.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
