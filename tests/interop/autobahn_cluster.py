"""Interop across nodes: PyPI autobahn (WAMP v2) against two switchboard nodes joined by one Redis.

Usage: python autobahn_cluster.py ws://127.0.0.1:PORT_A/ws ws://127.0.0.1:PORT_B/ws
A logged-in publisher on node A retains an event; an autobahn subscriber on node B gets it with get_retained.
(autobahn's SUBSCRIBE takes only the options it knows, so `resume_after` is tested with switchboard's own client.)
Exits non-zero on the first failed check.
"""
import asyncio
import http.client
import sys
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
    publisher.leave()
    subscriber.leave()
    print("autobahn (WAMP v2) cluster interop: all checks passed")


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), 60))
