#!/usr/bin/env python3
"""aioquic's HTTP/3 client through the qlb load balancer, for the qlb end-to-end tests.

    aioquic_client.py whoami HOST PORT CONNECTIONS REQUESTS [split-hello]
        Opens CONNECTIONS concurrent connections, each sending GET /whoami REQUESTS times in
        a row; prints JSON {"connections": [{"handshake_ms", "whoami": [answer, ...]} or
        {"error": "..."}]}, each answer the server's /whoami JSON and handshake_ms the time
        from the first Initial to the connection being established. With split-hello, the
        ClientHello offers enough extra ALPN protocols that it takes two Initial datagrams,
        both with the client's original DCID (as a post-quantum key share makes it).

    aioquic_client.py download HOST PORT PATH BODY_FILE RESULT_FILE KEEPALIVE_MS
        GETs PATH, writing the body to BODY_FILE as it arrives (a test can watch it grow), and
        sends a PING every KEEPALIVE_MS meanwhile, as clients with a keep-alive do; then
        writes JSON {"status", "length", "elapsed_ms", "longest_pause_ms"} to RESULT_FILE,
        the longest pause being the longest time without body data.

Only aioquic's public API.
"""

import asyncio
import json
import ssl
import sys
import time

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamReset

TIMEOUT = 20.0
DOWNLOAD_TIMEOUT = 100.0

# Nine 200-octet protocol names: 1.8 kB more ClientHello, past one 1200-octet datagram.
PADDING_ALPN = [f"x-padding-{i}-".ljust(200, "x") for i in range(9)]


class Response:
    """One request's response as it arrives; `done` resolves at its end."""

    def __init__(self, on_data=None):
        self.status = None
        self.body = b""
        self.on_data = on_data
        self.done = asyncio.get_running_loop().create_future()

    def fail(self, why):
        if not self.done.done():
            self.done.set_exception(ConnectionError(why))


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self.pending = {}

    def quic_event_received(self, event):
        if isinstance(event, StreamReset) and event.stream_id in self.pending:
            self.pending.pop(event.stream_id).fail(f"stream reset with {event.error_code:#x}")
        if isinstance(event, ConnectionTerminated):
            for response in self.pending.values():
                response.fail(f"connection closed with {event.error_code:#x}")
            self.pending.clear()
        for h3_event in self.http.handle_event(event):
            response = self.pending.get(h3_event.stream_id)
            if response is None:
                continue
            if isinstance(h3_event, HeadersReceived):
                response.status = int(dict(h3_event.headers)[b":status"])
            elif isinstance(h3_event, DataReceived):
                if response.on_data:
                    response.on_data(h3_event.data)
                else:
                    response.body += h3_event.data
            if getattr(h3_event, "stream_ended", False):
                self.pending.pop(h3_event.stream_id)
                if not response.done.done():
                    response.done.set_result(response)

    def get(self, authority, path, on_data=None):
        """Sends GET path; returns its Response (the body goes to on_data if given)."""
        stream_id = self._quic.get_next_available_stream_id()
        response = self.pending[stream_id] = Response(on_data)
        self.http.send_headers(
            stream_id,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
            ],
            end_stream=True,
        )
        self.transmit()
        return response

    async def keep_alive(self, interval):
        uid = 0
        while True:
            await asyncio.sleep(interval)
            uid += 1
            self._quic.send_ping(uid)
            self.transmit()


def configuration(split_hello=False):
    alpn = H3_ALPN + (PADDING_ALPN if split_hello else [])
    config = QuicConfiguration(is_client=True, alpn_protocols=alpn, server_name="localhost")
    config.verify_mode = ssl.CERT_NONE
    config.idle_timeout = 30.0
    return config


async def whoami_once(client, authority):
    response = await asyncio.wait_for(client.get(authority, "/whoami").done, TIMEOUT)
    if response.status != 200:
        raise ConnectionError(f"status {response.status}")
    return json.loads(response.body)


async def one_connection(host, port, requests, split_hello):
    try:
        started = time.monotonic()
        async with connect(host, port, configuration=configuration(split_hello), create_protocol=Client) as client:
            handshake_ms = (time.monotonic() - started) * 1000
            authority = f"localhost:{port}"
            answers = [await whoami_once(client, authority) for _ in range(requests)]
            return {"handshake_ms": handshake_ms, "whoami": answers}
    except Exception as error:  # reported to the test, which shows it
        return {"error": f"{type(error).__name__}: {error}"}


async def whoami(host, port, connections, requests, *options):
    split_hello = list(options) == ["split-hello"]
    answers = await asyncio.gather(
        *(one_connection(host, int(port), int(requests), split_hello) for _ in range(int(connections)))
    )
    print(json.dumps({"connections": answers}))


async def download(host, port, path, body_file, result_file, keepalive_ms):
    started = time.monotonic()
    pause = {"last": None, "longest": 0.0, "length": 0}

    def on_data(data):
        now = time.monotonic()
        pause["longest"] = max(pause["longest"], now - pause["last"])
        pause["last"] = now
        pause["length"] += len(data)
        body.write(data)
        body.flush()

    async with connect(host, int(port), configuration=configuration(), create_protocol=Client) as client:
        with open(body_file, "wb") as body:
            pause["last"] = time.monotonic()
            response = client.get(f"localhost:{port}", path, on_data)
            pinging = asyncio.ensure_future(client.keep_alive(int(keepalive_ms) / 1000))
            try:
                await response.done
            finally:
                pinging.cancel()
    with open(result_file, "w") as out:
        json.dump(
            {
                "status": response.status,
                "length": pause["length"],
                "elapsed_ms": (time.monotonic() - started) * 1000,
                "longest_pause_ms": pause["longest"] * 1000,
            },
            out,
        )


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    run, limit = {"whoami": (whoami, 3 * TIMEOUT), "download": (download, DOWNLOAD_TIMEOUT)}[mode]
    asyncio.run(asyncio.wait_for(run(*args), limit))


if __name__ == "__main__":
    main()
