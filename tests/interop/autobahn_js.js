// Interop: npm autobahn (autobahn-js 22.11.1, Node 20) with MessagePack, against a running switchboard node.
//
//   NODE_PATH=.cache/interop/node_modules node tests/interop/autobahn_js.js ws://127.0.0.1:PORT/ws
//
// A MessagePack session and a JSON session subscribe to one topic; each publishes (acknowledged) arguments,
// keyword arguments and, from MessagePack, binary data; both receive the same values (binary as a Buffer on
// MessagePack, as the spec's "\u0000" + base64 string on JSON, which autobahn-js leaves as it is). Calls and
// their errors come back in MessagePack. Exits non-zero on the first failed check; every wait is bounded.
"use strict";
const autobahn = require("autobahn");
const assert = require("assert");

const URL = process.argv[2];
const WAIT = 5000;
const TOPIC = "com.interop.js";

function open(serializer) {
  return new Promise((resolve, reject) => {
    const connection = new autobahn.Connection({
      url: URL,
      realm: "realm1",
      serializers: [serializer],
      max_retries: 0,
    });
    const timer = setTimeout(() => reject(new Error("no WELCOME within 5 s")), WAIT);
    connection.onopen = (session, details) => {
      clearTimeout(timer);
      resolve({ connection, session, details });
    };
    connection.onclose = (reason, details) => {
      clearTimeout(timer);
      reject(new Error(`closed: ${reason} ${JSON.stringify(details)}`));
      return true; // no reconnect
    };
    connection.open();
  });
}

class Inbox {
  constructor(name) {
    this.name = name;
    this.events = [];
    this.waiting = null;
  }
  handler() {
    return (args, kwargs) => {
      this.events.push({ args, kwargs });
      if (this.waiting) this.waiting();
    };
  }
  async next() {
    const deadline = Date.now() + WAIT;
    while (this.events.length === 0) {
      if (Date.now() > deadline) throw new Error(`${this.name}: no event within ${WAIT} ms`);
      await new Promise((resolve) => {
        this.waiting = resolve;
        setTimeout(resolve, 50);
      });
    }
    return this.events.shift();
  }
}

async function main() {
  const msgpack = await open(new autobahn.serializer.MsgpackSerializer());
  const json = await open(new autobahn.serializer.JSONSerializer());
  assert.strictEqual(msgpack.connection.transport.info.protocol, "wamp.2.msgpack");
  assert.strictEqual(json.connection.transport.info.protocol, "wamp.2.json");

  const inboxes = { msgpack: new Inbox("msgpack"), json: new Inbox("json") };
  await msgpack.session.subscribe(TOPIC, inboxes.msgpack.handler());
  await json.session.subscribe(TOPIC, inboxes.json.handler());

  const args = ["hello", 42, -0.5, null, false, { list: [1, 2, { deep: true }] }];
  const kwargs = { who: "autobahn-js" };
  for (const [name, side] of [["msgpack", msgpack], ["json", json]]) {
    await side.session.publish(TOPIC, args, kwargs, { acknowledge: true, exclude_me: false });
    for (const inbox of Object.values(inboxes)) {
      const event = await inbox.next();
      assert.deepStrictEqual(event.args, args, `${inbox.name} from ${name}`);
      assert.deepStrictEqual(event.kwargs, kwargs, `${inbox.name} from ${name}`);
    }
  }

  // Binary from MessagePack: a Buffer for MessagePack subscribers, the spec's JSON form for JSON ones.
  const blob = Buffer.from([0, 1, 2, 254, 255]);
  await msgpack.session.publish(TOPIC, [blob], {}, { acknowledge: true, exclude_me: false });
  const asBinary = await inboxes.msgpack.next();
  assert.ok(Buffer.isBuffer(asBinary.args[0]), `msgpack got ${typeof asBinary.args[0]}`);
  assert.ok(asBinary.args[0].equals(blob), "msgpack bytes");
  const asJson = await inboxes.json.next();
  assert.strictEqual(asJson.args[0], "\u0000" + blob.toString("base64"), "json form of binary");

  const count = await msgpack.session.call("wamp.session.count");
  assert.ok(Number.isInteger(count) && count >= 2, `wamp.session.count = ${count}`);
  try {
    await msgpack.session.call("com.interop.missing");
    assert.fail("calling a missing procedure succeeded");
  } catch (e) {
    assert.strictEqual(e.error, "wamp.error.no_such_procedure", `error ${JSON.stringify(e)}`);
  }

  msgpack.connection.close();
  json.connection.close();
  console.log("interop: autobahn-js MessagePack and JSON: ok");
}

const overall = setTimeout(() => {
  console.error("interop autobahn-js: timed out");
  process.exit(1);
}, 30000);
main().then(
  () => {
    clearTimeout(overall);
    process.exit(0);
  },
  (e) => {
    console.error(`interop autobahn-js FAILED: ${e.stack || e}`);
    process.exit(1);
  },
);
