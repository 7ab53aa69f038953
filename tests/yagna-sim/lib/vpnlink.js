'use strict';
// The VPN path between this daemon and a provider, at real-network latency and bandwidth, for
// benchmarks (--vpn-rtt-ms, --vpn-jitter-ms, --vpn-rate). Off unless one of them is set.
//
// The requestor's WebSocket to the daemon is local; what crosses the (relayed) VPN is the
// daemon <-> provider leg. So:
// - opening a tunnel costs one round trip (the TCP handshake to the VM) before the 101;
// - every data chunk each way waits rtt/2 plus a uniform random extra in [0, jitter] ms, in
//   order (a later chunk never overtakes an earlier one: TCP);
// - each provider's link carries at most `rate` bytes/s per direction, shared by all its
//   tunnels (a relayed link measured 1-2 MB/s, yagna issue 2210): a chunk occupies the link
//   for bytes/rate before its delay starts;
// - a close the daemon sends after data leaves after that data (the FIN follows the bytes).
// WebSocket pings (requestor <-> daemon) stay local.

// "2MB/s", "512KiB/s", "1.5MB", "200000" (bytes/s); MB = 10^6, MiB = 2^20.
function parseRate(s) {
  if (s === undefined || s === null || s === '') return 0;
  if (typeof s === 'number') return s;
  const m = /^\s*([0-9]*\.?[0-9]+)\s*(|b|kb|kib|mb|mib|gb|gib)(?:\/s)?\s*$/i.exec(String(s));
  if (!m) throw new Error(`bad rate ${s}: want e.g. 2MB/s, 512KiB/s or bytes per second`);
  const unit = { '': 1, b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 2 ** 20, gb: 1e9, gib: 2 ** 30 }[m[2].toLowerCase()];
  return Number(m[1]) * unit;
}

// A source pauses while this much is queued on a link (a generous TCP window: the bandwidth
// cap, not the window, is what limits a transfer).
const HIGH_WATER = 8 * 1024 * 1024;
const LOW_WATER = 2 * 1024 * 1024;

// One direction of one provider's link. Deliveries run from one ordered queue with one timer,
// so nothing (a close included) can overtake what was sent before it.
class Link {
  constructor(sim, cfg) {
    this.sim = sim;
    this.cfg = cfg;
    this.freeAt = 0; // when the link has sent everything queued so far (ms, performance.now)
    this.lastAt = 0; // when the last chunk arrives at the far end
    this.queued = 0;
    this.q = [];
    this.timer = null;
    this.waiters = [];
  }
  // Delivers `bytes` through the link, then calls fn; returns false when the sender should pause.
  send(bytes, fn) {
    const now = performance.now();
    const { oneWayMs, jitterMs, rate } = this.cfg;
    const start = Math.max(now, this.freeAt);
    this.freeAt = start + (rate ? (bytes / rate) * 1000 : 0);
    const at = Math.max(this.lastAt, this.freeAt + oneWayMs + (jitterMs ? Math.random() * jitterMs : 0));
    this.push(at, bytes, fn);
    return this.queued <= HIGH_WATER;
  }
  // fn runs once everything sent so far has arrived.
  after(fn) { this.push(this.lastAt, 0, fn); }
  onDrain(fn) { if (this.queued <= LOW_WATER) fn(); else this.waiters.push(fn); }
  push(at, bytes, fn) {
    this.lastAt = Math.max(this.lastAt, at);
    this.queued += bytes;
    this.q.push({ at, bytes, fn });
    if (!this.timer) this.arm();
  }
  // Node's timers have whole-millisecond resolution on a loop clock that lags real time, so a
  // timer may fire up to about 1 ms either side of its mark: a chunk due within that slack is
  // delivered now (rounded, not ceiled, and never re-armed for a fraction of a millisecond),
  // or every direction would arrive 1-2 ms late and the link would be slower than its RTT.
  arm() {
    const wait = Math.max(0, Math.round(this.q[0].at - performance.now()));
    this.timer = this.sim.later(wait, () => this.fire());
  }
  fire() {
    this.timer = null;
    const now = performance.now();
    while (this.q.length && this.q[0].at <= now + 1) {
      const e = this.q.shift();
      this.queued -= e.bytes;
      e.fn();
    }
    if (this.queued <= LOW_WATER && this.waiters.length) for (const w of this.waiters.splice(0)) w();
    if (this.q.length) this.arm();
  }
}

function config(opts) {
  const rtt = Number(opts.vpnRttMs) || 0;
  const jitter = Number(opts.vpnJitterMs) || 0;
  const rate = parseRate(opts.vpnRate);
  if (rtt < 0 || jitter < 0 || rate < 0) throw new Error('--vpn-rtt-ms, --vpn-jitter-ms and --vpn-rate must not be negative');
  if (!rtt && !jitter && !rate) return null;
  return { rttMs: rtt, oneWayMs: rtt / 2, jitterMs: jitter, rate };
}

function init(sim) {
  const cfg = config(sim.opts);
  if (!cfg) { sim.vpn = null; return; }
  const links = new Map(); // provider node id -> { toVm, fromVm }
  const linksOf = (provider) => {
    let l = links.get(provider.nodeId);
    if (!l) { l = { toVm: new Link(sim, cfg), fromVm: new Link(sim, cfg) }; links.set(provider.nodeId, l); }
    return l;
  };
  sim.vpn = {
    cfg,
    // The TCP handshake with the VM crosses the VPN: SYN out, SYN-ACK back.
    handshake: (provider) => new Promise((r) => {
      const l = linksOf(provider);
      l.toVm.send(0, () => l.fromVm.send(0, r));
    }),
    // Puts the link between a tunnel's WebSocket (daemon side) and its VM connection.
    wrap: (ws, tcp, provider) => {
      const l = linksOf(provider);
      const send = ws.send.bind(ws);
      const close = ws.close.bind(ws);
      const write = tcp.write.bind(tcp);
      ws.send = (data, options, cb) => {
        const ok = l.fromVm.send(data.length, () => { if (ws.readyState === ws.OPEN) send(data, options, cb); else if (cb) cb(); });
        if (!ok) { tcp.pause(); l.fromVm.onDrain(() => tcp.resume()); }
      };
      ws.close = (...args) => l.fromVm.after(() => close(...args));
      tcp.write = (buf, ...rest) => {
        const ok = l.toVm.send(buf.length, () => { if (!tcp.destroyed) write(buf, ...rest); });
        if (!ok) { ws.pause(); l.toVm.onDrain(() => ws.resume()); }
        return true;
      };
    },
    view: () => ({ rttMs: cfg.rttMs, jitterMs: cfg.jitterMs, rateBytesPerSec: cfg.rate }),
  };
}

module.exports = { init, parseRate, config };
