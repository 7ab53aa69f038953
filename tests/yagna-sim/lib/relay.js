'use strict';
// How requests that the local daemon relays to a provider fare when that provider is not well:
// `vanish` (no answer: 408 after `timeout` + 1 s, or an immediate 500 net error) and `unresponsive`
// (the state flaps, state calls intermittently fail). PROTOCOL.md §1 "Timeouts", §9.3, §9.4.
// Also the gate for provider -> requestor deliveries, retried by the provider while the link or the
// daemon is down (PROTOCOL.md §9.1, §9.4).
const { jsonErr } = require('./util');

function netError(p) {
  return jsonErr(500, `GSB error: GSB failure: Net: error forwarding message: unable to reach node ${p.nodeId}`);
}

/** Resolves 'closed' if the client goes away first; otherwise after ms (never when ms is Infinity). */
function hang(sim, c, ms) {
  return new Promise((resolve) => {
    let timer = null;
    const onClose = () => { sim.cancel(timer); resolve('closed'); };
    c.res.once('close', onClose);
    if (Number.isFinite(ms)) timer = sim.later(ms, () => { c.res.removeListener('close', onClose); resolve('timeout'); });
  });
}

/** The `timeout` query of a relayed call in seconds; `def` when absent (null = no limit). */
function relayTimeout(c, def) {
  if (c.query.timeout === undefined) return def;
  const t = Number(c.query.timeout);
  return Number.isFinite(t) && t >= 0 ? t : def;
}

/**
 * Call before answering a relayed activity call. Returns null to go on, {streamed:true} when the
 * client left while we hung, or throws the daemon's error. `kind`: create, exec, results, state,
 * usage, destroy, command.
 */
async function relayCheck(sim, c, p, kind) {
  const f = p.faults;
  const def = kind === 'results' ? null : 5;
  if (f.vanished) {
    if (f.vanishMode === 'unreachable') throw netError(p);
    const t = relayTimeout(c, def);
    const ms = t === null ? Infinity : t * 1000 + sim.opts.relayTimeoutMarginMs;
    if ((await hang(sim, c, ms)) === 'closed') return { streamed: true };
    throw jsonErr(408, 'Timeout');
  }
  if (f.unresponsive && kind === 'state') {
    // Every third state call fails with a service-bus error, every third one times out.
    const n = f.unresponsiveCalls++;
    if (n % 3 === 1) throw jsonErr(500, `GSB error: GSB failure: Timeout: ${p.nodeId} did not answer`);
    if (n % 3 === 2) {
      const t = relayTimeout(c, def);
      if ((await hang(sim, c, t * 1000 + sim.opts.relayTimeoutMarginMs)) === 'closed') return { streamed: true };
      throw jsonErr(408, 'Timeout');
    }
  }
  return null;
}

/**
 * Calls that the provider daemon hands to the exe-unit (exec, results, command) get no answer from a
 * hung one (fault `unresponsive`): 408 after `timeout` + margin (results without `timeout`: hang until
 * the client goes). Returns null to go on, {streamed:true} when the client left, or throws.
 */
async function hangsExeUnitCall(sim, c, act, kind) {
  if (!act.hang || !['exec', 'results', 'command'].includes(kind)) return null;
  const t = relayTimeout(c, kind === 'results' ? null : 5);
  const ms = t === null ? Infinity : t * 1000 + sim.opts.relayTimeoutMarginMs;
  if ((await hang(sim, c, ms)) === 'closed') return { streamed: true };
  throw jsonErr(408, 'Timeout');
}

/** The state the requestor reads: `Unresponsive` (keeping the next state) in alternate periods. */
function flappedState(p, state) {
  const f = p.faults;
  if (!f.unresponsive || state[0] === 'Terminated') return state;
  const phase = Math.floor((Date.now() - f.unresponsiveSince) / f.unresponsivePeriodMs) % 2;
  return phase === 0 ? ['Unresponsive', state[1]] : state;
}

/** The requestor can hear from provider p now (daemon up, provider on the network). */
function linkUp(sim, p) { return !sim.down && !p.faults.vanished; }

// How the provider's senders retry while the requestor cannot be reached (ya-provider, `backoff`
// crate ExponentialBackoff, randomization factor 0.5 by default, so each delay is its interval
// × [0.5, 1.5)): the market's terminate from 5 s ×1.5 up to 1 h (provider_market.rs get_backoff),
// the payment module's final debit note and invoice from 3 s ×1.5 up to 5 h (payments.rs
// get_backoff). Negotiation answers (drafts, rejections) are sent once: a failed one is lost.
const RETRY = {
  terminate: { initialMs: 5000, maxMs: 3600 * 1000 },
  payment: { initialMs: 3000, maxMs: 5 * 3600 * 1000 },
};

/**
 * Deliver something from provider p to the requestor now; while the link is down the provider
 * retries it on its own schedule (`kind`: terminate | payment) and it arrives at the first attempt
 * made with the link up, or (`once`) never. `what` describes it in the admin view.
 */
function fromProvider(sim, p, fn, kind = 'once', what = {}) {
  if (linkUp(sim, p)) { fn(); return; }
  if (!RETRY[kind]) { sim.log(`provider ${p.name}: a ${kind} delivery failed (requestor unreachable), not retried`); return; }
  const item = { kind, what, fn, attempts: 1, intervalMs: RETRY[kind].initialMs, nextAttemptMs: 0, timer: null };
  p.outbox.push(item);
  scheduleRetry(sim, p, item);
}

function scheduleRetry(sim, p, item) {
  const delay = item.intervalMs * (0.5 + Math.random());
  item.intervalMs = Math.min(item.intervalMs * 1.5, RETRY[item.kind].maxMs);
  item.nextAttemptMs = Date.now() + delay;
  item.timer = sim.later(delay, () => retry(sim, p, item));
}

function retry(sim, p, item) {
  item.timer = null;
  if (!linkUp(sim, p)) { item.attempts++; scheduleRetry(sim, p, item); return; }
  p.outbox.splice(p.outbox.indexOf(item), 1);
  item.fn();
}

/** What provider p holds for the requestor, with each item's next attempt (admin view). */
function outboxView(p) {
  return p.outbox.map((i) => ({ kind: i.kind, ...i.what, attempts: i.attempts, nextAttemptAt: new Date(i.nextAttemptMs).toISOString() }));
}

module.exports = { relayCheck, hangsExeUnitCall, flappedState, fromProvider, outboxView, linkUp, netError, hang };
