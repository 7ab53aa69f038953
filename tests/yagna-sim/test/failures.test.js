'use strict';
// How the real network fails (PROTOCOL.md §9): a provider that vanishes, one whose state flaps,
// tunnel connects that hang or are refused, VM connections kept after the WebSocket ends, and
// the daemon crashing and restarting.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const timed = async (p) => { const t0 = Date.now(); const v = await p; return { v, ms: Date.now() - t0 }; };
const closedCode = (ws) => new Promise((r) => ws.on('close', (code) => r({ code, at: Date.now() })));

async function vmTcpConnections(api, act) {
  // ESTABLISHED sockets on the VM's port 80, read inside the VM; without network namespaces
  // (fallback mode, e.g. in a chroot) the service listens on a remapped port of the host
  const st = (await api('GET', '/_sim/state')).body.activities.find((a) => a.activityId === act);
  const port = (st && st.vm.port80 ? st.vm.port80 : 80).toString(16).toUpperCase().padStart(4, '0');
  const r = await h.execWait(api, act, [{ run: { entry_point: '/bin/cat', args: ['/proc/net/tcp'], capture: { stdout: { atEnd: {} } } } }]);
  const listening = new RegExp(` [0-9A-F]{8}:${port} [0-9A-F]{8}:[0-9A-F]{4} 01 `);
  return r[0].stdout.split('\n').filter((l) => listening.test(l)).length;
}

test('failure faults', async (t) => {
  const s = await h.startSim({
    providers: 3, tunnelConnectTimeoutMs: 400, tcpTimeoutMs: 1500, tcpKeepAliveMs: 500, vmFinTimeoutMs: 400,
    wsPingIntervalMs: 200, wsIdleTimeoutMs: 5000, relayTimeoutMarginMs: 300,
  });
  t.after(() => s.sim.stop());
  const { api, sim } = s;
  const fault = h.faulter(api);
  const svc = await h.startService(s, { providerIndex: 0 });
  const GET = 'GET /add/2/3 HTTP/1.1\r\nHost: x\r\n\r\n';

  await t.test('vanish: tunnels stay open and pinged, nothing arrives, the TCP timeout ends them', async () => {
    const ws = await h.openTunnel(sim, svc.net.id, svc.ip);
    assert.match(await h.exchange(ws, GET), /5$/);
    let pings = 0; ws.on('ping', () => { pings++; });
    let got = 0; ws.on('message', () => { got++; });
    const closed = closedCode(ws);
    const t0 = Date.now();
    await fault({ provider: 0, fault: 'vanish' });
    ws.send(GET); // accepted, never answered
    const c = await closed;
    assert.equal(c.code, 1006, 'no close frame');
    assert.ok(c.at - t0 >= 1400, `ended by the TCP timeout (${c.at - t0} ms)`);
    assert.equal(got, 0, 'no byte from the vanished provider');
    assert.ok(pings >= 3, `the local daemon kept pinging (${pings})`);
    assert.equal(sim.state().tunnelHistory.at(-1).closeReason, 'TCP timeout');
  });

  await t.test('vanish: relayed calls 408 after timeout + margin; agreement events say nothing; terminate 500', async () => {
    const base = `/activity-api/v1/activity/${svc.act}`;
    let r = await timed(api('GET', `${base}/state?timeout=0.3`));
    assert.equal(r.v.status, 408); assert.deepEqual(r.v.body, { message: 'Timeout' });
    assert.ok(r.ms >= 550, `${r.ms} ms`);
    const b = (await api('POST', `${base}/exec?timeout=0.2`, { text: '[]' }));
    assert.equal(b.status, 408);
    r = await timed(api('GET', `${base}/usage?timeout=0.2`));
    assert.equal(r.v.status, 408);
    const since = new Date().toISOString();
    const term = await api('POST', `/market-api/v1/agreements/${svc.agreementId}/terminate`, { message: 'x' });
    assert.equal(term.status, 500);
    assert.equal((await api('GET', `/market-api/v1/agreements/${svc.agreementId}`)).body.state, 'Approved');
    // the provider's own termination is retried on its schedule until the link is back (§9.1):
    // the market's terminate from 5 s, the payment module's final debit note from 3 s (x [0.5, 1.5))
    const tBreak = Date.now();
    await fault({ provider: 0, fault: 'terminateAgreements', inMs: 0 });
    const held = async () => (await api('GET', '/_sim/providers')).body[0].held;
    const h0 = await held();
    assert.deepEqual(h0.map((x) => x.kind).sort(), ['payment', 'terminate'], JSON.stringify(h0)); // the invoice waits for the note
    assert.equal(h0.find((x) => x.kind === 'payment').debitNoteFor, svc.act);
    const after = (x) => Date.parse(x.nextAttemptAt) - tBreak;
    const term0 = h0.find((x) => x.kind === 'terminate'); const note0 = h0.find((x) => x.kind === 'payment');
    assert.ok(after(term0) >= 2400 && after(term0) <= 7600, `terminate retried after ${after(term0)} ms`);
    assert.ok(after(note0) >= 1400 && after(note0) <= 4600, `debit note retried after ${after(note0)} ms`);
    const ev = await api('GET', `/market-api/v1/agreementEvents?timeout=0.5&afterTimestamp=${encodeURIComponent(since)}`);
    assert.deepEqual(ev.body, []);
    // new tunnels: no SYN-ACK -> 504 after the connect timeout
    const t0 = Date.now();
    await assert.rejects(h.openTunnel(sim, svc.net.id, svc.ip), (e) => e.status === 504 && e.body === '');
    assert.ok(Date.now() - t0 >= 380);
    // mode unreachable: at once 500 net error
    await fault({ provider: 0, fault: 'vanish', mode: 'unreachable' });
    const u = await api('GET', `${base}/state`);
    assert.equal(u.status, 500); assert.match(u.body.message, /^GSB error: GSB failure: Net: error forwarding message/);
    // the payment module's retry failed meanwhile: the next one comes 1.5 times later
    await h.waitUntil(async () => (await held()).some((x) => x.kind === 'payment' && x.attempts === 2), 5000, 50);
    const note1 = (await held()).find((x) => x.kind === 'payment');
    const gap = Date.parse(note1.nextAttemptAt) - Date.parse(note0.nextAttemptAt);
    assert.ok(gap >= 0.5 * 4500 - 100 && gap <= 1.5 * 4500 + 100, `second debit-note retry ${gap} ms after the first`);
    // back: nothing arrives before each item's next attempt, then the termination, the note and the invoice do
    await fault({ provider: 0, fault: 'clear' });
    const h1 = await held();
    const due = (kind) => Date.parse(h1.find((x) => x.kind === kind).nextAttemptAt);
    assert.equal((await api('GET', `/market-api/v1/agreements/${svc.agreementId}`)).body.state, 'Approved', 'the link is back, the retry is not due');
    // both watched at once: waiting for one first would time the other late. The bound follows
    // the retries' own (random, backed-off) due times, which can lie over 10 s ahead.
    const waitMs = (kind) => Math.max(0, due(kind) - Date.now()) + 2000;
    const [termAt, noteAt] = await Promise.all([
      h.waitUntil(async () => (await api('GET', `/market-api/v1/agreements/${svc.agreementId}`)).body.state === 'Terminated' && Date.now(), waitMs('terminate'), 25),
      h.waitUntil(async () => (await api('GET', '/payment-api/v1/invoices')).body.some((i) => i.agreementId === svc.agreementId) && Date.now(), waitMs('payment'), 25),
    ]);
    assert.ok(termAt >= due('terminate') - 30 && termAt <= due('terminate') + 1000, `terminated ${termAt - due('terminate')} ms after its retry was due`);
    assert.ok(noteAt >= due('payment') - 30 && noteAt <= due('payment') + 1000, `the invoice came ${noteAt - due('payment')} ms after the note's retry was due`);
    const notes = (await api('GET', '/payment-api/v1/debitNotes')).body.filter((d) => d.activityId === svc.act);
    assert.ok(Date.parse(notes.at(-1).timestamp) >= due('payment') - 30, 'the final note arrived at its retry');
    const ev2 = await api('GET', `/market-api/v1/agreementEvents?timeout=0&afterTimestamp=${encodeURIComponent(since)}`);
    const te = ev2.body.find((e) => e.eventType === 'AgreementTerminatedEvent' && e.agreementId === svc.agreementId);
    assert.ok(te, JSON.stringify(ev2.body)); assert.equal(te.terminator, 'Provider'); assert.equal(te.reason['golem.provider.code'], 'Expired');
    assert.ok(Date.parse(te.eventDate) >= due('terminate') - 30, 'stamped at the attempt that got through');
    assert.deepEqual(await held(), []);
  });

  const svc1 = await h.startService(s, { providerIndex: 1 });

  await t.test('vanish for a while: TCP delivers what was held once the provider is back', async () => {
    const ws = await h.openTunnel(sim, svc1.net.id, svc1.ip);
    // timed from before the fault is asked for: its 500 ms run from the stand-in taking it,
    // which on a busy machine can be well before its answer reaches us
    const t0 = Date.now();
    await fault({ provider: 1, fault: 'vanish', durationMs: 500 });
    const v = await h.exchange(ws, GET, 5000);
    assert.match(v, /5$/); assert.ok(Date.now() - t0 >= 490, `${Date.now() - t0} ms`);
    assert.equal(ws.readyState, 1);
    ws.close();
  });

  await t.test('unresponsive: the state flaps, state calls intermittently 408 or 500 GSB error', async () => {
    await fault({ provider: 1, fault: 'unresponsive', periodMs: 150 });
    const seen = { Unresponsive: 0, Ready: 0, 408: 0, 500: 0 };
    const all = () => seen.Unresponsive > 0 && seen.Ready > 0 && seen[408] > 0 && seen[500] > 0;
    for (let i = 0; i < 40 && !all(); i++) {
      const r = await api('GET', `/activity-api/v1/activity/${svc1.act}/state?timeout=0.1`);
      if (r.status === 200) seen[r.body.state[0]]++;
      else {
        seen[r.status]++;
        if (r.status === 500) assert.match(r.body.message, /^GSB error/);
        if (r.status === 408) assert.deepEqual(r.body, { message: 'Timeout' });
      }
      await sleep(20 + Math.floor(Math.random() * 200)); // no aliasing with the flap period
    }
    assert.ok(seen.Unresponsive > 0 && seen.Ready > 0 && seen[408] > 0 && seen[500] > 0, JSON.stringify(seen));
    await fault({ provider: 1, fault: 'clear' });
    assert.deepEqual((await api('GET', `/activity-api/v1/activity/${svc1.act}/state`)).body.state, ['Ready', null]);
  });

  await t.test('tunnel connects: slow -> 504 after the connect timeout; refused -> 400 Socket closed at once', async () => {
    await fault({ provider: 1, fault: 'slowConnect' });
    let t0 = Date.now();
    await assert.rejects(h.openTunnel(sim, svc1.net.id, svc1.ip), (e) => e.status === 504);
    assert.ok(Date.now() - t0 >= 380);
    await fault({ provider: 1, fault: 'slowConnect', ms: 150 }); // slow but in time
    t0 = Date.now();
    assert.match(await h.httpOverTunnel(sim, svc1.net.id, svc1.ip, GET), /5$/);
    assert.ok(Date.now() - t0 >= 140);
    await fault({ provider: 1, fault: 'refuseConnect' });
    try {
      t0 = Date.now();
      await assert.rejects(h.openTunnel(sim, svc1.net.id, svc1.ip), (e) => e.status === 400 && JSON.parse(e.body).message === 'Socket closed');
      // the 400 is the refusal's own answer (a timeout answers 504); this only says it did not
      // wait for the 400 ms connect timeout, with room for a busy machine
      assert.ok(Date.now() - t0 < 380, `${Date.now() - t0} ms`);
    } finally {
      await fault({ provider: 1, fault: 'clear' }); // a failed check must not leak the fault into the next tests
    }
  });

  await t.test('closing a tunnel WebSocket leaves the accepted connection in the VM', async () => {
    // counted once the earlier tests' connections have settled (one still closing would make
    // the count drop while this one is kept)
    let before = await vmTcpConnections(api, svc1.act);
    for (let i = 0; i < 20; i++) {
      await sleep(150);
      const now = await vmTcpConnections(api, svc1.act);
      if (now === before) break;
      before = now;
    }
    const ws = await h.openTunnel(sim, svc1.net.id, svc1.ip);
    assert.match(await h.exchange(ws, GET), /5$/);
    const closed = closedCode(ws);
    ws.close();
    await closed;
    await sleep(200);
    assert.equal(await vmTcpConnections(api, svc1.act), before + 1, 'the VM still holds the idle connection');
    assert.ok(sim.state().vmConnectionsKept >= 1);
  });

  await t.test('a FIN from the VM is not reported; the next client data draws an RST', async () => {
    const ws = await h.openTunnel(sim, svc1.net.id, svc1.ip);
    const closed = closedCode(ws);
    const r = await h.exchange(ws, 'GET /add/1/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(r, /2$/);
    await sleep(150);
    assert.equal(ws.readyState, 1, 'still open after the server closed');
    ws.send(GET);
    const c = await closed;
    assert.equal(c.code, 1006);
    // a FIN with a silent client: the keep-alive probe after the VM's FIN-WAIT-2 timeout draws the RST
    const ws2 = await h.openTunnel(sim, svc1.net.id, svc1.ip);
    const closed2 = closedCode(ws2);
    const t0 = Date.now();
    await h.exchange(ws2, 'GET /add/1/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const c2 = await closed2;
    assert.equal(c2.code, 1006); assert.ok(c2.at - t0 >= 450, `${c2.at - t0} ms`);
  });

  await t.test('RemoveNode leaves the tunnel open, its packets dropped; adding the node back lets them through', async () => {
    const ws = await h.openTunnel(sim, svc1.net.id, svc1.ip);
    assert.equal((await api('DELETE', `/net-api/v1/net/${svc1.net.id}/nodes/${svc1.providerId}`)).status, 200);
    assert.equal((await api('DELETE', `/net-api/v1/net/${svc1.net.id}/nodes/0x${'7'.repeat(40)}`)).status, 200);
    const pending = h.exchange(ws, GET, 5000);
    await sleep(300);
    assert.equal(ws.readyState, 1);
    assert.equal((await api('POST', `/net-api/v1/net/${svc1.net.id}/nodes`, { id: svc1.providerId, ip: svc1.ip })).status, 200);
    assert.match(await pending, /5$/);
    // removed for good: the TCP timeout ends it
    const closed = closedCode(ws);
    await api('DELETE', `/net-api/v1/net/${svc1.net.id}/nodes/${svc1.providerId}`);
    ws.send(GET);
    assert.equal((await closed).code, 1006);
    await api('POST', `/net-api/v1/net/${svc1.net.id}/nodes`, { id: svc1.providerId, ip: svc1.ip });
  });

  await t.test('daemon crash and restart: refused while down; what is on disk survives, the rest is gone', async () => {
    const ws = await h.openTunnel(sim, svc1.net.id, svc1.ip);
    const closed = closedCode(ws);
    const sub = (await api('POST', '/market-api/v1/demands', h.demand(s.calc))).body;
    const allocs = (await api('GET', '/payment-api/v1/allocations')).body;
    const evsBefore = (await api('GET', '/market-api/v1/agreementEvents?timeout=0')).body;
    await sim.crash();
    assert.equal((await closed).code, 1006);
    await assert.rejects(fetch(`${sim.url}/me`), (e) => /ECONNREFUSED/.test(String(e.cause && e.cause.code)));
    await sim.restart();
    assert.equal((await api('GET', '/me')).status, 200);
    assert.equal((await api('GET', `/market-api/v1/agreements/${svc1.agreementId}`)).body.state, 'Approved');
    assert.deepEqual((await api('GET', `/activity-api/v1/activity/${svc1.act}/state`)).body.state, ['Ready', null]);
    assert.deepEqual((await api('GET', '/payment-api/v1/allocations')).body, allocs);
    assert.deepEqual((await api('GET', '/market-api/v1/agreementEvents?timeout=0')).body, evsBefore);
    assert.equal((await api('GET', `/market-api/v1/demands/${sub}/events?timeout=0`)).status, 404);
    assert.equal((await api('GET', `/net-api/v1/net/${svc1.net.id}`)).status, 404);
    assert.deepEqual(sim.state().tunnels, []);
    // the admin fault: answered, then down for downMs, then back
    assert.equal((await api('POST', '/_sim/fault', { fault: 'restart', downMs: 300 })).status, 200);
    await sleep(120);
    await assert.rejects(fetch(`${sim.url}/me`));
    await h.waitUntil(async () => { try { return (await api('GET', '/me')).status === 200; } catch { return false; } }, 5000);
    assert.equal(sim.state().restarts, 2);
    // the service is still there for a new network
    const net = (await api('POST', '/net-api/v1/net', { ip: '192.168.0.0/24' })).body;
    await api('POST', `/net-api/v1/net/${net.id}/nodes`, { id: svc1.providerId, ip: svc1.ip });
    assert.match(await h.httpOverTunnel(sim, net.id, svc1.ip, GET), /5$/);
  });
});

test('a provider that cannot reach the requestor past the accept timeout breaks: RequestorUnreachable', async (t) => {
  const s = await h.startSim({ providers: 1, debitNoteInterval: 0.3, acceptTimeout: 5 });
  t.after(() => s.sim.stop());
  const { api } = s;
  const alloc = (await api('POST', '/payment-api/v1/allocations', { totalAmount: '1', paymentPlatform: 'erc20-holesky-tglm' })).body;
  const neg = await h.negotiate(s);
  assert.equal((await api('POST', '/activity-api/v1/activity', neg.agreementId)).status, 200);
  await h.faulter(api)({ provider: 0, fault: 'vanish' });
  const t0 = Date.now();
  // what arrived before is accepted (recorded locally), so no DebitNotesDeadline
  for (const d of (await api('GET', '/payment-api/v1/debitNotes')).body) {
    assert.equal((await api('POST', `/payment-api/v1/debitNotes/${d.debitNoteId}/accept`, { totalAmountAccepted: d.totalAmountDue, allocationId: alloc.allocationId })).status, 200);
  }
  await h.waitUntil(() => s.sim.market.agreements.get(neg.agreementId).providerEnded, 9000, 100);
  assert.ok(Date.now() - t0 >= 4500, `${Date.now() - t0} ms`);
  assert.equal((await api('GET', `/market-api/v1/agreements/${neg.agreementId}`)).body.state, 'Approved', 'the requestor has not heard yet');
  // the provider retries the termination (its delivery at the retry: the 'vanish' test above)
  const held = (await api('GET', '/_sim/providers')).body[0].held.find((x) => x.kind === 'terminate');
  assert.equal(held.agreementId, neg.agreementId);
  assert.deepEqual(held.reason, { message: 'Requestor is unreachable more than 5s', 'golem.provider.code': 'RequestorUnreachable' });
});

test('unresponsive: an exe-unit that stops reporting reads Unresponsive, then the provider destroys it', async (t) => {
  // yagna's limits near their minimum (UNRESPONSIVE/INACTIVITY_LIMIT_SECONDS >= 2), a short SIGKILL delay
  const s = await h.startSim({
    providers: 3, unresponsiveLimitSec: 2, inactivityLimitSec: 5, processTerminationTimeoutSec: 0.5, idleAgreementTimeoutSec: 3, relayTimeoutMarginMs: 300,
  });
  t.after(() => s.sim.stop());
  const { api, sim } = s;
  const fault = h.faulter(api);
  const single = h.demand(s.calc, { 'golem.com.payment.debit-notes.accept-timeout?': sim.opts.acceptTimeout });
  delete single.properties['golem.srv.caps.multi-activity'];
  // 0 recovers before the destroy, 1 (multi-activity) and 2 (single-activity) are destroyed
  const [back, multi, one] = await Promise.all([0, 1, 2].map((i) => h.startService(s, { providerIndex: i, dem: i === 2 ? single : null })));
  const state = async (x) => (await api('GET', `/activity-api/v1/activity/${x.act}/state`)).body;
  const usage = async (x) => (await api('GET', `/activity-api/v1/activity/${x.act}/usage`)).body;
  const GET = 'GET /add/2/3 HTTP/1.1\r\nHost: x\r\n\r\n';
  const since = new Date().toISOString();
  const ws = await h.openTunnel(sim, back.net.id, back.ip);
  const t0 = Date.now();
  await fault({ provider: '*', fault: 'unresponsive' });

  // reports resume before the destroy: the state is back, calls flow again
  await h.waitUntil(async () => (await state(back)).state[0] === 'Unresponsive', 6000, 50);
  assert.ok(Date.now() - t0 > 900, `Unresponsive after ${Date.now() - t0} ms (limit 2 s, whole seconds)`);
  assert.deepEqual((await state(back)).state, ['Unresponsive', null]);
  const ex = await timed(api('POST', `/activity-api/v1/activity/${back.act}/exec?timeout=0.2`, { text: '[]' }));
  assert.equal(ex.v.status, 408); assert.ok(ex.ms >= 450, `${ex.ms} ms`); // the exe-unit does not answer
  const u1 = await usage(back);
  const pending = h.exchange(ws, GET, 6000); // its VPN packets wait too
  await sleep(500);
  assert.deepEqual(await usage(back), u1, 'the last report, kept');
  await fault({ provider: 0, fault: 'unresponsive', off: true });
  assert.deepEqual((await state(back)).state, ['Ready', null]);
  assert.match(await pending, /5$/);
  ws.close();

  // no report for longer than the inactivity limit: destroyed (execution aborted)
  const end = await h.waitUntil(async () => { const st = await state(multi); return st.state[0] === 'Terminated' && st; }, 9000, 50);
  const tEnd = Date.now();
  assert.ok(tEnd - t0 > 4400, `destroyed after ${tEnd - t0} ms (limit 5 s + SIGKILL 0.5 s)`);
  assert.deepEqual(end, { state: ['Terminated', null], reason: 'execution aborted', errorMessage: 'exit code None' });
  const gone = await api('POST', `/activity-api/v1/activity/${multi.act}/exec`, { text: '[]' });
  assert.equal(gone.status, 500); assert.match(gone.body.message, /endpoint address not found/);
  assert.equal((await h.execWait(api, back.act, [{ run: { entry_point: '/bin/true', args: [] } }]))[0].result, 'Ok', 'the recovered one lives on');
  // single-activity agreement: the provider closes it (Success) once its activity is destroyed
  const evs = async () => (await api('GET', `/market-api/v1/agreementEvents?timeout=0&afterTimestamp=${encodeURIComponent(since)}`)).body;
  const ended = (x) => async () => (await evs()).find((e) => e.eventType === 'AgreementTerminatedEvent' && e.agreementId === x.agreementId);
  const ts = await h.waitUntil(ended(one), 4000, 50);
  assert.equal(ts.terminator, 'Provider');
  assert.deepEqual(ts.reason, { message: 'Finished with success.', 'golem.provider.code': 'Success' });
  // multi-activity: it stays Approved; no activity for idleAgreementTimeoutSec -> NoActivity
  assert.equal((await api('GET', `/market-api/v1/agreements/${multi.agreementId}`)).body.state, 'Approved');
  const tn = await h.waitUntil(ended(multi), 5000, 50);
  assert.equal(tn.reason['golem.provider.code'], 'NoActivity');
  assert.ok(Date.now() - tEnd >= 2000, 'NoActivity counts from the destroy');
  assert.equal((await ended(back)()), undefined);
  // the final debit notes were sent, billed to the last report
  const notes = (await api('GET', '/payment-api/v1/debitNotes')).body;
  for (const x of [multi, one]) assert.ok(notes.some((d) => d.activityId === x.act));
  assert.equal((await api('DELETE', `/activity-api/v1/activity/${multi.act}`)).status, 200);
});
