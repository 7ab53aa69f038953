'use strict';
// The stand-in daemon: one YagnaSim instance owns all state (no module globals), so tests can run
// several in one process. HTTP/1.1 keep-alive via node:http; WebSocket tunnels via `ws`.
const http = require('node:http');
const fs = require('node:fs');
const { WebSocketServer } = require('ws');
const { loadSpec } = require('./spec');
const { loadImages, packageStream } = require('./images');
const { Provider } = require('./providers');
const { detectNetns, makeBaseDir } = require('./vm');
const { ids, MonotonicClock, HttpError, jsonErr, isoNs } = require('./util');
const market = require('./market');
const activity = require('./activity');
const payment = require('./payment');
const netapi = require('./net');
const vpnlink = require('./vpnlink');
const admin = require('./admin');
const gsb = require('./gsb');

const DEFAULTS = {
  host: '127.0.0.1',
  port: 7465,
  appkey: null, // required
  appkeys: {}, // extra keys: { KEY: { identity, name } } (other requestors on the same daemon)
  identity: null,
  providers: 5,
  images: null,
  specDir: null,
  strict: false,
  quiet: false,
  log: null,
  subnet: 'public',
  debitNoteInterval: 120, // s, offered golem.com.scheme.payu.debit-note.interval-sec?
  acceptTimeout: 240, // s, offered golem.com.payment.debit-notes.accept-timeout?
  paymentTimeout: 120,
  timeScale: 1, // time compression: provider-side durations run F times faster (README "Time compression")
  settleDelaySec: 5, // an accepted payable note / invoice is paid (SETTLED) this long after acceptance
  negotiationDelayMs: 20,
  offerDelayMs: 10,
  deployDelayMs: 30,
  subscriptionTtlSec: 3600,
  wsPingIntervalMs: 5000,
  wsIdleTimeoutMs: 10000,
  tunnelConnectTimeoutMs: 5000,
  vpnRttMs: 0, // the VPN leg's round trip, jitter and per-provider bandwidth (lib/vpnlink.js)
  vpnJitterMs: 0,
  vpnRate: null, // e.g. '2MB/s'
  ssePingMs: 15000,
  keepAliveMs: 5000,
  strictNegotiation: true,
  minExpirationSec: 300,
  maxExpirationNoAcceptSec: 1800,
  maxExpirationNoPaymentTimeoutSec: 36000,
  maxAgreements: 1, // per provider: agreements held at a time (ya-provider max_simultaneous_agreements)
  idleAgreementTimeoutSec: 90, // provider breaks an agreement without activity (NoActivity); 0 = never
  unresponsiveLimitSec: 5, // provider daemon: no usage report for longer -> Unresponsive (UNRESPONSIVE_LIMIT_SECONDS, min 2)
  inactivityLimitSec: 10, // ... for longer -> the activity is destroyed (INACTIVITY_LIMIT_SECONDS, min 2)
  processTerminationTimeoutSec: 5, // ya-provider: SIGTERM to a destroyed activity's exe-unit, SIGKILL after this
  tcpTimeoutMs: 120000, // VPN stack: tunnel ends this long after the VM's last segment (YA_NET_TCP_TIMEOUT_MS)
  tcpKeepAliveMs: 30000, // VPN stack keep-alive probe interval (YA_NET_TCP_KEEP_ALIVE_MS)
  vmFinTimeoutMs: 60000, // a VM socket that sent FIN answers probes until then (Linux tcp_fin_timeout)
  relayTimeoutMarginMs: 1000, // relayed activity calls give up after `timeout` + this (408 Timeout)
  balance: '1000',
  netns: 'auto', // 'auto' | true | false
  vmMode: 'process', // 'process': an agent + the image's processes per VM; 'shared': one host serves every VM (scale/bench, lib/shared-vm.js)
  registryUrl: null, // base URL used in /v1/image/info answers; default: this daemon
  maxBodyBytes: 32 * 1024 * 1024,
  maxViolations: 1000,
  maxRequestLog: 200,
};

class YagnaSim {
  constructor(options = {}) {
    const opts = { ...DEFAULTS };
    for (const [k, v] of Object.entries(options)) if (v !== undefined) opts[k] = v;
    if (!opts.appkey) throw new Error('appkey is required');
    if (opts.vmMode !== 'process' && opts.vmMode !== 'shared') throw new Error(`vmMode must be 'process' or 'shared', not ${JSON.stringify(opts.vmMode)}`);
    this.opts = opts;
    this.clock = new MonotonicClock();
    this.spec = loadSpec(opts.specDir);
    this.images = loadImages(opts.images);
    this.netns = opts.netns === 'auto' ? detectNetns() : !!opts.netns;
    this.baseDir = makeBaseDir();
    this.identity = opts.identity || ids.node();
    this.keys = new Map([[opts.appkey, { identity: this.identity, name: 'requestor', role: 'manager' }]]);
    for (const [k, v] of Object.entries(opts.appkeys || {})) this.keys.set(k, { role: 'manager', name: 'requestor', ...v });
    const pcfg = Array.isArray(opts.providers) ? opts.providers : Array.from({ length: Number(opts.providers) || 0 }, () => ({}));
    this.providers = pcfg.map((c, i) => new Provider(i, c, this));
    this.timers = new Set();
    this.violations = [];
    this.violationCount = 0;
    this.requestLog = [];
    this.routeFaults = [];
    this.routes = [];
    this.sockets = new Set();
    this.logStream = opts.log ? fs.createWriteStream(opts.log, { flags: 'a' }) : null;
    this.stopped = false;
    this.down = false; // crashed (admin fault `crash`), not yet restarted
    // domain state
    market.init(this); activity.init(this); payment.init(this); netapi.init(this); vpnlink.init(this); gsb.init(this); admin.init(this);
  }

  // ---- helpers used by the domain modules
  log(line) {
    if (this.opts.quiet && !this.logStream) return;
    const l = `[yagna-sim ${new Date().toISOString()}] ${line}\n`;
    if (this.logStream) this.logStream.write(l); else process.stderr.write(l);
  }
  later(ms, fn) {
    if (this.stopped) return null; // nothing may keep a stopped instance's process alive
    const t = setTimeout(() => { this.timers.delete(t); if (!this.stopped) fn(); }, Math.max(0, Math.min(ms, 2 ** 31 - 1)));
    this.timers.add(t);
    return t;
  }
  cancel(t) { if (t) { clearTimeout(t); this.timers.delete(t); } }
  every(ms, fn) {
    if (this.stopped) return null;
    const t = setInterval(() => { if (!this.stopped) fn(); }, ms);
    this.timers.add(t);
    return t;
  }
  provider(ref) {
    if (ref === undefined || ref === null) return null;
    const s = String(ref);
    return this.providers.find((p) => p.nodeId === s.toLowerCase() || p.name === s || String(p.index) === s) || null;
  }
  providerById(nodeId) { return this.providers.find((p) => p.nodeId === nodeId) || null; }
  now() { return isoNs(Date.now()); }
  route(method, pattern, handler, opts = {}) {
    const names = [];
    const re = new RegExp('^' + pattern.replace(/:(\w+)/g, (_, n) => { names.push(n); return '([^/]+)'; }) + '/?$');
    this.routes.push({ method, re, names, handler, ...opts });
  }
  recordViolation(req, errors) {
    this.violationCount++;
    const v = { time: new Date().toISOString(), method: req.method, path: req.url.split('?')[0], errors };
    if (this.violations.length < this.opts.maxViolations) this.violations.push(v);
    if (this.opts.strict || !this.opts.quiet) this.log(`SPEC VIOLATION ${v.method} ${v.path}: ${errors.join('; ')}`);
  }
  invalid(req, message) { this.recordViolation(req, [message]); return jsonErr(400, message); }

  // ---- HTTP
  async start() {
    this.wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
    await this.listen(this.opts.port);
    this.port = this.server.address().port;
    this.url = `http://${this.opts.host}:${this.port}`;
    return this;
  }

  async listen(port) {
    const server = http.createServer({ keepAliveTimeout: this.opts.keepAliveMs, requestTimeout: 0, headersTimeout: 60000 }, (req, res) => {
      this.handle(req, res).catch((e) => {
        this.log(`internal error: ${e.stack || e}`);
        if (!res.headersSent && !res.destroyed) { res.writeHead(500, { 'content-type': 'application/json' }); res.end(JSON.stringify({ message: String(e.message) })); }
      });
    });
    server.keepAliveTimeout = this.opts.keepAliveMs;
    server.on('connection', (s) => { this.sockets.add(s); s.on('close', () => this.sockets.delete(s)); });
    server.on('upgrade', (req, socket, head) => Promise.resolve(gsb.upgrade(this, req, socket, head, netapi.reject) || netapi.upgrade(this, req, socket, head)).catch((e) => {
      this.log(`upgrade error: ${e.stack || e}`);
      socket.destroy();
    }));
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.opts.host, () => { server.removeListener('error', reject); resolve(); });
    });
    this.server = server;
  }

  /**
   * The daemon process dies (PROTOCOL.md §9.7): its port refuses connections, open ones are reset.
   * What the real daemon keeps on disk stays (allocations, agreements and their events, activities,
   * payments); demands, offers, proposals, VPN networks and every tunnel are lost. The providers run on.
   * With restartAfterMs it comes back on the same port after that long.
   */
  async crash({ restartAfterMs = null } = {}) {
    if (this.down || this.stopped) return;
    this.down = true;
    this.crashes = (this.crashes || 0) + 1;
    this.log('daemon crash');
    market.forgetVolatile(this);
    netapi.forgetVolatile(this);
    gsb.forgetVolatile(this);
    const closed = new Promise((r) => this.server.close(r));
    for (const s of this.sockets) s.destroy();
    await closed;
    if (restartAfterMs !== null && restartAfterMs !== undefined) this.later(Math.max(0, Number(restartAfterMs) || 0), () => { this.restart().catch((e) => this.log(`restart: ${e.stack || e}`)); });
  }

  /** Start again on the same port after a crash (or crash and start at once). */
  async restart() {
    if (this.stopped) return;
    if (!this.down) await this.crash();
    await this.listen(this.port);
    this.down = false;
    this.restarts = (this.restarts || 0) + 1;
    this.log('daemon restarted'); // what the providers hold arrives at their next retry
  }

  auth(req, url) {
    let key = null;
    const h = req.headers.authorization;
    if (h && /^Bearer\s+/i.test(h)) key = h.replace(/^Bearer\s+/i, '').trim();
    if (!key && url.searchParams.has('authToken')) key = url.searchParams.get('authToken');
    if (!key) throw new HttpError(401, 'Missing application key', { contentType: 'text/plain; charset=utf-8' });
    const who = this.keys.get(key);
    if (!who) throw new HttpError(401, 'Invalid application key', { contentType: 'text/plain; charset=utf-8' });
    return who;
  }

  send(res, status, body, contentType) {
    if (res.headersSent || res.destroyed) return;
    if (body === undefined || status === 204) { res.writeHead(status, { 'content-length': 0 }); res.end(); return; }
    const isText = typeof body === 'string' && contentType && !/json/.test(contentType);
    const data = Buffer.from(isText ? body : JSON.stringify(body));
    res.writeHead(status, { 'content-type': contentType || 'application/json', 'content-length': data.length });
    res.end(data);
  }

  readBody(req) {
    return new Promise((resolve, reject) => {
      const chunks = []; let size = 0;
      req.on('data', (d) => {
        size += d.length;
        if (size > this.opts.maxBodyBytes) { reject(jsonErr(413, 'Payload too large')); req.destroy(); return; }
        chunks.push(d);
      });
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
    });
  }

  async handle(req, res) {
    const t0 = process.hrtime.bigint();
    const url = new URL(req.url, 'http://x');
    let status = 500;
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const entry = `${req.method} ${url.pathname} ${res.statusCode} ${ms.toFixed(1)}ms`;
      this.requestLog.push(entry);
      if (this.requestLog.length > this.opts.maxRequestLog) this.requestLog.shift();
      if (!this.opts.quiet || this.logStream) this.log(entry);
    });
    try {
      // The image registry and /version/get need no app key.
      if (req.method === 'GET' && url.pathname === '/v1/image/info') return this.imageInfo(res, url);
      if (req.method === 'GET' && url.pathname.startsWith('/download/')) return this.download(res, url);
      const route = this.routes.filter((r) => r.re.test(url.pathname));
      const who = route.some((r) => r.noAuth) ? null : this.auth(req, url);
      await this.applyRouteFaults(req, url);
      if (!route.length) { status = 404; return this.send(res, 404, undefined); }
      const r = route.find((x) => x.method === req.method);
      if (!r) { status = 405; return this.send(res, 405, undefined); }
      const m = r.re.exec(url.pathname);
      const params = {};
      r.names.forEach((n, i) => { params[n] = decodeURIComponent(m[i + 1]); });
      const raw = await this.readBody(req);
      let body; let hasBody = false;
      if (raw.length) {
        const ct = req.headers['content-type'] || '';
        if (!/application\/json|\+json/i.test(ct)) throw this.invalid(req, 'Content type error');
        try { body = JSON.parse(raw.toString('utf8')); hasBody = true; } catch (e) {
          throw this.invalid(req, `Json deserialize error: ${e.message}`);
        }
      }
      const query = Object.fromEntries(url.searchParams);
      delete query.authToken;
      if (this.spec && !r.noSpec && !(r.nullBodyOk && hasBody && body === null)) {
        const op = this.spec.find(req.method, url.pathname);
        if (op) {
          const errors = this.spec.validateRequest(op, { query, body, hasBody });
          if (errors.length) { this.recordViolation(req, errors); throw jsonErr(400, errors.join('; ')); }
        }
      }
      const ctx = { req, res, url, params, query, body, hasBody, who, sim: this };
      const out = await r.handler(ctx);
      if (out && out.streamed) return undefined;
      const st = (out && out.status) || 200;
      status = st;
      return this.send(res, st, out ? out.body : undefined, out && out.contentType);
    } catch (e) {
      if (e instanceof HttpError) { status = e.status; return this.send(res, e.status, e.body, e.contentType); }
      throw e;
    }
  }

  async applyRouteFaults(req, url) {
    for (const f of this.routeFaults) {
      if (f.remaining === 0) continue;
      if (f.method && f.method !== req.method) continue;
      if (!f.re.test(url.pathname)) continue;
      if (f.remaining > 0) f.remaining--;
      f.hits++;
      if (f.stallMs) await new Promise((r) => this.later(f.stallMs, r));
      if (f.status) throw new HttpError(f.status, f.body !== undefined ? f.body : { message: f.message || 'Injected fault' });
    }
    this.routeFaults = this.routeFaults.filter((f) => f.remaining !== 0);
  }

  registryBase() { return this.opts.registryUrl || this.url; }
  imageInfo(res, url) {
    const hash = (url.searchParams.get('hash') || '').toLowerCase();
    const img = this.images.get(hash);
    if (!img) return this.send(res, 404, { error: 'image not found' });
    const link = `${this.registryBase().replace(/^https?:/, 'http:')}/download/${img.hash}`;
    return this.send(res, 200, { http: link, https: link.replace(/^http:/, 'https:'), sha3: img.hash, size: img.size });
  }
  download(res, url) {
    const hash = url.pathname.slice('/download/'.length).toLowerCase();
    const img = this.images.get(hash);
    if (!img) return this.send(res, 404, { error: 'image not found' });
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    return packageStream(img.dir, res);
  }

  state() {
    return admin.state(this);
  }

  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) { clearTimeout(t); clearInterval(t); }
    this.timers.clear();
    market.shutdown(this);
    netapi.shutdown(this);
    gsb.shutdown(this);
    await activity.shutdown(this);
    payment.shutdown(this);
    if (this.wss) this.wss.close();
    if (this.server && !this.down) {
      const closed = new Promise((r) => this.server.close(r));
      for (const s of this.sockets) s.destroy();
      await closed;
    }
    fs.rmSync(this.baseDir, { recursive: true, force: true });
    if (this.logStream) await new Promise((r) => this.logStream.end(r));
  }
}

module.exports = { YagnaSim, DEFAULTS };
