'use strict';
// Activity API (/activity-api/v1): create/destroy, exe-script batches that really run in the VM,
// results (poll + SSE), state and usage. PROTOCOL.md §5, §8.6.
const { VM } = require('./vm');
const { SharedHost, SharedVM } = require('./shared-vm');
const { ids, isoNs, jsonErr, waitFor, wakeAll, sleep } = require('./util');
const { parseTaskPackage } = require('./images');
const { relayCheck, flappedState, hangsExeUnitCall } = require('./relay');
const { transfer } = require('./transfer');

const P = '/activity-api/v1';
const MAX_BATCHES_PER_ACTIVITY = 1000;
const COMMANDS = new Set(['deploy', 'start', 'run', 'transfer', 'terminate', 'sign']); // ya-client ExeScriptCommand

function gsbError(act) {
  return jsonErr(500, `GSB error: GSB failure: Bad request: endpoint address not found: /public/${act.provider.nodeId}/exeunit/${act.id}`);
}

function init(sim) {
  const api = sim.activityApi = {
    activities: new Map(),
    hang: (act, resumeAfterMs) => hangExeUnit(sim, act, resumeAfterMs),
    resume: (act) => resumeExeUnit(sim, act),
    agreementEnded: (a, reason) => {
      for (const id of a.activities) {
        const act = api.activities.get(id);
        if (act) endActivity(sim, act, { reason: 'Agreement terminated', errorMessage: reason && reason.message ? String(reason.message) : null });
      }
    },
  };
  const r = (method, path, fn) => sim.route(method, P + path, fn);
  r('POST', '/activity', (c) => create(sim, c));
  // Calls relayed to the provider first meet its faults (vanish, unresponsive: lib/relay.js).
  const relayed = (kind, fn) => async (c) => {
    const act = getAct(sim, c);
    return (await relayCheck(sim, c, act.provider, kind)) || (await hangsExeUnitCall(sim, c, act, kind)) || fn(c, act);
  };
  r('POST', '/activity/:act/exec', relayed('exec', (c) => exec(sim, c)));
  r('GET', '/activity/:act/exec/:batch', relayed('results', (c) => results(sim, c)));
  r('GET', '/activity/:act/state', relayed('state', (c, act) => ({ body: stateView(act) })));
  r('GET', '/activity/:act/usage', relayed('usage', (c, act) => {
    if (act.state[0] === 'Terminated' && act.vmGone) return { body: { currentUsage: act.finalUsage || usage(act), timestamp: Math.floor(Date.now() / 1000) } };
    // the provider daemon answers with the exe-unit's last report
    return { body: { currentUsage: usage(act), timestamp: Math.floor((act.hang ? act.hang.lastReportMs : Date.now()) / 1000) } };
  }));
  r('GET', '/activity/:act/agreement', (c) => ({ body: getAct(sim, c).agreement.id }));
  r('GET', '/activity/:act/command', relayed('command', (c, act) => ({ body: act.running ? [{ command: act.running.command, progress: null, params: [] }] : [] })));
  r('DELETE', '/activity/:act', relayed('destroy', (c) => destroy(sim, c)));
}

function getAct(sim, c) {
  const id = c.params.act;
  const act = sim.activityApi.activities.get(id);
  if (!act) throw jsonErr(500, `DAO error: Not found: agreement id for activity: ${id}`);
  if (act.owner !== c.who.identity) throw jsonErr(403, `Forbidden: activity ${id} belongs to another identity`);
  return act;
}

function stateView(act) {
  const state = act.unresponsive && act.state[0] !== 'Terminated' ? ['Unresponsive', act.state[1]] : act.state;
  const v = { state: flappedState(act.provider, state) };
  if (act.reason) v.reason = act.reason;
  if (act.errorMessage) v.errorMessage = act.errorMessage;
  return v;
}

function usage(act) {
  // a hung exe-unit reports nothing: the provider keeps (and bills) its last report
  const end = act.endedMs || (act.hang ? act.hang.lastReportMs : Date.now());
  // under time compression (timeScale F) the provider's counters run F times faster too
  const dur = Math.max(0, (end - act.createdMs) / 1000) * (Number(act.provider.timeScale) || 1);
  return [Number(dur.toFixed(6)), Number((dur * act.provider.cpuFactor).toFixed(6))];
}

/** The `timeout` query of calls relayed to the provider: seconds, default 5 (PROTOCOL.md §1). */
function relayTimeoutSec(sim, c) {
  if (c.query.timeout === undefined) return 5;
  const t = Number(c.query.timeout);
  if (!Number.isFinite(t) || t < 0) throw sim.invalid(c.req, `Invalid timeout ${c.query.timeout}`);
  return t;
}

/** Resolves what `p` resolves to, or 'timeout' after ms. */
function within(p, ms) {
  let t;
  return Promise.race([p, new Promise((r) => { t = setTimeout(() => r('timeout'), ms); })]).finally(() => clearTimeout(t));
}

async function create(sim, c) {
  let agreementId; let objectForm = false;
  if (typeof c.body === 'string') agreementId = c.body;
  else if (c.body && typeof c.body === 'object' && typeof c.body.agreementId === 'string') { agreementId = c.body.agreementId; objectForm = true; }
  else throw sim.invalid(c.req, 'Json deserialize error: expected an agreement id string or {"agreementId": ...}');
  relayTimeoutSec(sim, c); // validated; the exe-unit reports Initialized at once (see below)
  const a = sim.market.agreements.get(agreementId);
  if (!a || a.owner !== c.who.identity) throw jsonErr(404, `Agreement [${agreementId}] not found`);
  if (a.state !== 'Approved') throw jsonErr(400, `Agreement ${agreementId} is not Approved. Current state: ${a.state}`);
  const p = a.provider;
  const hung = await relayCheck(sim, c, p, 'create');
  if (hung) return hung;
  if (p.faults.failActivityCreate) {
    if (p.faults.failActivityCreate > 0) p.faults.failActivityCreate--;
    throw jsonErr(500, `GSB error: remote service at /public/${p.nodeId}/activity: Activity creation failed (injected fault)`);
  }
  const act = {
    id: ids.simple(), owner: c.who.identity, agreement: a, provider: p, state: ['Initialized', null], reason: null, errorMessage: null,
    createdMs: Date.now(), batches: new Map(), netConfigs: [], running: null, vmGone: false, endedMs: null,
  };
  act.vm = newVm(sim, act);
  // The provider answers once the exe-unit reports Initialized. A real exe-unit does that as soon as
  // it runs; its runtime (the VM) boots later, for deploy. So the VM agent starts now and deploy
  // waits for it: the boot time of a loaded test machine never turns into a create timeout.
  act.vmReady = act.vm.start().then(() => null, (e) => e);
  act.vm.onDeath = () => vmDied(sim, act);
  sim.activityApi.activities.set(act.id, act);
  a.activities.add(act.id);
  sim.paymentApi.activityStarted(act);
  return { status: 200, body: objectForm ? { activityId: act.id } : act.id };
}

/** The activity's VM: its own agent process, or (`--vm-mode shared`, scale/bench) a slot in the shared host. */
function newVm(sim, act) {
  const common = { id: act.id, baseDir: sim.baseDir, log: (l) => sim.log(l), connectTimeoutMs: sim.opts.tunnelConnectTimeoutMs };
  if (sim.opts.vmMode !== 'shared') return new VM({ ...common, netns: sim.netns });
  if (!sim.sharedHost) sim.sharedHost = new SharedHost({ baseDir: sim.baseDir, log: common.log });
  return new SharedVM({ ...common, host: sim.sharedHost, info: { activityId: act.id, providerId: act.provider.nodeId, providerName: act.provider.name } });
}

/** The VM died under the activity (its exe-unit killed with it). ya-provider's TaskRunner sees the
 *  process end by a signal: Terminated, `execution aborted`, `exit code None` (task_runner.rs), then
 *  ActivityDestroyed: a single-activity agreement is closed with Success, a multi-activity one stays
 *  and NoActivity follows unless a new activity comes (§9.3). Nobody tells the requestor at once: it
 *  finds out from the activity's state; the tunnels end by the TCP timeout. */
function vmDied(sim, act) {
  if (act.state[0] === 'Terminated') return;
  const ended = endActivity(sim, act, { reason: 'execution aborted', errorMessage: 'exit code None' });
  providerSawDestroy(sim, act, ended);
}

async function endActivity(sim, act, { reason, errorMessage }) {
  if (act.state[0] !== 'Terminated') {
    act.state = ['Terminated', null];
    act.reason = reason; act.errorMessage = errorMessage;
    act.endedMs = act.hang ? act.hang.lastReportMs : Date.now();
    stopMonitor(sim, act);
    if (act.hang) { sim.cancel(act.hang.resumeTimer); act.hang = null; act.unresponsive = false; }
    act.finalUsage = usage(act);
    sim.paymentApi.activityEnded(act);
    // The provider's NoActivity clock starts again once no activity is left.
    sim.marketApi.scheduleIdleBreak(sim, act.agreement);
  }
  // The requestor daemon closes no tunnel: the VM is gone, they end by the TCP timeout (§9.5).
  sim.netApi.vmGone(act);
  for (const b of act.batches.values()) { b.aborted = true; wakeAll(b.waiters, 'end'); }
  if (!act.vmGone) { act.vmGone = true; act.vm.onDeath = null; await act.vmReady; await act.vm.destroy().catch(() => {}); }
}

/** DELETE: the provider destroys the activity and answers once it is Terminated (at once when it
 *  already was); longer than `timeout` -> 408. The requestor's cache then reads Terminated with
 *  reason and errorMessage cleared (yagna requestor/control.rs destroy_activity). */
async function destroy(sim, c) {
  const act = getAct(sim, c);
  const timeoutSec = relayTimeoutSec(sim, c);
  const alive = act.state[0] !== 'Terminated';
  const ended = act.hang ? killHungExeUnit(sim, act) : endActivity(sim, act, { reason: 'Destroyed by requestor', errorMessage: null });
  if (alive) providerSawDestroy(sim, act, ended);
  if (await within(ended, timeoutSec * 1000) === 'timeout') throw jsonErr(408, 'Timeout');
  act.reason = null; act.errorMessage = null;
  return { body: null };
}

// ---------------------------------------------------------------- an exe-unit that stops reporting
// yagna core/activity/src/provider/service.rs monitor_activity: once a second the provider daemon
// compares now with the last usage report (whole seconds, as the exe-unit's timestamps): more than
// unresponsiveLimitSec -> state Unresponsive (next state kept), back to the previous one when
// reports resume; more than inactivityLimitSec -> a DestroyActivity event for ya-provider, whose
// TaskRunner SIGTERMs the exe-unit and SIGKILLs it processTerminationTimeoutSec later. A hung
// exe-unit ignores the SIGTERM: killed by a signal, ya-provider sets the activity Terminated with
// `execution aborted` / `exit code None` (task_runner.rs on_create_activity, set_activity_terminated),
// then ActivityDestroyed follows (final debit note, NoActivity clock, single-activity close).
// While hung, calls that reach the exe-unit (exec, results, command) and its VPN traffic get no answer;
// state and usage are answered by the provider daemon.

const limitSec = (v, def) => Math.max(2, Number.isFinite(Number(v)) ? Number(v) : def);

/** The exe-unit stops reporting (fault `unresponsive`); reports resume after resumeAfterMs if given. */
function hangExeUnit(sim, act, resumeAfterMs) {
  if (act.state[0] === 'Terminated' || act.vmGone) return false;
  if (!act.hang) {
    // it reported every second: the last report came within the last second
    act.hang = { lastReportMs: Date.now() - Math.floor(Math.random() * 1000), killing: null, resumeTimer: null };
    act.monitor = sim.every(1000, () => monitorTick(sim, act));
    sim.netApi.reachabilityChanged();
  }
  if (resumeAfterMs !== undefined) {
    sim.cancel(act.hang.resumeTimer);
    act.hang.resumeTimer = sim.later(Math.max(0, Number(resumeAfterMs) || 0), () => resumeExeUnit(sim, act));
  }
  return true;
}

/** Reports resume (before the destroy): the previous state is back, calls and tunnels flow again. */
function resumeExeUnit(sim, act) {
  if (!act.hang || act.hang.killing) return false;
  sim.cancel(act.hang.resumeTimer);
  // the counters ran on meanwhile; the next report carries them
  act.hang = null;
  act.unresponsive = false;
  stopMonitor(sim, act);
  sim.netApi.reachabilityChanged();
  return true;
}

function stopMonitor(sim, act) {
  if (act.monitor) { clearInterval(act.monitor); sim.timers.delete(act.monitor); act.monitor = null; }
}

function monitorTick(sim, act) {
  const h = act.hang;
  if (!h || act.state[0] === 'Terminated') { stopMonitor(sim, act); return; }
  const since = Math.floor(Date.now() / 1000) - Math.floor(h.lastReportMs / 1000);
  if (since > limitSec(sim.opts.unresponsiveLimitSec, 5)) act.unresponsive = true;
  if (since > limitSec(sim.opts.inactivityLimitSec, 10)) {
    stopMonitor(sim, act);
    sim.log(`activity ${act.id} inactive for ${since}s, destroying`);
    providerSawDestroy(sim, act, killHungExeUnit(sim, act));
  }
}

/** ya-provider destroys a hung exe-unit: SIGTERM is ignored, SIGKILL after the termination timeout. */
function killHungExeUnit(sim, act) {
  const h = act.hang;
  if (!h.killing) {
    sim.cancel(h.resumeTimer);
    const ms = Math.max(0, Number(sim.opts.processTerminationTimeoutSec) || 0) * 1000;
    h.killing = new Promise((resolve) => sim.later(ms, resolve))
      .then(() => endActivity(sim, act, { reason: 'execution aborted', errorMessage: 'exit code None' }));
  }
  return h.killing;
}

/** Once the exe-unit is gone the provider closes an agreement without multi-activity itself
 *  (task_manager.rs Handler<ActivityDestroyed>, §9.1). */
function providerSawDestroy(sim, act, ended) {
  const a = act.agreement;
  if (a.demand && a.demand.properties && a.demand.properties['golem.srv.caps.multi-activity'] === true) return;
  Promise.resolve(ended).then(() => {
    sim.marketApi.terminate(sim, a, 'Provider', { message: 'Finished with success.', 'golem.provider.code': 'Success' });
  });
}

// ---------------------------------------------------------------- exec
// Batches run concurrently, each its commands in order, like the exe-unit. Stateful commands check
// and move the exe-unit's state pair when they run (PROTOCOL.md §5.2, yagna exe-unit/src/exe_unit.rs
// exec_stateful); `terminate` and `sign` are stateless.
function exec(sim, c) {
  const act = getAct(sim, c);
  if (!c.body || typeof c.body !== 'object' || typeof c.body.text !== 'string') throw sim.invalid(c.req, 'Json deserialize error: missing field `text`');
  let cmds;
  try { cmds = JSON.parse(c.body.text); } catch (e) { throw jsonErr(400, `Invalid ExeScript: ${e.message}`); }
  if (!Array.isArray(cmds) || cmds.some((x) => !x || typeof x !== 'object' || Array.isArray(x) || Object.keys(x).length !== 1)) {
    throw jsonErr(400, 'Invalid ExeScript: expected an array of commands');
  }
  const unknown = cmds.map((x) => Object.keys(x)[0]).find((n) => !COMMANDS.has(n));
  if (unknown) throw jsonErr(400, `Invalid ExeScript: unknown variant \`${unknown}\`, expected one of ${[...COMMANDS].map((n) => `\`${n}\``).join(', ')}`);
  if (act.state[0] === 'Terminated') throw gsbError(act);
  if (act.batches.size >= MAX_BATCHES_PER_ACTIVITY) act.batches.delete(act.batches.keys().next().value);
  const batch = { id: ids.simple(), commands: cmds, results: [], aborted: false, waiters: new Set(), listeners: new Set(), seq: 0 };
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
    if (batch.aborted || act.state[0] === 'Terminated') break; // terminate/stop: later commands never run
    const cmd = batch.commands[i];
    emit(batch, i, { started: { command: cmd } });
    act.running = { command: cmd };
    let r;
    try { r = await runCommand(sim, act, batch, i, cmd); } catch (e) { r = { result: 'Error', stdout: null, stderr: null, message: String(e.message || e) }; }
    act.running = null;
    const failed = r.result === 'Error';
    batch.results.push({ index: i, eventDate: isoNs(Date.now()), result: r.result, stdout: r.stdout, stderr: r.stderr, message: r.message });
    emit(batch, i, { finished: { return_code: failed ? (r.code === undefined ? -1 : r.code) : 0, message: r.message } });
    wakeAll(batch.waiters, 'result');
    if (failed) break;
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

const STATELESS = new Set(['terminate', 'sign']);
const fmtPair = (p) => `StatePair(${p[0]}, ${p[1] ? `Some(${p[1]})` : 'None'})`;
const stateErr = (text) => `Local service error: State error: ${text}`;

/** yagna exe-unit/src/state.rs invalid_state_err_msg */
function invalidStateMessage(pair) {
  if (pair[1] === null && pair[0] === 'Initialized') return stateErr('Activity is initialized - deploy() command is expected now');
  if (pair[1] === null && pair[0] === 'Deployed') return stateErr('Activity is deployed - start() command is expected now');
  if (pair[1] === null && pair[0] === 'Ready') return stateErr('Cannot send command after a successful start()');
  return stateErr(`This command is not allowed when activity is in the ${pair[0]} state`);
}

/** The state pair a stateful command runs under, or an error message. */
function statePre(state, name) {
  if (state[1] !== null) return { error: stateErr(`Busy: ${fmtPair(state)}`) };
  const s = state[0];
  if (s === 'New' || s === 'Terminated') return { error: invalidStateMessage(state) };
  if (s === 'Initialized') return name === 'deploy' ? { pre: ['Initialized', 'Deployed'] } : { error: invalidStateMessage(state) };
  if (s === 'Deployed') return name === 'start' ? { pre: ['Deployed', 'Ready'] } : { error: invalidStateMessage(state) };
  if (name === 'deploy' || name === 'start') return { error: invalidStateMessage(state) };
  return { pre: [s, s] };
}

async function runCommand(sim, act, batch, index, cmd) {
  const [name] = Object.keys(cmd);
  if (STATELESS.has(name)) return runStateless(sim, act, batch, name);
  const st = statePre(act.state, name);
  if (st.error) return { result: 'Error', stdout: null, stderr: null, message: st.error };
  act.state = st.pre;
  let r;
  try { r = await runStateful(sim, act, batch, index, name, cmd[name] || {}); } catch (e) { r = { result: 'Error', stdout: null, stderr: null, message: String(e.message || e) }; }
  // A terminate (or the end of the activity) meanwhile: the command ends with UnexpectedState.
  if (act.state[0] !== st.pre[0] || act.state[1] !== st.pre[1]) {
    return { ...r, result: 'Error', message: stateErr(`Unexpected state: ${fmtPair(act.state)}, expected ${fmtPair(st.pre)}`), code: undefined };
  }
  // The exe-unit moves to the next state whether the command succeeded or not.
  act.state = [st.pre[1], null];
  return r;
}

async function runStateless(sim, act, batch, name) {
  const ok = { result: 'Ok', stdout: null, stderr: null, message: null };
  if (name === 'terminate') {
    // Abort the other batches, stop the runtime (everything in the VM), back to Initialized.
    for (const b of act.batches.values()) if (b !== batch) { b.aborted = true; wakeAll(b.waiters, 'abort'); }
    await act.vmReady;
    act.vm.killServices();
    act.image = null; act.netConfigs = [];
    act.state = ['Initialized', null];
    return ok;
  }
  return { result: 'Error', stdout: null, stderr: null, message: 'ExeScript command error: signing not supported: binary built without the \'sgx\' feature' };
}

async function runStateful(sim, act, batch, index, name, arg) {
  const ok = () => ({ result: 'Ok', stdout: null, stderr: null, message: null });
  const err = (message, extra = {}) => ({ result: 'Error', stdout: null, stderr: null, message, ...extra });
  switch (name) {
    case 'deploy': {
      const bootErr = await act.vmReady;
      if (bootErr) return err(`Runtime error: the VM did not start: ${bootErr.message}`);
      const tp = parseTaskPackage(act.agreement.demand.properties['golem.srv.comp.task_package']);
      await sleep(sim.opts.deployDelayMs);
      const img = tp && sim.images.get(tp.hash);
      if (!img) return err(`Deploy error: image not found: ${tp ? `hash ${tp.hash} (url ${tp.url})` : 'no golem.srv.comp.task_package in the agreement'}`);
      if (Array.isArray(arg.net)) act.netConfigs = arg.net.filter((n) => n && typeof n === 'object');
      act.vm.deploy(img);
      act.image = img;
      return ok();
    }
    case 'start':
      await sleep(5);
      return ok();
    case 'run': {
      if (typeof arg.entry_point !== 'string') return err('Invalid run command: missing entry_point');
      const cap = arg.capture || {};
      const stream = (s) => cap[s] && cap[s].stream;
      const r = await act.vm.run(arg.entry_point, Array.isArray(arg.args) ? arg.args : [], {
        onOutput: (s, buf) => { if (stream(s)) emit(batch, index, { [s]: cap[s].stream.format === 'bin' ? [...buf] : buf.toString('utf8') }); },
      });
      const stdout = fmtOut(r.stdout, cap.stdout);
      const stderr = fmtOut(r.stderr, cap.stderr);
      if (r.vmDied) return { result: 'Error', stdout, stderr, message: 'Runtime error: VM died' };
      if (r.error) return { result: 'Error', stdout, stderr, message: `Runtime error: ${r.error}` };
      if (r.code !== 0) return { result: 'Error', stdout, stderr, message: `ExeScript command exited with code ${r.code}`, code: r.code };
      return { result: 'Ok', stdout, stderr, message: null };
    }
    case 'transfer':
      return transfer(sim, act, arg);
    default:
      return err(`Unsupported command: ${name}`);
  }
}

// ---------------------------------------------------------------- results
// yagna exe-unit/src/handlers/rpc.rs GetExecBatchResults + state.rs results: wait up to `timeout`
// (absent = no wait) for command `commandIndex` (default the last); on expiry 408 only with
// commandIndex, else whatever prefix is done. isBatchFinished on the awaited entry or an Error.
async function results(sim, c) {
  const act = getAct(sim, c);
  const batch = act.batches.get(c.params.batch);
  if (!batch) throw jsonErr(404, `Batch id not found: ${c.params.batch}`);
  if (act.state[0] === 'Terminated' && act.vmGone) throw gsbError(act);
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
  if (!batch.commands.length) return { body: [] };
  const awaitIdx = idx === null ? batch.commands.length - 1 : idx;
  const done = () => batch.results.length > awaitIdx;
  const deadline = Date.now() + timeout * 1000;
  while (!done() && Date.now() < deadline) {
    let onClose; const closed = new Promise((r) => { onClose = () => r('closed'); c.res.on('close', onClose); });
    const r = await Promise.race([waitFor(batch.waiters, deadline - Date.now()), closed]);
    c.res.removeListener('close', onClose);
    if (r === 'closed') return { streamed: true };
    if (act.state[0] === 'Terminated' && act.vmGone) throw gsbError(act); // the exe-unit went away
  }
  if (!done() && idx !== null) throw jsonErr(408, 'Timeout');
  const out = [];
  for (const x of batch.results) {
    if (x.index > awaitIdx) break;
    const output = idx === null || x.index === idx;
    out.push({ index: x.index, eventDate: x.eventDate, result: x.result, stdout: output ? x.stdout : null, stderr: output ? x.stderr : null, message: x.message, isBatchFinished: x.index === awaitIdx || x.result === 'Error' });
  }
  return { body: out };
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
  if (sim.sharedHost) await sim.sharedHost.stop();
}

module.exports = { init, shutdown, endActivity, stateView, usage, hangExeUnit, resumeExeUnit };
