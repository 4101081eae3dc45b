"""Run the emulator app with uvicorn: in the foreground (serve.py) or in a background thread (tests)."""
import socket
import threading
import time

import uvicorn


def bind(host="127.0.0.1", port=0):
    """A listening socket; port 0 picks a free port with no race between choosing and binding."""
    # IPPROTO_TCP explicitly: asyncio turns on TCP_NODELAY only for sockets whose proto says TCP, and
    # without it every keep-alive answer waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


class Server(uvicorn.Server):
    """uvicorn.Server that calls `on_started()` once it accepts connections."""

    def __init__(self, config, on_started=None):
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets=None):
        await super().startup(sockets=sockets)
        if self.started and self.on_started:
            self.on_started()


def config(app, tls_cert=None, tls_key=None, log_level="warning"):
    return uvicorn.Config(app, log_level=log_level, lifespan="off", ssl_certfile=tls_cert, ssl_keyfile=tls_key,
                          timeout_graceful_shutdown=5)


class ThreadedServer:
    """The emulator in a background thread of this process, on 127.0.0.1 and a free port."""

    def __init__(self, app, host="127.0.0.1", **kwargs):
        self.sock = bind(host)
        self.port = self.sock.getsockname()[1]
        scheme = "https" if kwargs.get("tls_cert") else "http"
        self.url = "%s://%s:%d" % (scheme, host, self.port)
        self.server = Server(config(app, **kwargs))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, timeout=10):
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("emulator thread did not start")
            time.sleep(0.01)
        return self

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
