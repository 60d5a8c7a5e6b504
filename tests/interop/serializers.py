"""Interop: WAMP v2 serializers with clients we did not write, across two switchboard nodes.

Usage: python serializers.py ws://127.0.0.1:A/ws ws://127.0.0.1:B/ws
The nodes share a Redis, a session key and SWITCHBOARD_JWT_SECRET (read from the environment here), with the
demo's /login on.

- PyPI xconn with its default serializer (CBOR), anonymous and with a JWT ticket;
- PyPI autobahn with MessagePack and with CBOR (and JSON, to compare);
each subscribing, publishing and calling on one topic, on both nodes; binary values stay bytes between binary
serializers (JSON clients get them back as bytes too: autobahn reads the spec's \\u0000 + base64 form); a service
with a JWT ticket over CBOR (xconn) sends to a cookie-authenticated user (autobahn, MessagePack) on the other node.
Exits non-zero with a message on the first failed check; every wait is bounded.
"""
import asyncio
import sys

from wamp_common import Inbox, check, connect, jwt, login  # first: it chooses autobahn's asyncio framework

from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import PublishOptions
from wampproto import serializers as xserializers
from xconn.client import connect as xconnect
from xconn.client import connect_anonymous, connect_ticket

URL_A, URL_B = sys.argv[1], sys.argv[2]
TOPIC = "com.interop.serializers"


async def autobahn(url, serializer, cookie=None):
    """An autobahn session speaking only `serializer`; returns (session, details)."""
    return await connect(url, cookie=cookie, serializers=[serializer])


def xconn_handler(inbox):
    """An xconn event handler feeding `inbox` (xconn calls it on its own thread)."""
    return lambda event: inbox.queue.put((tuple(event.args or ()), dict(event.kwargs or {}), None))


async def main():
    # Subscribers on both nodes, one per client and serializer.
    inboxes = []
    sessions = {}
    for url, node in ((URL_A, "a"), (URL_B, "b")):
        for name, serializer in (("msgpack", MsgPackSerializer()), ("cbor", CBORSerializer()),
                                 ("json", JsonSerializer())):
            session, details = await autobahn(url, serializer)
            inbox = Inbox(f"autobahn {name} on {node}")
            await session.subscribe(inbox, TOPIC)
            sessions[(name, node)] = session
            inboxes.append(inbox)
        x = await asyncio.to_thread(connect_anonymous, url, "realm1")
        inbox = Inbox(f"xconn cbor on {node}")
        await asyncio.to_thread(x.subscribe, TOPIC, xconn_handler(inbox))
        sessions[("xconn", node)] = x
        inboxes.append(inbox)
    await asyncio.sleep(0.3)  # the nodes' backplane subscriptions

    blob = bytes(range(256))
    payload_args = ["text", 7, -1.5, None, True, {"nested": [1, {"deep": "yes"}]}, blob]
    payload_kwargs = {"k": "v", "bytes": b"\x00\xff"}
    for (name, node), session in sorted(sessions.items(), key=lambda kv: kv[0]):
        if name == "xconn":
            await asyncio.to_thread(session.publish, TOPIC, payload_args, payload_kwargs,
                                    {"acknowledge": True, "exclude_me": False})
        else:
            await session.publish(TOPIC, *payload_args, options=PublishOptions(acknowledge=True, exclude_me=False),
                                   **payload_kwargs)
        for inbox in inboxes:
            args, kwargs, _ = await inbox.next()
            args = list(args)
            check(args == payload_args, f"{inbox.name} from {name} on {node}: args {args!r}")
            check(kwargs == payload_kwargs, f"{inbox.name} from {name} on {node}: kwargs {kwargs!r}")

    # Calls in every serializer.
    for (name, node), session in sessions.items():
        if name == "xconn":
            result = await asyncio.to_thread(session.call, "wamp.session.count")
            count = result.args[0]
        else:
            count = await session.call("wamp.session.count")
        check(isinstance(count, int) and count >= 4, f"{name} on {node}: wamp.session.count = {count}")

    # A service with a JWT ticket over CBOR (xconn) on A sends to bob, logged in by cookie, on B over MessagePack.
    bob, bob_details = await autobahn(URL_B, MsgPackSerializer(), cookie=login(URL_B, "bob"))
    check(bob_details.authid == "bob", f"bob is {bob_details.authid}")
    bob_inbox = Inbox("bob (msgpack, cookie) on b")
    await bob.subscribe(bob_inbox, "com.interop.notify")
    await asyncio.sleep(0.3)
    service = await asyncio.to_thread(connect_ticket, URL_A, "realm1", "svc-mailer", jwt("svc-mailer", ["service"]))
    await asyncio.to_thread(service.publish, "com.interop.notify", ["you have mail", b"\x01\x02"], None,
                            {"acknowledge": True, "eligible_authid": ["bob"]})
    args, _, _ = await bob_inbox.next()
    check(list(args) == ["you have mail", b"\x01\x02"], f"bob got {args!r}")

    # xconn with MessagePack, for good measure.
    mp = await asyncio.to_thread(xconnect, URL_A, "realm1", None, xserializers.MsgPackSerializer())
    result = await asyncio.to_thread(mp.call, "wamp.session.count")
    check(result.args[0] >= 1, f"xconn msgpack count {result.args}")

    for (name, _), session in sessions.items():
        if name == "xconn":
            await asyncio.to_thread(session.leave)
        else:
            session.leave()
    await asyncio.to_thread(service.leave)
    await asyncio.to_thread(mp.leave)
    print("interop: xconn (CBOR, MessagePack, ticket) and autobahn (MessagePack, CBOR, JSON) across two nodes: ok")


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    except Exception as e:  # noqa: BLE001 - report any failure as one line and a non-zero exit
        print(f"interop serializers FAILED: {e!r}", file=sys.stderr)
        sys.exit(1)
