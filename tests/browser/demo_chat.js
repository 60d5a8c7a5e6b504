// Browser test: headless Debian chromium (driven by playwright-core) uses the demo page of a running node.
// alice, bob and carol log in from separate fresh profiles; alice sends to bob only; bob's page shows it and
// carol's does not; a room message reaches everyone.
// Usage: node demo_chat.js http://127.0.0.1:PORT   — exits non-zero on the first failed check.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const BASE = process.argv[2];
const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
  '--disable-quic', '--disable-component-update', '--disable-sync'];
const WAIT = 15000;
const users = [];

function fail(message) {
  console.error('browser test FAILED: ' + message);
  cleanup().finally(() => process.exit(1));
}
setTimeout(() => fail('overall timeout'), 120000).unref();

async function cleanup() {
  for (const u of users) {
    await u.context.close().catch(() => {});
    fs.rmSync(u.dir, { recursive: true, force: true });
  }
}

async function login(name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `switchboard-${name}-`));
  const context = await chromium.launchPersistentContext(dir, { executablePath: EXECUTABLE, headless: true, args: ARGS });
  const user = { name, dir, context };
  users.push(user);
  const page = context.pages()[0] || (await context.newPage());
  user.page = page;
  await page.goto(BASE + '/');
  await page.fill('#username', name);
  await page.click('#login-button');
  await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT });
  const me = await page.textContent('#me');
  if (me !== name) fail(`${name}'s page says it is ${me}`);
  return user;
}

const logText = (u) => u.page.textContent('#log');

(async () => {
  const alice = await login('alice');
  const bob = await login('bob');
  const carol = await login('carol');

  // Everyone sees everyone online.
  for (const u of [alice, bob, carol]) {
    await u.page.waitForFunction(() => ['alice', 'bob', 'carol']
      .every((n) => document.getElementById('online').textContent.split(', ').includes(n)), null, { timeout: WAIT });
  }

  // alice → bob only.
  await alice.page.selectOption('#direct-to', 'bob');
  await alice.page.fill('#direct-text', 'hello bob only');
  await alice.page.click('#direct-send');
  await bob.page.waitForFunction(
    () => document.getElementById('log').textContent.includes('(private) alice: hello bob only'), null, { timeout: WAIT });

  // carol posts to the room; once everyone has that, carol provably missed nothing sent before it.
  await carol.page.fill('#room-text', 'hi all');
  await carol.page.click('#room-send');
  for (const u of [alice, bob, carol]) {
    await u.page.waitForFunction(
      () => document.getElementById('log').textContent.includes('carol: hi all'), null, { timeout: WAIT });
  }
  if ((await logText(carol)).includes('hello bob only')) fail("carol's page shows alice's private message to bob");
  if ((await logText(alice)).includes('(private) alice')) fail("alice received her own private message to bob");

  // Logging out closes bob's socket (session revoked) when the page reloads to the login form.
  await bob.page.click('#logout');
  await bob.page.waitForSelector('#login-button', { timeout: WAIT });

  await cleanup();
  console.log('browser (chromium) demo test: all checks passed');
  process.exit(0);
})().catch((e) => fail(e.stack || String(e)));
