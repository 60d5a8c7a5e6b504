// Browser test: headless Debian chromium (driven by playwright-core) on the demo page of a node this script
// starts itself, with its sessions in a private redis-server, so it can restart the node and the users stay
// logged in. alice and bob log in through the demo login (two browser contexts: separate cookies); a room
// message reaches both; alice's private message reaches bob and alice sees her own copy; a note to herself
// stays hers; the node restarts on the same port and both pages reconnect by themselves and chat again; bob
// logs out: alice's online list drops him at once (session meta event) and her log says he went offline after
// the presence grace. No page may get a 404 (favicon) or throw.
//
// Usage: node demo_chat.js path/to/switchboard — exits non-zero on the first failed check.
// Needs redis-server on PATH and /usr/bin/chromium (or CHROMIUM=path).
'use strict';
const { spawn } = require('child_process');
const net = require('net');
const { chromium } = require('playwright-core');

const BIN = process.argv[2];
const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
  '--disable-quic', '--disable-component-update', '--disable-sync'];
const WAIT = 15000;             // one page reaction (event, list update)
const RECONNECT_WAIT = 30000;   // node restart + the page's backoff (at most 10 s between attempts)
const STOP_WAIT = 30000;        // the node's graceful shutdown
// The session key exactly as `openssl rand -base64 64` prints it: wrapped at 64 characters, final newline.
const SESSION_KEY = 'Cp11D3sZR7ndhi5wkWQHIRPfaKN3bB79hUENtfvqDHVoijB8PFb6RgwpUCp8+Feq\n4oH5l92Y6YvR0qHh+p/0WQ==\n';

const processes = new Set();
let browser = null;

let failed = false;
function fail(message) {
  if (failed) return; // the first failure is the one to read; later ones are its echoes
  failed = true;
  console.error('browser test FAILED: ' + message);
  cleanup().finally(() => process.exit(1));
}
setTimeout(() => fail('overall timeout'), 180000).unref();

async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  for (const p of processes) p.kill('SIGKILL');
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => { const { port } = server.address(); server.close(() => resolve(port)); });
  });
}

function start(command, args, env, name) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  processes.add(child);
  child.output = '';
  const keep = (d) => { child.output += d; };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.exited = new Promise((resolve) => child.on('exit', (code, signal) => {
    processes.delete(child);
    resolve({ code, signal });
  }));
  child.name = name;
  return child;
}

// Resolves once `port` accepts TCP connections; fails if `child` exits first.
async function listening(port, child) {
  const deadline = Date.now() + WAIT;
  while (Date.now() < deadline) {
    if (!processes.has(child)) fail(`${child.name} exited:\n${child.output}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  fail(`${child.name} did not listen on ${port}:\n${child.output}`);
}

async function startNode(port, redisPort) {
  const node = start(BIN, [], {
    SWITCHBOARD_BIND: `127.0.0.1:${port}`, SWITCHBOARD_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
    SWITCHBOARD_SESSION_KEY: SESSION_KEY, SWITCHBOARD_DEMO: 'true', RUST_LOG: 'info',
  }, 'switchboard');
  await listening(port, node);
  return node;
}

async function login(name, base) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const user = { name, context, page };
  page.on('pageerror', (e) => fail(`${name}'s page threw: ${e.stack || e}`));
  page.on('response', (r) => { if (r.status() === 404) fail(`${name}'s page got a 404 for ${r.url()}`); });
  await page.goto(base + '/');
  await page.fill('#username', name);
  await page.click('#login-button');
  await page.waitForSelector('body[data-state="online"]', { timeout: WAIT });
  const me = await page.textContent('#me');
  if (me !== name) fail(`${name}'s page says it is ${me}`);
  return user;
}

const logText = (u) => u.page.textContent('#log');
const logHas = (u, text, timeout = WAIT) => u.page.waitForFunction(
  (t) => document.getElementById('log').textContent.includes(t), text, { timeout })
  .catch(() => logText(u).then((l) => fail(`${u.name}'s log never showed "${text}"; it holds: ${l}`)));
// Within 5 s: a meta event's effect (the page never polls).
const ANNOUNCEMENT_WAIT = 5000;
const onlineIs = (u, names) => u.page.waitForFunction(
  (want) => document.getElementById('online').textContent === want.join(', '), names, { timeout: ANNOUNCEMENT_WAIT })
  .catch(() => u.page.textContent('#online').then((o) => fail(`${u.name}'s online list is "${o}", not ${names}`)));

async function send(u, kind, text, to) {
  if (to) await u.page.fill('#direct-to', to);
  await u.page.fill(`#${kind}-text`, text);
  await u.page.click(`#${kind}-send`);
}

(async () => {
  if (!BIN) fail('usage: node demo_chat.js path/to/switchboard');
  const redisPort = await freePort();
  const redis = start('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no'], {}, 'redis-server');
  await listening(redisPort, redis);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let node = await startNode(port, redisPort);

  browser = await chromium.launch({ executablePath: EXECUTABLE, headless: true, args: ARGS });
  const alice = await login('alice', base);
  const bob = await login('bob', base);

  // bob's join announcement reaches alice's list at once (the fallback refresh is 30 s away).
  for (const u of [alice, bob]) await onlineIs(u, ['alice', 'bob']);

  // A room message reaches both.
  await send(alice, 'room', 'hello room');
  for (const u of [alice, bob]) await logHas(u, 'alice: hello room');

  // alice → bob only: bob gets it, alice sees her own copy with its text.
  await send(alice, 'direct', 'psst bob', 'bob');
  await logHas(bob, '(private) alice: psst bob');
  await logHas(alice, '(private to bob) psst bob');

  // A note to herself is written once on her page and never reaches bob.
  await send(alice, 'direct', 'remember the milk', 'alice');
  await logHas(alice, '(note to self) remember the milk');
  await send(bob, 'room', 'bob was here');
  for (const u of [alice, bob]) await logHas(u, 'bob: bob was here');
  if ((await logText(bob)).includes('remember the milk')) fail("bob's page shows alice's note to herself");
  if ((await logText(alice)).includes('(private) alice')) fail('alice received her own message as an event');

  // The node restarts on the same port: both pages notice, reconnect by themselves, resubscribe and chat on.
  node.kill('SIGTERM');
  const stopped = await Promise.race([node.exited, new Promise((r) => setTimeout(() => r(null), STOP_WAIT))]);
  if (!stopped) fail('the node did not stop within 30 s of SIGTERM');
  for (const u of [alice, bob]) {
    await u.page.waitForSelector('body:not([data-state="online"])', { timeout: WAIT });
  }
  node = await startNode(port, redisPort);
  for (const u of [alice, bob]) {
    await u.page.waitForSelector('body[data-state="online"]', { timeout: RECONNECT_WAIT })
      .catch(() => logText(u).then((l) => fail(`${u.name}'s page did not reconnect; log: ${l}`)));
    if ((await u.page.textContent('#me')) !== u.name) fail(`${u.name} is someone else after the restart`);
  }
  await send(bob, 'room', 'back again');
  for (const u of [alice, bob]) await logHas(u, 'bob: back again');
  // Each page showed each room message once, across the restart (a reconnect resumes after its last one).
  for (const u of [alice, bob]) {
    const shown = ((await logText(u)).match(/alice: hello room/g) || []).length;
    if (shown !== 1) fail(`${u.name}'s log shows "alice: hello room" ${shown} times`);
  }
  // A page opened now shows the room's recent history (kept in Redis across the node's restart).
  const carol = await login('carol', base);
  await logHas(carol, 'alice: hello room');
  await logHas(carol, 'bob: back again');
  await carol.context.close();
  await send(alice, 'direct', 'still private', 'bob');
  await logHas(bob, '(private) alice: still private');
  await logHas(alice, '(private to bob) still private');
  for (const u of [alice, bob]) await onlineIs(u, ['alice', 'bob']);

  // bob logs out: his page shows the login form, alice's list drops him (wamp.session.on_leave), and once the
  // presence grace (5 s) has passed without a socket of his, her log says he went offline.
  await bob.page.click('#logout');
  await bob.page.waitForSelector('#login-button', { timeout: WAIT });
  await onlineIs(alice, ['alice']);
  await logHas(alice, 'bob went offline', 15000);

  // A private message to bob while he has no page open waits for him: he sees it when he logs in again.
  await send(alice, 'direct', 'while you were away', 'bob');
  await logHas(alice, '(private to bob) while you were away — kept until they log in');
  const bobAgain = await login('bob', base);
  await logHas(bobAgain, '(private) alice: while you were away');

  await cleanup();
  console.log('browser (chromium) demo test: all checks passed');
  process.exit(0);
})().catch((e) => fail(e.stack || String(e)));
