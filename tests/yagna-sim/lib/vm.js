'use strict';
// Daemon side of a simulated VM: a per-VM temp root, the agent process (lib/agent.js) in its own
// user+net+pid namespaces (or plain, in fallback mode), command execution and TCP connections.
// A connection is opened by the agent inside the VM and its socket handed to us over the IPC
// channel: the daemon then reads and writes the service's connection directly (no relay hop).
//
// Path mapping: the VM root is <tmp>/vm-<activityId>/root. The image's files are copied to
// <root>/golem/run; <root>/golem/{work,input,output,resources} exist. In `run` commands every
// absolute path starting with /golem/ (the entry point, each arg, and /golem/ occurrences inside
// args, e.g. in `sh -c "python3 /golem/run/x.py &"`) is rewritten to <root>/golem/...
// The command's cwd is <root>/golem/work.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const { spawn, spawnSync } = require('node:child_process');
const readline = require('node:readline');
const { copyImage } = require('./images');

const AGENT = path.join(__dirname, 'agent.js');
const MAX_CAPTURE = 1024 * 1024; // bytes kept per stream per command

/** Can we create unprivileged user+net+pid namespaces here? */
function detectNetns() {
  if (process.platform !== 'linux') return false;
  const r = spawnSync('unshare', ['--user', '--map-root-user', '--net', '--pid', '--fork', '--kill-child', 'true'], { stdio: 'ignore', timeout: 5000 });
  return r.status === 0;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** The VM's file system: /golem/run gets the image, the volumes exist. */
function makeVmRoot(root) {
  for (const d of ['golem/run', 'golem/work', 'golem/input', 'golem/output', 'golem/resources']) fs.mkdirSync(path.join(root, d), { recursive: true });
}

class VM {
  constructor({ id, baseDir, netns, log, connectTimeoutMs = 5000 }) {
    this.id = id;
    this.dir = fs.mkdtempSync(path.join(baseDir, `vm-${id.slice(0, 8)}-`));
    this.root = path.join(this.dir, 'root');
    this.netns = netns;
    this.log = log || (() => {});
    this.connectTimeoutMs = connectTimeoutMs;
    this.pending = new Map(); // cmd id -> {resolve, stdout[], stderr[], onOutput}
    this.pgids = new Set();
    this.seq = 0;
    this.alive = false;
    this.port80 = 80; // fallback mode remaps it
    this.onDeath = null;
    this.onReset = new Map(); // connection id -> fn, called on an RST from the service
    this.connecting = new Map(); // connection id -> {resolve, reject, timer}
    this.conns = new Map(); // connection id -> socket handed over by the agent, until closed
    this.pings = new Map(); // ping id -> fn, run when the agent answers
    this.pruneAt = 64;
  }

  async start() {
    makeVmRoot(this.root);
    if (!this.netns) this.port80 = await freePort();
    const agentArgs = [AGENT, '--connect-timeout-ms', String(this.connectTimeoutMs)];
    const [file, args] = this.netns
      ? ['unshare', ['--user', '--map-root-user', '--net', '--pid', '--fork', '--kill-child', process.execPath, ...agentArgs, '--netns']]
      : [process.execPath, agentArgs];
    // unshare execs the agent with our fds and env, so the IPC channel (fd 3, NODE_CHANNEL_FD) reaches it.
    this.proc = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe', 'ipc'], cwd: this.root });
    this.proc.on('message', (m, socket) => this.onIpc(m, socket));
    this.proc.stderr.on('data', (d) => this.log(`vm ${this.id.slice(0, 8)} agent: ${d.toString().trim()}`));
    this.proc.stdin.on('error', () => {});
    const ready = new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('VM agent did not start')), 30000); // a loaded test machine is slow to spawn it
      readline.createInterface({ input: this.proc.stdout }).on('line', (l) => {
        let m; try { m = JSON.parse(l); } catch { return; }
        if (m.ev === 'ready') { clearTimeout(t); this.alive = true; resolve(); }
        else this.onAgent(m);
      });
      this.proc.once('exit', () => { clearTimeout(t); reject(new Error('VM agent exited')); });
    });
    this.proc.once('exit', () => this.died());
    await ready;
  }

  died() {
    const wasAlive = this.alive;
    this.dying = true;
    this.alive = false;
    this.killGroups();
    for (const p of this.pending.values()) p.resolve({ code: 137, signal: 'SIGKILL', stdout: Buffer.concat(p.stdout), stderr: Buffer.concat(p.stderr), vmDied: true });
    this.pending.clear();
    for (const id of [...this.connecting.keys()]) this.connectDone(id, codeError('EHOSTUNREACH'));
    this.pings.clear(); // never answered: the VM is gone
    if (wasAlive && this.onDeath) this.onDeath();
  }

  onAgent(m) {
    const p = this.pending.get(m.id);
    if (m.ev === 'spawned') { if (!this.netns) this.pgids.add(m.pid); return; }
    if (!p) return;
    if (m.ev === 'stdout' || m.ev === 'stderr') {
      const buf = Buffer.from(m.data, 'base64');
      const arr = p[m.ev];
      if (p.size[m.ev] < MAX_CAPTURE) { arr.push(buf); p.size[m.ev] += buf.length; }
      if (p.onOutput) p.onOutput(m.ev, buf);
    } else if (m.ev === 'exit') {
      this.pending.delete(m.id);
      p.resolve({ code: m.code, signal: m.signal || null, error: m.error, stdout: Buffer.concat(p.stdout), stderr: Buffer.concat(p.stderr) });
    }
  }

  send(o) { if (this.alive) this.proc.stdin.write(JSON.stringify(o) + '\n'); }

  deploy(image) { copyImage(image.dir, path.join(this.root, 'golem', 'run')); }

  mapPath(s) {
    const golem = path.join(this.root, 'golem');
    let out = s.replace(/(^|[\s'"=:;,(])\/golem(?=\/|$|[\s'";)])/g, (_, pre) => pre + golem);
    if (!this.netns) {
      const P = String(this.port80);
      out = out.replace(/0\.0\.0\.0:80(?!\d)/g, `127.0.0.1:${P}`)
        .replace(/(--port[= ]|-p )80(?!\d)/g, `$1${P}`)
        .replace(/([\s'"]):80(?!\d)/g, `$1:${P}`);
    }
    return out;
  }

  /** Run a command; resolves {code, signal, stdout, stderr}. onOutput(stream, buf) for streaming. */
  run(entry, args, { env, onOutput } = {}) {
    if (!this.alive) return Promise.resolve({ code: 137, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), vmDied: true });
    const id = ++this.seq;
    const vmEnv = {
      PATH: process.env.PATH || '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: path.join(this.root, 'golem', 'work'),
      LANG: 'C.UTF-8',
      GOLEM_ROOT: path.join(this.root, 'golem'),
      ...(this.netns ? {} : { PORT: String(this.port80), YAGNA_SIM_PORT80: String(this.port80) }),
      ...(env || {}),
    };
    return new Promise((resolve) => {
      this.pending.set(id, { resolve, stdout: [], stderr: [], size: { stdout: 0, stderr: 0 }, onOutput });
      this.send({ op: 'spawn', id, file: this.mapPath(entry), args: (args || []).map((a) => this.mapPath(String(a))), cwd: path.join(this.root, 'golem', 'work'), env: vmEnv });
    });
  }

  /** Kill every process started in the VM (the VM itself stays up). */
  killServices() { this.send({ op: 'killall', id: 0 }); this.killGroups(); }

  killGroups() {
    for (const g of this.pgids) { try { process.kill(-g, 'SIGKILL'); } catch { /* gone */ } }
    if (!this.alive) this.pgids.clear();
  }

  /**
   * Connect to `port` inside the VM: the agent connects and hands the socket over. Resolves it
   * paused, half-open allowed, `connId` set (the contract of relayConnect), or rejects with
   * err.code ETIMEDOUT/ECONNREFUSED/EHOSTUNREACH/...
   */
  connect(port) {
    const target = !this.netns && port === 80 ? this.port80 : port;
    return new Promise((resolve, reject) => {
      if (!this.alive || this.dying) { reject(codeError('EHOSTUNREACH')); return; }
      const id = ++this.seq;
      const timer = setTimeout(() => this.connectDone(id, codeError('ETIMEDOUT')), this.connectTimeoutMs + 1000);
      this.connecting.set(id, { resolve, reject, timer });
      this.toAgent({ op: 'connect', id, port: target });
    });
  }

  // A failed send means the agent is gone: its exit (died) settles whatever waits on it.
  toAgent(o) { if (this.alive && this.proc.connected) this.proc.send(o, () => {}); }

  onIpc(m, socket) {
    if (m.ev === 'pong') {
      const fn = this.pings.get(m.id);
      this.pings.delete(m.id);
      if (fn && this.alive && !this.dying) fn();
    } else if (m.ev === 'conn' || m.ev === 'connerr') {
      // Late (after our timeout) or for a VM on its way out: nobody will read it.
      if (!this.connecting.has(m.id) || this.dying) {
        if (socket) socket.destroy();
        if (this.dying) this.connectDone(m.id, codeError('EHOSTUNREACH'));
        return;
      }
      // A socket reset while queued in the agent arrives without its handle.
      if (m.ev === 'connerr' || !socket) this.connectDone(m.id, codeError(m.code || 'ECONNRESET'));
      else this.connectDone(m.id, null, this.adopt(socket, m.id));
    }
  }

  connectDone(id, err, socket) {
    const c = this.connecting.get(id);
    if (!c) return;
    this.connecting.delete(id);
    clearTimeout(c.timer);
    if (err) c.reject(err); else c.resolve(socket);
  }

  /** A socket the agent connected is ours from now on: we read, write and close it. */
  adopt(s, connId) {
    // Half-open: a FIN from the VM must not close our side (the daemon never reports a bare FIN).
    s.allowHalfOpen = true;
    s.pause();
    s.connId = connId;
    s.on('error', (e) => {
      if (e.code !== 'ECONNRESET' && e.code !== 'EPIPE') return;
      s.vmReset = true; // its onReset entry waits for the agent's answer, past the close
      this.resetSeen(connId);
    });
    s.on('close', () => { this.conns.delete(connId); if (!s.vmReset) this.onReset.delete(connId); });
    this.prune();
    this.conns.set(connId, s);
    return s;
  }

  // The kernel also resets connections when the VM dies (its processes are killed), and a dead
  // VM must stay silent (PROTOCOL.md §9): the RST counts as the service's only if the agent
  // answers after it, as the relay's report did.
  resetSeen(connId) {
    this.whenAlive(() => {
      const fn = this.onReset.get(connId);
      if (fn) { this.onReset.delete(connId); fn(); }
    });
  }

  whenAlive(fn) {
    if (!this.alive || this.dying) return;
    const id = ++this.seq;
    this.pings.set(id, fn);
    this.toAgent({ op: 'ping', id });
  }

  // net.js's orphan() removes every 'close' listener, ours too: closed sockets are swept here.
  prune() {
    if (this.conns.size < this.pruneAt) return;
    for (const [id, s] of this.conns) {
      if (!s.destroyed) continue;
      this.conns.delete(id);
      if (!s.vmReset) this.onReset.delete(id);
    }
    this.pruneAt = Math.max(64, 2 * this.conns.size);
  }

  dropConns() {
    for (const s of this.conns.values()) s.destroy();
    this.conns.clear();
    this.onReset.clear();
  }

  async destroy() {
    this.dying = true;
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      const exited = new Promise((r) => this.proc.once('exit', r));
      this.send({ op: 'exit' });
      const t = setTimeout(() => { try { this.proc.kill('SIGKILL'); } catch { /* gone */ } }, 1000);
      await exited; clearTimeout(t);
    }
    this.alive = false;
    this.killGroups();
    this.dropConns();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** Hard crash: SIGKILL the agent (and so, with namespaces, every process of the VM). */
  crash() {
    this.dying = true;
    if (this.proc) { try { this.proc.kill('SIGKILL'); } catch { /* gone */ } }
  }
}

const codeError = (code) => { const e = new Error(code); e.code = code; return e; };

/**
 * Open a connection through the shared host's relay socket (lib/shared-vm.js): write `line`,
 * wait for "OK <conn>" (or "ERR <code>"), then the socket carries the raw bytes. Resolves the paused
 * socket (`connId` set) or rejects with err.code ETIMEDOUT/ECONNREFUSED/EHOSTUNREACH/...
 */
function relayConnect(vm, sockPath, line) {
  return new Promise((resolve, reject) => {
    if (!vm.alive) { const e = new Error('VM is gone'); e.code = 'EHOSTUNREACH'; reject(e); return; }
    // Half-open: a FIN from the VM must not close our side (the daemon never reports a bare FIN).
    const s = net.connect({ path: sockPath, allowHalfOpen: true });
    let head = Buffer.alloc(0);
    const fail = (code) => { s.destroy(); const e = new Error(code); e.code = code; reject(e); };
    const timer = setTimeout(() => fail('ETIMEDOUT'), vm.connectTimeoutMs + 1000);
    s.once('error', (e) => { clearTimeout(timer); fail(e.code || 'EIO'); });
    s.once('connect', () => s.write(line));
    const onData = (d) => {
      head = Buffer.concat([head, d]);
      const nl = head.indexOf(10);
      if (nl < 0) return;
      s.removeListener('data', onData);
      clearTimeout(timer);
      const answer = head.subarray(0, nl).toString();
      if (!/^OK( \d+)?$/.test(answer)) { fail(answer.replace(/^ERR /, '') || 'EIO'); return; }
      s.connId = Number(answer.slice(3)) || 0;
      s.on('close', () => vm.onReset.delete(s.connId));
      s.pause();
      const rest = head.subarray(nl + 1);
      if (rest.length) s.unshift(rest);
      s.removeAllListeners('error');
      resolve(s);
    };
    s.on('data', onData);
  });
}

function makeBaseDir() { return fs.mkdtempSync(path.join(os.tmpdir(), 'yagna-sim-')); }

module.exports = { VM, detectNetns, makeBaseDir, freePort, relayConnect, makeVmRoot };
