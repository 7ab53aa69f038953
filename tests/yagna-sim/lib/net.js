'use strict';
// Net API (/net-api/v1/net and /net-api/v2/vpn/net): VPN networks, addresses, nodes, and the
// WebSocket TCP tunnel into a provider VM (PROTOCOL.md §6, §8.9).
const net = require('node:net');
const { ids, jsonErr, HttpError } = require('./util');

const PREFIXES = ['/net-api/v1/net', '/net-api/v2/vpn/net'];
const MAX_TUNNELS = 4096;
const MAX_TUNNEL_HISTORY = 1000;
const MAX_ORPHANS = 1024; // VM-side connections kept after their WebSocket ended
const MAX_HELD_BYTES = 4 * 1024 * 1024; // client bytes held per cut-off tunnel (beyond: dropped)

const ip2n = (ip) => ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
const n2ip = (n) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
const isIp = (s) => typeof s === 'string' && net.isIPv4(s);

function init(sim) {
  // tunnelsOpened/tunnelHistory: every tunnel ever upgraded, so tests can prove connection reuse.
  // orphans: VM-side connections whose WebSocket ended (the daemon never tells the VM, §6.4).
  const st = sim.net = { networks: new Map(), tunnels: new Map(), tunnelsOpened: 0, tunnelHistory: [], orphans: new Set() };
  sim.netApi = {
    closeTunnels: (pred, code, reason, abrupt) => closeTunnels(sim, pred, reason),
    reachabilityChanged: () => reachabilityChanged(sim),
    vmGone: (act) => vmGone(sim, act),
  };
  for (const P of PREFIXES) {
    const r = (method, path, fn) => sim.route(method, P + path, fn);
    r('GET', '', (c) => ({ body: [...st.networks.values()].filter((n) => n.owner === c.who.identity).map(netView) }));
    r('POST', '', (c) => createNetwork(sim, c));
    r('GET', '/:n', (c) => ({ body: netView(getNet(sim, c)) }));
    r('DELETE', '/:n', (c) => {
      const n = getNet(sim, c);
      st.networks.delete(n.id);
      closeTunnels(sim, (t) => t.networkId === n.id, 'network removed');
      return { body: null };
    });
    r('GET', '/:n/addresses', (c) => {
      const n = getNet(sim, c);
      return { body: n.addresses.map((ip) => ({ ip: `${ip}/${n.prefix}` })) };
    });
    r('POST', '/:n/addresses', (c) => {
      const n = getNet(sim, c);
      const ip = c.body && c.body.ip;
      if (typeof ip !== 'string') throw sim.invalid(c.req, 'Json deserialize error: missing field `ip`');
      if (!isIp(ip)) throw jsonErr(400, `Invalid IP address: ${ip}`);
      if (!inNet(n, ip)) throw jsonErr(400, `Network not found for IP address: ${ip}`);
      if (!allowedHost(n, ip)) throw jsonErr(400, `IP address not allowed: ${ip}`);
      // Never "taken" (PROTOCOL.md §6.2): a node's IP is accepted too.
      if (!n.addresses.includes(ip)) n.addresses.push(ip);
      return { body: null };
    });
    r('GET', '/:n/nodes', (c) => ({ body: [...getNet(sim, c).nodes.entries()].map(([ip, id]) => ({ id, ip })) }));
    r('POST', '/:n/nodes', (c) => {
      const n = getNet(sim, c);
      const { id, ip } = c.body || {};
      if (typeof id !== 'string' || typeof ip !== 'string') throw sim.invalid(c.req, 'Json deserialize error: expected {"id": "<nodeId>", "ip": "<IPv4>"}');
      if (!isIp(ip) || !inNet(n, ip)) throw jsonErr(400, `Invalid network IP address: ${ip}`);
      if (!allowedHost(n, ip)) throw jsonErr(400, `IP address not allowed: ${ip}`);
      // An IP already mapped keeps its old mapping, and the answer is still 200 (§6.3).
      if (!n.nodes.has(ip)) n.nodes.set(ip, id.toLowerCase());
      reachabilityChanged(sim);
      return { body: null };
    });
    r('DELETE', '/:n/nodes/:node', (c) => {
      const n = getNet(sim, c);
      const id = c.params.node.toLowerCase();
      for (const [ip, v] of [...n.nodes.entries()]) if (v === id) n.nodes.delete(ip);
      // Open tunnels to those IPs stay open; their packets are dropped from now on (§6.3).
      reachabilityChanged(sim);
      return { body: null };
    });
  }
  sim.route('GET', '/net-api/v2/net/status', (c) => ({ body: { nodeId: c.who.identity, listenIp: '127.0.0.1', publicIp: null, sessions: sim.providers.length } }));
}

function netView(n) { return { id: n.id, ip: n.ipAsSent, mask: n.mask, gateway: n.gateway }; }

/** Ownership first (§6.1): 403 (empty) if the caller owns another network, else 404. */
function ownerCheck(sim, who, id) {
  const n = sim.net.networks.get(id);
  if (n && n.owner === who.identity) return n;
  const ownsAny = [...sim.net.networks.values()].some((x) => x.owner === who.identity);
  throw ownsAny ? new HttpError(403, undefined) : jsonErr(404, 'Network not found');
}
function getNet(sim, c) { return ownerCheck(sim, c.who, c.params.n); }

const inNet = (n, ip) => ((ip2n(ip) & n.maskN) >>> 0) === n.netN;
function allowedHost(n, ip) {
  const v = ip2n(ip);
  const first = v >>> 24;
  if (first === 127 || first >= 224 || v === 0) return false;
  return v !== n.netN && v !== ((n.netN | (~n.maskN >>> 0)) >>> 0);
}

function createNetwork(sim, c) {
  const b = c.body;
  if (!b || typeof b !== 'object' || typeof b.ip !== 'string') throw sim.invalid(c.req, 'Json deserialize error: missing field `ip`');
  const [ip, pfx] = b.ip.split('/');
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
  // The requestor's stack holds the first host from creation (§6.1); `ip` comes back as sent, in CIDR form.
  const n = {
    id: ids.simple(), owner: c.who.identity, ip: n2ip(netN), ipAsSent: `${ip}/${prefix}`, prefix, mask: n2ip(maskN), maskN, netN, gateway,
    addresses: [n2ip(netN + 1)], nodes: new Map(),
  };
  sim.net.networks.set(n.id, n);
  return { body: netView(n) };
}

// ---------------------------------------------------------------- tunnel
function reject(socket, status, body) {
  const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  const reason = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 500: 'Internal Server Error', 504: 'Gateway Timeout' }[status] || 'Error';
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

const waitMs = (sim, ms) => new Promise((r) => sim.later(ms, r));

/** TCP connect inside the VPN before the 101 (§6.4): {tcp} or {status, body} for the HTTP answer. */
async function connectInVpn(sim, act, port) {
  const timeoutMs = sim.opts.tunnelConnectTimeoutMs;
  const p = act && act.provider;
  // No SYN-ACK: nothing at that IP, the provider is gone, or its VM is slow to accept.
  if (!act || p.faults.vanished || p.faults.slowConnectMs >= timeoutMs) { await waitMs(sim, timeoutMs); return { status: 504 }; }
  if (p.faults.slowConnectMs) await waitMs(sim, p.faults.slowConnectMs);
  if (p.faults.refuseConnect) return { status: 400, body: { message: 'Socket closed' } };
  const t0 = Date.now();
  try {
    return { tcp: await act.vm.connect(port) };
  } catch (e) {
    // RST from the VM closes the smoltcp socket and fails the pending connect at once.
    if (e.code === 'ECONNREFUSED') return { status: 400, body: { message: 'Socket closed' } };
    if (e.code !== 'ETIMEDOUT' && e.code !== 'EHOSTUNREACH') sim.log(`tunnel connect :${port}: ${e.code}`);
    const left = timeoutMs - (Date.now() - t0);
    if (left > 0) await waitMs(sim, left);
    return { status: 504 };
  }
}

async function upgrade(sim, req, socket, head) {
  const url = new URL(req.url, 'http://x');
  socket.on('error', () => {});
  const t0 = Date.now();
  const logIt = (status) => { if (!sim.opts.quiet || sim.logStream) sim.log(`GET ${url.pathname} ${status} ${Date.now() - t0}ms (websocket)`); };
  const answer = (status, body) => { logIt(status); reject(socket, status, body); };
  let who;
  try { who = sim.auth(req, url); } catch (e) {
    if (e instanceof HttpError) return answer(e.status, e.body);
    throw e;
  }
  const m = /^\/net-api\/(?:v1|v2\/vpn)\/net\/([^/]+)\/tcp\/([^/]+)\/([^/]+)\/?$/.exec(url.pathname);
  if (!m) return answer(404, undefined);
  let n;
  try { n = ownerCheck(sim, who, m[1]); } catch (e) { return answer(e.status, e.body); }
  const ip = m[2]; const port = Number(m[3]);
  if (!isIp(ip)) return answer(400, { message: `Invalid IP address: ${ip}` });
  if (!Number.isInteger(port) || port < 1 || port > 65535) return answer(400, { message: `Invalid port: ${m[3]}` });
  if (!inNet(n, ip)) return answer(400, { message: `Network not found for IP address: ${ip}` });
  if (sim.net.tunnels.size >= MAX_TUNNELS) return answer(400, { message: 'VPN communication error: too many sockets' });
  const act = findVm(sim, n, ip);
  if (act && sim.vpn) await sim.vpn.handshake(act.provider); // the SYN crosses the VPN (lib/vpnlink.js)
  const r = await connectInVpn(sim, act, port);
  if (!r.tcp) return answer(r.status, r.body);
  if (socket.destroyed || !sim.net.networks.has(n.id) || sim.down) { orphan(sim, r.tcp, act); return undefined; }
  sim.wss.handleUpgrade(req, socket, head, (ws) => {
    logIt(101);
    openTunnel(sim, ws, r.tcp, { networkId: n.id, ip, port, activity: act });
  });
  return undefined;
}

/**
 * The VM can be reached over this tunnel: the provider is on the network, the IP still maps to it and
 * its VM lives. Otherwise packets are dropped both ways and only the TCP timeout ends the tunnel (§6.4, §9.4).
 */
function reachable(sim, t) {
  const p = t.provider;
  const n = sim.net.networks.get(t.networkId);
  // a hung exe-unit relays no VPN packets either (fault `unresponsive`)
  return !p.faults.vanished && !t.vmDead && !t.activity.hang && !!n && n.nodes.get(t.ip) === p.nodeId;
}

function openTunnel(sim, ws, tcp, { networkId, ip, port, activity }) {
  if (sim.vpn) sim.vpn.wrap(ws, tcp, activity.provider); // the VPN leg's delay and bandwidth
  const provider = activity.provider;
  const t = {
    id: ids.simple(), networkId, ip, port, activityId: activity.id, activity, provider, providerId: provider.nodeId, openedAt: new Date().toISOString(),
    bytesToVm: 0, bytesFromVm: 0, messagesFromVm: 0, bytesDropped: 0, ws, tcp, lastHeard: Date.now(), closed: false,
    vmFin: false, vmDead: false, cut: false, heldToVm: [], heldToVmBytes: 0, silentSince: null, unacked: false, tcpTimer: null,
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
    ws.send(chunk, { binary: true }, () => { inflight--; if (inflight <= 16 && !t.closed && !t.cut) tcp.resume(); });
  };
  // Delay is applied per chunk, order preserved.
  let chain = Promise.resolve();
  tcp.on('data', (chunk) => {
    if (t.closed) return;
    const delay = provider.faults.tunnelDelayMs;
    if (!delay) { toClient(chunk); return; }
    chain = chain.then(() => new Promise((r) => sim.later(delay, () => { if (!t.closed) toClient(chunk); r(); })));
  });
  // A bare FIN from the VM is not reported (§6.4): the daemon's socket sits in CLOSE-WAIT.
  tcp.on('end', () => { chain.then(() => vmFinished(sim, t)); });
  tcp.on('close', () => { chain.then(() => vmClosed(sim, t)); });
  tcp.on('error', () => {});
  // An RST from the service closes the stack's socket: the tunnel ends at once (no close frame).
  if (tcp.connId) activity.vm.onReset.set(tcp.connId, () => { chain.then(() => { if (!t.cut) end(sim, t, 'RST from the VM'); }); });
  ws.on('message', (data) => {
    heard();
    const buf = Buffer.isBuffer(data) ? data : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]);
    fromClient(sim, t, buf);
  });
  ws.on('pong', heard);
  ws.on('ping', heard);
  ws.on('close', () => { end(sim, t, 'client closed', { keepVmConnection: true }); });
  ws.on('error', () => end(sim, t, 'client error', { keepVmConnection: true }));
  tcp.resume();
  t.pinger = sim.every(sim.opts.wsPingIntervalMs, () => {
    if (Date.now() - t.lastHeard > sim.opts.wsIdleTimeoutMs) { end(sim, t, 'client silent', { keepVmConnection: true }); return; }
    try { ws.ping(); } catch { /* closing */ }
  });
  if (!reachable(sim, t)) cutOff(sim, t);
}

function fromClient(sim, t, buf) {
  if (t.closed) return;
  t.bytesToVm += buf.length;
  if (t.cut) {
    // Nothing is acknowledged; a write onto an empty send buffer restarts the stack's timeout count.
    if (!t.unacked) { t.unacked = true; t.silentSince = Date.now(); armTcpTimeout(sim, t); }
    if (t.heldToVmBytes + buf.length <= MAX_HELD_BYTES) { t.heldToVm.push(buf); t.heldToVmBytes += buf.length; } else t.bytesDropped += buf.length;
    return;
  }
  // The VM's socket is closed: our data draws an RST, which ends the tunnel.
  if (t.vmFin) { end(sim, t, 'RST from the VM'); return; }
  if (!t.tcp.write(buf)) { t.ws.pause(); t.tcp.once('drain', () => t.ws.resume()); }
}

function vmFinished(sim, t) {
  if (t.closed || t.vmFin) return;
  t.vmFin = true;
  // The VM's orphaned FIN-WAIT-2 socket times out (Linux tcp_fin_timeout); the next keep-alive probe
  // after that draws an RST.
  const ka = sim.opts.tcpKeepAliveMs;
  const after = (Math.floor(sim.opts.vmFinTimeoutMs / ka) + 1) * ka;
  t.finTimer = sim.later(after, () => end(sim, t, 'RST from the VM (keep-alive after FIN)'));
}

function vmClosed(sim, t) {
  if (t.closed) return;
  // The VM itself died: no RST comes back, the tunnel waits for the TCP timeout.
  if (t.activity.vm.dying || !t.activity.vm.alive) { t.vmDead = true; cutOff(sim, t); return; }
  if (!t.vmFin) vmFinished(sim, t);
}

/** Packets stop flowing: hold what each side sends (TCP would retransmit it) and start the TCP timeout. */
function cutOff(sim, t) {
  if (t.closed || t.cut) return;
  t.cut = true;
  t.tcp.pause();
  if (t.vmDead) { sim.cancel(t.finTimer); t.finTimer = null; }
  t.silentSince = Date.now();
  t.unacked = t.heldToVmBytes > 0;
  armTcpTimeout(sim, t);
}

function reconnect(sim, t) {
  if (t.closed || !t.cut) return;
  t.cut = false;
  sim.cancel(t.tcpTimer); t.tcpTimer = null;
  const held = t.heldToVm; t.heldToVm = []; t.heldToVmBytes = 0; t.unacked = false;
  for (const b of held) { t.bytesToVm -= b.length; fromClient(sim, t, b); }
  if (!t.closed) t.tcp.resume();
}

function armTcpTimeout(sim, t) {
  sim.cancel(t.tcpTimer);
  const due = t.silentSince + sim.opts.tcpTimeoutMs - Date.now();
  t.tcpTimer = sim.later(due, () => { t.tcpTimer = null; end(sim, t, 'TCP timeout'); });
}

function reachabilityChanged(sim) {
  for (const t of [...sim.net.tunnels.values()]) {
    if (reachable(sim, t)) reconnect(sim, t); else cutOff(sim, t);
  }
}

function vmGone(sim, act) {
  for (const t of [...sim.net.tunnels.values()]) if (t.activity === act) { t.vmDead = true; cutOff(sim, t); }
  for (const o of [...sim.net.orphans]) if (o.act === act) { sim.net.orphans.delete(o); o.tcp.destroy(); }
}

/**
 * The daemon stops the tunnel's WebSocket actor: no close frame, the connection just drops (§6.4).
 * The TCP connection inside the VM stays when the client side ended it (`keepVmConnection`).
 */
function end(sim, t, why, { keepVmConnection = false } = {}) {
  if (t.closed) return;
  t.closed = true;
  t.closedAt = new Date().toISOString();
  t.closeReason = why;
  clearInterval(t.pinger); sim.timers.delete(t.pinger);
  sim.cancel(t.tcpTimer); sim.cancel(t.finTimer);
  sim.net.tunnels.delete(t.id);
  if (keepVmConnection && !t.vmFin && !t.vmDead) orphan(sim, t.tcp, t.activity); else t.tcp.destroy();
  t.ws.terminate();
}

/** A VM-side connection nobody reads any more: the VM's next data is lost and answered with a FIN. */
function orphan(sim, tcp, act) {
  const o = { tcp, act };
  tcp.removeAllListeners('data'); tcp.removeAllListeners('end'); tcp.removeAllListeners('close');
  tcp.on('error', () => {});
  const drop = () => { sim.net.orphans.delete(o); tcp.destroy(); };
  tcp.on('data', () => { tcp.end(); });
  tcp.on('end', drop); tcp.on('close', drop);
  sim.net.orphans.add(o);
  if (sim.net.orphans.size > MAX_ORPHANS) { const first = sim.net.orphans.values().next().value; sim.net.orphans.delete(first); first.tcp.destroy(); }
  tcp.resume();
}

/** Abruptly end matching tunnels (network removal, `dropTunnels`, daemon stop/crash). */
function closeTunnels(sim, pred, reason = '') {
  let count = 0;
  for (const t of [...sim.net.tunnels.values()]) if (pred(t)) { end(sim, t, reason, { keepVmConnection: true }); count++; }
  return count;
}

function tunnelView(t) {
  return {
    id: t.id, networkId: t.networkId, ip: t.ip, port: t.port, activityId: t.activityId, providerId: t.providerId, openedAt: t.openedAt, closedAt: t.closedAt || null,
    closeReason: t.closeReason || null, reachable: !t.cut, vmFin: t.vmFin, bytesToVm: t.bytesToVm, bytesFromVm: t.bytesFromVm, messagesFromVm: t.messagesFromVm, bytesDropped: t.bytesDropped,
  };
}

/** The daemon process goes away (stop or crash): its tunnels vanish, the VMs keep their connections. */
function shutdown(sim) {
  closeTunnels(sim, () => true, 'daemon stopped');
  for (const o of sim.net.orphans) o.tcp.destroy();
  sim.net.orphans.clear();
}

/** A daemon crash: VPN networks live in process memory only, every tunnel is gone (§9.7). */
function forgetVolatile(sim) {
  closeTunnels(sim, () => true, 'daemon crashed');
  sim.net.networks.clear();
}

module.exports = { init, shutdown, forgetVolatile, upgrade, reject, closeTunnels, netView, tunnelView };
