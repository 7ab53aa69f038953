'use strict';
// Without namespaces (--no-netns): the VM's port 80 is remapped to a free loopback port.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

test('fallback mode without network namespaces', async (t) => {
  const s = await h.startSim({ providers: 2, netns: false });
  t.after(() => s.sim.stop());
  const a = await h.startService(s, { providerIndex: 0 });
  const b = await h.startService(s, { providerIndex: 1 });
  assert.equal(s.sim.state().netns, false);
  for (const svc of [a, b]) {
    const r = await h.httpOverTunnel(s.sim, svc.net.id, svc.ip, 'GET /sub/10/4 HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match(r, /\r\n\r\n6$/);
  }
  const ports = s.sim.state().activities.map((x) => x.vm.port80);
  assert.notEqual(ports[0], ports[1]);
});
