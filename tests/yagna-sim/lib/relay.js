'use strict';
// How requests that the local daemon relays to a provider fare when that provider is not well:
// `vanish` (no answer: 408 after `timeout` + 1 s, or an immediate 500 net error) and `unresponsive`
// (the state flaps, state calls intermittently fail). PROTOCOL.md §1 "Timeouts", §9.3, §9.4.
// Also the gate for provider -> requestor deliveries, held while the link or the daemon is down.
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

/** The state the requestor reads: `Unresponsive` (keeping the next state) in alternate periods. */
function flappedState(p, state) {
  const f = p.faults;
  if (!f.unresponsive || state[0] === 'Terminated') return state;
  const phase = Math.floor((Date.now() - f.unresponsiveSince) / f.unresponsivePeriodMs) % 2;
  return phase === 0 ? ['Unresponsive', state[1]] : state;
}

/** The requestor can hear from provider p now (daemon up, provider on the network). */
function linkUp(sim, p) { return !sim.down && !p.faults.vanished; }

/** Deliver something from provider p to the requestor now, or when the link is back (providers retry). */
function fromProvider(sim, p, fn) {
  if (linkUp(sim, p)) { fn(); return; }
  p.outbox.push(fn);
}

/** Flush what the providers held while the link was down, in order. */
function flushOutboxes(sim) {
  for (const p of sim.providers) {
    while (p.outbox.length && linkUp(sim, p)) p.outbox.shift()();
  }
}

module.exports = { relayCheck, flappedState, fromProvider, flushOutboxes, linkUp, netError, hang };
