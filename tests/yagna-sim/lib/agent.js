'use strict';
// VM agent: the first process of a simulated VM. With namespaces it runs as PID 1 of fresh
// user+net+pid namespaces (so everything it starts shares the VM's private loopback, and dies
// with it). It takes commands as JSON lines on stdin and reports on stdout. TCP connections go
// over the IPC channel the daemon opened (NODE_CHANNEL_FD survives unshare's exec):
// {op:"connect", id, port} is answered {ev:"conn", id} carrying the socket connected to
// 127.0.0.1:<port> inside the VM, or {ev:"connerr", id, code}; the daemon then reads and writes
// that socket itself, so no byte of a tunnel passes through this process.
// {op:"ping", id} -> {ev:"pong", id}: the daemon's proof that the VM still lives.
const net = require('node:net');
const fs = require('node:fs');
const { spawn, spawnSync } = require('node:child_process');
const readline = require('node:readline');

const argv = process.argv.slice(2);
const opt = (name) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined; };
const useNetns = argv.includes('--netns');
const connectTimeoutMs = Number(opt('--connect-timeout-ms') || 5000);

const send = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const procs = new Map(); // id -> ChildProcess

function loUp() {
  const r = spawnSync('ip', ['link', 'set', 'lo', 'up'], { stdio: 'ignore' });
  if (r.status === 0) return true;
  // No iproute2: set IFF_UP with an ioctl from python3.
  const py = "import fcntl,socket,struct\ns=socket.socket()\nr=fcntl.ioctl(s,0x8913,struct.pack('16sH',b'lo',0))\nf=struct.unpack('16sH',r[:18])[1]|1\nfcntl.ioctl(s,0x8914,struct.pack('16sH',b'lo',f))";
  return spawnSync('python3', ['-c', py], { stdio: 'ignore' }).status === 0;
}

function killAll(signal = 'SIGKILL') {
  for (const cp of procs.values()) {
    try { process.kill(-cp.pid, signal); } catch { try { cp.kill(signal); } catch { /* gone */ } }
  }
  if (useNetns) {
    // As PID 1 of the VM's pid namespace: also kill daemonized leftovers (everything but us).
    try {
      for (const p of fs.readdirSync('/proc')) {
        if (/^\d+$/.test(p) && Number(p) !== process.pid && Number(p) > 1) {
          try { process.kill(Number(p), signal); } catch { /* not ours / gone */ }
        }
      }
    } catch { /* no /proc */ }
  }
}

function handle(msg) {
  if (msg.op === 'spawn') {
    let cp;
    try {
      cp = spawn(msg.file, msg.args || [], {
        cwd: msg.cwd, env: msg.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (e) {
      send({ ev: 'exit', id: msg.id, code: 127, error: String(e.message) });
      return;
    }
    procs.set(msg.id, cp);
    let exited = null; let closed = false; let finished = false;
    const finish = () => {
      if (finished) return; finished = true;
      procs.delete(msg.id);
      send({ ev: 'exit', id: msg.id, ...exited });
    };
    const onData = (stream) => (d) => send({ ev: stream, id: msg.id, data: d.toString('base64') });
    cp.stdout.on('data', onData('stdout'));
    cp.stderr.on('data', onData('stderr'));
    cp.on('error', (e) => { exited = { code: 127, error: String(e.message) }; finish(); });
    cp.on('exit', (code, signal) => {
      exited = { code: code === null ? 128 + 9 : code, signal };
      if (closed) finish();
      // A backgrounded child may keep our pipes open: don't wait for it.
      else setTimeout(finish, 150).unref();
    });
    cp.on('close', () => { closed = true; if (exited) finish(); });
    send({ ev: 'spawned', id: msg.id, pid: cp.pid });
  } else if (msg.op === 'killall') {
    killAll(msg.signal || 'SIGKILL');
    send({ ev: 'killed', id: msg.id });
  } else if (msg.op === 'exit') {
    killAll();
    process.exit(0);
  }
}

const toDaemon = (o, socket) => {
  if (!process.connected) { if (socket) socket.destroy(); return; }
  // Sent, the socket is the daemon's: Node closes our copy of the fd once it is acknowledged.
  process.send(o, socket, (err) => { if (err && socket) socket.destroy(); });
};

function connectInVm(msg) {
  const t = net.connect({ host: '127.0.0.1', port: msg.port });
  // Never read here: what the service sends first must stay in the kernel for the daemon.
  t.pause();
  const fail = (code) => { t.destroy(); toDaemon({ ev: 'connerr', id: msg.id, code }); };
  const timer = setTimeout(() => fail('ETIMEDOUT'), connectTimeoutMs);
  t.once('error', (e) => { clearTimeout(timer); fail(e.code || 'EIO'); });
  t.once('connect', () => {
    clearTimeout(timer);
    // A handle waits in Node's queue while an earlier one is unacknowledged: an RST meanwhile
    // must not kill the agent (the daemon then gets the message without a socket).
    t.removeAllListeners('error');
    t.on('error', () => {});
    t.setNoDelay(true);
    toDaemon({ ev: 'conn', id: msg.id }, t);
  });
}

function onDaemonMessage(msg) {
  if (msg.op === 'connect') connectInVm(msg);
  else if (msg.op === 'ping') toDaemon({ ev: 'pong', id: msg.id });
}

if (useNetns && !loUp()) send({ ev: 'warn', message: 'could not bring up lo' });
process.on('SIGTERM', () => { killAll(); process.exit(0); });
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  let m; try { m = JSON.parse(l); } catch { return; }
  handle(m);
}).on('close', () => { killAll(); process.exit(0); });
process.on('message', onDaemonMessage);
process.on('disconnect', () => { killAll(); process.exit(0); });
send({ ev: 'ready', pid: process.pid, netns: useNetns });
