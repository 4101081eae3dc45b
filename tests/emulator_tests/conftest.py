"""Fixtures for the emulator's own tests: an emulator on a background thread of this process (fast)."""
import pytest
import requests

from emulator.app import API, create_app
from emulator.control import EmulatorControl
from emulator.runner import ThreadedServer


class Portal:
    """A running emulator plus a requests session authenticated for its seeded account."""

    def __init__(self, url, account_id, token, app=None):
        self.url, self.account_id, self.token, self.app = url, account_id, token, app
        self.control = EmulatorControl(url + "/_emulator")
        self.session = requests.Session()
        self.session.headers["Authorization"] = "Bearer " + token

    def call(self, method, path, token=None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        return self.session.request(method, self.url + API + path, headers=headers, timeout=30, **kwargs)

    def create(self, label="dev", **fields):
        response = self.call("POST", "/publishers", json=dict(label=label, **fields))
        assert response.status_code == 201, response.text
        return response.json()

    def as_account(self, **fields):
        created = self.control.create_account(**fields)
        return Portal(self.url, created["account_id"], created["token"], self.app)


@pytest.fixture(scope="session")
def server():
    """One emulator app and server for the session; `make_portal` resets its state per test."""
    running = ThreadedServer(create_app()).start()
    yield running
    running.stop()


@pytest.fixture
def make_portal(server):
    """make_portal(db=":memory:", **account_fields) -> a Portal on fresh state (store, faults, counters, clock)."""

    def make(db=":memory:", broker=None, **account):
        app = server.server.config.app.reset(db, broker=broker)
        account_id, token = app.store.create_account(**account)
        return Portal(server.url, account_id, token, app)

    return make


@pytest.fixture
def portal(make_portal):
    return make_portal()
