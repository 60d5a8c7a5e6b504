"""What the PyPI-client interop scripts share: checks, the demo's /login, autobahn sessions (cookie, serializers
or a JWT ticket), HS256 tokens signed with SWITCHBOARD_JWT_SECRET, and an event inbox. Every wait is bounded."""
import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import os
import queue
import time
from urllib.parse import urlparse

import txaio

txaio.use_asyncio()

from autobahn.asyncio.wamp import ApplicationSession  # noqa: E402 (after the framework is chosen)
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.types import ComponentConfig

WAIT = 5.0
QUIET = 0.4


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def login(url, username):
    """Logs in through the node's demo /login; returns the Cookie header value."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=WAIT)
    conn.request("POST", "/login", body=f"username={username}",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    cookie = conn.getresponse().getheader("Set-Cookie")
    check(cookie is not None, "demo /login set no cookie")
    return cookie.split(";")[0]


def jwt(sub, roles, lifetime=300):
    """An HS256 JWT signed with SWITCHBOARD_JWT_SECRET (no JWT library needed)."""
    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": sub, "roles": roles, "exp": int(time.time()) + lifetime}).encode())
    signing_input = header + b"." + claims
    key = os.environ["SWITCHBOARD_JWT_SECRET"].encode()
    return (signing_input + b"." + b64(hmac.new(key, signing_input, hashlib.sha256).digest())).decode()


async def connect(url, realm="realm1", cookie=None, serializers=None, ticket=None, authid=None):
    """An autobahn session (HELLO → WELCOME, or the ticket challenge when `ticket` is given); returns
    (session, details). `serializers`: autobahn's own offer when None. A refused join raises RuntimeError."""
    loop = asyncio.get_running_loop()
    joined = loop.create_future()

    class Session(ApplicationSession):
        def onConnect(self):
            if ticket is None:
                self.join(realm)
            else:
                self.join(realm, authmethods=["ticket"], authid=authid)

        def onChallenge(self, challenge):
            check(challenge.method == "ticket", f"challenged with {challenge.method}")
            return ticket

        def onJoin(self, details):
            if not joined.done():
                joined.set_result((self, details))

        def onLeave(self, details):
            if not joined.done():
                joined.set_exception(RuntimeError(f"left: {details.reason} {details.message}"))
            super().onLeave(details)

    headers = {"Cookie": cookie} if cookie else None
    factory = WampWebSocketClientFactory(lambda: Session(ComponentConfig(realm)), url=url, headers=headers,
                                         serializers=serializers)
    parsed = urlparse(url)
    await loop.create_connection(factory, parsed.hostname, parsed.port)
    return await asyncio.wait_for(joined, WAIT)


class Inbox:
    """Events of one subscription as (args, kwargs, details), from asyncio callbacks or another thread."""

    def __init__(self, name="inbox"):
        self.name = name
        self.queue = queue.Queue()

    def __call__(self, *args, **kwargs):
        details = kwargs.pop("details", None)
        self.queue.put((args, kwargs, details))

    async def next(self, wait=WAIT):
        try:
            return await asyncio.to_thread(self.queue.get, True, wait)
        except queue.Empty:
            raise AssertionError(f"{self.name}: no event within {wait}s") from None

    async def nothing(self):
        try:
            got = await self.next(QUIET)
        except AssertionError:
            return
        raise AssertionError(f"{self.name}: unexpected event {got}")
