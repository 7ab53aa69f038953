'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const WebSocket = require('ws');
const { YagnaSim } = require('../lib/daemon');

const KEY = 'test-appkey';
const CALC = path.resolve(__dirname, '..', '..', '..', 'examples', 'calc-image');

function imagesDir() {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'yagna-sim-images-'));
  fs.symlinkSync(CALC, path.join(d, 'calc-image'));
  return d;
}

async function startSim(opts = {}) {
  const images = imagesDir();
  const sim = new YagnaSim({ port: 0, appkey: KEY, providers: 3, images, quiet: true, ...opts });
  await sim.start();
  const stop = sim.stop.bind(sim);
  sim.stop = async () => { await stop(); fs.rmSync(images, { recursive: true, force: true }); };
  const calc = [...sim.images.values()].find((i) => i.name === 'calc-image');
  const api = async (method, p, body, { headers = {}, key = KEY, raw = false } = {}) => {
    const h = { ...headers };
    if (key) h.authorization = `Bearer ${key}`;
    if (body !== undefined) h['content-type'] = 'application/json';
    const res = await fetch(sim.url + p, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let json; try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
    if (sim.checkResponses && sim.spec) sim.checkResponses(method, p, res.status, json);
    return raw ? { status: res.status, text, json, headers: res.headers } : { status: res.status, body: json, text };
  };
  return { sim, api, calc, url: sim.url };
}

function demand(calc, extra = {}, constraintsExtra = '') {
  const exp = Date.now() + 60 * 60 * 1000;
  return {
    properties: {
      'golem.srv.comp.expiration': exp, 'golem.srv.caps.multi-activity': true, 'golem.node.debug.subnet': 'public',
      'golem.com.payment.platform.erc20-holesky-tglm.address': '0x19ee20338a4c4bf8f6aebc79d9d3af2a01434119',
      'golem.com.payment.protocol.version': '3',
      'golem.srv.comp.task_package': `hash:sha3:${calc ? calc.hash : '00'}:http://127.0.0.1/download/x`,
      'golem.srv.comp.vm.package_format': 'gvmkit-squash',
      ...extra,
    },
    constraints: `(&(golem.node.debug.subnet=public)\n\t(golem.com.payment.platform.erc20-holesky-tglm.address=*)\n\t(golem.com.payment.protocol.version>1)\n\t(golem.com.pricing.model=linear)\n\t(&(golem.inf.mem.gib>=0.5)\n\t(golem.inf.storage.gib>=2.0)\n\t(golem.inf.cpu.threads>=1)\n\t(golem.runtime.capabilities=vpn)\n\t(golem.runtime.name=vm))${constraintsExtra})`,
  };
}

async function collect(api, sub, want, timeout = 3) {
  const out = [];
  const deadline = Date.now() + timeout * 1000;
  while (out.length < want && Date.now() < deadline) {
    const r = await api('GET', `/market-api/v1/demands/${sub}/events?timeout=1&maxEvents=20`);
    if (r.status !== 200) throw new Error(`collect ${r.status} ${r.text}`);
    out.push(...r.body);
  }
  return out;
}

/** The provider's answer to our counter `counterId` (a Draft ProposalEvent or a ProposalRejectedEvent), or null. */
async function answerTo(api, sub, counterId, timeout = 3) {
  const deadline = Date.now() + timeout * 1000;
  while (Date.now() < deadline) {
    const r = await api('GET', `/market-api/v1/demands/${sub}/events?timeout=0.5&maxEvents=20`);
    if (r.status !== 200) throw new Error(`collect ${r.status} ${r.text}`);
    const ev = r.body.find((e) => (e.eventType === 'ProposalEvent' && e.proposal.prevProposalId === counterId) || (e.eventType === 'ProposalRejectedEvent' && e.proposalId === counterId));
    if (ev) return ev;
  }
  return null;
}

/** Subscribe, counter the first offer (of `providerIndex` if given), get a Draft, create+confirm+wait. */
async function negotiate(t, { providerIndex = null, dem = null, appSessionId = null } = {}) {
  const { api, sim, calc } = t;
  const d = dem || demand(calc, { 'golem.com.payment.debit-notes.accept-timeout?': sim.opts.acceptTimeout });
  const sub = (await api('POST', '/market-api/v1/demands', d)).body;
  const offers = await collect(api, sub, sim.providers.length);
  const want = providerIndex === null ? null : sim.providers[providerIndex].nodeId;
  // Counter offers in turn until a provider answers with a Draft (a busy one rejects, not finally).
  let offer; let counterId; let draft;
  for (const o of offers.filter((e) => e.eventType === 'ProposalEvent' && (!want || e.proposal.issuerId === want))) {
    offer = o;
    counterId = (await api('POST', `/market-api/v1/demands/${sub}/proposals/${offer.proposal.proposalId}`,
      { properties: { ...d.properties, 'golem.com.payment.chosen-platform': 'erc20-holesky-tglm' }, constraints: d.constraints })).body;
    const ans = await answerTo(api, sub, counterId);
    if (ans && ans.eventType === 'ProposalEvent') { draft = ans; break; }
  }
  if (!draft) throw new Error('no provider answered with a Draft');
  const validTo = new Date(Date.now() + 3600e3).toISOString();
  const ag = await api('POST', '/market-api/v1/agreements', { proposalId: draft.proposal.proposalId, validTo });
  await api('POST', `/market-api/v1/agreements/${ag.body}/confirm${appSessionId ? `?appSessionId=${appSessionId}` : ''}`);
  const w = await api('POST', `/market-api/v1/agreements/${ag.body}/wait?timeout=5`);
  if (w.status !== 204) throw new Error(`wait ${w.status}`);
  return { sub, offer, counterId, draft, agreementId: ag.body, providerId: draft.proposal.issuerId };
}

async function execWait(api, act, cmds, timeout = 10) {
  const b = (await api('POST', `/activity-api/v1/activity/${act}/exec`, { text: JSON.stringify(cmds) })).body;
  const deadline = Date.now() + timeout * 1000;
  for (;;) {
    const r = await api('GET', `/activity-api/v1/activity/${act}/exec/${b}?timeout=2`);
    if (r.status !== 200) throw new Error(`results ${r.status} ${r.text}`);
    if (r.body.length && r.body[r.body.length - 1].isBatchFinished) return r.body;
    if (Date.now() > deadline) throw new Error('batch timeout');
  }
}

/** Full service start: agreement, activity, VPN, deploy+start, run calc server. */
async function startService(t, opts = {}) {
  const { api, sim } = t;
  const neg = await negotiate(t, opts);
  const net = (await api('POST', '/net-api/v1/net', { ip: '192.168.0.0', mask: '255.255.255.0' })).body;
  const me = (await api('GET', '/me')).body.identity;
  await api('POST', `/net-api/v1/net/${net.id}/addresses`, { ip: '192.168.0.1' });
  const act = (await api('POST', '/activity-api/v1/activity', neg.agreementId)).body;
  const ip = `192.168.0.${2 + (opts.ipOffset || 0)}`;
  await api('POST', `/net-api/v1/net/${net.id}/nodes`, { id: neg.providerId, ip });
  const deploy = await execWait(api, act, [
    { deploy: { net: [{ id: net.id, ip: '192.168.0.0', mask: '255.255.255.0', nodeIp: ip, nodes: { '192.168.0.1': me, [ip]: neg.providerId } }] } },
    { start: { args: [] } }]);
  const run = await execWait(api, act, [{ run: { entry_point: '/bin/sh', args: ['-c', 'python3 /golem/run/calculator_server.py --port 80 >/dev/null 2>&1 &'] } }]);
  // wait until the server listens
  for (let i = 0; i < 50; i++) {
    try { const r = await httpOverTunnel(sim, net.id, ip, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n'); if (r.includes('ok')) break; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { ...neg, net, ip, act, deploy, run, me };
}

function openTunnel(sim, netId, ip, port = 80, { key = KEY, v2 = false } = {}) {
  const p = v2 ? `/net-api/v2/vpn/net/${netId}/tcp/${ip}/${port}` : `/net-api/v1/net/${netId}/tcp/${ip}/${port}`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(sim.url.replace('http', 'ws') + p, { headers: key ? { authorization: `Bearer ${key}` } : {} });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (req, res) => {
      let b = ''; res.on('data', (d) => { b += d; }); res.on('end', () => { const e = new Error(`status ${res.statusCode}`); e.status = res.statusCode; e.body = b; reject(e); });
    });
    ws.once('error', reject);
  });
}

/** Send one request over a fresh tunnel and read until the response (Content-Length) is complete. */
async function httpOverTunnel(sim, netId, ip, request, opts) {
  const ws = await openTunnel(sim, netId, ip, 80, opts);
  try { return await exchange(ws, request); } finally { ws.close(); }
}

function exchange(ws, request, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => { cleanup(); reject(new Error('timeout')); }, timeoutMs);
    const onMsg = (d, isBinary) => {
      if (!isBinary) { cleanup(); reject(new Error('text frame from daemon')); return; }
      buf = Buffer.concat([buf, d]);
      const s = buf.toString('latin1');
      const he = s.indexOf('\r\n\r\n');
      if (he < 0) return;
      const m = /content-length:\s*(\d+)/i.exec(s.slice(0, he));
      if (!m || buf.length >= he + 4 + Number(m[1])) { cleanup(); resolve(buf.toString('utf8')); }
    };
    const onClose = () => { cleanup(); resolve(buf.toString('utf8')); };
    const cleanup = () => { clearTimeout(t); ws.off('message', onMsg); ws.off('close', onClose); };
    ws.on('message', onMsg); ws.on('close', onClose);
    ws.send(Buffer.from(request));
  });
}

/** A POST /_sim/fault caller that asserts the stand-in took the fault; resolves its report. */
function faulter(api) {
  return async (body) => {
    const r = await api('POST', '/_sim/fault', body);
    if (r.status !== 200) throw new Error(`fault ${JSON.stringify(body)}: ${r.status} ${r.text}`);
    return r.body;
  };
}

async function waitUntil(fn, timeoutMs = 5000, stepMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('waitUntil timed out');
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

module.exports = { KEY, CALC, startSim, demand, collect, answerTo, negotiate, startService, execWait, openTunnel, httpOverTunnel, exchange, waitUntil, imagesDir, faulter };
