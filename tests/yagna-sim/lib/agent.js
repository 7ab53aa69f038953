'use strict';
// VM agent: the first process of a simulated VM. With namespaces it runs as PID 1 of fresh
// user+net+pid namespaces (so everything it starts shares the VM's private loopback, and dies
// with it). It takes commands as JSON lines on stdin, reports on stdout, and relays TCP
// connections: a client connects to the unix socket given by --sock, writes "<port>\n", gets
// "OK\n" (or "ERR <code>\n") once 127.0.0.1:<port> inside the VM is connected, then raw bytes.
const net = require('node:net');
const fs = require('node:fs');
const { spawn, spawnSync } = require('node:child_process');
const readline = require('node:readline');

const argv = process.argv.slice(2);
const opt = (name) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined; };
const sockPath = opt('--sock');
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

function relayServer() {
  try { fs.unlinkSync(sockPath); } catch { /* none */ }
  let nextConn = 0;
  const srv = net.createServer((c) => {
    let head = Buffer.alloc(0);
    const onHead = (d) => {
      head = Buffer.concat([head, d]);
      const nl = head.indexOf(10);
      if (nl < 0) { if (head.length > 64) c.destroy(); return; }
      c.removeListener('data', onHead);
      c.pause();
      const port = Number(head.subarray(0, nl).toString());
      const rest = head.subarray(nl + 1);
      const t = net.connect({ host: '127.0.0.1', port });
      const timer = setTimeout(() => { t.destroy(); c.end('ERR ETIMEDOUT\n'); }, connectTimeoutMs);
      t.once('error', (e) => { clearTimeout(timer); if (!c.destroyed) c.end(`ERR ${e.code || 'EIO'}\n`); });
      const conn = ++nextConn;
      t.once('connect', () => {
        clearTimeout(timer);
        t.setNoDelay(true);
        // The id lets the daemon tell an RST from the service (reported on stdout) from a FIN (EOF here).
        c.write(`OK ${conn}\n`);
        if (rest.length) t.write(rest);
        c.pipe(t); t.pipe(c);
        c.resume();
        t.on('error', (e) => { if (e.code === 'ECONNRESET' || e.code === 'EPIPE') send({ ev: 'rst', conn }); c.destroy(); });
        c.on('error', () => t.destroy());
        t.on('close', () => c.end());
        c.on('close', () => t.destroy());
      });
    };
    c.on('data', onHead);
    c.on('error', () => {});
  });
  srv.listen(sockPath, () => send({ ev: 'ready', pid: process.pid, netns: useNetns }));
}

if (useNetns && !loUp()) send({ ev: 'warn', message: 'could not bring up lo' });
process.on('SIGTERM', () => { killAll(); process.exit(0); });
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  let m; try { m = JSON.parse(l); } catch { return; }
  handle(m);
}).on('close', () => { killAll(); process.exit(0); });
relayServer();
