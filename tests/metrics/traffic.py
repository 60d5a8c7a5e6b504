#!/usr/bin/env python3
"""Makes a little of every kind of traffic `/metrics` counts, against a switchboard node.

    traffic.py HOST PORT

Python's standard library only (a WebSocket client is ~40 lines of it), so `tests/metrics/check` runs wherever
python3 does. One WAMP v2 session says HELLO, subscribes, publishes to itself with acknowledgement, calls
`wamp.session.count` (a registry lookup) and leaves with GOODBYE; a second socket breaks the protocol and is
aborted. Exits non-zero, naming the step, if the node answers anything unexpected. Bounded: every read times
out after TIMEOUT seconds.
"""

import base64
import json
import os
import socket
import struct
import sys

TIMEOUT = 5.0
REALM = "realm1"
TOPIC = "metrics.check"


class WebSocket:
    """A client WebSocket speaking one subprotocol (RFC 6455: masked frames out, unmasked in)."""

    def __init__(self, host, port, protocol):
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise SystemExit("handshake: connection closed")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise SystemExit(f"handshake: {status.decode(errors='replace')}")

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise SystemExit("connection closed mid-frame")
            data += chunk
        return data

    def send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_json(self, message):
        self.send(0x1, json.dumps(message).encode())

    def recv(self):
        """The next frame as (opcode, payload); the server sends unfragmented frames."""
        first, second = self._read(2)
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8))
        return first & 0x0F, self._read(n)

    def recv_json(self, step):
        opcode, payload = self.recv()
        if opcode != 0x1:
            raise SystemExit(f"{step}: expected a text frame, got opcode {opcode}: {payload!r}")
        return json.loads(payload)

    def expect_close(self, step, code):
        """Reads until the server's close frame, answers it, and checks its code."""
        while True:
            opcode, payload = self.recv()
            if opcode == 0x8:
                got = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.send(0x8, payload[:2])
                self.sock.close()
                if got != code:
                    raise SystemExit(f"{step}: closed with {got}, expected {code}")
                return


def expect(step, message, code):
    if not message or message[0] != code:
        raise SystemExit(f"{step}: expected message type {code}, got {message}")
    return message


def main(host, port):
    session = WebSocket(host, port, "wamp.2.json")
    session.send_json([1, REALM, {"roles": {"subscriber": {}, "publisher": {}, "caller": {}}}])
    expect("hello", session.recv_json("hello"), 2)
    session.send_json([32, 1, {}, TOPIC])
    expect("subscribe", session.recv_json("subscribe"), 33)
    session.send_json([16, 2, {"acknowledge": True, "exclude_me": False}, TOPIC, ["hello"]])
    answers = sorted(session.recv_json("publish")[0] for _ in range(2))
    if answers != [17, 36]:
        raise SystemExit(f"publish: expected PUBLISHED and EVENT, got message types {answers}")
    session.send_json([48, 3, {}, "wamp.session.count", []])
    expect("call wamp.session.count", session.recv_json("call"), 50)
    session.send_json([6, {}, "wamp.close.close_realm"])
    expect("goodbye", session.recv_json("goodbye"), 6)
    session.expect_close("goodbye", 1000)

    rude = WebSocket(host, port, "wamp.2.json")
    rude.send(0x1, b"not wamp")
    expect("protocol violation", rude.recv_json("protocol violation"), 3)
    rude.expect_close("protocol violation", 1002)
    print("traffic: one session (subscribe, publish, call, goodbye) and one protocol violation")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], int(sys.argv[2]))
