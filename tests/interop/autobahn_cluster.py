"""Interop across nodes: PyPI autobahn (WAMP v2) against two switchboard nodes joined by one Redis.

Usage: python autobahn_cluster.py ws://127.0.0.1:PORT_A/ws ws://127.0.0.1:PORT_B/ws
A logged-in publisher on node A retains an event; an autobahn subscriber on node B gets it with get_retained.
A service authenticated with a JWT as WAMP ticket (autobahn's ticket auth; the nodes run with the secret in
SWITCHBOARD_JWT_SECRET) on node A sends to a cookie-authenticated user on node B.
(autobahn's SUBSCRIBE takes only the options it knows, so `resume_after` is tested with switchboard's own client.)
Exits non-zero on the first failed check.
"""
import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import os
import sys
import time
from urllib.parse import urlparse

from autobahn.asyncio.wamp import ApplicationSession
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.types import ComponentConfig, PublishOptions, SubscribeOptions

URL_A, URL_B = sys.argv[1], sys.argv[2]
WAIT = 5.0


def check(ok, what):
    if not ok:
        print(f"autobahn cluster interop FAILED: {what}")
        sys.exit(1)


def login(url, username):
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=WAIT)
    conn.request("POST", "/login", body=f"username={username}",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    cookie = conn.getresponse().getheader("Set-Cookie")
    check(cookie is not None, "demo /login set no cookie")
    return cookie.split(";")[0]


async def connect(url, cookie=None):
    loop = asyncio.get_running_loop()
    joined = loop.create_future()

    class Session(ApplicationSession):
        def onJoin(self, details):
            if not joined.done():
                joined.set_result((self, details))

    headers = {"Cookie": cookie} if cookie else None
    factory = WampWebSocketClientFactory(lambda: Session(ComponentConfig("realm1")), url=url, headers=headers)
    parsed = urlparse(url)
    await loop.create_connection(factory, parsed.hostname, parsed.port)
    return await asyncio.wait_for(joined, WAIT)


def jwt(sub, roles):
    """An HS256 JWT signed with SWITCHBOARD_JWT_SECRET (no JWT library needed)."""
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=")
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": sub, "roles": roles, "exp": int(time.time()) + 300}).encode())
    signing_input = header + b"." + claims
    key = os.environ["SWITCHBOARD_JWT_SECRET"].encode()
    return (signing_input + b"." + b64(hmac.new(key, signing_input, hashlib.sha256).digest())).decode()


async def connect_ticket(url, authid, ticket):
    loop = asyncio.get_running_loop()
    joined = loop.create_future()

    class Session(ApplicationSession):
        def onConnect(self):
            self.join("realm1", authmethods=["ticket"], authid=authid)

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

    factory = WampWebSocketClientFactory(lambda: Session(ComponentConfig("realm1")), url=url)
    parsed = urlparse(url)
    await loop.create_connection(factory, parsed.hostname, parsed.port)
    return await asyncio.wait_for(joined, WAIT)


class Inbox:
    def __init__(self):
        self.queue = asyncio.Queue()

    def __call__(self, *args, **kwargs):
        details = kwargs.pop("details", None)
        self.queue.put_nowait((args, kwargs, details))

    async def next(self):
        return await asyncio.wait_for(self.queue.get(), WAIT)


async def main():
    publisher, _ = await connect(URL_A, login(URL_A, "alice"))
    # Retention across nodes.
    await publisher.publish("com.interop.cluster", "kept", options=PublishOptions(acknowledge=True, retain=True))
    subscriber, _ = await connect(URL_B)
    got = Inbox()
    await subscriber.subscribe(got, "com.interop.cluster", options=SubscribeOptions(get_retained=True, details=True))
    args, _, details = await got.next()
    check(args == ("kept",) and details.retained is True, f"retained event on the other node: {args} {details}")
    # A service with a JWT ticket on node A reaches a cookie user on node B.
    bob, _ = await connect(URL_B, login(URL_B, "bob"))
    to_bob = Inbox()
    await bob.subscribe(to_bob, "com.interop.direct")
    service, details = await connect_ticket(URL_A, "svc-notifier", jwt("svc-notifier", ["service"]))
    check((details.authid, details.authmethod, details.authrole) == ("svc-notifier", "ticket", "service"),
          f"ticket WELCOME: {details.authid} {details.authmethod} {details.authrole}")
    await service.publish("com.interop.direct", "for bob",
                          options=PublishOptions(acknowledge=True, eligible_authid=["bob"]))
    args, _, _ = await to_bob.next()
    check(args == ("for bob",), f"the service's message on the other node: {args}")
    try:
        await connect_ticket(URL_A, "mallory", jwt("svc-notifier", ["service"]))
        check(False, "a ticket whose sub is not the HELLO authid was accepted")
    except RuntimeError as refused:
        check("authentication_failed" in str(refused), f"refused ticket: {refused}")
    for session in (publisher, subscriber, bob, service):
        session.leave()
    print("autobahn (WAMP v2) cluster interop: all checks passed")


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), 60))
