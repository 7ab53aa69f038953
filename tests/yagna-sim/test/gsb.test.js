'use strict';
// The GSB API (PROTOCOL.md §5.7, §8.33) with a plain WebSocket client, and the provider's
// `transfer` pulling from and pushing to it.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const WebSocket = require('ws');
const { encode, toObject } = require('flatbuffers/js/flexbuffers.js');
const h = require('./helpers');

const G = '/gsb-api/v1';
const decode = (buf) => toObject(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));

/** Calls queued before the WebSocket connects arrive right after the 101: listen from the start. */
function connect(sim, servicesId, key = h.KEY, onMessage = null) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${sim.url.replace('http', 'ws')}${G}/services/${servicesId}?authToken=${key}`, ['gsb+flexbuffers']);
    if (onMessage) ws.on('message', (m) => onMessage(decode(m), ws));
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (req, res) => { const e = new Error(`status ${res.statusCode}`); e.status = res.statusCode; reject(e); });
    ws.once('error', reject);
  });
}

/** Serve a file the way golem-js publishData does, recording every call and the most in flight. */
function serveFile(ws, data, log) {
  ws.on('message', (m) => {
    const req = decode(m);
    log.push(req);
    // answer out of order, a little later, so several calls are in flight at once
    setTimeout(() => {
      if (req.component === 'GetMetadata') ws.send(encode({ id: req.id, payload: { fileSize: data.length } }));
      else ws.send(encode({ id: req.id, payload: { offset: req.payload.offset, content: new Uint8Array(data.subarray(req.payload.offset, req.payload.offset + req.payload.size)) } }));
    }, 5 + Math.floor(Math.random() * 10));
  });
}

test('GSB API and gftp transfers', async (t) => {
  const s = await h.startSim({ providers: 1, gsbCallTimeoutMs: 3000 });
  t.after(() => s.sim.stop());
  const { api, sim } = s;
  const me = (await api('GET', '/me')).body.identity;

  await t.test('bind: 201 with servicesId and Location, duplicates 400, unbind 200 then 404', async () => {
    const on = `/public/gftp/${crypto.randomUUID()}`;
    const r = await api('POST', `${G}/services`, { listen: { on, components: ['GetMetadata', 'GetChunk'] } }, { raw: true });
    assert.equal(r.status, 201);
    assert.deepEqual(r.json, { listen: { on, components: ['GetMetadata', 'GetChunk'] }, servicesId: Buffer.from(on).toString('base64url') });
    assert.equal(r.headers.get('location'), `/${r.json.servicesId}`);
    const dup = await api('POST', `${G}/services`, { listen: { on, components: ['GetChunk'] } });
    assert.equal(dup.status, 400); assert.equal(dup.body.message, `Duplicated service address prefix: ${on}`);
    assert.equal((await api('POST', `${G}/services`, { listen: { on: '', components: [] } })).status, 400);
    const ws = await connect(sim, r.json.servicesId);
    const closed = new Promise((res) => ws.on('close', (code, reason) => res([code, String(reason)])));
    assert.equal((await api('DELETE', `${G}/services/${r.json.servicesId}`)).status, 200);
    assert.deepEqual(await closed, [1000, `Unbinding service: ${on}`]);
    assert.equal((await api('DELETE', `${G}/services/${r.json.servicesId}`)).status, 404);
    await assert.rejects(connect(sim, r.json.servicesId), (e) => e.status === 404);
    await assert.rejects(connect(sim, 'nope', 'badkey'), (e) => e.status === 401);
  });

  await t.test('calls wait for the WebSocket; a second one replaces the first; text frames close it', async () => {
    const on = `/public/gftp/${crypto.randomUUID()}`;
    const id = (await api('POST', `${G}/services`, { listen: { on, components: ['GetMetadata'] } })).body.servicesId;
    const pending = sim.gsb && require('../lib/gsb').call(sim, me, on, 'GetMetadata', {});
    let gotReq; const reqP = new Promise((res) => { gotReq = res; });
    const first = await connect(sim, id, h.KEY, (m) => gotReq(m));
    const req = await reqP;
    assert.equal(req.component, 'GetMetadata'); assert.match(req.id, /^[0-9a-f-]{36}$/);
    first.send(encode({ id: req.id, payload: { fileSize: 7 } }));
    assert.deepEqual(await pending, { fileSize: 7 });
    const firstClosed = new Promise((res) => first.on('close', (code) => res(code)));
    const second = await connect(sim, id);
    assert.equal(await firstClosed, 1008);
    const failing = require('../lib/gsb').call(sim, me, on, 'GetMetadata', {});
    const req2 = await new Promise((res) => second.once('message', (m) => res(decode(m))));
    second.send(encode({ id: req2.id, error: { InternalError: 'no such file' } }));
    await assert.rejects(failing, /InternalError: no such file/);
    await assert.rejects(require('../lib/gsb').call(sim, me, on, 'GetChunk', {}), /endpoint address not found/);
    const textClosed = new Promise((res) => second.on('close', (code) => res(code)));
    second.send('hello');
    assert.equal(await textClosed, 1003);
    await api('DELETE', `${G}/services/${id}`);
  });

  await t.test('transfer pulls gftp into the VM and pushes it back, 40 KiB chunks, <= 8 in flight', async () => {
    const svc = await h.startService(s);
    const data = crypto.randomBytes(500 * 1000); // 12 full chunks and a short one
    const src = crypto.randomUUID();
    const on = `/public/gftp/${src}`;
    const id = (await api('POST', `${G}/services`, { listen: { on, components: ['GetMetadata', 'GetChunk'] } })).body.servicesId;
    const ws = await connect(sim, id);
    const log = [];
    serveFile(ws, data, log);
    const before = sim.gsb.stats.maxInFlight;
    let r = await h.execWait(api, svc.act, [{ transfer: { from: `gftp://${me}/${src}`, to: 'container:/golem/input/data.bin' } }], 30);
    assert.deepEqual([r[0].result, r[0].message], ['Ok', null]);
    assert.equal(log[0].component, 'GetMetadata');
    const chunks = log.slice(1);
    assert.ok(chunks.every((c) => c.component === 'GetChunk' && c.payload.size === 40960 && c.payload.offset % 40960 === 0));
    assert.deepEqual(chunks.map((c) => c.payload.offset).sort((a, b) => a - b), Array.from({ length: 13 }, (_, k) => k * 40960));
    assert.ok(sim.gsb.stats.maxInFlight >= Math.max(before, 2) && sim.gsb.stats.maxInFlight <= 8);
    r = await h.execWait(api, svc.act, [{ run: { entry_point: '/bin/sh', args: ['-c', 'sha256sum /golem/input/data.bin'], capture: { stdout: { atEnd: {} } } } }]);
    assert.equal(r[0].stdout.split(' ')[0], crypto.createHash('sha256').update(data).digest('hex'));
    // and back: UploadChunk pieces, then UploadFinished with the sha3-256 of the whole file
    const dstId = crypto.randomUUID();
    const up = (await api('POST', `${G}/services`, { listen: { on: `/public/gftp/${dstId}`, components: ['UploadChunk', 'UploadFinished'] } })).body.servicesId;
    const ws2 = await connect(sim, up);
    const got = []; let finished = null;
    ws2.on('message', (m) => {
      const req = decode(m);
      if (req.component === 'UploadChunk') got.push(req.payload.chunk);
      else finished = req.payload;
      ws2.send(encode({ id: req.id, payload: null }));
    });
    r = await h.execWait(api, svc.act, [{ transfer: { from: 'container:/golem/input/data.bin', to: `gftp://${me}/${dstId}` } }], 30);
    assert.equal(r[0].result, 'Ok');
    assert.ok(got.every((c) => c.content.length <= 40960));
    const back = Buffer.alloc(data.length);
    for (const c of got) Buffer.from(c.content).copy(back, c.offset);
    assert.ok(back.equals(data));
    assert.deepEqual(finished, { hash: crypto.createHash('sha3-256').update(data).digest('hex') });
    // a gftp URL nobody serves, a path outside the volumes, an unknown scheme
    for (const [cmd, re] of [
      [{ from: `gftp://${me}/${crypto.randomUUID()}`, to: 'container:/golem/input/x' }, /endpoint address not found/],
      [{ from: 'container:/golem/input/data.bin', to: 'container:/var/x' }, /path not found in container: \/var\/x/],
      [{ from: 'ftp://example.com/x', to: 'container:/golem/input/x' }, /Unsupported scheme: ftp/],
    ]) {
      r = await h.execWait(api, svc.act, [{ transfer: cmd }], 30);
      assert.equal(r[0].result, 'Error'); assert.match(r[0].message, re);
    }
  });
});
