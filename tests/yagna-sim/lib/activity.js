'use strict';
// Activity API (/activity-api/v1): create/destroy, exe-script batches that really run in the VM,
// results (poll + SSE), state and usage. PROTOCOL.md §5, §8.6.
const { VM } = require('./vm');
const { ids, isoNs, jsonErr, HttpError, waitFor, wakeAll, sleep } = require('./util');
const { parseTaskPackage } = require('./images');

const P = '/activity-api/v1';
const MAX_BATCHES_PER_ACTIVITY = 1000;

function gsbError(act) {
  return jsonErr(500, `GSB error: GSB failure: Bad request: endpoint address not found: /public/${act.provider.nodeId}/exeunit/${act.id}`);
}

function init(sim) {
  const api = sim.activityApi = {
    activities: new Map(),
    agreementEnded: (a, reason) => {
      for (const id of a.activities) {
        const act = api.activities.get(id);
        if (act) endActivity(sim, act, { reason: 'Agreement terminated', errorMessage: reason && reason.message ? String(reason.message) : null });
      }
    },
  };
  const r = (method, path, fn) => sim.route(method, P + path, fn);
  r('POST', '/activity', (c) => create(sim, c));
  r('POST', '/activity/:act/exec', (c) => exec(sim, c));
  r('GET', '/activity/:act/exec/:batch', (c) => results(sim, c));
  r('GET', '/activity/:act/state', (c) => {
    const act = getAct(sim, c);
    return { body: stateView(act) };
  });
  r('GET', '/activity/:act/usage', (c) => {
    const act = getAct(sim, c);
    if (act.state[0] === 'Terminated' && act.vmGone) return { body: { currentUsage: act.finalUsage || usage(act), timestamp: Math.floor(Date.now() / 1000) } };
    return { body: { currentUsage: usage(act), timestamp: Math.floor(Date.now() / 1000) } };
  });
  r('GET', '/activity/:act/agreement', (c) => ({ body: getAct(sim, c).agreement.id }));
  r('GET', '/activity/:act/command', (c) => {
    const act = getAct(sim, c);
    return { body: act.running ? [{ command: act.running.command, progress: null, params: [] }] : [] };
  });
  r('DELETE', '/activity/:act', async (c) => {
    const act = getAct(sim, c);
    await endActivity(sim, act, { reason: 'Destroyed by requestor', errorMessage: null });
    return { body: null };
  });
}

function getAct(sim, c) {
  const id = c.params.act;
  const act = sim.activityApi.activities.get(id);
  if (!act) throw jsonErr(500, `DAO error: Not found: agreement id for activity: ${id}`);
  if (act.owner !== c.who.identity) throw jsonErr(403, `Forbidden: activity ${id} belongs to another identity`);
  return act;
}

function stateView(act) {
  const v = { state: act.state };
  if (act.reason) v.reason = act.reason;
  if (act.errorMessage) v.errorMessage = act.errorMessage;
  return v;
}

function usage(act) {
  const end = act.endedMs || Date.now();
  const dur = Math.max(0, (end - act.createdMs) / 1000);
  return [Number(dur.toFixed(6)), Number((dur * act.provider.cpuFactor).toFixed(6))];
}

async function create(sim, c) {
  let agreementId; let objectForm = false;
  if (typeof c.body === 'string') agreementId = c.body;
  else if (c.body && typeof c.body === 'object' && typeof c.body.agreementId === 'string') { agreementId = c.body.agreementId; objectForm = true; }
  else throw sim.invalid(c.req, 'Json deserialize error: expected an agreement id string or {"agreementId": ...}');
  const a = sim.market.agreements.get(agreementId);
  if (!a || a.owner !== c.who.identity) throw jsonErr(404, `Agreement [${agreementId}] not found`);
  if (a.state !== 'Approved') throw jsonErr(400, `Agreement [${agreementId}] is not Approved (state ${a.state})`);
  const p = a.provider;
  if (p.faults.failActivityCreate) {
    if (p.faults.failActivityCreate > 0) p.faults.failActivityCreate--;
    throw jsonErr(500, `GSB error: remote service at /public/${p.nodeId}/activity: Activity creation failed (injected fault)`);
  }
  const act = {
    id: ids.simple(), owner: c.who.identity, agreement: a, provider: p, state: ['New', null], reason: null, errorMessage: null,
    createdMs: Date.now(), batches: new Map(), netConfigs: [], running: null, vmGone: false, endedMs: null,
  };
  act.vm = new VM({ id: act.id, baseDir: sim.baseDir, netns: sim.netns, log: (l) => sim.log(l), connectTimeoutMs: sim.opts.tunnelConnectTimeoutMs });
  try {
    await act.vm.start();
  } catch (e) {
    await act.vm.destroy().catch(() => {});
    throw jsonErr(500, `Activity creation failed: ${e.message}`);
  }
  act.vm.onDeath = () => vmDied(sim, act);
  sim.activityApi.activities.set(act.id, act);
  a.activities.add(act.id);
  sim.paymentApi.activityStarted(act);
  return { status: 200, body: objectForm ? { activityId: act.id } : act.id };
}

/** The VM died under the activity: it terminates, tunnels drop, the provider breaks the agreement. */
function vmDied(sim, act) {
  if (act.state[0] === 'Terminated') return;
  endActivity(sim, act, { reason: 'VM died', errorMessage: 'ExeUnit terminated unexpectedly: VM process died' });
  sim.marketApi.terminate(sim, act.agreement, 'Provider', { message: `Activity ${act.id} failed: VM died`, 'golem.provider.code': 'ExeUnitFailure' });
}

async function endActivity(sim, act, { reason, errorMessage }) {
  if (act.state[0] !== 'Terminated') {
    act.state = ['Terminated', null];
    act.reason = reason; act.errorMessage = errorMessage;
    act.endedMs = Date.now();
    act.finalUsage = usage(act);
    sim.paymentApi.activityEnded(act);
  }
  sim.netApi.closeTunnels((t) => t.activityId === act.id, 1001, 'activity ended');
  for (const b of act.batches.values()) wakeAll(b.waiters, 'end');
  if (!act.vmGone) { act.vmGone = true; act.vm.onDeath = null; await act.vm.destroy().catch(() => {}); }
}

// ---------------------------------------------------------------- exec
function exec(sim, c) {
  const act = getAct(sim, c);
  if (!c.body || typeof c.body !== 'object' || typeof c.body.text !== 'string') throw sim.invalid(c.req, 'Json deserialize error: missing field `text`');
  let cmds;
  try { cmds = JSON.parse(c.body.text); } catch (e) { throw jsonErr(400, `Invalid ExeScript: ${e.message}`); }
  if (!Array.isArray(cmds) || cmds.some((x) => !x || typeof x !== 'object' || Array.isArray(x) || Object.keys(x).length !== 1)) {
    throw jsonErr(400, 'Invalid ExeScript: expected an array of commands');
  }
  if (act.state[0] === 'Terminated') throw gsbError(act);
  if (act.batches.size >= MAX_BATCHES_PER_ACTIVITY) act.batches.delete(act.batches.keys().next().value);
  const batch = { id: ids.simple(), commands: cmds, results: [], finished: false, waiters: new Set(), listeners: new Set(), seq: 0 };
  act.batches.set(batch.id, batch);
  runBatch(sim, act, batch).catch((e) => sim.log(`batch ${batch.id} crashed: ${e.stack || e}`));
  return { body: batch.id };
}

function emit(batch, index, kind) {
  const ev = { batch_id: batch.id, index, timestamp: isoNs(Date.now()).slice(0, -1), kind };
  for (const l of batch.listeners) l(ev);
}

async function runBatch(sim, act, batch) {
  for (let i = 0; i < batch.commands.length; i++) {
    const cmd = batch.commands[i];
    emit(batch, i, { started: { command: cmd } });
    act.running = { command: cmd };
    let r;
    if (act.state[0] === 'Terminated') r = { result: 'Error', stdout: null, stderr: null, message: act.reason || 'Activity terminated' };
    else {
      try { r = await runCommand(sim, act, batch, i, cmd); } catch (e) { r = { result: 'Error', stdout: null, stderr: null, message: String(e.message || e) }; }
    }
    act.running = null;
    const last = i === batch.commands.length - 1 || r.result === 'Error';
    batch.results.push({ index: i, eventDate: isoNs(Date.now()), result: r.result, stdout: r.stdout, stderr: r.stderr, message: r.message, isBatchFinished: last });
    emit(batch, i, { finished: { return_code: r.result === 'Ok' ? 0 : (r.code || 1), message: r.message } });
    if (last) batch.finished = true;
    wakeAll(batch.waiters, 'result');
    if (last) break;
  }
}

function fmtOut(buf, spec) {
  if (!spec) return null;
  const mode = spec.atEnd || spec.stream || {};
  let b = buf;
  if (mode.part && mode.part.head) b = b.subarray(0, mode.part.head);
  else if (mode.part && mode.part.tail) b = b.subarray(Math.max(0, b.length - mode.part.tail));
  if (mode.limit) b = b.subarray(0, mode.limit);
  return mode.format === 'bin' ? [...b] : b.toString('utf8');
}

async function runCommand(sim, act, batch, index, cmd) {
  const [name] = Object.keys(cmd);
  const arg = cmd[name] || {};
  const ok = (message = null) => ({ result: 'Ok', stdout: null, stderr: null, message });
  const err = (message, extra = {}) => ({ result: 'Error', stdout: null, stderr: null, message, ...extra });
  switch (name) {
    case 'deploy': {
      if (act.state[0] !== 'New') return err(`Invalid state: deploy in state ${act.state[0]}`);
      const tp = parseTaskPackage(act.agreement.demand.properties['golem.srv.comp.task_package']);
      act.state = ['New', 'Deployed'];
      await sleep(sim.opts.deployDelayMs);
      const img = tp && sim.images.get(tp.hash);
      if (!img) {
        act.state = ['New', null];
        return err(`Deploy error: image not found: ${tp ? `hash ${tp.hash} (url ${tp.url})` : 'no golem.srv.comp.task_package in the agreement'}`);
      }
      if (Array.isArray(arg.net)) act.netConfigs = arg.net.filter((n) => n && typeof n === 'object');
      act.vm.deploy(img);
      act.image = img;
      act.state = ['Deployed', null];
      return ok(`Deployed image ${img.name}`);
    }
    case 'start':
      if (act.state[0] !== 'Deployed') return err(`Invalid state: start in state ${act.state[0]}`);
      act.state = ['Deployed', 'Ready'];
      await sleep(5);
      act.state = ['Ready', null];
      return ok();
    case 'run': {
      if (act.state[0] !== 'Ready') return err(`Invalid state: run in state ${act.state[0]}`);
      if (typeof arg.entry_point !== 'string') return err('Invalid run command: missing entry_point');
      const cap = arg.capture || {};
      const stream = (s) => cap[s] && cap[s].stream;
      const r = await act.vm.run(arg.entry_point, Array.isArray(arg.args) ? arg.args : [], {
        onOutput: (s, buf) => { if (stream(s)) emit(batch, index, { [s]: cap[s].stream.format === 'bin' ? [...buf] : buf.toString('utf8') }); },
      });
      const stdout = fmtOut(r.stdout, cap.stdout);
      const stderr = fmtOut(r.stderr, cap.stderr);
      if (r.vmDied) return { result: 'Error', stdout, stderr, message: 'ExeUnit error: VM died', code: 137 };
      if (r.error) return { result: 'Error', stdout, stderr, message: `ExeUnit exec error: ${r.error}`, code: 127 };
      if (r.code !== 0) return { result: 'Error', stdout, stderr, message: `ExeScript command exited with code ${r.code}`, code: r.code };
      return { result: 'Ok', stdout, stderr, message: null };
    }
    case 'terminate':
      setImmediate(() => endActivity(sim, act, { reason: 'Terminated by requestor (terminate command)', errorMessage: null }));
      return ok();
    case 'transfer': case 'sign': case 'progress':
      return ok();
    default:
      return err(`Unsupported command: ${name}`);
  }
}

// ---------------------------------------------------------------- results
async function results(sim, c) {
  const act = getAct(sim, c);
  const batch = act.batches.get(c.params.batch);
  if (!batch) throw jsonErr(404, `Batch id not found: ${c.params.batch}`);
  if (c.req.headers.accept === 'text/event-stream') return sse(sim, c, batch);
  let timeout = 0;
  if (c.query.timeout !== undefined) {
    timeout = Number(c.query.timeout);
    if (!Number.isFinite(timeout) || timeout < 0) throw sim.invalid(c.req, `Invalid timeout ${c.query.timeout}`);
  }
  let idx = null;
  if (c.query.commandIndex !== undefined) {
    idx = Number(c.query.commandIndex);
    if (!Number.isInteger(idx) || idx < 0) throw sim.invalid(c.req, `Invalid commandIndex ${c.query.commandIndex}`);
  }
  const done = () => (idx === null ? batch.finished : batch.results.length > idx || batch.finished);
  const deadline = Date.now() + timeout * 1000;
  while (!done() && Date.now() < deadline && act.state[0] !== 'Terminated') {
    let onClose; const closed = new Promise((r) => { onClose = () => r('closed'); c.res.on('close', onClose); });
    const r = await Promise.race([waitFor(batch.waiters, deadline - Date.now()), closed]);
    c.res.removeListener('close', onClose);
    if (r === 'closed') return { streamed: true };
  }
  if (idx !== null) {
    if (batch.results.length <= idx && !batch.finished) throw jsonErr(408, `Timeout waiting for command ${idx}`);
    return { body: batch.results.slice(0, idx + 1).map((x) => (x.index === idx ? x : { ...x, stdout: null, stderr: null })) };
  }
  return { body: batch.results };
}

function sse(sim, c, batch) {
  const res = c.res;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  let n = 0;
  const write = (ev) => res.write(`event: runtime\ndata: ${JSON.stringify(ev)}\nid: ${n++}\n\n`);
  res.write(':ping\n');
  batch.listeners.add(write);
  const ping = sim.every(sim.opts.ssePingMs, () => res.write(':ping\n'));
  res.on('close', () => { batch.listeners.delete(write); clearInterval(ping); sim.timers.delete(ping); });
  return { streamed: true };
}

async function shutdown(sim) {
  await Promise.all([...sim.activityApi.activities.values()].map((a) => endActivity(sim, a, { reason: 'daemon stopped', errorMessage: null }).catch(() => {})));
}

module.exports = { init, shutdown, endActivity, stateView, usage };
