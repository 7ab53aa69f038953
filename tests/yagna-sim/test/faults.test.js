'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

test('fault injection', async (t) => {
  const s = await h.startSim({ providers: 3, tunnelConnectTimeoutMs: 300, tcpTimeoutMs: 1000, tcpKeepAliveMs: 250 });
  t.after(() => s.sim.stop());
  const { api, sim } = s;
  const fault = h.faulter(api);

  await t.test('admin routes need the app key; unknown fault 400', async () => {
    assert.equal((await api('POST', '/_sim/fault', { fault: 'crashVm', provider: 0 }, { key: null })).status, 401);
    assert.equal((await api('POST', '/_sim/fault', { fault: 'nope', provider: 0 })).status, 400);
  });

  await t.test('killService: the server dies, the VM stays', async () => {
    const svc = await h.startService(s, { providerIndex: 0 });
    await fault({ provider: 0, fault: 'killService' });
    await new Promise((r) => setTimeout(r, 200));
    // nothing listens on port 80 any more: the VM answers the SYN with an RST
    await assert.rejects(h.openTunnel(sim, svc.net.id, svc.ip), (e) => e.status === 400 && /Socket closed/.test(e.body));
    assert.deepEqual((await api('GET', `/activity-api/v1/activity/${svc.act}/state`)).body.state, ['Ready', null]);
    // restart it: run again works
    const r = await h.execWait(api, svc.act, [{ run: { entry_point: '/bin/sh', args: ['-c', 'python3 /golem/run/calculator_server.py --port 80 >/dev/null 2>&1 &'] } }]);
    assert.equal(r[0].result, 'Ok');
    await h.waitUntil(async () => { try { return (await h.httpOverTunnel(sim, svc.net.id, svc.ip, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n')).includes('ok'); } catch { return false; } });
    t.svc0 = svc;
  });

  await t.test('dropTunnels and tunnelDelay', async () => {
    const svc = t.svc0;
    const ws = await h.openTunnel(sim, svc.net.id, svc.ip);
    const closed = new Promise((r) => ws.on('close', r));
    const rep = await fault({ provider: sim.providers[0].nodeId, fault: 'dropTunnels' });
    assert.equal(rep.affected, 1);
    await closed;
    await fault({ provider: sim.providers[0].name, fault: 'tunnelDelay', ms: 400 });
    const t0 = Date.now();
    const r = await h.httpOverTunnel(sim, svc.net.id, svc.ip, 'GET /add/1/1 HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match(r, /2$/); assert.ok(Date.now() - t0 >= 380);
    await fault({ provider: 0, fault: 'tunnelDelay', ms: 0 });
  });

  await t.test('crashVm: activity Terminated (execution aborted), the multi-activity agreement stays; the tunnel ends by the TCP timeout', async () => {
    const svc = t.svc0;
    const ws = await h.openTunnel(sim, svc.net.id, svc.ip);
    const closed = new Promise((r) => ws.on('close', (code) => r(code)));
    const t0 = Date.now();
    await fault({ provider: 0, fault: 'crashVm' });
    assert.equal(await closed, 1006); // no close frame
    assert.ok(Date.now() - t0 >= 900, `the tunnel outlived the VM by the TCP timeout (${Date.now() - t0} ms)`);
    await h.waitUntil(async () => (await api('GET', `/activity-api/v1/activity/${svc.act}/state`)).body.state[0] === 'Terminated');
    const as = (await api('GET', `/activity-api/v1/activity/${svc.act}/state`)).body;
    assert.equal(as.reason, 'execution aborted'); assert.equal(as.errorMessage, 'exit code None');
    // ya-provider keeps a multi-activity agreement (NoActivity would follow after 90 s): the
    // requestor must notice from the state and end it itself
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await api('GET', `/market-api/v1/agreements/${svc.agreementId}`)).body.state, 'Approved');
    assert.equal((await api('POST', `/market-api/v1/agreements/${svc.agreementId}/terminate`, { message: 'VM lost' })).status, 200);
    await h.waitUntil(() => sim.state().payments.invoices.some((i) => i.agreementId === svc.agreementId), 10000);
    assert.equal(sim.state().agreements.find((a) => a.agreementId === svc.agreementId).terminatedBy, 'Requestor');
    const ex = await api('POST', `/activity-api/v1/activity/${svc.act}/exec`, { text: '[]' });
    assert.equal(ex.status, 500); assert.match(ex.body.message, /GSB error.*endpoint address not found/);
  });

  await t.test('failActivityCreate', async () => {
    await fault({ provider: 1, fault: 'failActivityCreate', count: 1 });
    const neg = await h.negotiate(s, { providerIndex: 1 });
    assert.equal((await api('POST', '/activity-api/v1/activity', neg.agreementId)).status, 500);
    assert.equal((await api('POST', '/activity-api/v1/activity', neg.agreementId)).status, 200);
    // free the provider (one agreement at a time)
    assert.equal((await api('POST', `/market-api/v1/agreements/${neg.agreementId}/terminate`, { message: 'done' })).status, 200);
  });

  await t.test('proposals rejected / ignored; agreements rejected', async () => {
    await fault({ provider: 2, fault: 'proposals', mode: 'reject' });
    const d = h.demand(s.calc, { 'golem.com.payment.debit-notes.accept-timeout?': 60 });
    const sub = (await api('POST', '/market-api/v1/demands', d)).body;
    const offers = await h.collect(api, sub, 3);
    const p2 = offers.find((e) => e.proposal.issuerId === sim.providers[2].nodeId);
    const cp = { ...d.properties, 'golem.com.payment.chosen-platform': 'erc20-holesky-tglm' };
    const c = (await api('POST', `/market-api/v1/demands/${sub}/proposals/${p2.proposal.proposalId}`, { properties: cp, constraints: d.constraints })).body;
    const [rej] = await h.collect(api, sub, 1);
    assert.equal(rej.eventType, 'ProposalRejectedEvent'); assert.equal(rej.proposalId, c);
    await fault({ provider: 2, fault: 'proposals', mode: 'ignore' });
    const sub2 = (await api('POST', '/market-api/v1/demands', d)).body;
    const o2 = (await h.collect(api, sub2, 3)).find((e) => e.proposal.issuerId === sim.providers[2].nodeId);
    await api('POST', `/market-api/v1/demands/${sub2}/proposals/${o2.proposal.proposalId}`, { properties: d.properties, constraints: d.constraints });
    assert.deepEqual((await api('GET', `/market-api/v1/demands/${sub2}/events?timeout=0.5`)).body, []);
    await fault({ provider: 2, fault: 'proposals', mode: 'draft' });
    await fault({ provider: 2, fault: 'agreements', mode: 'reject' });
    await assert.rejects(h.negotiate(s, { providerIndex: 2 }), /wait 410/);
    await fault({ provider: 2, fault: 'clear' });
  });

  await t.test('route faults: 500 and stall', async () => {
    await fault({ fault: 'route', method: 'GET', path: '^/me$', status: 500, count: 2 });
    assert.equal((await api('GET', '/me')).status, 500);
    assert.equal((await api('GET', '/me')).status, 500);
    assert.equal((await api('GET', '/me')).status, 200);
    await fault({ fault: 'route', path: '/version/get', stallMs: 300, status: 0, count: 1 });
    const t0 = Date.now();
    assert.equal((await api('GET', '/version/get')).status, 200);
    assert.ok(Date.now() - t0 >= 280);
  });

  await t.test('terminateAgreements: provider ends agreements at a given time', async () => {
    const neg = await h.negotiate(s, { providerIndex: 1 });
    const act = (await api('POST', '/activity-api/v1/activity', neg.agreementId)).body;
    await fault({ provider: 1, fault: 'terminateAgreements', inMs: 300 });
    await h.waitUntil(async () => (await api('GET', `/market-api/v1/agreements/${neg.agreementId}`)).body.state === 'Terminated', 3000);
    assert.deepEqual((await api('GET', `/activity-api/v1/activity/${act}/state`)).body.state, ['Terminated', null]);
    const reason = (await api('GET', `/market-api/v1/agreements/${neg.agreementId}/terminate/reason`)).body;
    assert.match(reason.message, /expired/);
  });
});
