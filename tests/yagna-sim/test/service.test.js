'use strict';
// Activity + net: a real calculator server in a VM, reached through the WebSocket tunnel.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

test('activity, VPN and tunnel to a real server in the VM', async (t) => {
  const s = await h.startSim({ providers: 2, wsPingIntervalMs: 200, wsIdleTimeoutMs: 600, tunnelConnectTimeoutMs: 300, tcpTimeoutMs: 1500, tcpKeepAliveMs: 500 });
  t.after(() => s.sim.stop());
  const { api, sim } = s;
  const svc = await h.startService(s);

  await t.test('deploy/start/run results', () => {
    assert.equal(svc.deploy.length, 2);
    assert.deepEqual(svc.deploy.map((r) => r.result), ['Ok', 'Ok']);
    assert.deepEqual(Object.keys(svc.deploy[0]), ['index', 'eventDate', 'result', 'stdout', 'stderr', 'message', 'isBatchFinished']);
    assert.equal(svc.run[0].result, 'Ok'); assert.equal(svc.run[0].isBatchFinished, true);
  });

  await t.test('state, usage, capture, non-zero exit, commandIndex 408', async () => {
    assert.deepEqual((await api('GET', `/activity-api/v1/activity/${svc.act}/state`)).body, { state: ['Ready', null] });
    const u = (await api('GET', `/activity-api/v1/activity/${svc.act}/usage`)).body;
    assert.equal(u.currentUsage.length, 2);
    const r = await h.execWait(api, svc.act, [{ run: { entry_point: '/bin/sh', args: ['-c', 'echo out; echo err >&2; ls /golem/run'], capture: { stdout: { atEnd: {} }, stderr: { stream: {} } } } },
      { run: { entry_point: '/bin/sh', args: ['-c', 'echo nocap'] } }]);
    assert.match(r[0].stdout, /^out\n.*calculator_server\.py/s); assert.equal(r[0].stderr, 'err\n');
    assert.equal(r[1].stdout, null);
    const bad = await h.execWait(api, svc.act, [{ run: { entry_point: '/bin/sh', args: ['-c', 'exit 3'] } }, { run: { entry_point: '/bin/true' } }]);
    assert.equal(bad.length, 1); assert.equal(bad[0].result, 'Error'); assert.equal(bad[0].isBatchFinished, true);
    const b = (await api('POST', `/activity-api/v1/activity/${svc.act}/exec`, { text: JSON.stringify([{ run: { entry_point: '/bin/sleep', args: ['1'] } }]) })).body;
    assert.equal((await api('GET', `/activity-api/v1/activity/${svc.act}/exec/${b}?commandIndex=0&timeout=0.2`)).status, 408);
    assert.deepEqual((await api('GET', `/activity-api/v1/activity/${svc.act}/exec/${b}?timeout=0`)).body, []);
    // the exe-unit runs one stateful command at a time: let the sleep end before the next test
    assert.equal((await api('GET', `/activity-api/v1/activity/${svc.act}/exec/${b}?commandIndex=0&timeout=5`)).body[0].result, 'Ok');
    assert.equal((await api('GET', `/activity-api/v1/activity/${svc.act}/exec/${'0'.repeat(32)}`)).status, 404);
    assert.equal((await api('POST', `/activity-api/v1/activity/${svc.act}/exec`, { text: 'not json' })).status, 400);
    assert.equal((await api('GET', `/activity-api/v1/activity/${'f'.repeat(32)}/state`)).status, 500);
  });

  await t.test('SSE results stream', async () => {
    const b = (await api('POST', `/activity-api/v1/activity/${svc.act}/exec`, { text: JSON.stringify([{ run: { entry_point: '/bin/sh', args: ['-c', 'sleep 0.2; echo hi'], capture: { stdout: { stream: {} } } } }]) })).body;
    const res = await fetch(`${sim.url}/activity-api/v1/activity/${svc.act}/exec/${b}`, { headers: { authorization: `Bearer ${h.KEY}`, accept: 'text/event-stream' } });
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const reader = res.body.getReader(); let text = '';
    while (!text.includes('"finished"')) { const { value, done } = await reader.read(); if (done) break; text += Buffer.from(value).toString(); }
    reader.cancel();
    assert.match(text, /event: runtime\ndata: .*"batch_id"/);
    assert.match(text, /"stdout":"hi\\n"/); assert.match(text, /"return_code":0/);
  });

  await t.test('HTTP/1.1 keep-alive through one tunnel, binary frames', async () => {
    const ws = await h.openTunnel(sim, svc.net.id, svc.ip);
    let r = await h.exchange(ws, 'GET /add/3/4 HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match(r, /^HTTP\/1\.1 200/); assert.match(r, /\r\n\r\n7$/);
    const body = JSON.stringify({ expr: '6*7' });
    r = await h.exchange(ws, `POST /calc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    assert.match(r, /\r\n\r\n42$/);
    r = await h.exchange(ws, 'GET /bytes/200000 HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.ok(Buffer.byteLength(r, 'utf8') > 200000);
    assert.equal(sim.state().tunnels.length, 1);
    ws.close();
    // v2 path works too
    const r2 = await h.httpOverTunnel(sim, svc.net.id, svc.ip, 'GET /mul/6/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', { v2: true });
    assert.match(r2, /\r\n\r\n42$/);
  });

  await t.test('tunnel errors are plain HTTP answers', async () => {
    // a network we do not own, while we own another: 403 with an empty body (§6.1)
    await assert.rejects(h.openTunnel(sim, 'f'.repeat(32), svc.ip), (e) => e.status === 403 && e.body === '');
    await assert.rejects(h.openTunnel(sim, svc.net.id, '1.2.3'), (e) => e.status === 400);
    await assert.rejects(h.openTunnel(sim, svc.net.id, '192.168.0.77'), (e) => e.status === 504);
    // nothing listens on 81: the VM's RST fails the connect at once, before any 101 (§6.4)
    const t0 = Date.now();
    await assert.rejects(h.openTunnel(sim, svc.net.id, svc.ip, 81), (e) => e.status === 400 && JSON.parse(e.body).message === 'Socket closed');
    assert.ok(Date.now() - t0 < 290, `refused at once, not after the 300 ms connect timeout (${Date.now() - t0} ms)`);
    await assert.rejects(h.openTunnel(sim, svc.net.id, svc.ip, 80, { key: 'bad' }), (e) => e.status === 401);
  });

  await t.test('daemon pings and closes a silent client', async () => {
    const before = sim.state().tunnels.length;
    const ws = await h.openTunnel(sim, svc.net.id, svc.ip);
    let pings = 0; ws.on('ping', () => { pings++; });
    await h.waitUntil(() => pings >= 1, 2000);
    ws._socket.pause(); // stop reading: no pongs any more
    await h.waitUntil(() => sim.state().tunnels.length === before, 3000);
    ws.terminate();
    // a client that answers pings stays open
    const ws2 = await h.openTunnel(sim, svc.net.id, svc.ip);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(ws2.readyState, 1);
    ws2.close();
  });

  await t.test('net API: nodes, addresses, no 409, listing', async () => {
    assert.equal((await api('POST', `/net-api/v1/net/${svc.net.id}/addresses`, { ip: '192.168.0.1' })).status, 200);
    assert.equal((await api('POST', `/net-api/v1/net/${svc.net.id}/nodes`, { id: svc.providerId, ip: svc.ip })).status, 200);
    assert.equal((await api('POST', `/net-api/v1/net/${svc.net.id}/nodes`, { id: '0x' + '1'.repeat(40), ip: '127.0.0.1' })).status, 400);
    const nodes = (await api('GET', `/net-api/v1/net/${svc.net.id}/nodes`)).body;
    assert.deepEqual(nodes, [{ id: svc.providerId, ip: svc.ip }]);
    assert.equal(svc.net.ip, '192.168.0.0/24'); assert.equal(svc.net.gateway, '192.168.0.1');
    const r = await h.httpOverTunnel(sim, svc.net.id, svc.ip, 'GET /health HTTP/1.0\r\n\r\n');
    assert.match(r, /ok$/);
  });

  await t.test('destroy activity leaves the tunnel to the TCP timeout (no close frame); network delete', async () => {
    const ws = await h.openTunnel(sim, svc.net.id, svc.ip);
    const closed = new Promise((r) => ws.on('close', (code) => r({ code, at: Date.now() })));
    assert.equal((await api('DELETE', `/activity-api/v1/activity/${svc.act}`)).status, 200);
    const t0 = Date.now();
    ws.send('GET /add/1/1 HTTP/1.1\r\nHost: x\r\n\r\n'); // accepted, dropped
    const c = await closed;
    assert.equal(c.code, 1006); // the daemon sends no close frame
    assert.ok(c.at - t0 >= 1000, `ended by the TCP timeout, after ${c.at - t0} ms`);
    assert.deepEqual((await api('GET', `/activity-api/v1/activity/${svc.act}/state`)).body.state, ['Terminated', null]);
    assert.equal((await api('POST', `/activity-api/v1/activity/${svc.act}/exec`, { text: '[]' })).status, 500);
    assert.equal((await api('DELETE', `/net-api/v1/net/${svc.net.id}`)).status, 200);
    assert.equal((await api('DELETE', `/net-api/v1/net/${svc.net.id}`)).status, 404);
  });

  await t.test('deploy of an unknown image fails like a provider', async () => {
    const d = h.demand({ hash: 'ab'.repeat(28) }, { 'golem.com.payment.debit-notes.accept-timeout?': 240 });
    const neg = await h.negotiate(s, { dem: d });
    const act = await api('POST', '/activity-api/v1/activity', { agreementId: neg.agreementId });
    assert.equal(act.status, 200); assert.match(act.body.activityId, /^[0-9a-f]{32}$/);
    const r = await h.execWait(api, act.body.activityId, [{ deploy: {} }, { start: {} }]);
    assert.equal(r.length, 1); assert.equal(r[0].result, 'Error'); assert.match(r[0].message, /image not found/);
  });
});
