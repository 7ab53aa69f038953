'use strict';
// `vmMode: 'shared'` (scale/bench mode): the VMs of 20 providers are served by one host process,
// yet each provider keeps its own agreement, activity, VPN IP, tunnels, service state, faults and
// debit notes.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');
const { servicePort } = require('../lib/shared-vm');
const { evaluate } = require('../lib/calc-service');

const N = 20;
const get = (p) => `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`;
const bodyOf = (r) => r.slice(r.indexOf('\r\n\r\n') + 4);
const vmInfo = async (ws) => JSON.parse(bodyOf(await h.exchange(ws, get('/_vm'))));

test('shared-service mode: 20 providers, one host process', async (t) => {
  const s = await h.startSim({
    providers: N, vmMode: 'shared', debitNoteInterval: 0.3, tunnelConnectTimeoutMs: 400, vmFinTimeoutMs: 300, tcpKeepAliveMs: 200, tcpTimeoutMs: 1500,
  });
  t.after(() => s.sim.stop());
  const { api, sim } = s;
  const fault = h.faulter(api);
  const svcs = [];
  // a few at a time: each negotiates with its own provider, in its own network
  for (let i = 0; i < N; i += 5) svcs.push(...await Promise.all([0, 1, 2, 3, 4].map((k) => h.startService(s, { providerIndex: i + k }))));

  await t.test('every provider has its own agreement, activity and VM; one host serves them all', async () => {
    const st = (await api('GET', '/_sim/state')).body;
    assert.equal(st.vmMode, 'shared');
    assert.equal(new Set(svcs.map((v) => v.agreementId)).size, N);
    assert.equal(new Set(svcs.map((v) => v.act)).size, N);
    assert.equal(new Set(svcs.map((v) => v.providerId)).size, N);
    for (const v of svcs) {
      const a = st.activities.find((x) => x.activityId === v.act);
      assert.deepEqual(a.state, ['Ready', null]);
      assert.equal(a.providerId, v.providerId);
      assert.equal(a.vm.shared, true);
      assert.equal(a.vm.alive, true);
      assert.deepEqual(v.run.map((r) => r.result), ['Ok']);
    }
    assert.equal(sim.sharedHost.vms.size, N);
    assert.ok(sim.sharedHost.proc.pid > 0);
  });

  await t.test('requests through each VM\'s tunnels reach that VM\'s service', async () => {
    const wss = await Promise.all(svcs.map((v) => h.openTunnel(sim, v.net.id, v.ip)));
    try {
      const infos = await Promise.all(wss.map(vmInfo));
      infos.forEach((inf, i) => {
        assert.equal(inf.activityId, svcs[i].act);
        assert.equal(inf.providerId, svcs[i].providerId);
      });
      const sums = await Promise.all(wss.map((ws, i) => h.exchange(ws, get(`/add/${i}/1000`))));
      sums.forEach((r, i) => assert.equal(bodyOf(r), String(1000 + i)));
    } finally { for (const ws of wss) ws.close(); }
    // 8 tunnel connections into one VM: one service, its own request count
    const eight = await Promise.all(Array.from({ length: 8 }, () => h.openTunnel(sim, svcs[3].net.id, svcs[3].ip)));
    const before = (await vmInfo(eight[0])).requests;
    const answers = await Promise.all(eight.map((ws, k) => h.exchange(ws, get(`/mul/${k}/7`))));
    answers.forEach((r, k) => assert.equal(bodyOf(r), String(7 * k)));
    assert.equal((await vmInfo(eight[1])).requests, before + 8 + 1);
    for (const ws of eight) ws.close();
  });

  await t.test('killService on one provider stops only its service', async () => {
    const victim = svcs[5]; const other = svcs[6];
    const wsV = await h.openTunnel(sim, victim.net.id, victim.ip);
    const wsO = await h.openTunnel(sim, other.net.id, other.ip);
    assert.equal(bodyOf(await h.exchange(wsV, get('/add/1/1'))), '2');
    const otherBefore = (await vmInfo(wsO)).requests;
    assert.equal((await fault({ provider: victim.providerId, fault: 'killService' })).affected, 1);
    // its keep-alive connection got a FIN: the next request draws the RST that ends the tunnel
    const closed = new Promise((r) => wsV.on('close', r));
    wsV.send(Buffer.from(get('/add/1/1')));
    await closed;
    await assert.rejects(h.openTunnel(sim, victim.net.id, victim.ip), (e) => e.status === 400 && JSON.parse(e.body).message === 'Socket closed');
    // the neighbour's service and connection carry on, its state intact
    assert.equal(bodyOf(await h.exchange(wsO, get('/sub/10/4'))), '6');
    assert.equal((await vmInfo(wsO)).requests, otherBefore + 2);
    wsO.close();
    // the activity stays Ready; running the service again brings a fresh one (its count restarts)
    assert.deepEqual((await api('GET', `/activity-api/v1/activity/${victim.act}/state`)).body, { state: ['Ready', null] });
    await h.execWait(api, victim.act, [{ run: { entry_point: '/bin/sh', args: ['-c', 'python3 /golem/run/calculator_server.py --port 80 &'] } }]);
    const again = await h.openTunnel(sim, victim.net.id, victim.ip);
    assert.equal((await vmInfo(again)).requests, 1);
    again.close();
  });

  await t.test('crashVm on one provider ends only its activity (its multi-activity agreement stays, §9.3)', async () => {
    const victim = svcs[7];
    const ws = await h.openTunnel(sim, victim.net.id, victim.ip);
    assert.equal(bodyOf(await h.exchange(ws, get('/add/2/2'))), '4');
    assert.equal((await fault({ provider: victim.providerId, fault: 'crashVm' })).affected, 1);
    await h.waitUntil(async () => (await api('GET', `/activity-api/v1/activity/${victim.act}/state`)).body.state[0] === 'Terminated');
    ws.terminate();
    const st = (await api('GET', '/_sim/state')).body;
    assert.equal(st.activities.find((a) => a.activityId === victim.act).reason, 'execution aborted');
    assert.equal(st.agreements.find((a) => a.agreementId === victim.agreementId).state, 'Approved');
    const live = svcs.filter((v) => v !== victim);
    for (const v of live) assert.equal(st.agreements.find((a) => a.agreementId === v.agreementId).state, 'Approved');
    await assert.rejects(h.openTunnel(sim, victim.net.id, victim.ip), (e) => e.status === 504);
    const answers = await Promise.all(live.map((v, i) => h.httpOverTunnel(sim, v.net.id, v.ip, get(`/add/${i}/1`))));
    answers.forEach((r, i) => assert.equal(bodyOf(r), String(i + 1)));
    assert.equal(sim.sharedHost.vms.size, N - 1);
  });

  await t.test('each activity gets its own debit notes', async () => {
    await h.waitUntil(async () => {
      const notes = (await api('GET', '/_sim/state')).body.payments.debitNotes;
      return svcs.every((v) => notes.some((d) => d.activityId === v.act && d.agreementId === v.agreementId));
    }, 10000);
  });
});

test('shared-service mode helpers', () => {
  assert.equal(servicePort(['/bin/sh', '-c', 'python3 /golem/run/bench_server.py --port 8080 &']), 8080);
  assert.equal(servicePort(['/bin/sh', '-c', 'x --port=81']), 81);
  assert.equal(servicePort(['srv', '-p', '82']), 82);
  assert.equal(servicePort(['srv']), 80);
  assert.equal(String(evaluate('1+2*3')), '7');
  assert.equal(String(evaluate('(1+2)*-3 // 2')), '-5');
  assert.equal(String(evaluate('7/2')), '3.5');
  assert.equal(String(evaluate('2**100')), '1267650600228229401496703205376');
  assert.throws(() => evaluate('1+'));
  assert.throws(() => evaluate('__import__("os")'));
});
