#!/usr/bin/env python3
"""aioquic's HTTP/3 client, for every qlb test that needs a third-party client.

    aioquic_client.py whoami HOST PORT CONNECTIONS REQUESTS [split-hello]
        Opens CONNECTIONS concurrent connections, each sending GET /whoami REQUESTS times in
        a row; prints JSON {"connections": [{"handshake_ms", "whoami": [answer, ...]} or
        {"error": "..."}]}, each answer the server's /whoami JSON and handshake_ms the time
        from the first Initial to the connection being established. With split-hello, the
        ClientHello offers enough extra ALPN protocols that it takes two Initial datagrams,
        both with the client's original DCID (as a post-quantum key share makes it).

    aioquic_client.py issued-cids HOST PORT
        GET /whoami; print JSON {"status", "body", "issued_cids"}: the connection IDs the
        server issued to this client (handshake and NEW_CONNECTION_ID), hex.

    aioquic_client.py drain HOST PORT
        GET /hold (the test's handler that waits for a release) and print {"event": "started"};
        wait for a line on stdin (the test has begun a shutdown by then); try a new
        connection; GET /whoami on the first connection (aioquic ignores GOAWAY, so it sends
        it); print {"event": "late request sent"} (the test then releases /hold); wait for
        /hold and for the server to close; print JSON {"new_connection", "late", "held",
        "closed_with"}, each request as {"status", "body"}, {"reset": code} or
        {"closed": code}.

    aioquic_client.py download HOST PORT PATH BODY_FILE RESULT_FILE KEEPALIVE_MS
        GETs PATH, writing the body to BODY_FILE as it arrives (a test can watch it grow), and
        sends a PING every KEEPALIVE_MS meanwhile (0: never), as clients with a keep-alive do; then
        writes JSON {"status", "length", "elapsed_ms", "longest_pause_ms"} to RESULT_FILE,
        the longest pause being the longest time without body data.

    aioquic_client.py resume HOST PORT RUNS
        GET /whoami on a first connection, keeping the session tickets the server sends; then
        RUNS connections one after the other, each resuming the latest ticket and sending its
        GET /whoami at once, as 0-RTT early data; prints JSON {"runs": [{"name", "resumed",
        "early_data_accepted", "elapsed_ms"}]}, the first connection's run first, elapsed_ms
        from opening the connection to the end of the response.

Only aioquic's public API, except QuicConnection's _peer_cid/_peer_cid_available (the
CIDs the server issued, for issued-cids) and its TLS context's session_resumed and
early_data_accepted (for resume), which aioquic does not otherwise expose.
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
    """One request's response as it arrives; `done` resolves at its end, whatever ended it."""

    def __init__(self, on_data=None):
        self.status = None
        self.body = b""
        self.on_data = on_data
        # {"reset": code} or {"closed": code} when the stream or the connection ended it.
        self.ended_by = None
        self.done = asyncio.get_running_loop().create_future()

    def end(self, ended_by=None):
        if not self.done.done():
            self.ended_by = ended_by
            self.done.set_result(self)

    def outcome(self):
        """The response as the tests read it."""
        if self.ended_by:
            return self.ended_by
        return {"status": self.status, "body": self.body.decode(errors="replace")}

    def check(self):
        """Raises unless the response ended normally."""
        if self.ended_by:
            (kind, code), = self.ended_by.items()
            what = "stream reset" if kind == "reset" else "connection closed"
            raise ConnectionError(f"{what} with {code:#x}")
        return self


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self.pending = {}
        self.issued = set()
        self.closed_with = None

    def remember_cids(self):
        quic = self._quic
        for cid in [quic._peer_cid] + list(quic._peer_cid_available):
            self.issued.add(cid.cid.hex())

    def quic_event_received(self, event):
        self.remember_cids()
        if isinstance(event, StreamReset) and event.stream_id in self.pending:
            self.pending.pop(event.stream_id).end({"reset": event.error_code})
        if isinstance(event, ConnectionTerminated):
            self.closed_with = event.error_code
            for response in self.pending.values():
                response.end({"closed": event.error_code})
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
                self.pending.pop(h3_event.stream_id).end()

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

    async def fetch(self, authority, path):
        """GET path, waited for at most TIMEOUT: the finished Response."""
        return await asyncio.wait_for(self.get(authority, path).done, TIMEOUT)

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


def client(host, port, split_hello=False):
    return connect(host, int(port), configuration=configuration(split_hello), create_protocol=Client)


async def whoami_once(client, authority):
    response = (await client.fetch(authority, "/whoami")).check()
    if response.status != 200:
        raise ConnectionError(f"status {response.status}")
    return json.loads(response.body)


async def one_connection(host, port, requests, split_hello):
    try:
        started = time.monotonic()
        async with client(host, port, split_hello) as conn:
            handshake_ms = (time.monotonic() - started) * 1000
            authority = f"localhost:{port}"
            answers = [await whoami_once(conn, authority) for _ in range(requests)]
            return {"handshake_ms": handshake_ms, "whoami": answers}
    except Exception as error:  # reported to the test, which shows it
        return {"error": f"{type(error).__name__}: {error}"}


async def whoami(host, port, connections, requests, *options):
    split_hello = list(options) == ["split-hello"]
    answers = await asyncio.gather(
        *(one_connection(host, port, int(requests), split_hello) for _ in range(int(connections)))
    )
    emit({"connections": answers})


async def resume(host, port, runs):
    tickets = []
    results = []
    for run in range(int(runs) + 1):
        started = time.monotonic()
        config = configuration()
        if tickets:
            config.session_ticket = tickets[-1]
        async with connect(
            host,
            int(port),
            configuration=config,
            create_protocol=Client,
            session_ticket_handler=tickets.append,
            # Resuming: the request goes before the handshake completes, as early data.
            wait_connected=not tickets,
        ) as conn:
            answer = await whoami_once(conn, f"localhost:{port}")
            tls = conn._quic.tls
            results.append(
                {
                    "name": answer["name"],
                    "resumed": tls.session_resumed,
                    "early_data_accepted": tls.early_data_accepted,
                    "elapsed_ms": (time.monotonic() - started) * 1000,
                }
            )
            # Wait for the tickets of this connection before the next.
            for _ in range(100):
                if len(tickets) > run:
                    break
                await asyncio.sleep(0.01)
    emit({"runs": results})


async def issued_cids(host, port):
    async with client(host, port) as conn:
        conn.remember_cids()
        reply = (await conn.fetch(f"localhost:{port}", "/whoami")).outcome()
        conn.remember_cids()
        reply["issued_cids"] = sorted(conn.issued)
    emit(reply)


async def drain(host, port):
    async with client(host, port) as conn:
        authority = f"localhost:{port}"
        held = conn.get(authority, "/hold")
        emit({"event": "started"})
        await read_line()
        result = {"new_connection": await try_connect(host, port)}
        result["late"] = (await conn.fetch(authority, "/whoami")).outcome()
        emit({"event": "late request sent"})
        result["held"] = (await asyncio.wait_for(held.done, TIMEOUT)).outcome()
        await asyncio.wait_for(conn.wait_closed(), TIMEOUT)
        result["closed_with"] = conn.closed_with
    emit(result)


async def try_connect(host, port):
    try:
        async with client(host, port):
            return "accepted"
    except ConnectionError as error:
        return f"refused: {error}"


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

    async with client(host, port) as conn:
        with open(body_file, "wb") as body:
            pause["last"] = time.monotonic()
            response = conn.get(f"localhost:{port}", path, on_data)
            # 0: no keep-alive; the client then only ever answers what it receives.
            pinging = None
            if int(keepalive_ms) > 0:
                pinging = asyncio.ensure_future(conn.keep_alive(int(keepalive_ms) / 1000))
            try:
                (await response.done).check()
            finally:
                if pinging is not None:
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


def emit(message):
    print(json.dumps(message), flush=True)


async def read_line():
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


MODES = {
    "whoami": (whoami, 3 * TIMEOUT),
    "issued-cids": (issued_cids, 3 * TIMEOUT),
    "drain": (drain, 3 * TIMEOUT),
    "download": (download, DOWNLOAD_TIMEOUT),
    "resume": (resume, 3 * TIMEOUT),
}


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    run, limit = MODES[mode]
    asyncio.run(asyncio.wait_for(run(*args), limit))


if __name__ == "__main__":
    main()
