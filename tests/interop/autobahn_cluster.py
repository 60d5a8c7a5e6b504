"""Interop across nodes: PyPI autobahn (WAMP v2) against two switchboard nodes joined by one Redis.

Usage: python autobahn_cluster.py ws://127.0.0.1:PORT_A/ws ws://127.0.0.1:PORT_B/ws
A logged-in publisher on node A retains an event; an autobahn subscriber on node B gets it with get_retained.
A service authenticated with a JWT as WAMP ticket (autobahn's ticket auth; the nodes run with the secret in
SWITCHBOARD_JWT_SECRET) on node A sends to a cookie-authenticated user on node B.
(autobahn's SUBSCRIBE takes only the options it knows, so `resume_after` is tested with switchboard's own client.)
Exits non-zero on the first failed check.
"""
import asyncio
import sys

from autobahn.wamp.types import PublishOptions, SubscribeOptions

from wamp_common import Inbox, check, connect, jwt, login

URL_A, URL_B = sys.argv[1], sys.argv[2]


async def connect_ticket(url, authid, ticket):
    return await connect(url, ticket=ticket, authid=authid)


async def main():
    publisher, _ = await connect(URL_A, cookie=login(URL_A, "alice"))
    # Retention across nodes.
    await publisher.publish("com.interop.cluster", "kept", options=PublishOptions(acknowledge=True, retain=True))
    subscriber, _ = await connect(URL_B)
    got = Inbox()
    await subscriber.subscribe(got, "com.interop.cluster", options=SubscribeOptions(get_retained=True, details=True))
    args, _, details = await got.next()
    check(args == ("kept",) and details.retained is True, f"retained event on the other node: {args} {details}")
    # A service with a JWT ticket on node A reaches a cookie user on node B.
    bob, _ = await connect(URL_B, cookie=login(URL_B, "bob"))
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
