'use strict';
// Root routes (/me, /version/get) and the simulator's own admin API (/_sim/...), which needs the app key.
const { jsonErr } = require('./util');
const { fromWei } = require('./util');

const { freshFaults, Provider } = require('./providers');

const FAULTS = ['killService', 'crashVm', 'dropTunnels', 'failActivityCreate', 'proposals', 'agreements', 'tunnelDelay', 'inflateDebitNotes', 'terminateAgreements',
  'paymentStall', 'debitNoteRate', 'inflateInvoices', 'vanish', 'unresponsive', 'slowConnect', 'refuseConnect', 'clockSkew', 'maxAgreements', 'crash', 'restart', 'addProvider', 'republishOffer', 'route', 'clear'];

function init(sim) {
  sim.route('GET', '/me', (c) => ({ body: { identity: c.who.identity, name: c.who.name, role: c.who.role } }));
  sim.route('GET', '/version/get', () => ({
    body: { current: { version: '0.17.6 (yagna-sim)', name: 'yagna-sim', seen: true, releaseTs: '2026-03-28T00:00:00', insertionTs: '2026-03-28T00:00:00', updateTs: '2026-03-28T00:00:00' }, pending: null },
  }), { noAuth: true });
  sim.route('GET', '/_sim/state', () => ({ body: state(sim) }), { noSpec: true });
  sim.route('GET', '/_sim/violations', () => ({ body: { count: sim.violationCount, violations: sim.violations } }), { noSpec: true });
  sim.route('DELETE', '/_sim/violations', () => { sim.violations = []; sim.violationCount = 0; return { body: null }; }, { noSpec: true });
  sim.route('GET', '/_sim/requests', () => ({ body: sim.requestLog }), { noSpec: true });
  sim.route('POST', '/_sim/fault', (c) => ({ body: fault(sim, c.body || {}) }), { noSpec: true });
  sim.route('GET', '/_sim/providers', () => ({ body: sim.providers.map((p) => p.summary()) }), { noSpec: true });
}

/** Apply a fault. Returns a small report {ok, fault, provider?, affected?}. */
function fault(sim, f) {
  if (!FAULTS.includes(f.fault)) throw jsonErr(400, `unknown fault ${JSON.stringify(f.fault)}; one of ${FAULTS.join(', ')}`);
  if (f.fault === 'route') {
    if (typeof f.path !== 'string') throw jsonErr(400, 'route fault needs "path" (a regex)');
    let re; try { re = new RegExp(f.path); } catch (e) { throw jsonErr(400, `bad path regex: ${e.message}`); }
    const rf = { method: f.method ? String(f.method).toUpperCase() : null, path: f.path, re, status: f.status === undefined ? (f.stallMs ? 0 : 500) : Number(f.status), stallMs: Number(f.stallMs) || 0, remaining: f.count === undefined ? 1 : Number(f.count), message: f.message, body: f.body, hits: 0 };
    sim.routeFaults.push(rf);
    return { ok: true, fault: 'route' };
  }
  if (f.fault === 'crash' || f.fault === 'restart') {
    // Answer first, then die (the answer would not get out otherwise).
    const restartAfterMs = f.fault === 'restart' ? Number(f.downMs) || 0 : (f.restartAfterMs === undefined ? null : Number(f.restartAfterMs));
    if (restartAfterMs !== null && !(restartAfterMs >= 0)) throw jsonErr(400, `${f.fault}: bad delay`);
    setTimeout(() => { sim.crash({ restartAfterMs }).catch((e) => sim.log(`crash: ${e.stack || e}`)); }, 20);
    return { ok: true, fault: f.fault, restartAfterMs };
  }
  if (f.fault === 'addProvider') {
    const cfg = f.config && typeof f.config === 'object' ? f.config : {};
    const p = new Provider(sim.providers.length, cfg, sim);
    sim.providers.push(p);
    // A new offer is matched against every live demand (PROTOCOL.md §4.2).
    sim.marketApi.offerPublished(sim, p);
    return { ok: true, fault: 'addProvider', providers: [p.nodeId], provider: p.summary() };
  }
  const targets = f.provider === '*' || f.provider === undefined && f.fault === 'clear' ? sim.providers : [sim.provider(f.provider)];
  if (!targets[0]) throw jsonErr(404, `no provider ${JSON.stringify(f.provider)}`);
  let affected = 0;
  for (const p of targets) affected += applyToProvider(sim, p, f);
  return { ok: true, fault: f.fault, providers: targets.map((p) => p.nodeId), affected };
}

function liveActs(sim, p) {
  return [...sim.activityApi.activities.values()].filter((a) => a.provider === p && a.state[0] !== 'Terminated' && !a.vmGone);
}

function applyToProvider(sim, p, f) {
  switch (f.fault) {
    case 'killService': { const acts = liveActs(sim, p); for (const a of acts) a.vm.killServices(); return acts.length; }
    case 'crashVm': { const acts = liveActs(sim, p); for (const a of acts) a.vm.crash(); return acts.length; }
    case 'dropTunnels': return sim.netApi.closeTunnels((t) => t.providerId === p.nodeId, 1006, 'dropped', true);
    case 'failActivityCreate': p.faults.failActivityCreate = f.count === undefined ? 1 : Number(f.count); return 0;
    case 'proposals': {
      if (!['draft', 'reject', 'ignore'].includes(f.mode)) throw jsonErr(400, 'proposals fault needs mode draft|reject|ignore');
      p.onCounter = f.mode; return 0;
    }
    case 'agreements': {
      if (!['approve', 'reject', 'ignore'].includes(f.mode)) throw jsonErr(400, 'agreements fault needs mode approve|reject|ignore');
      p.onAgreement = f.mode; return 0;
    }
    case 'tunnelDelay': p.faults.tunnelDelayMs = Math.max(0, Number(f.ms) || 0); return 0;
    case 'inflateDebitNotes': {
      const factor = f.factor === undefined ? 10 : Number(f.factor);
      if (!Number.isFinite(factor) || factor <= 0) throw jsonErr(400, 'inflateDebitNotes needs a positive "factor"');
      p.faults.debitNoteFactor = factor; return 0;
    }
    case 'terminateAgreements': {
      const at = f.at ? Date.parse(f.at) : Date.now() + (Number(f.inMs) || 0);
      if (Number.isNaN(at)) throw jsonErr(400, 'terminateAgreements needs "at" (RFC 3339) or "inMs"');
      p.faults.terminateAtMs = at;
      let n = 0;
      for (const a of sim.market.agreements.values()) if (a.provider === p && a.state === 'Approved') { sim.marketApi.scheduleProviderEnd(sim, a); n++; }
      return n;
    }
    case 'debitNoteRate': {
      const rate = f.rate === undefined ? 4 : Number(f.rate);
      if (!Number.isFinite(rate) || rate <= 0) throw jsonErr(400, 'debitNoteRate needs a positive "rate"');
      p.faults.debitNoteRate = rate; return 0; // applies to activities started from now on
    }
    case 'inflateInvoices': {
      const factor = f.factor === undefined ? 10 : Number(f.factor);
      if (!Number.isFinite(factor) || factor <= 0) throw jsonErr(400, 'inflateInvoices needs a positive "factor"');
      p.faults.invoiceFactor = factor; return 0;
    }
    case 'paymentStall': p.faults.paymentStallMs = Math.max(0, Number(f.ms) || 0); return 0;
    case 'vanish': {
      if (f.mode !== undefined && !['timeout', 'unreachable'].includes(f.mode)) throw jsonErr(400, 'vanish mode is timeout|unreachable');
      p.faults.vanished = true;
      p.faults.vanishMode = f.mode || 'timeout';
      sim.netApi.reachabilityChanged();
      if (f.durationMs !== undefined) sim.later(Number(f.durationMs) || 0, () => reappear(sim, p));
      return sim.net.tunnels.size;
    }
    case 'unresponsive': {
      const mode = f.mode || (f.periodMs !== undefined ? 'flap' : 'hang');
      if (!['hang', 'flap'].includes(mode)) throw jsonErr(400, 'unresponsive mode is hang|flap');
      if (f.off === true) { // reports resume: the previous state is back (before the destroy)
        p.faults.unresponsive = false;
        return liveActs(sim, p).filter((a) => sim.activityApi.resume(a)).length;
      }
      if (mode === 'hang') return liveActs(sim, p).filter((a) => sim.activityApi.hang(a, f.durationMs)).length;
      p.faults.unresponsive = true;
      p.faults.unresponsivePeriodMs = Math.max(50, Number(f.periodMs) || 1000);
      p.faults.unresponsiveSince = Date.now();
      p.faults.unresponsiveCalls = 0;
      return 0;
    }
    case 'slowConnect': p.faults.slowConnectMs = f.ms === undefined ? sim.opts.tunnelConnectTimeoutMs : Math.max(0, Number(f.ms) || 0); return 0;
    case 'refuseConnect': p.faults.refuseConnect = f.off !== true; return 0;
    case 'clockSkew': {
      const ms = Number(f.ms);
      if (!Number.isFinite(ms)) throw jsonErr(400, 'clockSkew needs "ms"');
      p.clockSkewMs = ms; return 0;
    }
    case 'maxAgreements': {
      const n = Number(f.count);
      if (!Number.isInteger(n) || n < 0) throw jsonErr(400, 'maxAgreements needs an integer "count" (0 = no limit)');
      p.maxAgreements = n; return 0;
    }
    case 'republishOffer':
      p.offerId = require('./util').ids.subscription();
      sim.marketApi.offerPublished(sim, p);
      return 0;
    case 'clear': {
      const wasVanished = p.faults.vanished;
      p.faults = freshFaults();
      for (const a of liveActs(sim, p)) sim.activityApi.resume(a); // hung exe-units report again
      p.onCounter = 'draft'; p.onAgreement = 'approve';
      if (f.provider === undefined) sim.routeFaults = [];
      if (wasVanished) reappear(sim, p);
      return 0;
    }
    default: return 0;
  }
}

/** A vanished provider is back: its tunnels flow again; what it holds arrives at its next retry. */
function reappear(sim, p) {
  p.faults.vanished = false;
  sim.netApi.reachabilityChanged();
}

function state(sim) {
  const m = sim.market; const pay = sim.payment;
  const acts = [...sim.activityApi.activities.values()];
  return {
    url: sim.url, identity: sim.identity, vmMode: sim.opts.vmMode, crashes: sim.crashes || 0, restarts: sim.restarts || 0, netns: sim.netns, specDir: sim.spec ? sim.spec.dir : null, strict: !!sim.opts.strict,
    images: [...sim.images.values()].map(({ name, hash, size }) => ({ name, hash, size })),
    providers: sim.providers.map((p) => ({ ...p.summary(), activeActivities: acts.filter((a) => a.provider === p && a.state[0] !== 'Terminated').length })),
    demands: [...m.subs.values()].filter((s) => s.alive).map((s) => ({ id: s.id, queuedEvents: s.events.length, timestamp: s.timestamp })),
    agreements: [...m.agreements.values()].map((a) => ({
      agreementId: a.id, providerId: a.provider.nodeId, providerName: a.provider.name, state: a.state, validTo: a.validTo,
      approvedDate: a.approvedDate, terminatedBy: a.terminatedBy || null, terminationReason: a.terminationReason, activities: [...a.activities],
      providerHolds: !!(a.providerApproved && !a.providerEnded), // counts against the provider's maxAgreements
    })),
    activities: acts.map((a) => ({
      activityId: a.id, agreementId: a.agreement.id, providerId: a.provider.nodeId, state: a.state, reason: a.reason, errorMessage: a.errorMessage,
      image: a.image ? a.image.name : null, vm: { dir: a.vm.dir, root: a.vm.root, alive: a.vm.alive, netns: a.vm.netns, shared: !!a.vm.shared, port80: a.vm.netns ? 80 : a.vm.port80 }, batches: a.batches.size,
    })),
    allocations: [...pay.allocations.values()].map((a) => ({ allocationId: a.id, platform: a.paymentPlatform, totalAmount: fromWei(a.total), spentAmount: fromWei(a.spent), remainingAmount: fromWei(a.total - a.spent), released: a.released })),
    payments: {
      debitNotes: [...pay.debitNotes.values()].map((d) => ({ debitNoteId: d.id, agreementId: d.agreementId, activityId: d.activityId, totalAmountDue: fromWei(d.amount), status: d.status, timestamp: d.timestamp, paymentDueDate: d.paymentDueDate || null })),
      invoices: [...pay.invoices.values()].map((i) => ({ invoiceId: i.id, agreementId: i.agreementId, amount: fromWei(i.amount), status: i.status, timestamp: i.timestamp, rejection: i.rejection || null })),
      acceptedTotal: fromWei([...pay.allocations.values()].reduce((s, a) => s + a.spent, 0n)),
    },
    networks: [...sim.net.networks.values()].map((n) => ({ id: n.id, ip: `${n.ip}/${n.prefix}`, gateway: n.gateway, addresses: n.addresses, nodes: Object.fromEntries(n.nodes) })),
    tunnels: [...sim.net.tunnels.values()].map((t) => require('./net').tunnelView(t)),
    tunnelsOpened: sim.net.tunnelsOpened,
    tunnelHistory: sim.net.tunnelHistory.map((t) => require('./net').tunnelView(t)),
    vmConnectionsKept: sim.net.orphans.size,
    routeFaults: sim.routeFaults.map((f) => ({ method: f.method, path: f.path, status: f.status, stallMs: f.stallMs, remaining: f.remaining, hits: f.hits })),
    violationCount: sim.violationCount,
    violations: sim.violations,
  };
}

module.exports = { init, state, fault, FAULTS };
