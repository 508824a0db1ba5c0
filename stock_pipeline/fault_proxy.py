"""A fault-injecting HTTP proxy on loopback, in front of the emulator.

It forwards every request to the emulator, except a share it answers itself with the errors AWS
sends under load: S3 `503 SlowDown` and `500 InternalError`, Kinesis
`ProvisionedThroughputExceededException`. Clients pointed at it (AWS_ENDPOINT_URL) must retry
them as they would on AWS. Seeded, so a run's faults can be replayed. `on_request` sees every
request before it is answered (the least-privilege test records other processes' AWS calls).
"""

import http.client
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

S3_FAULTS = [
    (503, "SlowDown", "Please reduce your request rate."),
    (500, "InternalError", "We encountered an internal error. Please try again."),
]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class FaultCounts:
    forwarded: int = 0
    s3_faults: int = 0
    kinesis_throttles: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class FaultProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        upstream: str,
        port: int = 0,
        s3_error_rate: float = 0.1,
        kinesis_throttle_rate: float = 0.1,
        seed: int = 0,
        on_request: Callable[[str, str, http.client.HTTPMessage, bytes], None] | None = None,
    ):
        super().__init__(("127.0.0.1", port), _Handler)
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname, parsed.port)
        self.s3_error_rate = s3_error_rate
        self.kinesis_throttle_rate = kinesis_throttle_rate
        self.random = random.Random(seed)
        self.counts = FaultCounts()
        self.on_request = on_request

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def draw(self) -> float:
        with self.counts.lock:
            return self.random.random()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, *args) -> None:  # one line per request otherwise
        pass

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _fault(self) -> bool:
        """Answer with an injected error instead of forwarding; whether it did."""
        target = self.headers.get("X-Amz-Target", "")
        counts = self.server.counts
        if target.startswith("Kinesis_"):
            if self.server.draw() >= self.server.kinesis_throttle_rate:
                return False
            with counts.lock:
                counts.kinesis_throttles += 1
            body = (
                b'{"__type":"ProvisionedThroughputExceededException",'
                b'"message":"Rate exceeded for shard (injected)"}'
            )
            self._reply(400, body, "application/x-amz-json-1.1")
            return True
        # The emulator's other JSON and query APIs (SNS, SQS) pass; S3 is path-style REST.
        if (
            target
            or self.path.startswith("/moto-api")
            or self.command == "POST"
            and (
                "Action=" in self.path
                or self.headers.get("Content-Type", "").startswith(
                    "application/x-www-form-urlencoded"
                )
            )
        ):
            return False
        if self.server.draw() >= self.server.s3_error_rate:
            return False
        status, code, message = self.server.random.choice(S3_FAULTS)
        with counts.lock:
            counts.s3_faults += 1
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message} (injected)</Message></Error>"
        ).encode()
        self._reply(status, body, "application/xml")
        return True

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.server.on_request:
            self.server.on_request(self.command, self.path, self.headers, body or b"")
        if self._fault():
            return
        connection = http.client.HTTPConnection(*self.server.upstream, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        with self.server.counts.lock:
            self.server.counts.forwarded += 1
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP | {"content-length"}:
                self.send_header(name, value)
        # A HEAD answer has no body but says how long the object is.
        length = response.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


def start(upstream: str, **options) -> FaultProxy:
    """The proxy serving on a thread (port 0: a free one); `shutdown()` stops it."""
    proxy = FaultProxy(upstream, **options)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    return proxy
