'use strict';
// Market API (/market-api/v1), requestor side: demands, offer matching, negotiation with the
// simulated providers, agreements and agreement events. Status codes as the real daemon (PROTOCOL.md §4, §8).
const ldap = require('./ldap');
const { ids, RE, isoMs, parseTime, jsonErr, HttpError, waitFor, wakeAll } = require('./util');

const P = '/market-api/v1';
const MAX_QUEUED_EVENTS = 1000;
const MAX_AGREEMENT_EVENTS = 10000;

function init(sim) {
  const m = sim.market = { subs: new Map(), proposals: new Map(), agreements: new Map(), events: [], eventWaiters: new Set() };
  sim.marketApi = { terminate, scheduleProviderEnd };
  const r = (method, path, fn) => sim.route(method, P + path, fn);

  r('POST', '/demands', (c) => subscribe(sim, c));
  r('GET', '/demands', (c) => ({ body: [...m.subs.values()].filter((s) => s.owner === c.who.identity && s.alive).map(demandView) }));
  r('DELETE', '/demands/:sub', (c) => {
    const s = getSub(sim, c);
    s.alive = false;
    m.subs.delete(s.id);
    wakeAll(s.waiters, 'gone');
    return { status: 204 };
  });
  r('GET', '/demands/:sub/events', (c) => collect(sim, c));
  r('GET', '/demands/:sub/proposals/:pid', (c) => ({ body: proposalView(getProposal(sim, c)) }));
  r('POST', '/demands/:sub/proposals/:pid', (c) => counter(sim, c));
  r('POST', '/demands/:sub/proposals/:pid/reject', (c) => {
    const p = getProposal(sim, c);
    if (p.issuer === 'requestor') throw jsonErr(400, `Can't reject own proposal [${p.id}]`);
    if (p.rejected) throw jsonErr(410, `Proposal [${p.id}] already rejected`);
    p.rejected = true;
    return { status: 204 };
  });
  r('GET', '/demands/:sub/propertyQuery/:q', () => { throw jsonErr(501, 'Not implemented'); });
  r('POST', '/agreements', (c) => createAgreement(sim, c));
  r('GET', '/agreements', (c) => ({
    body: [...m.agreements.values()].filter((a) => a.owner === c.who.identity).map((a) => ({ id: a.id, timestamp: a.timestamp, approveDate: a.approvedDate || null, role: 'Requestor' })),
  }));
  r('GET', '/agreements/:aid', (c) => ({ body: agreementView(getAgreement(sim, c)) }));
  r('POST', '/agreements/:aid/confirm', (c) => confirm(sim, c));
  r('POST', '/agreements/:aid/wait', (c) => waitApproval(sim, c));
  r('POST', '/agreements/:aid/cancel', (c) => {
    const a = getAgreement(sim, c);
    if (a.state !== 'Proposal' && a.state !== 'Pending') throw jsonErr(409, `Agreement [${a.id}] in state ${a.state}`);
    setState(sim, a, 'Cancelled');
    pushEvent(sim, a, 'AgreementCancelledEvent', { reason: c.body || null });
    return { status: 204 };
  });
  r('POST', '/agreements/:aid/terminate', (c) => {
    const a = getAgreement(sim, c);
    if (c.hasBody && (typeof c.body !== 'object' || c.body === null || typeof c.body.message !== 'string')) {
      throw sim.invalid(c.req, 'Json deserialize error: missing field `message`');
    }
    if (a.state === 'Proposal') throw jsonErr(409, `Agreement [${a.id}] not approved yet (state Proposal)`);
    if (a.state !== 'Approved') throw jsonErr(410, `Agreement [${a.id}] in state ${a.state}`);
    terminate(sim, a, 'Requestor', c.hasBody ? c.body : { message: 'Terminated by requestor' });
    return { status: 200 };
  });
  r('GET', '/agreements/:aid/terminate/reason', (c) => {
    const a = getAgreement(sim, c);
    if (!a.terminationReason) throw jsonErr(404, `Agreement [${a.id}] has no termination reason`);
    return { body: a.terminationReason };
  });
  r('GET', '/agreementEvents', (c) => agreementEvents(sim, c));
}

// ---------------------------------------------------------------- helpers
function checkTimeout(sim, c, def = 5) {
  if (c.query.timeout === undefined) return def;
  const t = Number(c.query.timeout);
  if (!Number.isFinite(t) || t < 0) throw sim.invalid(c.req, `Invalid timeout ${c.query.timeout}`);
  return t;
}

function getSub(sim, c) {
  const id = c.params.sub;
  if (!RE.subscription.test(id)) throw jsonErr(400, `Invalid subscription id [${id}]`);
  const s = sim.market.subs.get(id);
  if (!s || !s.alive || s.owner !== c.who.identity) throw jsonErr(404, `Subscription [${id}] not found`);
  if (Date.now() > s.expiresMs) { s.alive = false; throw jsonErr(404, `Subscription [${id}] expired`); }
  return s;
}
function getProposal(sim, c) {
  const s = getSub(sim, c);
  const id = c.params.pid;
  if (!RE.proposal.test(id)) throw jsonErr(400, `Invalid proposal id [${id}]`);
  const p = sim.market.proposals.get(id);
  if (!p || p.subId !== s.id) throw jsonErr(404, `Proposal [${id}] not found`);
  return p;
}
function getAgreement(sim, c) {
  const id = c.params.aid;
  if (!RE.agreement.test(id)) throw jsonErr(400, `Invalid agreement id [${id}]`);
  const a = sim.market.agreements.get(id);
  if (!a || a.owner !== c.who.identity) throw jsonErr(404, `Agreement [${id}] not found`);
  return a;
}

function demandView(s) {
  return { properties: s.properties, constraints: s.constraints, demandId: s.id, requestorId: s.owner, timestamp: s.timestamp };
}
function proposalView(p) {
  const v = { properties: p.properties, constraints: p.constraints, proposalId: p.id, issuerId: p.issuerId, state: p.rejected ? 'Rejected' : p.state, timestamp: p.timestamp };
  if (p.prevProposalId) v.prevProposalId = p.prevProposalId;
  return v;
}
function agreementView(a) {
  const v = {
    agreementId: a.id,
    demand: { properties: a.demand.properties, constraints: a.demand.constraints, demandId: a.demand.demandId, requestorId: a.demand.requestorId, timestamp: a.demand.timestamp },
    offer: { properties: a.offer.properties, constraints: a.offer.constraints, offerId: a.offer.offerId, providerId: a.offer.providerId, timestamp: a.offer.timestamp },
    validTo: a.validTo,
  };
  if (a.approvedDate) v.approvedDate = a.approvedDate;
  Object.assign(v, { state: a.state, timestamp: a.timestamp });
  if (a.appSessionId) v.appSessionId = a.appSessionId;
  Object.assign(v, { proposedSignature: 'NoSignature' });
  if (a.approvedDate) Object.assign(v, { approvedSignature: 'NoSignature', committedSignature: 'NoSignature' });
  return v;
}

function queueEvent(sim, s, ev) {
  if (!s.alive) return;
  if (s.events.length >= MAX_QUEUED_EVENTS) s.events.shift();
  s.events.push(ev);
  wakeAll(s.waiters, 'event');
}

// ---------------------------------------------------------------- demands & offers
function subscribe(sim, c) {
  const b = c.body;
  if (!b || typeof b !== 'object' || Array.isArray(b)) throw sim.invalid(c.req, 'Json deserialize error: expected a Demand object');
  if (typeof b.properties !== 'object' || b.properties === null || Array.isArray(b.properties)) throw sim.invalid(c.req, 'Json deserialize error: missing field `properties`');
  if (typeof b.constraints !== 'string') throw sim.invalid(c.req, 'Json deserialize error: missing field `constraints`');
  try { ldap.parse(b.constraints); } catch (e) { throw jsonErr(400, `Invalid constraints: ${e.message}`); }
  const s = {
    id: ids.subscription(), owner: c.who.identity, alive: true, properties: ldap.flatten(b.properties), constraints: b.constraints,
    timestamp: sim.now(), expiresMs: Date.now() + sim.opts.subscriptionTtlSec * 1000, events: [], waiters: new Set(),
  };
  sim.market.subs.set(s.id, s);
  sim.providers.forEach((p, i) => {
    if (!offerMatchesDemand(p, s.properties, s.constraints)) return;
    sim.later(sim.opts.offerDelayMs * (i + 1), () => {
      const prop = newProposal(sim, s, {
        issuer: 'provider', provider: p, properties: p.offerProperties(), constraints: p.offerConstraints(), state: 'Initial',
      });
      queueEvent(sim, s, { eventType: 'ProposalEvent', eventDate: isoMs(sim.clock.next()), proposal: proposalView(prop) });
    });
  });
  return { status: 201, body: s.id };
}

function offerMatchesDemand(p, demandProps, demandConstraints) {
  try {
    return ldap.matches(demandConstraints, p.offerProperties()) && ldap.matches(p.offerConstraints(), demandProps);
  } catch { return false; }
}

function newProposal(sim, s, f) {
  const p = {
    id: ids.proposal(), subId: s.id, timestamp: sim.now(), issuerId: f.issuer === 'provider' ? f.provider.nodeId : s.owner,
    countered: false, rejected: false, agreementId: null, ...f,
  };
  sim.market.proposals.set(p.id, p);
  return p;
}

async function collect(sim, c) {
  const s = getSub(sim, c);
  const timeout = checkTimeout(sim, c, 5);
  let max = 20;
  if (c.query.maxEvents !== undefined) {
    max = Number(c.query.maxEvents);
    if (!Number.isInteger(max) || max < 1 || max > 100) throw sim.invalid(c.req, `maxEvents must be in 1..100, got ${c.query.maxEvents}`);
  }
  if (!s.events.length && timeout > 0) {
    const closed = waitClose(c);
    const r = await Promise.race([waitFor(s.waiters, timeout * 1000), closed.promise]);
    closed.dispose();
    if (r === 'gone' || !s.alive) throw jsonErr(404, `Subscription [${s.id}] unsubscribed`);
    if (r === 'closed') return { streamed: true };
  }
  return { body: s.events.splice(0, max) };
}

/** Resolves 'closed' when the client goes away (so abandoned long-polls don't consume events). */
function waitClose(c) {
  let onClose;
  const promise = new Promise((resolve) => { onClose = () => resolve('closed'); c.res.on('close', onClose); });
  return { promise, dispose: () => c.res.removeListener('close', onClose) };
}

function counter(sim, c) {
  const prev = getProposal(sim, c);
  const s = sim.market.subs.get(prev.subId);
  const b = c.body;
  if (!b || typeof b !== 'object' || typeof b.properties !== 'object' || b.properties === null || typeof b.constraints !== 'string') {
    throw sim.invalid(c.req, 'Json deserialize error: expected a DemandOffer {properties, constraints}');
  }
  if (prev.issuer === 'requestor') throw jsonErr(400, `Can't counter own proposal [${prev.id}]`);
  if (prev.rejected) throw jsonErr(410, `Proposal [${prev.id}] was rejected`);
  if (prev.countered) throw jsonErr(410, `Proposal [${prev.id}] already countered`);
  if (prev.agreementId) throw jsonErr(410, `Proposal [${prev.id}] already used for an agreement`);
  try { ldap.parse(b.constraints); } catch (e) { throw jsonErr(400, `Invalid constraints: ${e.message}`); }
  prev.countered = true;
  const provider = prev.provider;
  const mine = newProposal(sim, s, {
    issuer: 'requestor', provider, properties: ldap.flatten(b.properties), constraints: b.constraints, state: 'Draft', prevProposalId: prev.id,
  });
  sim.later(provider.counterDelayMs, () => providerAnswer(sim, s, provider, prev, mine));
  return { status: 200, body: mine.id };
}

/** The provider's negotiator: checks like yagna's builtin ones (expiration, accept-timeout, platform). */
function negotiationProblem(sim, provider, props, constraints) {
  if (!offerMatchesDemand(provider, props, constraints)) return 'No match between Offer and Demand';
  const chosen = props['golem.com.payment.chosen-platform'];
  if (chosen !== undefined && !provider.platforms.includes(chosen)) return `Payment platform ${chosen} not supported`;
  if (!provider.strictNegotiation) return null;
  const exp = Number(props['golem.srv.comp.expiration']);
  if (!Number.isFinite(exp)) return "Missing 'golem.srv.comp.expiration' property";
  const left = (exp - Date.now()) / 1000;
  if (left < sim.opts.minExpirationSec) return `Proposal expires too early: ${Math.round(left)}s < ${sim.opts.minExpirationSec}s`;
  const at = props['golem.com.payment.debit-notes.accept-timeout?'];
  if (at !== undefined) {
    if (typeof at !== 'number' || at < 5 || at > provider.acceptTimeoutSec) return `Unacceptable debit note accept timeout ${at}`;
  } else if (left > sim.opts.maxExpirationNoAcceptSec) {
    return `Proposal expires at ${exp} which is too late (no 'golem.com.payment.debit-notes.accept-timeout?')`;
  }
  if (left > sim.opts.maxExpirationNoPaymentTimeoutSec && props['golem.com.scheme.payu.payment-timeout-sec?'] === undefined) {
    return 'Expiration beyond 10h requires mid-agreement payments (golem.com.scheme.payu.payment-timeout-sec?)';
  }
  return null;
}

function providerAnswer(sim, s, provider, prev, mine) {
  if (!s.alive) return;
  const mode = provider.onCounter;
  if (mode === 'ignore') return;
  const problem = mode === 'reject' ? 'Provider rejected the proposal' : negotiationProblem(sim, provider, mine.properties, mine.constraints);
  if (problem) {
    mine.rejected = true;
    queueEvent(sim, s, { eventType: 'ProposalRejectedEvent', eventDate: isoMs(sim.clock.next()), proposalId: mine.id, reason: { message: problem } });
    return;
  }
  const props = { ...provider.offerProperties() };
  const at = mine.properties['golem.com.payment.debit-notes.accept-timeout?'];
  if (at !== undefined) props['golem.com.payment.debit-notes.accept-timeout?'] = at;
  for (const k of ['golem.com.scheme.payu.debit-note.interval-sec?', 'golem.com.scheme.payu.payment-timeout-sec?']) {
    if (mine.properties[k] !== undefined) props[k] = Math.max(Number(mine.properties[k]), provider.debitNoteIntervalSec);
  }
  const draft = newProposal(sim, s, {
    issuer: 'provider', provider, properties: props, constraints: provider.offerConstraints(), state: 'Draft', prevProposalId: mine.id,
  });
  queueEvent(sim, s, { eventType: 'ProposalEvent', eventDate: isoMs(sim.clock.next()), proposal: proposalView(draft) });
}

// ---------------------------------------------------------------- agreements
function createAgreement(sim, c) {
  const b = c.body;
  if (!b || typeof b !== 'object' || typeof b.proposalId !== 'string' || typeof b.validTo !== 'string') {
    throw sim.invalid(c.req, 'Json deserialize error: expected {proposalId, validTo}');
  }
  if (!RE.proposal.test(b.proposalId)) throw jsonErr(400, `Invalid proposal id [${b.proposalId}]`);
  const validToMs = parseTime(b.validTo);
  if (Number.isNaN(validToMs)) throw sim.invalid(c.req, `Invalid validTo ${b.validTo}`);
  const p = sim.market.proposals.get(b.proposalId);
  const s = p && sim.market.subs.get(p.subId);
  if (!p || !s || s.owner !== c.who.identity) throw jsonErr(404, `Proposal [${b.proposalId}] not found`);
  if (p.issuer === 'requestor') throw jsonErr(400, `Can't create Agreement from own Proposal [${p.id}]`);
  if (p.state === 'Initial') throw jsonErr(400, `Can't create Agreement from Initial Proposal [${p.id}] (no negotiation)`);
  if (p.rejected) throw jsonErr(400, `Proposal [${p.id}] was rejected`);
  if (p.agreementId) throw jsonErr(409, `Agreement for Proposal [${p.id}] already exists`);
  if (validToMs <= Date.now()) throw jsonErr(400, `Agreement validTo ${b.validTo} is in the past`);
  const ours = sim.market.proposals.get(p.prevProposalId);
  const now = sim.now();
  const a = {
    id: ids.agreement(), owner: c.who.identity, provider: p.provider, state: 'Proposal', proposalId: p.id, subId: s.id,
    demand: { properties: ours ? ours.properties : s.properties, constraints: ours ? ours.constraints : s.constraints, demandId: s.id, requestorId: s.owner, timestamp: now },
    offer: { properties: p.properties, constraints: p.constraints, offerId: p.provider.offerId, providerId: p.provider.nodeId, timestamp: now },
    validTo: new Date(validToMs).toISOString(), validToMs, timestamp: now, approvedDate: null, appSessionId: null,
    waiters: new Set(), terminationReason: null, activities: new Set(), timers: [],
  };
  p.agreementId = a.id;
  sim.market.agreements.set(a.id, a);
  a.timers.push(sim.later(validToMs - Date.now(), () => {
    if (a.state === 'Proposal' || a.state === 'Pending') { setState(sim, a, 'Expired'); pushEvent(sim, a, 'AgreementRejectedEvent', { reason: { message: 'Expired' } }); }
  }));
  return { status: 200, body: a.id };
}

function setState(sim, a, st) {
  a.state = st;
  wakeAll(a.waiters, st);
}

function pushEvent(sim, a, eventType, extra) {
  const ev = { agreementId: a.id, eventDate: isoMs(sim.clock.next()), eventType, ...extra, owner: a.owner, appSessionId: a.appSessionId };
  const m = sim.market;
  if (m.events.length >= MAX_AGREEMENT_EVENTS) m.events.shift();
  m.events.push(ev);
  wakeAll(m.eventWaiters, 'event');
}

function confirm(sim, c) {
  const a = getAgreement(sim, c);
  if (a.state !== 'Proposal') throw jsonErr(410, `Agreement [${a.id}] in state ${a.state}`);
  if (c.query.appSessionId) a.appSessionId = c.query.appSessionId;
  setState(sim, a, 'Pending');
  const p = a.provider;
  sim.later(p.approveDelayMs, () => {
    if (a.state !== 'Pending') return;
    if (p.onAgreement === 'ignore') return;
    if (p.onAgreement === 'reject') {
      setState(sim, a, 'Rejected');
      pushEvent(sim, a, 'AgreementRejectedEvent', { reason: { message: 'Provider rejected the agreement' } });
      return;
    }
    a.approvedDate = sim.now();
    a.approvedMs = Date.now();
    setState(sim, a, 'Approved');
    pushEvent(sim, a, 'AgreementApprovedEvent', {});
    scheduleProviderEnd(sim, a);
  });
  return { status: 204 };
}

/** Provider ends the agreement at the demand's expiration (or an injected earlier time). */
function scheduleProviderEnd(sim, a) {
  const exp = Number(a.demand.properties['golem.srv.comp.expiration']);
  const f = a.provider.faults.terminateAtMs;
  let at = Number.isFinite(exp) ? exp : Infinity;
  let message = 'Agreement expired';
  if (f && f < at) { at = f; message = 'Agreement expired (provider side)'; }
  if (at === Infinity) return;
  if (a.endTimer) sim.cancel(a.endTimer);
  a.endTimer = sim.later(at - Date.now(), () => {
    if (a.state === 'Approved') terminate(sim, a, 'Provider', { message, 'golem.provider.code': 'Expired' });
  });
}

async function waitApproval(sim, c) {
  const a = getAgreement(sim, c);
  const timeout = checkTimeout(sim, c, 5);
  const answer = () => {
    if (a.state === 'Approved') return { status: 204 };
    if (a.state === 'Proposal') throw jsonErr(400, `Agreement [${a.id}] not confirmed (state Proposal)`);
    if (a.state !== 'Pending') throw new HttpError(410, { message: a.state });
    return null;
  };
  const now = answer();
  if (now) return now;
  const closed = waitClose(c);
  const r = await Promise.race([waitFor(a.waiters, timeout * 1000), closed.promise]);
  closed.dispose();
  if (r === 'closed') return { streamed: true };
  const after = answer();
  if (after) return after;
  throw jsonErr(408, `Timeout waiting for Agreement [${a.id}] approval`);
}

/** End an Approved agreement: activities and tunnels go, provider issues the invoice. */
function terminate(sim, a, terminator, reason) {
  if (a.state !== 'Approved') return false;
  a.terminationReason = reason;
  a.terminatedBy = terminator;
  setState(sim, a, 'Terminated');
  if (a.endTimer) sim.cancel(a.endTimer);
  pushEvent(sim, a, 'AgreementTerminatedEvent', { terminator, signature: 'NoSignature', reason });
  sim.activityApi.agreementEnded(a, reason);
  sim.paymentApi.issueInvoice(a);
  return true;
}

async function agreementEvents(sim, c) {
  const timeout = checkTimeout(sim, c, 5);
  let after = -Infinity;
  if (c.query.afterTimestamp !== undefined) {
    after = parseTime(c.query.afterTimestamp);
    if (Number.isNaN(after)) throw sim.invalid(c.req, `Invalid afterTimestamp ${c.query.afterTimestamp}`);
  }
  const max = c.query.maxEvents !== undefined ? Number(c.query.maxEvents) : 10;
  if (!Number.isInteger(max) || max < 1 || max > 100) throw sim.invalid(c.req, `maxEvents must be in 1..100, got ${c.query.maxEvents}`);
  const pick = () => sim.market.events
    .filter((e) => e.owner === c.who.identity && Date.parse(e.eventDate) > after && (!c.query.appSessionId || e.appSessionId === c.query.appSessionId))
    .slice(0, max)
    .map(({ owner, appSessionId, ...e }) => e);
  let out = pick();
  const deadline = Date.now() + timeout * 1000;
  while (!out.length && Date.now() < deadline) {
    const closed = waitClose(c);
    const r = await Promise.race([waitFor(sim.market.eventWaiters, deadline - Date.now()), closed.promise]);
    closed.dispose();
    if (r === 'closed') return { streamed: true };
    out = pick();
  }
  return { body: out };
}

function shutdown(sim) {
  for (const s of sim.market.subs.values()) { s.alive = false; wakeAll(s.waiters, 'gone'); }
}

module.exports = { init, shutdown, terminate, agreementView, scheduleProviderEnd, negotiationProblem };
