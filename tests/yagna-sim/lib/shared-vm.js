'use strict';
// `--vm-mode shared` (scale/bench mode): the VMs of every provider are served by ONE shared host
// process (lib/shared-host.js) instead of an agent process and the image's own service each.
// A SharedVM has the interface of lib/vm.js's VM, so the exe-unit, tunnels, faults and payments
// above it are unchanged; only what runs "inside" differs:
//   - `run` executes nothing: it exits 0 with empty output and (re)starts the VM's built-in service
//     (lib/calc-service.js: the calc image's HTTP API) on port 80, or on the `--port N` / `-p N` /
//     `--port=N` its arguments name;
//   - killService stops that VM's service (its connections get a FIN, new ones are refused);
//   - crashVm drops that VM (its connections die silently, the activity and agreement end as usual);
//   - deploy still copies the image into the VM's own /golem/run (transfers work as usual).
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const readline = require('node:readline');
const { copyImage } = require('./images');
const { relayConnect, makeVmRoot } = require('./vm');

const HOST = path.join(__dirname, 'shared-host.js');
const EMPTY = Buffer.alloc(0);

/** The one host process of a YagnaSim; started by its first VM, stopped with the daemon. */
class SharedHost {
  constructor({ baseDir, log }) {
    this.sock = path.join(baseDir, 'shared-host.sock');
    this.log = log;
    this.vms = new Set();
    this.proc = null;
    this.ready = null;
  }

  start() {
    if (this.ready) return this.ready;
    this.proc = spawn(process.execPath, [HOST, '--sock', this.sock], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stdin.on('error', () => {});
    this.proc.stderr.on('data', (d) => this.log(`shared host: ${d.toString().trim()}`));
    this.ready = new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('shared service host did not start')), 30000);
      readline.createInterface({ input: this.proc.stdout }).on('line', (l) => {
        let m; try { m = JSON.parse(l); } catch { return; }
        if (m.ev === 'ready') { clearTimeout(t); resolve(); }
      });
      this.proc.once('exit', () => { clearTimeout(t); reject(new Error('shared service host exited')); });
    });
    // The host going down takes every VM with it, as a machine's crash would.
    this.proc.once('exit', () => { this.proc = null; this.ready = null; for (const vm of [...this.vms]) vm.died(); });
    return this.ready;
  }

  send(o) { if (this.proc) this.proc.stdin.write(JSON.stringify(o) + '\n'); }

  async stop() {
    const p = this.proc;
    if (!p) return;
    const exited = new Promise((r) => p.once('exit', r));
    this.send({ op: 'exit' });
    const t = setTimeout(() => { try { p.kill('SIGKILL'); } catch { /* gone */ } }, 1000);
    await exited; clearTimeout(t);
  }
}

/** The port a service-starting command names (--port N, --port=N, -p N), else 80. */
function servicePort(args) {
  const m = /(?:--port[= ]|-p )(\d{1,5})(?!\d)/.exec(args.join(' '));
  const port = m ? Number(m[1]) : 80;
  return port >= 1 && port <= 65535 ? port : 80;
}

class SharedVM {
  constructor({ id, host, baseDir, log, info, connectTimeoutMs = 5000 }) {
    this.id = id;
    this.host = host;
    this.dir = fs.mkdtempSync(path.join(baseDir, `vm-${id.slice(0, 8)}-`));
    this.root = path.join(this.dir, 'root');
    this.log = log;
    this.info = info; // shown by the service's GET /_vm
    this.connectTimeoutMs = connectTimeoutMs;
    this.netns = false;
    this.shared = true;
    this.port80 = 80;
    this.alive = false;
    this.dying = false;
    this.onDeath = null;
    this.onReset = new Map(); // the built-in service never resets a connection; net.js registers here
  }

  async start() {
    makeVmRoot(this.root);
    await this.host.start();
    this.host.vms.add(this);
    this.alive = true;
  }

  died() {
    const wasAlive = this.alive;
    this.dying = true;
    this.alive = false;
    this.host.vms.delete(this);
    if (wasAlive && this.onDeath) this.onDeath();
  }

  deploy(image) { copyImage(image.dir, path.join(this.root, 'golem', 'run')); }

  run(entry, args) {
    if (!this.alive) return Promise.resolve({ code: 137, stdout: EMPTY, stderr: EMPTY, vmDied: true });
    this.host.send({ op: 'listen', vm: this.id, port: servicePort([entry, ...(args || []).map(String)]), info: this.info });
    return Promise.resolve({ code: 0, signal: null, stdout: EMPTY, stderr: EMPTY });
  }

  killServices() { this.host.send({ op: 'kill', vm: this.id }); }

  connect(port) { return relayConnect(this, this.host.sock, `${this.id} ${port}\n`); }

  async destroy() {
    this.dying = true;
    this.alive = false;
    this.host.vms.delete(this);
    this.host.send({ op: 'drop', vm: this.id });
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** Hard crash: the VM is gone at once (its connections die without a word). */
  crash() {
    this.dying = true;
    this.host.send({ op: 'drop', vm: this.id });
    setImmediate(() => this.died());
  }
}

module.exports = { SharedHost, SharedVM, servicePort };
