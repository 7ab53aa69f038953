'use strict';
// GSB API (/gsb-api/v1, PROTOCOL.md §5.7, §8.33): services a requestor's client binds on the daemon's
// service bus and serves over a `gsb+flexbuffers` WebSocket (golem-js file transfer), plus the
// calls a provider's exe-unit makes on them for a gftp `transfer` (yagna core/gsb-api, exe-unit
// components/transfer/src/gftp.rs): GetMetadata + GetChunk to pull a file, UploadChunk +
// UploadFinished to push one; 40 KiB chunks, up to 8 in flight.
const crypto = require('node:crypto');
const { encode, toObject } = require('flatbuffers/js/flexbuffers.js');
const { jsonErr, HttpError } = require('./util');

const P = '/gsb-api/v1';
const CHUNK = 40 * 1024; // yagna core/gftp DEFAULT_CHUNK_SIZE
const IN_FLIGHT = 8; // exe-unit GftpTransferProvider concurrency
const MAX_SERVICES = 1000;
const MAX_QUEUED_CALLS = 10000; // per service, while no WebSocket is connected
const CALL_TIMEOUT_MS = 60000; // our bound on one call: a client that never answers
const MAX_FRAME = 16 * 1024 * 1024;

function init(sim) {
  // stats: calls per component and the most calls in flight on one service, for tests
  sim.gsb = { services: new Map(), byAddress: new Map(), stats: { calls: {}, maxInFlight: 0 } };
  const r = (method, path, fn) => sim.route(method, P + path, fn, { noSpec: true });
  r('POST', '/services', (c) => bind(sim, c));
  r('DELETE', '/services/:id', (c) => {
    const svc = sim.gsb.services.get(c.params.id);
    if (!svc || svc.owner !== c.who.identity) throw jsonErr(404, `Service ${c.params.id} not found`);
    unbind(sim, svc);
    return { body: null };
  });
}

/** servicesId = base64url of the address, without padding (yagna core/gsb-api/src/services.rs). */
const servicesId = (on) => Buffer.from(on).toString('base64url');

function bind(sim, c) {
  const l = c.body && c.body.listen;
  if (!l || typeof l !== 'object' || typeof l.on !== 'string' || !Array.isArray(l.components) || l.components.some((x) => typeof x !== 'string')) {
    throw sim.invalid(c.req, 'Json deserialize error: expected {"listen": {"on": string, "components": [string]}}');
  }
  if (!l.on) throw jsonErr(400, 'Empty bind address');
  if (sim.gsb.byAddress.has(l.on)) throw jsonErr(400, `Duplicated service address prefix: ${l.on}`);
  if (sim.gsb.services.size >= MAX_SERVICES) throw jsonErr(500, 'Too many bound services');
  const svc = { id: servicesId(l.on), on: l.on, components: [...new Set(l.components)], owner: c.who.identity, ws: null, queue: [], calls: new Map() };
  sim.gsb.services.set(svc.id, svc);
  sim.gsb.byAddress.set(svc.on, svc);
  const body = Buffer.from(JSON.stringify({ listen: { on: svc.on, components: svc.components }, servicesId: svc.id }));
  c.res.writeHead(201, { 'content-type': 'application/json', 'content-length': body.length, location: `/${svc.id}` });
  c.res.end(body);
  return { streamed: true };
}

function unbind(sim, svc) {
  sim.gsb.services.delete(svc.id);
  sim.gsb.byAddress.delete(svc.on);
  if (svc.ws) svc.ws.close(1000, `Unbinding service: ${svc.on}`);
  svc.ws = null;
  svc.queue = [];
  for (const call of svc.calls.values()) call.fail(`GSB error: service ${svc.on} unbound`);
}

/** The WebSocket of a bound service. Returns false when the path is not ours. */
function upgrade(sim, req, socket, head, reject) {
  const url = new URL(req.url, 'http://x');
  const m = /^\/gsb-api\/v1\/services\/([^/]+)\/?$/.exec(url.pathname);
  if (!url.pathname.startsWith(`${P}/`)) return false;
  socket.on('error', () => {});
  let who;
  try { who = sim.auth(req, url); } catch (e) {
    if (e instanceof HttpError) { reject(socket, e.status, e.body); return true; }
    throw e;
  }
  const svc = m && sim.gsb.services.get(decodeURIComponent(m[1]));
  if (!svc || svc.owner !== who.identity) { reject(socket, 404, { message: `Service ${m ? m[1] : url.pathname} not found` }); return true; }
  sim.wss.handleUpgrade(req, socket, head, (ws) => attach(sim, svc, ws));
  return true;
}

function attach(sim, svc, ws) {
  if (sim.gsb.services.get(svc.id) !== svc) { ws.close(1000, `Unbinding service: ${svc.on}`); return; }
  if (svc.ws) svc.ws.close(1008, 'Closing old WS connection in favour of new WS connection');
  svc.ws = ws;
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    if (!isBinary) { ws.close(1003, 'Text messages are not supported'); return; }
    if (data.length > MAX_FRAME) { ws.close(1009, 'Message too big'); return; }
    onResponse(sim, svc, data);
  });
  ws.on('close', () => { if (svc.ws === ws) svc.ws = null; });
  const queued = svc.queue; svc.queue = [];
  for (const frame of queued) ws.send(frame);
}

function decode(buf) {
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
  return toObject(ab);
}

function onResponse(sim, svc, data) {
  let msg;
  try { msg = decode(data); } catch (e) { sim.log(`gsb ${svc.on}: undecodable response: ${e.message}`); return; }
  if (!msg || typeof msg !== 'object' || typeof msg.id !== 'string') { sim.log(`gsb ${svc.on}: response without id`); return; }
  const call = svc.calls.get(msg.id);
  if (!call) return; // late or unknown: the caller gave up
  if (msg.error !== undefined && msg.error !== null) {
    const e = msg.error;
    const text = e && typeof e === 'object' ? Object.entries(e).map(([k, v]) => `${k}: ${v}`).join(', ') : String(e);
    call.fail(`gftp error: ${text}`);
  } else call.done(msg.payload === undefined ? null : msg.payload);
}

/** Call `component` of the service bound at `address` by node `nodeId`: resolves the payload. */
function call(sim, nodeId, address, component, payload) {
  const svc = sim.gsb.byAddress.get(address);
  return new Promise((resolve, reject) => {
    if (!svc || svc.owner !== nodeId || !svc.components.includes(component)) {
      reject(new Error(`GSB error: Bad request: endpoint address not found: /net/${nodeId}${address}/${component}`));
      return;
    }
    const id = crypto.randomUUID();
    const frame = Buffer.from(encode({ id, component, payload }));
    let timer;
    const finish = () => { clearTimeout(timer); svc.calls.delete(id); };
    const entry = {
      done: (v) => { finish(); resolve(v); },
      fail: (m) => { finish(); reject(new Error(m)); },
    };
    timer = setTimeout(() => entry.fail(`GSB error: timeout calling ${component} on ${address}`), sim.opts.gsbCallTimeoutMs || CALL_TIMEOUT_MS);
    svc.calls.set(id, entry);
    const st = sim.gsb.stats;
    st.calls[component] = (st.calls[component] || 0) + 1;
    st.maxInFlight = Math.max(st.maxInFlight, svc.calls.size);
    if (svc.ws && svc.ws.readyState === 1) svc.ws.send(frame);
    else if (svc.queue.length < MAX_QUEUED_CALLS) svc.queue.push(frame);
    else entry.fail(`GSB error: too many calls queued for ${address}`);
  });
}

/** gftp://<node id>/<id> -> { nodeId, address } (yagna core/gftp extract_url). */
function gftpAddress(url) {
  const m = /^gftp:\/\/(0x[0-9a-fA-F]{40})\/([^/?#]+)$/.exec(url);
  if (!m) throw new Error(`Invalid url: ${url}`);
  return { nodeId: m[1].toLowerCase(), address: `/public/gftp/${m[2]}` };
}

/** Pull a whole file from a gftp URL: GetMetadata, then GetChunk for every 40 KiB, ≤ 8 in flight, in order. */
async function pull(sim, url, maxBytes) {
  const { nodeId, address } = gftpAddress(url);
  const meta = await call(sim, nodeId, address, 'GetMetadata', {});
  const size = meta && meta.fileSize;
  if (!Number.isSafeInteger(size) || size < 0) throw new Error(`gftp error: bad metadata from ${url}`);
  if (size > maxBytes) throw new Error(`file of ${size} bytes is larger than the ${maxBytes} bytes allowed`);
  const n = Math.ceil(size / CHUNK);
  const parts = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const k = next++;
      const c = await call(sim, nodeId, address, 'GetChunk', { offset: k * CHUNK, size: CHUNK });
      const content = c && c.content;
      if (!(content instanceof Uint8Array) || content.length > CHUNK) throw new Error(`gftp error: bad chunk ${k} from ${url}`);
      parts[k] = Buffer.from(content);
    }
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, n) }, worker));
  return Buffer.concat(parts).subarray(0, size);
}

/** Push `data` to a gftp URL: UploadChunk per 40 KiB, ≤ 8 in flight, then UploadFinished with its sha3-256. */
async function push(sim, url, data) {
  const { nodeId, address } = gftpAddress(url);
  const n = Math.ceil(data.length / CHUNK);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const k = next++;
      const content = data.subarray(k * CHUNK, Math.min(data.length, (k + 1) * CHUNK));
      await call(sim, nodeId, address, 'UploadChunk', { chunk: { offset: k * CHUNK, content: new Uint8Array(content) } });
    }
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, n) }, worker));
  const hash = crypto.createHash('sha3-256').update(data).digest('hex');
  await call(sim, nodeId, address, 'UploadFinished', { hash });
}

function shutdown(sim) {
  for (const svc of [...sim.gsb.services.values()]) unbind(sim, svc);
}

/** A daemon crash: bindings live in process memory only; the sockets die with the process (no close frame). */
function forgetVolatile(sim) {
  for (const svc of [...sim.gsb.services.values()]) {
    if (svc.ws) svc.ws.terminate();
    svc.ws = null;
    unbind(sim, svc);
  }
}

module.exports = { init, upgrade, shutdown, forgetVolatile, call, pull, push, gftpAddress, CHUNK, IN_FLIGHT };
