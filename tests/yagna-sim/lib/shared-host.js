'use strict';
// Shared service host (`--vm-mode shared`, a scale/bench mode): ONE process serves the port-80
// "service" of many simulated VMs, so hundreds of providers fit on a small machine. It runs no
// image: each VM gets its own built-in HTTP service (the calc image's API, lib/calc-service.js)
// with its own state, started and stopped per VM by the daemon (lib/shared-vm.js).
//
// Daemon -> host, JSON lines on stdin:
//   {op:"listen", vm, port, info}   the VM's service listens on `port` (info: shown by GET /_vm)
//   {op:"kill", vm}                 the VM's processes die: it stops listening, its connections get a FIN
//   {op:"drop", vm}                 the VM is gone: its connections are destroyed (no FIN reaches anyone
//                                   who cares: the daemon treats them as a dead VM's)
//   {op:"exit"}
// Host -> daemon, JSON lines on stdout: {ev:"ready"}.
// Connections: a client connects to the unix socket --sock, writes "<vm> <port>\n", gets
// "OK <conn>\n" (the service took the connection) or "ERR <code>\n", then raw bytes: the socket
// itself is the service's connection (no relay hop inside the host).
const net = require('node:net');
const fs = require('node:fs');
const readline = require('node:readline');
const { createService } = require('./calc-service');

const argv = process.argv.slice(2);
const sockPath = argv[argv.indexOf('--sock') + 1];
const MAX_HEAD = 128; // "<vm id> <port>\n"

const vms = new Map(); // vm -> {ports: Map(port -> http.Server), conns: Set(socket), info}
const send = (o) => process.stdout.write(JSON.stringify(o) + '\n');

function vmEntry(id) {
  let v = vms.get(id);
  if (!v) { v = { ports: new Map(), conns: new Set(), info: {} }; vms.set(id, v); }
  return v;
}

/** Like a killed process: listening stops, the kernel closes its sockets (a FIN each). */
function kill(id, { abrupt = false } = {}) {
  const v = vms.get(id);
  if (!v) return;
  v.ports.clear();
  for (const c of v.conns) { if (abrupt) c.destroy(); else c.end(); }
  v.conns.clear();
  if (abrupt) vms.delete(id);
}

function handle(m) {
  if (m.op === 'listen') {
    const v = vmEntry(m.vm);
    v.info = m.info || {};
    if (!v.ports.has(m.port)) v.ports.set(m.port, createService(v.info));
  } else if (m.op === 'kill') kill(m.vm);
  else if (m.op === 'drop') kill(m.vm, { abrupt: true });
  else if (m.op === 'exit') process.exit(0);
}

let nextConn = 0;
const server = net.createServer({ allowHalfOpen: true }, (c) => {
  let head = Buffer.alloc(0);
  c.on('error', () => {});
  const onHead = (d) => {
    head = Buffer.concat([head, d]);
    const nl = head.indexOf(10);
    if (nl < 0) { if (head.length > MAX_HEAD) c.destroy(); return; }
    c.removeListener('data', onHead);
    c.pause();
    const [id, portText] = head.subarray(0, nl).toString().split(' ');
    const rest = head.subarray(nl + 1);
    const v = vms.get(id);
    const svc = v && v.ports.get(Number(portText));
    if (!svc) { c.end(v ? 'ERR ECONNREFUSED\n' : 'ERR EHOSTUNREACH\n'); return; }
    v.conns.add(c);
    c.on('close', () => v.conns.delete(c));
    c.setNoDelay && c.setNoDelay(true);
    c.write(`OK ${++nextConn}\n`);
    if (rest.length) c.unshift(rest);
    svc.emit('connection', c);
    c.resume();
  };
  c.on('data', onHead);
});

try { fs.unlinkSync(sockPath); } catch { /* none */ }
server.listen(sockPath, () => send({ ev: 'ready', pid: process.pid }));
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  let m; try { m = JSON.parse(l); } catch { return; }
  handle(m);
}).on('close', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
