#!/usr/bin/env python3
"""aioquic's HTTP/3 client against a qlb server, for the qlb-server peer tests.

    aioquic_client.py whoami HOST PORT
        GET /whoami; print JSON {"status", "body", "issued_cids"}: the connection IDs the
        server issued to this client (handshake and NEW_CONNECTION_ID), hex.

    aioquic_client.py drain HOST PORT
        GET /hold (the test's handler that waits for a release) and print {"event": "started"};
        wait for a line on stdin (the test has begun a shutdown by then); try a new
        connection; GET /whoami on the first connection (aioquic ignores GOAWAY, so it sends
        it); print {"event": "late request sent"} (the test then releases /hold); wait for
        /hold and for the server to close; print JSON {"new_connection", "late", "held",
        "closed_with"}.

Only aioquic's public API, except QuicConnection's _peer_cid/_peer_cid_available (the
CIDs the server issued), which aioquic does not otherwise expose.
"""

import asyncio
import json
import ssl
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamReset

TIMEOUT = 10.0


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
            self.finish(event.stream_id, {"reset": event.error_code})
        if isinstance(event, ConnectionTerminated):
            self.closed_with = event.error_code
            for stream_id in list(self.pending):
                self.finish(stream_id, {"closed": event.error_code})
        for h3_event in self.http.handle_event(event):
            reply = self.pending.get(h3_event.stream_id)
            if reply is None:
                continue
            if isinstance(h3_event, HeadersReceived):
                reply["status"] = int(dict(h3_event.headers)[b":status"])
            elif isinstance(h3_event, DataReceived):
                reply["body"] += h3_event.data
            if getattr(h3_event, "stream_ended", False):
                self.finish(h3_event.stream_id, {"status": reply["status"], "body": reply["body"].decode()})

    def finish(self, stream_id, outcome):
        reply = self.pending.pop(stream_id)
        if not reply["done"].done():
            reply["done"].set_result(outcome)

    def get(self, authority, path):
        stream_id = self._quic.get_next_available_stream_id()
        done = asyncio.get_running_loop().create_future()
        self.pending[stream_id] = {"status": None, "body": b"", "done": done}
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
        return asyncio.wait_for(done, TIMEOUT)


def configuration():
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="localhost")
    config.verify_mode = ssl.CERT_NONE
    return config


async def whoami(host, port):
    async with connect(host, port, configuration=configuration(), create_protocol=Client) as client:
        client.remember_cids()
        reply = await client.get(f"localhost:{port}", "/whoami")
        client.remember_cids()
        reply["issued_cids"] = sorted(client.issued)
        return reply


async def drain(host, port):
    async with connect(host, port, configuration=configuration(), create_protocol=Client) as client:
        authority = f"localhost:{port}"
        held = asyncio.ensure_future(client.get(authority, "/hold"))
        emit({"event": "started"})
        await read_line()
        result = {"new_connection": await try_connect(host, port)}
        result["late"] = await client.get(authority, "/whoami")
        emit({"event": "late request sent"})
        result["held"] = await held
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
        result["closed_with"] = client.closed_with
    return result


async def try_connect(host, port):
    try:
        async with connect(host, port, configuration=configuration(), create_protocol=Client):
            return "accepted"
    except ConnectionError as error:
        return f"refused: {error}"


def emit(message):
    print(json.dumps(message), flush=True)


async def read_line():
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def main():
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    run = {"whoami": whoami, "drain": drain}[mode]
    emit(asyncio.run(asyncio.wait_for(run(host, port), 3 * TIMEOUT)))


if __name__ == "__main__":
    main()
