'use strict';
// Net API (/net-api/v1/net and /net-api/v2/vpn/net): VPN networks, addresses, nodes, and the
// WebSocket TCP tunnel into a provider VM (PROTOCOL.md §6, §8.9).
const net = require('node:net');
const { ids, jsonErr, HttpError } = require('./util');

const PREFIXES = ['/net-api/v1/net', '/net-api/v2/vpn/net'];
const MAX_TUNNELS = 4096;
const MAX_TUNNEL_HISTORY = 1000;

const ip2n = (ip) => ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
const n2ip = (n) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
const isIp = (s) => typeof s === 'string' && net.isIPv4(s);

function init(sim) {
  // tunnelsOpened/tunnelHistory: every tunnel ever upgraded, so tests can prove connection reuse
  const st = sim.net = { networks: new Map(), tunnels: new Map(), tunnelsOpened: 0, tunnelHistory: [] };
  sim.netApi = { closeTunnels: (pred, code, reason) => closeTunnels(sim, pred, code, reason) };
  for (const P of PREFIXES) {
    const r = (method, path, fn) => sim.route(method, P + path, fn);
    r('GET', '', (c) => ({ body: [...st.networks.values()].filter((n) => n.owner === c.who.identity).map(netView) }));
    r('POST', '', (c) => createNetwork(sim, c));
    r('GET', '/:n', (c) => ({ body: netView(getNet(sim, c)) }));
    r('DELETE', '/:n', (c) => {
      const n = getNet(sim, c);
      st.networks.delete(n.id);
      closeTunnels(sim, (t) => t.networkId === n.id, 1001, 'network removed');
      return { body: null };
    });
    r('GET', '/:n/addresses', (c) => ({ body: getNet(sim, c).addresses.map((ip) => ({ ip, mask: getNet(sim, c).mask })) }));
    r('POST', '/:n/addresses', (c) => {
      const n = getNet(sim, c);
      const ip = c.body && c.body.ip;
      if (!isIp(ip)) throw sim.invalid(c.req, 'Json deserialize error: expected {"ip": "<IPv4>"}');
      checkHostIp(n, ip);
      if (n.addresses.includes(ip) || n.nodes.has(ip)) throw jsonErr(409, `IP address ${ip} already taken`);
      n.addresses.push(ip);
      return { body: null };
    });
    r('GET', '/:n/nodes', (c) => ({ body: [...getNet(sim, c).nodes.entries()].map(([ip, id]) => ({ id, ip })) }));
    r('POST', '/:n/nodes', (c) => {
      const n = getNet(sim, c);
      const { id, ip } = c.body || {};
      if (typeof id !== 'string' || !isIp(ip)) throw sim.invalid(c.req, 'Json deserialize error: expected {"id": "<nodeId>", "ip": "<IPv4>"}');
      checkHostIp(n, ip);
      const cur = n.nodes.get(ip);
      if (cur && cur === id.toLowerCase()) return { body: null };
      if (cur || n.addresses.includes(ip)) throw jsonErr(409, `IP address ${ip} already taken`);
      n.nodes.set(ip, id.toLowerCase());
      return { body: null };
    });
    r('DELETE', '/:n/nodes/:node', (c) => {
      const n = getNet(sim, c);
      const id = c.params.node.toLowerCase();
      const ips = [...n.nodes.entries()].filter(([, v]) => v === id).map(([k]) => k);
      if (!ips.length) throw jsonErr(404, `Node ${id} not found in network ${n.id}`);
      for (const ip of ips) n.nodes.delete(ip);
      closeTunnels(sim, (t) => t.networkId === n.id && ips.includes(t.ip), 1001, 'node removed');
      return { body: null };
    });
    r('GET', '/:n/tcp', (c) => {
      const n = getNet(sim, c);
      return { body: [...st.tunnels.values()].filter((t) => t.networkId === n.id).map((t) => ({ protocol: 6, localIp: n.gateway, localPort: 0, remoteIp: t.ip, remotePort: t.port })) };
    });
  }
  sim.route('GET', '/net-api/v2/net/status', (c) => ({ body: { nodeId: c.who.identity, listenIp: '127.0.0.1', publicIp: null, sessions: sim.providers.length } }));
}

function netView(n) { return { id: n.id, ip: `${n.ip}/${n.prefix}`, mask: n.mask, gateway: n.gateway }; }

function getNet(sim, c) {
  const n = sim.net.networks.get(c.params.n);
  if (!n || n.owner !== c.who.identity) throw jsonErr(404, `Network not found: ${c.params.n}`);
  return n;
}

function checkHostIp(n, ip) {
  const v = ip2n(ip);
  const first = v >>> 24;
  if (first === 127 || first >= 224 || v === 0) throw jsonErr(400, `Invalid IP address ${ip}`);
  if ((v & n.maskN) >>> 0 !== n.netN) throw jsonErr(400, `IP address ${ip} outside network ${n.ip}/${n.prefix}`);
  if (v === n.netN || v === ((n.netN | (~n.maskN >>> 0)) >>> 0)) throw jsonErr(400, `Invalid IP address ${ip} (network/broadcast)`);
}

function createNetwork(sim, c) {
  const b = c.body;
  if (!b || typeof b !== 'object' || typeof b.ip !== 'string') throw sim.invalid(c.req, 'Json deserialize error: missing field `ip`');
  let [ip, pfx] = b.ip.split('/');
  let mask = b.mask || null;
  if (!isIp(ip)) throw jsonErr(400, `Invalid IP address ${b.ip}`);
  let prefix;
  if (pfx !== undefined) {
    prefix = Number(pfx);
    if (!Number.isInteger(prefix) || prefix < 1 || prefix > 30) throw jsonErr(400, `Invalid network prefix ${pfx}`);
  } else {
    mask = mask || '255.255.255.0';
    if (!isIp(mask)) throw jsonErr(400, `Invalid mask ${mask}`);
    const m = ip2n(mask);
    prefix = 32 - Math.log2((~m >>> 0) + 1);
    if (!Number.isInteger(prefix) || prefix < 1 || prefix > 30) throw jsonErr(400, `Invalid mask ${mask}`);
  }
  const maskN = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const netN = (ip2n(ip) & maskN) >>> 0;
  const gateway = b.gateway && isIp(b.gateway) ? b.gateway : n2ip(netN + 1);
  const n = { id: ids.simple(), owner: c.who.identity, ip: n2ip(netN), prefix, mask: n2ip(maskN), maskN, netN, gateway, addresses: [], nodes: new Map() };
  sim.net.networks.set(n.id, n);
  return { body: netView(n) };
}

// ---------------------------------------------------------------- tunnel
function reject(socket, status, body) {
  const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  const reason = { 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 500: 'Internal Server Error', 504: 'Gateway Timeout' }[status] || 'Error';
  const headers = [`HTTP/1.1 ${status} ${reason}`, `content-length: ${Buffer.byteLength(text)}`, 'connection: close'];
  if (text) headers.push(typeof body === 'string' ? 'content-type: text/plain; charset=utf-8' : 'content-type: application/json');
  socket.end(`${headers.join('\r\n')}\r\n\r\n${text}`);
}

/** Find the live activity VM at `ip` in network n: node id -> provider -> its activity deployed in n. */
function findVm(sim, n, ip) {
  const nodeId = n.nodes.get(ip);
  if (!nodeId) return null;
  const acts = [...sim.activityApi.activities.values()].filter((a) => a.provider.nodeId === nodeId && a.owner === n.owner && a.state[0] !== 'Terminated' && !a.vmGone);
  const deployed = acts.filter((a) => a.netConfigs.some((cfg) => cfg.id === n.id && (!cfg.nodeIp || cfg.nodeIp === ip)));
  const pick = (deployed.length ? deployed : acts).filter((a) => a.state[0] === 'Ready' || a.state[0] === 'Deployed');
  return pick.length ? pick[pick.length - 1] : null;
}

async function upgrade(sim, req, socket, head) {
  const url = new URL(req.url, 'http://x');
  socket.on('error', () => {});
  let who;
  try { who = sim.auth(req, url); } catch (e) {
    if (e instanceof HttpError) return reject(socket, e.status, e.body);
    throw e;
  }
  const m = /^\/net-api\/(?:v1|v2\/vpn)\/net\/([^/]+)\/tcp\/([^/]+)\/([^/]+)\/?$/.exec(url.pathname);
  if (!m) return reject(socket, 404, undefined);
  const t0 = Date.now();
  const logIt = (status) => { if (!sim.opts.quiet || sim.logStream) sim.log(`GET ${url.pathname} ${status} ${Date.now() - t0}ms (websocket)`); };
  const n = sim.net.networks.get(m[1]);
  if (!n || n.owner !== who.identity) { logIt(404); return reject(socket, 404, { message: `Network not found: ${m[1]}` }); }
  const ip = m[2]; const port = Number(m[3]);
  if (!isIp(ip)) { logIt(400); return reject(socket, 400, { message: `Invalid IP address: ${ip}` }); }
  if (!Number.isInteger(port) || port < 1 || port > 65535) { logIt(400); return reject(socket, 400, { message: `Invalid port: ${m[3]}` }); }
  if (((ip2n(ip) & n.maskN) >>> 0) !== n.netN) { logIt(400); return reject(socket, 400, { message: `IP address ${ip} outside network` }); }
  if (sim.net.tunnels.size >= MAX_TUNNELS) { logIt(500); return reject(socket, 500, { message: 'Too many open tunnels' }); }
  const act = findVm(sim, n, ip);
  let tcp = null;
  if (act) {
    try { tcp = await act.vm.connect(port); } catch (e) {
      if (e.code !== 'ETIMEDOUT' && e.code !== 'ECONNREFUSED') sim.log(`tunnel connect ${ip}:${port}: ${e.code}`);
    }
  } else {
    // Nobody answers at that address: the VPN connect times out.
    await new Promise((r) => sim.later(sim.opts.tunnelConnectTimeoutMs, r));
  }
  if (!tcp) { logIt(504); return reject(socket, 504, undefined); }
  if (socket.destroyed) { tcp.destroy(); return undefined; }
  sim.wss.handleUpgrade(req, socket, head, (ws) => {
    logIt(101);
    openTunnel(sim, ws, tcp, { networkId: n.id, ip, port, activity: act });
  });
  return undefined;
}

function openTunnel(sim, ws, tcp, { networkId, ip, port, activity }) {
  const provider = activity.provider;
  const t = {
    id: ids.simple(), networkId, ip, port, activityId: activity.id, providerId: provider.nodeId, openedAt: new Date().toISOString(),
    bytesToVm: 0, bytesFromVm: 0, messagesFromVm: 0, ws, tcp, lastHeard: Date.now(), closed: false,
  };
  sim.net.tunnels.set(t.id, t);
  sim.net.tunnelsOpened++;
  sim.net.tunnelHistory.push(t);
  if (sim.net.tunnelHistory.length > MAX_TUNNEL_HISTORY) sim.net.tunnelHistory.shift();
  tcp.setNoDelay(true);
  const heard = () => { t.lastHeard = Date.now(); };
  let inflight = 0;
  const toClient = (chunk) => {
    t.bytesFromVm += chunk.length; t.messagesFromVm++;
    inflight++;
    if (inflight > 64) tcp.pause();
    ws.send(chunk, { binary: true }, () => { inflight--; if (inflight <= 16 && !t.closed) tcp.resume(); });
  };
  // Delay is applied per chunk, order preserved.
  let chain = Promise.resolve();
  tcp.on('data', (chunk) => {
    const delay = provider.faults.tunnelDelayMs;
    if (!delay) { toClient(chunk); return; }
    chain = chain.then(() => new Promise((r) => sim.later(delay, () => { if (!t.closed) toClient(chunk); r(); })));
  });
  tcp.on('end', () => { chain.then(() => close(sim, t, 1000, 'provider closed the connection')); });
  tcp.on('close', () => { chain.then(() => close(sim, t, 1000, 'connection closed')); });
  tcp.on('error', () => close(sim, t, 1011, 'connection error'));
  ws.on('message', (data) => {
    heard();
    const buf = Buffer.isBuffer(data) ? data : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]);
    t.bytesToVm += buf.length;
    if (!tcp.write(buf)) { ws.pause(); tcp.once('drain', () => ws.resume()); }
  });
  ws.on('pong', heard);
  ws.on('ping', heard);
  ws.on('close', () => { close(sim, t); });
  ws.on('error', () => close(sim, t));
  tcp.resume();
  t.pinger = sim.every(sim.opts.wsPingIntervalMs, () => {
    if (Date.now() - t.lastHeard > sim.opts.wsIdleTimeoutMs) { close(sim, t, 1000, 'idle timeout'); return; }
    try { ws.ping(); } catch { /* closing */ }
  });
}

function close(sim, t, code = 1000, reason = '', abrupt = false) {
  if (t.closed) return;
  t.closed = true;
  t.closedAt = new Date().toISOString();
  clearInterval(t.pinger); sim.timers.delete(t.pinger);
  sim.net.tunnels.delete(t.id);
  t.tcp.destroy();
  if (abrupt) t.ws.terminate();
  else {
    try { t.ws.close(code, reason.slice(0, 120)); } catch { t.ws.terminate(); }
    const killer = setTimeout(() => t.ws.terminate(), 2000); killer.unref();
  }
}

function closeTunnels(sim, pred, code = 1001, reason = '', abrupt = false) {
  let count = 0;
  for (const t of [...sim.net.tunnels.values()]) if (pred(t)) { close(sim, t, code, reason, abrupt); count++; }
  return count;
}

function tunnelView(t) {
  return { id: t.id, networkId: t.networkId, ip: t.ip, port: t.port, activityId: t.activityId, providerId: t.providerId, openedAt: t.openedAt, closedAt: t.closedAt || null, bytesToVm: t.bytesToVm, bytesFromVm: t.bytesFromVm, messagesFromVm: t.messagesFromVm };
}

function shutdown(sim) { closeTunnels(sim, () => true, 1001, 'daemon stopping', true); }

module.exports = { init, shutdown, upgrade, closeTunnels, netView, tunnelView };
