// The fan-out workload of switchboard-load, against the Socket.IO server in this folder.
//   node client.js fanout  --url http://127.0.0.1:PORT --connections N --rate R --duration S [--payload B] [--server-pid P]
//   node client.js connect --url http://127.0.0.1:PORT --connections N [--hold S] [--server-pid P]
// Prints a JSON summary with the same keys as `switchboard-load --json`. Loopback only; bounded.
'use strict';
const fs = require('fs');
const { io } = require('socket.io-client');

const [mode, ...rest] = process.argv.slice(2);
const opt = {};
for (let i = 0; i < rest.length; i += 2) opt[rest[i].replace(/^--/, '')] = rest[i + 1];
const url = opt.url;
if (!/^https?:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?/.test(url || '')) {
  console.error('client.js: --url must be a loopback http URL');
  process.exit(2);
}
const N = Math.min(Number(opt.connections || 100), 20000);
const RATE = Number(opt.rate || 100);
const DURATION = Math.min(Number(opt.duration || 20), 600) * 1000;
const PAD = 'x'.repeat(Number(opt.payload || 64));
const PID = opt['server-pid'];
const nowUs = () => Number(process.hrtime.bigint() / 1000n) + EPOCH_OFFSET;
const EPOCH_OFFSET = Date.now() * 1000 - Number(process.hrtime.bigint() / 1000n);

function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}
function rssKib(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : null;
}

// Log-bucketed latency histogram (µs), ~1 % resolution.
const buckets = new Float64Array(2400);
let samples = 0;
let maxUs = 0;
function record(us) {
  const b = Math.min(buckets.length - 1, Math.max(0, Math.floor(Math.log(Math.max(us, 1)) * 100)));
  buckets[b]++;
  samples++;
  if (us > maxUs) maxUs = us;
}
function quantile(q) {
  let seen = 0;
  const want = q * samples;
  for (let b = 0; b < buckets.length; b++) {
    seen += buckets[b];
    if (seen >= want && buckets[b] > 0) return Math.exp((b + 0.5) / 100) / 1000;
  }
  return maxUs / 1000;
}

function open(room) {
  return new Promise((resolve, reject) => {
    const s = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, query: room ? { room } : {} });
    s.once('connect', () => resolve(s));
    s.once('connect_error', reject);
  });
}
async function openMany(n, room) {
  const sockets = [];
  for (let i = 0; i < n; i += 200) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 200); j++) batch.push(open(room));
    sockets.push(...(await Promise.all(batch)));
  }
  return sockets;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function fanout() {
  let delivered = 0;
  const subs = await openMany(N, 'news');
  for (const s of subs) s.on('event', (m) => { delivered++; record(Math.max(1, nowUs() - m.t)); });
  const publisher = await open(null);
  await sleep(300);
  const cpu0 = PID ? cpuSeconds(PID) : null;
  const started = Date.now();
  let sent = 0;
  const interval = 1000 / RATE;
  while (Date.now() - started < DURATION) {
    const due = started + sent * interval;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
    publisher.emit('publish', 'news', { t: nowUs(), p: PAD });
    sent++;
  }
  const elapsed = (Date.now() - started) / 1000;
  const expected = sent * N;
  const drainUntil = Date.now() + 5000;
  while (delivered < expected && Date.now() < drainUntil) await sleep(20);
  const out = {
    scenario: 'fanout', server: 'socket.io', params: { url, connections: N, rate: RATE, duration_s: DURATION / 1000 },
    elapsed_s: elapsed, sent, expected, delivered, lost: expected - delivered,
    delivered_per_s: delivered / elapsed,
    latency_ms: { p50_ms: quantile(0.5), p90_ms: quantile(0.9), p99_ms: quantile(0.99), p999_ms: quantile(0.999), max_ms: maxUs / 1000 },
  };
  if (PID) {
    const used = cpuSeconds(PID) - cpu0;
    out.server_cpu_s = used;
    out.server_cpu_s_per_million_deliveries = delivered ? used * 1e6 / delivered : null;
    out.server_rss_kib = rssKib(PID);
  }
  console.log(JSON.stringify(out, null, 2));
  for (const s of subs) s.close();
  publisher.close();
}

async function connect() {
  const before = PID ? rssKib(PID) : null;
  const started = Date.now();
  const sockets = await openMany(N, 'idle');
  const elapsed = (Date.now() - started) / 1000;
  await sleep(Number(opt.hold || 3) * 1000);
  const after = PID ? rssKib(PID) : null;
  console.log(JSON.stringify({
    scenario: 'connect', server: 'socket.io', delivered: sockets.length, connects_per_s: sockets.length / elapsed,
    server_rss_kib_before: before, server_rss_kib_after: after,
    server_rss_kib_per_connection: PID ? (after - before) / sockets.length : null,
  }, null, 2));
  for (const s of sockets) s.close();
}

setTimeout(() => { console.error('client.js: overall timeout'); process.exit(1); }, DURATION + 120000).unref();
(mode === 'fanout' ? fanout() : mode === 'connect' ? connect() : Promise.reject(new Error('mode: fanout|connect')))
  .then(() => process.exit(0))
  .catch((e) => { console.error(e); process.exit(1); });
