"""Interop: PyPI autobahn (WAMP v2) against a running switchboard node.

Usage: python autobahn_v2.py ws://127.0.0.1:PORT/ws
Exits non-zero with a message on the first failed check; every wait is bounded.
"""
import asyncio
import sys

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from wamp_common import Inbox, check
from wamp_common import connect as connect_to
from wamp_common import login as login_at

URL = sys.argv[1]


async def connect(cookie=None):
    return await connect_to(URL, cookie=cookie)


def login(username):
    return login_at(URL, username)


async def main():
    (a, a_details), (b, b_details), (c, c_details) = [await connect() for _ in range(3)]
    check(a_details.authid == f"anon-{a_details.session}", f"authid {a_details.authid}")
    check(a_details.authrole == "anonymous", f"authrole {a_details.authrole}")
    check(a_details.authmethod == "anonymous", f"authmethod {a_details.authmethod}")

    inbox_a, inbox_b, inbox_c = Inbox(), Inbox(), Inbox()
    await a.subscribe(inbox_a, "com.interop.news")
    await b.subscribe(inbox_b, "com.interop.news")
    await c.subscribe(inbox_c, "com.interop.news")

    # Plain publish, acknowledged: everyone but the publisher (exclude_me defaults to true).
    await a.publish("com.interop.news", "hello", key=1, options=PublishOptions(acknowledge=True))
    for inbox in (inbox_b, inbox_c):
        args, kwargs, _ = await inbox.next()
        check(args == ("hello",) and kwargs == {"key": 1}, f"payload {args} {kwargs}")
    await inbox_a.nothing()

    # exclude_me=False reaches the publisher too.
    await a.publish("com.interop.news", "echo", options=PublishOptions(acknowledge=True, exclude_me=False))
    for inbox in (inbox_a, inbox_b, inbox_c):
        check((await inbox.next())[0] == ("echo",), "exclude_me=False")

    # eligible / exclude by session id.
    await a.publish("com.interop.news", "to-b", options=PublishOptions(acknowledge=True, eligible=[b_details.session]))
    check((await inbox_b.next())[0] == ("to-b",), "eligible")
    await inbox_c.nothing()
    await a.publish("com.interop.news", "not-b", options=PublishOptions(acknowledge=True, exclude=[b_details.session]))
    check((await inbox_c.next())[0] == ("not-b",), "exclude")
    await inbox_b.nothing()

    # eligible_authid.
    await a.publish(
        "com.interop.news", "to-c", options=PublishOptions(acknowledge=True, eligible_authid=[c_details.authid])
    )
    check((await inbox_c.next())[0] == ("to-c",), "eligible_authid")
    await inbox_b.nothing()

    # Prefix subscription carries the concrete topic.
    prefixed = Inbox()
    await b.subscribe(prefixed, "com.interop.", options=SubscribeOptions(match="prefix", details=True))
    await a.publish("com.interop.other", 42, options=PublishOptions(acknowledge=True))
    _, _, details = await prefixed.next()
    check(details.topic == "com.interop.other", f"prefix topic {details.topic}")

    # Server procedures: session meta API. Counting is open; identities are not shown to anonymous callers
    # (meta.roles defaults to every role but anonymous).
    count = await a.call("wamp.session.count")
    check(count == 3, f"wamp.session.count = {count}")
    for procedure, args in (("wamp.session.list", ()), ("wamp.session.get", (b_details.session,))):
        try:
            await a.call(procedure, *args)
            raise AssertionError(f"anonymous {procedure} succeeded")
        except ApplicationError as e:
            check(e.error == "wamp.error.not_authorized", f"{procedure} error {e.error}")
    try:
        await a.call("com.interop.missing")
        raise AssertionError("calling a missing procedure succeeded")
    except ApplicationError as e:
        check(e.error == "wamp.error.no_such_procedure", f"error {e.error}")

    # Client callees are refused clearly.
    try:
        await a.register(lambda: None, "com.interop.callee")
        raise AssertionError("REGISTER succeeded")
    except ApplicationError as e:
        check(e.error == "wamp.error.not_authorized", f"register error {e.error}")

    # A publish the router refuses (reserved wamp. namespace) gets ERROR when acknowledged; the session survives.
    try:
        await a.publish("wamp.session.on_join", options=PublishOptions(acknowledge=True))
        raise AssertionError("publishing to a reserved URI succeeded")
    except ApplicationError as e:
        check(e.error == "wamp.error.invalid_uri", f"invalid uri error {e.error}")
    check(await a.call("wamp.session.count") == 3, "session alive after error")

    # Session meta events reach a logged-in autobahn client; an anonymous one is refused the topic.
    watcher, _ = await connect(cookie=login("watcher"))
    joins, leaves = Inbox(), Inbox()
    await watcher.subscribe(joins, "wamp.session.on_join")
    await watcher.subscribe(leaves, "wamp.session.on_leave")
    d, d_details = await connect()
    (info,), _, _ = await joins.next()
    check(info["session"] == d_details.session, f"on_join details {info}")
    # autobahn offers its serializers in its own order (CBOR first when cbor2 is installed); the router takes it.
    protocol = d._transport.websocket_protocol_in_use
    check(info["authrole"] == "anonymous" and info["transport"]["protocol"] == protocol, f"on_join {info} ({protocol})")
    d.leave()
    args, _, _ = await leaves.next()
    check(list(args) == [d_details.session, f"anon-{d_details.session}", "anonymous"], f"on_leave {args}")
    try:
        await a.subscribe(Inbox(), "wamp.session.on_join")
        raise AssertionError("an anonymous session subscribed to wamp.session.on_join")
    except ApplicationError as e:
        check(e.error == "wamp.error.not_authorized", f"meta subscribe error {e.error}")

    # Subscription meta events and procedures: the first subscriber creates the subscription, the last deletes it.
    changes = Inbox()
    await watcher.subscribe(changes, "wamp.subscription.on_", options=SubscribeOptions(match="prefix", details=True))
    e, e_details = await connect()
    subscription = await e.subscribe(Inbox(), "com.interop.meta")
    args, _, details = await changes.next()
    check(details.topic == "wamp.subscription.on_create", f"first meta event {details.topic}")
    check(args[0] == e_details.session and args[1]["id"] == subscription.id, f"on_create {args}")
    check(args[1]["uri"] == "com.interop.meta" and args[1]["match"] == "exact", f"on_create {args}")
    args, _, details = await changes.next()
    check(details.topic == "wamp.subscription.on_subscribe", f"second meta event {details.topic}")
    check(list(args) == [e_details.session, subscription.id], f"on_subscribe {args}")
    found = await watcher.call("wamp.subscription.lookup", "com.interop.meta")
    check(found == subscription.id, f"lookup {found} != {subscription.id}")
    check(await watcher.call("wamp.subscription.count_subscribers", found) == 1, "count_subscribers")
    await subscription.unsubscribe()
    topics = set()
    for _ in range(2):
        args, _, details = await changes.next()
        topics.add(details.topic)
        check(list(args) == [e_details.session, subscription.id], f"{details.topic} {args}")
    check(topics == {"wamp.subscription.on_unsubscribe", "wamp.subscription.on_delete"}, f"leaving: {topics}")
    check(await watcher.call("wamp.subscription.lookup", "com.interop.meta") is None, "deleted: lookup is null")
    e.leave()

    # Event retention: a logged-in publisher retains, a later (anonymous) subscriber asks for it and gets it first.
    await watcher.publish("com.interop.retained", "kept", options=PublishOptions(acknowledge=True, retain=True))
    kept = Inbox()
    await a.subscribe(kept, "com.interop.retained", options=SubscribeOptions(get_retained=True, details=True))
    args, _, details = await kept.next()
    check(args == ("kept",) and details.retained is True, f"retained event {args} {details}")
    try:
        await a.publish("com.interop.retained", "x", options=PublishOptions(acknowledge=True, retain=True))
        raise AssertionError("an anonymous session retained an event")
    except ApplicationError as e:
        check(e.error == "wamp.error.not_authorized", f"anonymous retain error {e.error}")
    watcher.leave()

    for s in (a, b, c):
        s.leave()
    print("autobahn (WAMP v2) interop: all checks passed")


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), 60))
