'use strict';
// The daemon's connections into a VM: the agent connects inside the VM and hands the socket
// over, so a tunnel's bytes never pass through the agent; RST, crash silence and fds survive that.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');

const GET = 'GET /add/2/3 HTTP/1.1\r\nHost: x\r\n\r\n';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A service that answers "rst" with an RST and "hold" with "held", then never reads again (what
// the client sends next stays unread, so its death makes the kernel reset the connection).
const RST_SERVER = `
import os, socket, struct, threading
held = []
def serve(c):
    line = c.recv(100)
    if line.startswith(b'rst'):
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        c.close()
    elif line:
        c.sendall(b'held\\n')
        held.append(c)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', int(os.environ.get('PORT', '80'))))
s.listen(16)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
`;

/** The agent's pid on this host: with namespaces it is the child of `unshare`. */
function agentPid(vm) {
  if (!vm.netns) return vm.proc.pid;
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    let stat; try { stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8'); } catch { continue; }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === vm.proc.pid) return Number(p);
  }
  throw new Error('no agent process');
}

const fdCount = () => fs.readdirSync('/proc/self/fd').length;
const closedInfo = (ws) => new Promise((r) => ws.once('close', (code) => r({ code, at: Date.now() })));
const firstMessage = (ws) => new Promise((r) => ws.once('message', (d) => r(d.toString())));
const vmOf = (sim, act) => sim.activityApi.activities.get(act).vm;

async function startRstServer(s, svc) {
  const { api, sim } = s;
  await h.faulter(api)({ provider: svc.providerId, fault: 'killService' });
  fs.writeFileSync(path.join(vmOf(sim, svc.act).root, 'golem', 'work', 'rst.py'), RST_SERVER);
  await h.execWait(api, svc.act, [{ run: { entry_point: '/bin/sh', args: ['-c', 'python3 /golem/work/rst.py >/dev/null 2>&1 &'] } }]);
  await h.waitUntil(async () => {
    try { const ws = await h.openTunnel(sim, svc.net.id, svc.ip); ws.terminate(); return true; } catch { return false; }
  }, 5000, 100);
}

test('connections into a VM', async (t) => {
  const s = await h.startSim({ providers: 3, tcpTimeoutMs: 1500, tcpKeepAliveMs: 500, vmFinTimeoutMs: 3000 });
  t.after(() => s.sim.stop());
  const { sim, api } = s;

  await t.test('a tunnel carries bytes while the VM agent is stopped: they never pass through it', { timeout: 30000 }, async () => {
    const svc = await h.startService(s, { providerIndex: 0 });
    const ws = await h.openTunnel(sim, svc.net.id, svc.ip);
    assert.match(await h.exchange(ws, GET), /5$/);
    const pid = agentPid(vmOf(sim, svc.act));
    process.kill(pid, 'SIGSTOP');
    try {
      assert.match(await h.exchange(ws, GET, 3000), /5$/);
    } finally { process.kill(pid, 'SIGCONT'); }
    ws.close();
    t.svc = svc;
  });

  await t.test('an RST from the service ends the tunnel at once (no close frame)', { timeout: 30000 }, async () => {
    const svc = t.svc;
    await startRstServer(s, svc);
    const ws = await h.openTunnel(sim, svc.net.id, svc.ip);
    const closed = closedInfo(ws);
    const t0 = Date.now();
    ws.send(Buffer.from('rst\n'));
    const c = await closed;
    assert.equal(c.code, 1006);
    // well before the keep-alive after a FIN (vmFinTimeoutMs) or the TCP timeout could end it
    assert.ok(c.at - t0 < 1000, `${c.at - t0} ms`);
    assert.equal(sim.state().tunnelHistory.at(-1).closeReason, 'RST from the VM');
  });

  // The VM's RST races the daemon noticing the death: it must be taken for silence either way.
  async function crashedVmIsSilent(svc, kill) {
    const ws = await h.openTunnel(sim, svc.net.id, svc.ip);
    const held = firstMessage(ws);
    ws.send(Buffer.from('hold\n'));
    assert.equal(await held, 'held\n');
    ws.send(Buffer.from('never read'));
    await sleep(100);
    const closed = closedInfo(ws);
    let spoke = false;
    ws.on('message', () => { spoke = true; });
    const t0 = Date.now();
    await kill();
    const c = await closed;
    assert.equal(c.code, 1006);
    assert.ok(c.at - t0 >= 1400, `the tunnel outlived the VM by the TCP timeout (${c.at - t0} ms)`);
    assert.equal(spoke, false);
    const last = sim.state().tunnelHistory.filter((x) => x.activityId === svc.act).at(-1);
    assert.equal(last.closeReason, 'TCP timeout');
  }

  await t.test('crashVm: the kernel resetting the VM\'s connections is silence, the tunnel ends by the TCP timeout', { timeout: 30000 }, async () => {
    const svc = t.svc;
    await crashedVmIsSilent(svc, () => h.faulter(api)({ provider: svc.providerId, fault: 'crashVm' }));
  });

  await t.test('a VM killed from outside (its agent, SIGKILL) is silent too', { timeout: 30000 }, async () => {
    const svc = await h.startService(s, { providerIndex: 2 });
    await startRstServer(s, svc);
    const pid = agentPid(vmOf(sim, svc.act));
    // the agent dies first, `unshare` (whose exit the daemon waits for) after it: the RST comes first
    await crashedVmIsSilent(svc, () => process.kill(pid, 'SIGKILL'));
    await h.waitUntil(async () => (await api('GET', `/activity-api/v1/activity/${svc.act}/state`)).body.state[0] === 'Terminated');
  });

  await t.test('no fd is left behind: tunnels opened and closed, some still open when the VM is destroyed', { timeout: 30000 }, async () => {
    const svc = await h.startService(s, { providerIndex: 1 });
    await sleep(200);
    const before = fdCount();
    for (let i = 0; i < 40; i++) {
      const ws = await h.openTunnel(sim, svc.net.id, svc.ip);
      assert.match(await h.exchange(ws, GET), /5$/);
      const closed = closedInfo(ws);
      ws.close();
      await closed;
    }
    const open = [];
    for (let i = 0; i < 5; i++) open.push(await h.openTunnel(sim, svc.net.id, svc.ip));
    const vm = vmOf(sim, svc.act);
    const handed = [...sim.net.tunnels.values()].filter((x) => x.activityId === svc.act).map((x) => x.tcp);
    assert.equal(handed.length, 5);
    const allClosed = Promise.all(open.map(closedInfo));
    assert.equal((await api('DELETE', `/activity-api/v1/activity/${svc.act}`)).status, 200);
    await h.waitUntil(() => !vm.alive && vm.conns.size === 0, 5000);
    // closed with the VM, not left to the tunnels' TCP timeout
    assert.ok(handed.every((x) => x.destroyed), 'the open tunnels\' sockets are closed with the VM');
    await allClosed;
    await sleep(300);
    const after = fdCount();
    // the VM's own pipes are gone too: at most the HTTP client's keep-alive sockets may differ
    assert.ok(after <= before + 4, `fds before ${before}, after ${after}`);
  });
});
