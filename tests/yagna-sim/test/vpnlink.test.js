'use strict';
// --vpn-rtt-ms, --vpn-jitter-ms, --vpn-rate: the VPN leg's delay, jitter and bandwidth apply
// to tunnels (lower bounds only: a busy machine can only add time, never remove it).
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');
const { parseRate, config } = require('../lib/vpnlink');

test('rate and option parsing', () => {
  assert.equal(parseRate('2MB/s'), 2e6);
  assert.equal(parseRate('512KiB/s'), 512 * 1024);
  assert.equal(parseRate('1.5mb'), 1.5e6);
  assert.equal(parseRate('200000'), 200000);
  assert.equal(parseRate(''), 0);
  assert.throws(() => parseRate('fast'), /bad rate/);
  assert.equal(config({}), null);
  assert.deepEqual(config({ vpnRttMs: 100, vpnJitterMs: 10, vpnRate: '2MB/s' }), { rttMs: 100, oneWayMs: 50, jitterMs: 10, rate: 2e6 });
  assert.throws(() => config({ vpnRttMs: -1 }), /negative/);
});

const RTT = 200;
const JITTER = 20;
const RATE = 400e3; // bytes/s
const now = () => Number(process.hrtime.bigint() / 1000000n);

test('VPN latency and bandwidth on the tunnel path', async (t) => {
  const s = await h.startSim({ providers: 1, vpnRttMs: RTT, vpnJitterMs: JITTER, vpnRate: `${RATE / 1000}KB/s` });
  t.after(() => s.sim.stop());
  const svc = await h.startService(s, { providerIndex: 0 });

  await t.test('opening a tunnel pays one round trip (the TCP handshake to the VM)', async () => {
    const t0 = now();
    const ws = await h.openTunnel(s.sim, svc.net.id, svc.ip);
    assert.ok(now() - t0 >= RTT - 2, `open took ${now() - t0} ms`);
    t.ws = ws;
  });

  await t.test('a request on an open tunnel pays one round trip, in order under jitter', async () => {
    for (let i = 0; i < 5; i++) {
      const t0 = now();
      const r = await h.exchange(t.ws, `GET /add/${i}/1 HTTP/1.1\r\nHost: x\r\n\r\n`);
      const took = now() - t0;
      assert.match(r, new RegExp(`\\r\\n\\r\\n${i + 1}$`));
      assert.ok(took >= RTT - 2, `request ${i} took ${took} ms`);
    }
  });

  await t.test('a download is held to the bandwidth cap', async () => {
    const n = 200000; // 0.5 s at the cap
    const t0 = now();
    const r = await h.exchange(t.ws, `GET /bytes/${n} HTTP/1.1\r\nHost: x\r\n\r\n`, 20000);
    const took = now() - t0;
    assert.match(r, /200 OK/);
    assert.ok(took >= RTT + (n / RATE) * 1000 - 5, `${n} B took ${took} ms`);
  });

  await t.test('an upload is held to the bandwidth cap', async () => {
    const n = 200000;
    const t0 = now();
    const r = await h.exchange(t.ws, `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: ${n}\r\n\r\n${'a'.repeat(n)}`, 20000);
    const took = now() - t0;
    assert.match(r, /200 OK/);
    // the echo comes back base64'd and as text: more bytes back than went up, so at least twice n
    assert.ok(took >= RTT + ((2 * n) / RATE) * 1000 - 5, `${n} B up took ${took} ms`);
  });

  await t.test('a close from the VM side arrives after the data before it', async () => {
    const ws = await h.openTunnel(s.sim, svc.net.id, svc.ip);
    const r = await h.exchange(ws, 'GET /bytes/50000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 20000);
    assert.match(r, /200 OK/);
    assert.ok(r.length >= 50000, `only ${r.length} characters before the close`);
    ws.close();
  });
  t.ws.close();
});
