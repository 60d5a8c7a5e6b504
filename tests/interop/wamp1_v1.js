// Interop: npm `wamp1` (WAMP v1 client) against a running switchboard node.
// Usage: node wamp1_v1.js ws://127.0.0.1:PORT/ws   — exits non-zero on the first failed check.
'use strict';
const WebSocket = require('ws');
const Wamp = require('wamp1');

const URL = process.argv[2];
const WAIT = 5000;
const QUIET = 400;

function fail(message) {
  console.error('wamp1 interop FAILED: ' + message);
  process.exit(1);
}
setTimeout(() => fail('overall timeout'), 60000).unref();

function connect() {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(URL, 'wamp');
    const wamp = new Wamp(socket, (welcome) => resolve({ wamp, welcome, socket }));
    socket.on('error', reject);
  });
}

function call(wamp, uri, ...args) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('call timed out: ' + uri)), WAIT);
    wamp.call(uri, ...args, (err, result) => {
      clearTimeout(timer);
      err ? reject(err) : resolve(result);
    });
  });
}

class Inbox {
  constructor() { this.items = []; this.waiters = []; }
  push(data) {
    const w = this.waiters.shift();
    w ? w(data) : this.items.push(data);
  }
  next() {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no event arrived')), WAIT);
      this.waiters.push((d) => { clearTimeout(timer); resolve(d); });
    });
  }
  async nothing() {
    await new Promise((r) => setTimeout(r, QUIET));
    if (this.items.length) fail('unexpected event ' + JSON.stringify(this.items[0]));
  }
}

function check(cond, message) { if (!cond) fail(message); }

(async () => {
  const a = await connect();
  const b = await connect();
  check(a.welcome.version === 1, 'protocol version ' + a.welcome.version);
  check(typeof a.welcome.sessionId === 'string', 'session id is a string');
  check(/^switchboard\//.test(a.welcome.server), 'server ident ' + a.welcome.server);

  // PREFIX + CALL with a CURIE.
  a.wamp.prefix('meta', 'wamp.session.');
  check((await call(a.wamp, 'meta:count')) === 2, 'meta:count');
  try {
    await call(a.wamp, 'http://example.com/api#missing');
    fail('missing procedure succeeded');
  } catch (e) {
    check(e.uri === 'wamp.error.no_such_procedure', 'callerror uri ' + e.uri);
  }

  // SUBSCRIBE (with a CURIE) and PUBLISH.
  const inboxA = new Inbox();
  const inboxB = new Inbox();
  a.wamp.prefix('event', 'http://example.com/event#');
  b.wamp.prefix('event', 'http://example.com/event#');
  a.wamp.subscribe('event:chat', (d) => inboxA.push(d));
  b.wamp.subscribe('http://example.com/event#chat', (d) => inboxB.push(d));
  await call(a.wamp, 'meta:count'); // round trips: subscriptions are in place
  await call(b.wamp, 'wamp.session.count');

  // Ratchet: no 4th element ⇒ the publisher receives its own event too.
  b.wamp.publish('event:chat', { text: 'hi' });
  check((await inboxA.next()).text === 'hi', 'a got hi');
  check((await inboxB.next()).text === 'hi', 'b got its own hi');

  // excludeMe = true.
  b.wamp.publish('event:chat', 'quiet', true);
  check((await inboxA.next()) === 'quiet', 'a got quiet');
  await inboxB.nothing();

  // exclude list / eligible list (session ids as strings).
  b.wamp.publish('event:chat', 'not-a', [a.welcome.sessionId]);
  check((await inboxB.next()) === 'not-a', 'b got not-a');
  await inboxA.nothing();
  b.wamp.publish('event:chat', 'only-a', [], [a.welcome.sessionId]);
  check((await inboxA.next()) === 'only-a', 'a got only-a');
  await inboxB.nothing();

  // UNSUBSCRIBE.
  a.wamp.unsubscribe('event:chat');
  await call(a.wamp, 'meta:count');
  b.wamp.publish('event:chat', 'after-unsub', true);
  await inboxA.nothing();

  a.socket.close();
  b.socket.close();
  console.log('wamp1 (WAMP v1) interop: all checks passed');
  process.exit(0);
})().catch((e) => fail(e.stack || String(e)));
