'use strict';
// Net API bookkeeping as yagna 0.17 (PROTOCOL.md §6.1-6.3, §6.5, §8.27): no 409 anywhere, ownership
// 403/404, the requestor's first host from creation, CIDR forms, the error texts.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

test('net API bookkeeping', async (t) => {
  const s = await h.startSim({ providers: 1, appkeys: { other: { identity: `0x${'5'.repeat(40)}` } } });
  t.after(() => s.sim.stop());
  const { api } = s;
  const N = '/net-api/v1/net';
  const A = '0x' + 'a'.repeat(40); const B = '0x' + 'b'.repeat(40);

  await t.test('ownership: 404 while owning none, 403 (empty) once owning another', async () => {
    const r = await api('GET', `${N}/${'e'.repeat(32)}`);
    assert.equal(r.status, 404); assert.deepEqual(r.body, { message: 'Network not found' });
    const mine = (await api('POST', N, { ip: '10.0.0.0', mask: '255.255.0.0' })).body;
    const f = await api('GET', `${N}/${'e'.repeat(32)}`);
    assert.equal(f.status, 403); assert.equal(f.text, '');
    // another requestor's network is not ours either
    const theirs = await api('GET', `${N}/${mine.id}`, undefined, { key: 'other' });
    assert.equal(theirs.status, 404);
  });

  await t.test('create: ip as sent in CIDR form, gateway the first host, requestor holds it from the start', async () => {
    const n = (await api('POST', N, { ip: '192.168.7.1/24' })).body;
    assert.equal(n.ip, '192.168.7.1/24'); assert.equal(n.mask, '255.255.255.0'); assert.equal(n.gateway, '192.168.7.1');
    assert.deepEqual((await api('GET', `${N}/${n.id}/addresses`)).body, [{ ip: '192.168.7.1/24' }]);
    const m = (await api('POST', N, { ip: '192.168.8.0', mask: '255.255.255.0' })).body;
    assert.equal(m.ip, '192.168.8.0/24');
    t.n = n;
  });

  await t.test('addresses: never taken; outside, not unicast, unparsable -> 400 with yagna texts', async () => {
    const n = t.n;
    assert.deepEqual((await api('POST', `${N}/${n.id}/addresses`, { ip: '192.168.7.1' })), { status: 200, body: null, text: 'null' });
    await api('POST', `${N}/${n.id}/nodes`, { id: A, ip: '192.168.7.2' });
    assert.equal((await api('POST', `${N}/${n.id}/addresses`, { ip: '192.168.7.2' })).status, 200); // a node's IP too
    let r = await api('POST', `${N}/${n.id}/addresses`, { ip: '10.1.1.1' });
    assert.equal(r.status, 400); assert.equal(r.body.message, 'Network not found for IP address: 10.1.1.1');
    r = await api('POST', `${N}/${n.id}/addresses`, { ip: '192.168.7.255' });
    assert.equal(r.status, 400); assert.equal(r.body.message, 'IP address not allowed: 192.168.7.255');
    r = await api('POST', `${N}/${n.id}/addresses`, { ip: '192.168.7' });
    assert.equal(r.status, 400); assert.equal(r.body.message, 'Invalid IP address: 192.168.7');
  });

  await t.test('nodes: a taken IP answers 200 and keeps the old mapping; unknown node removal 200', async () => {
    const n = t.n;
    const add = await api('POST', `${N}/${n.id}/nodes`, { id: B, ip: '192.168.7.2' });
    assert.equal(add.status, 200); assert.equal(add.text, 'null');
    assert.deepEqual((await api('GET', `${N}/${n.id}/nodes`)).body, [{ id: A, ip: '192.168.7.2' }]);
    let r = await api('POST', `${N}/${n.id}/nodes`, { id: B, ip: '10.0.0.9' });
    assert.equal(r.status, 400); assert.equal(r.body.message, 'Invalid network IP address: 10.0.0.9');
    r = await api('POST', `${N}/${n.id}/nodes`, { id: B, ip: '192.168.7.0' });
    assert.equal(r.status, 400); assert.equal(r.body.message, 'IP address not allowed: 192.168.7.0');
    r = await api('DELETE', `${N}/${n.id}/nodes/${B}`);
    assert.equal(r.status, 200); assert.equal(r.text, 'null');
    assert.equal((await api('DELETE', `${N}/${n.id}/nodes/${A}`)).status, 200);
    assert.deepEqual((await api('GET', `${N}/${n.id}/nodes`)).body, []);
  });

  await t.test('GET /net/{n}/tcp is not served by yagna 0.17; delete: 200 null, then 403', async () => {
    const n = t.n;
    assert.equal((await api('GET', `${N}/${n.id}/tcp`)).status, 404);
    const d = await api('DELETE', `${N}/${n.id}`);
    assert.equal(d.status, 200); assert.equal(d.text, 'null');
    assert.equal((await api('DELETE', `${N}/${n.id}`)).status, 403);
    assert.equal((await api('GET', '/net-api/v2/vpn/net')).body.length, 2); // the same handlers under v2
  });
});
