'use strict';
// The official golem-js SDK (@golem-sdk/golem-js 3.x, a devDependency) runs its documented service
// flow against a fresh stand-in: network, one rental of the calc image, the server started with
// exe.run, HTTP through exe.createTcpProxy(80), debit notes accepted, an invoice rejected by
// invoiceFilter, file transfer over the GSB API, and a provider VM crash mid-rental.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');

const SERVER = 'python3 /golem/run/calculator_server.py --port 80 >/dev/null 2>&1 &';

function get(agent, port, p, { method = 'GET', body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, method, agent, headers: body ? { 'content-type': 'application/octet-stream', 'content-length': body.length } : {}, timeout: 20000 }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(parts), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('request timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

/** The server was started in the background: ask /health over fresh connections until it answers. */
async function untilServing(port) {
  const deadline = Date.now() + 20000;
  for (;;) {
    try { const r = await get(false, port, '/health'); if (r.status === 200) return; } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error('the server in the VM never answered /health');
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('golem-js service flow on the stand-in', { timeout: 240000 }, async (t) => {
  const s = await h.startSim({ providers: 2, debitNoteInterval: 2 });
  const { sim, api } = s;
  const registry = process.env.GOLEM_REGISTRY_URL;
  process.env.GOLEM_REGISTRY_URL = s.url; // golem-js resolves imageHash through the stand-in's registry
  const { GolemNetwork } = require('@golem-sdk/golem-js');
  const glm = new GolemNetwork({ api: { key: h.KEY, url: s.url } });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'golemjs-test-'));
  t.after(async () => {
    await glm.disconnect().catch(() => {});
    await sim.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
    if (registry === undefined) delete process.env.GOLEM_REGISTRY_URL; else process.env.GOLEM_REGISTRY_URL = registry;
  });
  await glm.connect();
  const network = await glm.createNetwork({ ip: '192.168.7.0/24' });
  const filtered = { invoices: [], debitNotes: [] };
  const order = (acceptInvoices, net = network) => ({
    demand: {
      workload: { imageHash: s.calc.hash, capabilities: ['vpn'] },
      payment: { midAgreementDebitNoteIntervalSec: 2 },
    },
    market: { rentHours: 0.5, pricing: { model: 'linear', maxStartPrice: 1, maxCpuPerHourPrice: 1, maxEnvPerHourPrice: 1 } },
    network: net,
    payment: {
      debitNoteFilter: async (dn) => { filtered.debitNotes.push(dn.id); return true; },
      invoiceFilter: async (inv) => { filtered.invoices.push(inv.id); return acceptInvoices; },
    },
  });
  const agreementOf = (exe) => sim.state().activities.find((a) => a.activityId === exe.activity.id).agreementId;

  const rental = await glm.oneOf({ order: order(false), signalOrTimeout: 60000 });
  const exe = await rental.getExeUnit(60000);
  const agreementId = agreementOf(exe);

  await t.test('exe.run starts the server; HTTP through createTcpProxy(80), keep-alive, 200 kB bodies', async () => {
    const r = await exe.run(SERVER);
    assert.equal(r.result, 'Ok');
    const proxy = exe.createTcpProxy(80);
    await proxy.listen(0);
    t.after(() => proxy.close());
    const port = proxy.server.address().port;
    await untilServing(port);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    t.after(() => agent.destroy());
    const before = sim.state().tunnelsOpened;
    const add = await get(agent, port, '/add/3/4');
    assert.equal(add.status, 200); assert.equal(add.body.toString(), '7');
    const big = crypto.randomBytes(200 * 1024);
    const echo = await get(agent, port, '/echo', { method: 'POST', body: big });
    assert.equal(echo.status, 200);
    assert.ok(Buffer.from(JSON.parse(echo.body).body_b64, 'base64').equals(big), 'the 200 kB body came back intact');
    const bytes = await get(agent, port, '/bytes/200000');
    assert.equal(bytes.body.length, 200000);
    assert.ok(bytes.body.every((b, i) => b === i % 251));
    assert.equal(sim.state().tunnelsOpened - before, 1, 'three requests on one kept-alive connection: one tunnel');
  });

  await t.test('debit notes every ~2 s, accepted by golem-js', async () => {
    const accepted = () => sim.state().payments.debitNotes.filter((d) => d.agreementId === agreementId && d.status === 'ACCEPTED');
    await h.waitUntil(() => accepted().length >= 2, 30000, 200);
    assert.ok(filtered.debitNotes.length >= 2, 'they went through debitNoteFilter');
  });

  await t.test('uploadJson, uploadFile, uploadData and downloads through the GSB API', async () => {
    let r = await exe.uploadJson({ hello: 'golem', n: 42 }, '/golem/input/params.json');
    assert.equal(r.result, 'Ok');
    r = await exe.run('cat /golem/input/params.json');
    assert.deepEqual(JSON.parse(r.stdout), { hello: 'golem', n: 42 });
    // 300 kB: seven full 40 KiB chunks and a short one
    const data = crypto.randomBytes(300 * 1000);
    const src = path.join(tmp, 'data.bin');
    fs.writeFileSync(src, data);
    const stats = sim.gsb.stats;
    const chunksBefore = stats.calls.GetChunk || 0;
    r = await exe.uploadFile(src, '/golem/work/data.bin');
    assert.equal(r.result, 'Ok');
    assert.equal((stats.calls.GetChunk || 0) - chunksBefore, Math.ceil(data.length / 40960));
    r = await exe.run('sha256sum /golem/work/data.bin');
    assert.equal(String(r.stdout).split(' ')[0], crypto.createHash('sha256').update(data).digest('hex'));
    r = await exe.uploadData(new Uint8Array([1, 2, 3]), '/golem/work/three.bin');
    assert.equal(r.result, 'Ok');
    assert.equal((await exe.run('od -An -tu1 /golem/work/three.bin')).stdout.trim().split(/\s+/).join(','), '1,2,3');
    const dst = path.join(tmp, 'back.bin');
    const uploadsBefore = stats.calls.UploadChunk || 0;
    r = await exe.downloadFile('/golem/work/data.bin', dst);
    assert.equal(r.result, 'Ok');
    assert.equal((stats.calls.UploadChunk || 0) - uploadsBefore, Math.ceil(data.length / 40960));
    await h.waitUntil(() => fs.existsSync(dst) && fs.statSync(dst).size === data.length, 5000);
    // golem-js acknowledges a chunk before its write stream has flushed it: give the file a moment
    for (let t = 0; t < 40 && !fs.readFileSync(dst).equals(data); t++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(fs.readFileSync(dst).equals(data));
    r = await exe.downloadData('/golem/work/data.bin'); // golem-js checks the sha3-256 of UploadFinished
    assert.ok(Buffer.from(r.data).equals(data));
    assert.ok(stats.maxInFlight > 1 && stats.maxInFlight <= 8, `chunks in flight: ${stats.maxInFlight}`);
    // Outside every volume the provider refuses, as a VM provider does.
    r = await exe.uploadJson({}, '/etc/params.json');
    assert.equal(r.result, 'Error'); assert.match(r.message, /Transfer error: IO error: path not found in container: \/etc\/params\.json/);
    await h.waitUntil(() => sim.gsb.services.size === 0, 10000, 100); // golem-js unbinds what it bound
  });

  await t.test('an invoice rejected through invoiceFilter', async () => {
    await rental.stopAndFinalize(60000);
    const inv = sim.state().payments.invoices.find((i) => i.agreementId === agreementId);
    assert.ok(inv, 'the provider sent an invoice');
    assert.equal(inv.status, 'REJECTED');
    assert.ok(filtered.invoices.includes(inv.invoiceId));
    const ag = (await api('GET', `/market-api/v1/agreements/${agreementId}`)).body;
    assert.equal(ag.state, 'Terminated');
  });

  await t.test('a provider VM crash mid-rental is handled', async () => {
    // golem-js frees the first provider's VPN address only at disconnect: a second network
    const net2 = await glm.createNetwork({ ip: '192.168.8.0/24' });
    const r2 = await glm.oneOf({ order: order(true, net2), signalOrTimeout: 60000 });
    const exe2 = await r2.getExeUnit(60000);
    const ag2 = agreementOf(exe2);
    assert.equal((await exe2.run(SERVER)).result, 'Ok');
    assert.equal((await api('POST', '/_sim/fault', { provider: exe2.provider.id, fault: 'crashVm' })).status, 200);
    await assert.rejects(exe2.run('echo still there'));
    await r2.stopAndFinalize(60000);
    const inv = sim.state().payments.invoices.find((i) => i.agreementId === ag2);
    assert.ok(inv, 'the provider invoiced the broken agreement');
    assert.equal(inv.status, 'ACCEPTED');
    // golem-js asks for multi-activity agreements: the provider keeps this one after the crash
    // (§9.3), and golem-js ends it when it finalizes
    const st = sim.state().agreements.find((a) => a.agreementId === ag2);
    assert.equal(st.terminatedBy, 'Requestor');
  });
});
