"""EmulatorControl: a small `requests` wrapper around the emulator's /_emulator control surface."""
import requests


class EmulatorControl:
    def __init__(self, control_url, timeout=30):
        self.url = control_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _call(self, method, path, body=None, params=None):
        response = self.session.request(method, self.url + path, json=body, params=params, timeout=self.timeout)
        if response.status_code >= 400:
            raise RuntimeError("emulator control %s %s answered %s: %s" % (method, path, response.status_code, response.text))
        return response.json() if response.content else None

    def create_account(self, **fields):
        """-> {"account_id", "token"}; fields: mgmt_addon, max_clients, max_subscribers, hourly_budget, window_seconds, patch_supported."""
        return self._call("POST", "/accounts", fields)

    def set_account(self, account_id, **fields):
        return self._call("PATCH", "/accounts/%s" % account_id, fields)

    def create_token(self, account_id, expires_in_days=None):
        return self._call("POST", "/accounts/%s/tokens" % account_id, {"expires_in_days": expires_in_days})["token"]

    def revoke_token(self, token):
        self._call("DELETE", "/tokens/%s" % token)

    def set_faults(self, **faults):
        """Unset fields go back to their defaults (no faults)."""
        return self._call("PUT", "/faults", faults)

    def set_dialect(self, name):
        """Serve the answer shapes of dialect ``name`` (emulator.dialects.DIALECTS) from now on."""
        return self._call("PUT", "/dialect", {"name": name})

    def counters(self, token=None):
        return self._call("GET", "/counters", params={"token": token} if token else None)

    def reset_counters(self):
        self._call("DELETE", "/counters")

    def advance_clock(self, days):
        return self._call("POST", "/clock", {"advance_days": days})["now"]

    def verify(self, username, password):
        return self._call("POST", "/verify", {"username": username, "password": password})

    def state(self, account_id=None):
        return self._call("GET", "/state", params={"account_id": account_id} if account_id else None)
