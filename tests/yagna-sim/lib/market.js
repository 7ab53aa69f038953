'use strict';
// Market API (/market-api/v1), requestor side: demands, offer matching, negotiation with the
// simulated providers, agreements and agreement events. Status codes as the real daemon (PROTOCOL.md §4, §8).
const ldap = require('./ldap');
const { ids, RE, isoMs, isoNs, parseTime, jsonErr, HttpError, waitFor, wakeAll, scaledMs } = require('./util');
const { fromProvider, linkUp } = require('./relay');

const P = '/market-api/v1';
const MAX_QUEUED_EVENTS = 1000;
const MAX_AGREEMENT_EVENTS = 10000;

function init(sim) {
  const m = sim.market = { subs: new Map(), proposals: new Map(), agreements: new Map(), events: [], eventWaiters: new Set() };
  sim.marketApi = { terminate, scheduleProviderEnd, scheduleIdleBreak, offerPublished, providerBreaks };
  const r = (method, path, fn, opts) => sim.route(method, P + path, fn, opts);

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
  // The daemon takes Option<Reason>: a `null` body is fine although the spec's Reason is not nullable.
  r('POST', '/agreements/:aid/cancel', (c) => cancel(sim, c), { nullBodyOk: true });
  r('POST', '/agreements/:aid/terminate', (c) => requestorTerminates(sim, c));
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
  expireIfDue(sim, a);
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
  sim.providers.forEach((p, i) => offerTo(sim, s, p, sim.opts.offerDelayMs * (i + 1)));
  return { status: 201, body: s.id };
}

/** An `Initial` proposal of provider p's offer for demand s (after delayMs), if they match. */
function offerTo(sim, s, p, delayMs = 0) {
  if (!s.alive || p.offline || !offerMatchesDemand(p, s.properties, s.constraints)) return;
  sim.later(delayMs, () => {
    if (!s.alive || p.offline) return;
    const prop = newProposal(sim, s, {
      issuer: 'provider', provider: p, properties: p.offerProperties(), constraints: p.offerConstraints(), state: 'Initial',
    });
    queueEvent(sim, s, { eventType: 'ProposalEvent', eventDate: isoMs(sim.clock.next()), proposal: proposalView(prop) });
  });
}

/** A provider published (or re-published) its offer: it is matched against every live demand (§4.2). */
function offerPublished(sim, p) {
  for (const s of sim.market.subs.values()) if (s.alive && Date.now() <= s.expiresMs) offerTo(sim, s, p, sim.opts.offerDelayMs);
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
  // The counter is saved, then sent to the provider; a send that fails is a 500 (§9.4).
  if (!linkUp(sim, provider)) throw jsonErr(500, `Failed to send Proposal [${mine.id}] to Provider [${provider.nodeId}]: GSB failure: Net: error forwarding message`);
  sim.later(provider.counterDelayMs, () => providerAnswer(sim, s, provider, mine));
  return { status: 200, body: mine.id };
}

const reject = (message, final) => ({ message, final });

/** Agreements the provider holds (approved on its side, not yet ended there). */
function activeAgreements(sim, p) {
  let n = 0;
  for (const a of sim.market.agreements.values()) if (a.provider === p && a.providerApproved && !a.providerEnded) n++;
  return n;
}

/**
 * The provider's negotiators in ya-provider's order (PROTOCOL.md §4.4), on the provider's clock.
 * Returns null or {message, final}. `approving`: the re-run at agreement approval (§4.7).
 */
function negotiationProblem(sim, provider, props, constraints) {
  if (!offerMatchesDemand(provider, props, constraints)) return reject('No match between Offer and Demand', true);
  const chosen = props['golem.com.payment.chosen-platform'];
  if (chosen === undefined) return reject('Missing fields: /golem/com/payment/chosen-platform', false);
  if (!provider.platforms.includes(chosen)) return reject(`Payment platform ${chosen} not supported`, true);
  const limit = Number(provider.maxAgreements);
  if (limit > 0 && activeAgreements(sim, provider) >= limit) return reject(`No capacity available. Reached Agreements limit: ${limit}`, false);
  if (!provider.strictNegotiation) return null;
  const exp = Number(props['golem.srv.comp.expiration']);
  if (!Number.isFinite(exp)) return reject("Missing 'golem.srv.comp.expiration' property", true);
  const now = provider.now();
  const left = (exp - now) / 1000;
  const at = props['golem.com.payment.debit-notes.accept-timeout?'];
  const maxSec = at !== undefined ? 100 * 365 * 86400 : sim.opts.maxExpirationNoAcceptSec;
  const minSec = Number(provider.minExpirationSec);
  if (left < minSec || left > maxSec) {
    return reject(`Proposal expires at: ${new Date(exp).toISOString()} which is less than ${Math.round(minSec / 60)}min or more than ${Math.round(maxSec / 60)}min from now`, left < minSec);
  }
  return sim.paymentApi.termsProblem(provider, props, left);
}

function rejectionReason(problem) {
  return { message: problem.message, 'golem.proposal.rejection.is-final': problem.final };
}

/** The provider answers the requestor's counter `mine` with a Draft or a rejection. */
function providerAnswer(sim, s, provider, mine) {
  if (!s.alive || mine.answered) return;
  const mode = provider.onCounter;
  if (mode === 'ignore') return;
  const problem = mode === 'reject' ? reject('Provider rejected the proposal', true) : negotiationProblem(sim, provider, mine.properties, mine.constraints);
  if (problem && problem.ignore) return;
  if (problem) {
    // A non-final rejection is kept: the provider processes that proposal again when an agreement ends.
    if (!problem.final) provider.waitingCounters = [...(provider.waitingCounters || []).slice(-63), { s, mine }];
    mine.rejected = true;
    fromProvider(sim, provider, () => queueEvent(sim, s, { eventType: 'ProposalRejectedEvent', eventDate: isoMs(sim.clock.next()), proposalId: mine.id, reason: rejectionReason(problem) }));
    return;
  }
  mine.answered = true;
  const props = sim.paymentApi.adoptTerms(provider, mine.properties);
  const draft = newProposal(sim, s, {
    issuer: 'provider', provider, properties: props, constraints: provider.offerConstraints(), state: 'Draft', prevProposalId: mine.id,
  });
  fromProvider(sim, provider, () => queueEvent(sim, s, { eventType: 'ProposalEvent', eventDate: isoMs(sim.clock.next()), proposal: proposalView(draft) }));
}

/** One of the provider's agreements ended on its side: capacity is free, kept proposals are tried again. */
function providerFreed(sim, p) {
  const waiting = p.waitingCounters || [];
  p.waitingCounters = [];
  for (const { s, mine } of waiting) if (s.alive && !mine.answered) sim.later(p.counterDelayMs, () => providerAnswer(sim, s, p, mine));
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
  // validTo is not checked here (§8.4): a past one makes the next read find the agreement Expired.
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
  return { status: 200, body: a.id };
}

/** Only Proposal and Pending agreements expire, when next read after validTo (§4.6). */
function expireIfDue(sim, a) {
  if ((a.state === 'Proposal' || a.state === 'Pending') && Date.now() > a.validToMs) setState(sim, a, 'Expired');
}

function setState(sim, a, st) {
  a.state = st;
  wakeAll(a.waiters, st);
}

/** dateMs: the clock the event carries (the provider's for approvals, rejections, provider terminations). */
function pushEvent(sim, a, eventType, extra, dateMs = sim.clock.next()) {
  const ev = { agreementId: a.id, eventDate: isoMs(dateMs), eventType, ...extra, owner: a.owner, appSessionId: a.appSessionId };
  const m = sim.market;
  if (m.events.length >= MAX_AGREEMENT_EVENTS) m.events.shift();
  m.events.push(ev);
  wakeAll(m.eventWaiters, 'event');
}

/** A provider event's date: our strictly increasing clock shifted by the provider's skew. */
const providerDate = (sim, p) => sim.clock.next() + (Number(p.clockSkewMs) || 0);

function confirm(sim, c) {
  const a = getAgreement(sim, c);
  if (a.state !== 'Proposal') throw jsonErr(410, `Agreement [${a.id}] in state ${a.state}`);
  const p = a.provider;
  // Sent to the provider first: unreachable -> 500, the agreement stays Proposal (§4.7).
  if (!linkUp(sim, p)) throw jsonErr(500, `Failed to send Agreement [${a.id}] to Provider [${p.nodeId}]: GSB failure: Net: error forwarding message`);
  if (c.query.appSessionId) a.appSessionId = c.query.appSessionId;
  setState(sim, a, 'Pending');
  sim.later(p.approveDelayMs, () => providerReacts(sim, a));
  return { status: 204 };
}

/** The provider runs its negotiators again on (demand, offer), then approves or rejects (§4.7). */
function providerReacts(sim, a) {
  const p = a.provider;
  if (a.state !== 'Pending' || p.onAgreement === 'ignore') return;
  const problem = p.onAgreement === 'reject' ? reject('Provider rejected the agreement', true) : negotiationProblem(sim, p, a.demand.properties, a.demand.constraints);
  if (problem) {
    const dateMs = providerDate(sim, p);
    fromProvider(sim, p, () => {
      expireIfDue(sim, a);
      if (a.state !== 'Pending') return;
      setState(sim, a, 'Rejected');
      pushEvent(sim, a, 'AgreementRejectedEvent', { reason: rejectionReason(problem) }, dateMs);
    });
    return;
  }
  // The requestor's market refuses an approval that arrives after validTo (the agreement reads Expired).
  expireIfDue(sim, a);
  if (a.state !== 'Pending' || !linkUp(sim, p)) return;
  const dateMs = providerDate(sim, p);
  a.providerApproved = true;
  a.approvedDate = isoNs(dateMs);
  a.approvedMs = Date.now();
  setState(sim, a, 'Approved');
  pushEvent(sim, a, 'AgreementApprovedEvent', {}, dateMs);
  scheduleProviderEnd(sim, a);
  scheduleIdleBreak(sim, a);
}

/** Provider ends the agreement at its demand's expiration, on its own clock (or an injected earlier time). */
function scheduleProviderEnd(sim, a) {
  const p = a.provider;
  const exp = Number(a.demand.properties['golem.srv.comp.expiration']);
  const f = p.faults.terminateAtMs;
  // The provider's clock reaches `exp` skew ms earlier (or later) than ours.
  let at = Number.isFinite(exp) ? exp - (Number(p.clockSkewMs) || 0) : Infinity;
  let message = `Agreement expired @ ${fmtProviderDate(exp)}`;
  if (f && f < at) { at = f; message = 'Agreement expired (provider side)'; }
  if (at === Infinity) return;
  if (a.endTimer) sim.cancel(a.endTimer);
  a.endTimer = sim.later(scaledMs(sim, at - Date.now()), () => providerBreaks(sim, a, { message, 'golem.provider.code': 'Expired' }));
}

/** ya-provider's display format, e.g. "2025-11-29 11:00:00 UTC". */
function fmtProviderDate(ms) {
  return Number.isFinite(ms) ? `${new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '')} UTC` : 'never';
}

/** NoActivity (§9.1): no activity within idleAgreementTimeoutSec of approval or of the last destroy. */
function scheduleIdleBreak(sim, a) {
  const sec = Number(a.provider.idleAgreementTimeoutSec);
  if (a.idleTimer) { sim.cancel(a.idleTimer); a.idleTimer = null; }
  if (!(sec > 0) || a.state !== 'Approved') return;
  a.idleTimer = sim.later(sec * 1000, () => {
    a.idleTimer = null;
    const live = [...a.activities].some((id) => { const x = sim.activityApi.activities.get(id); return x && x.state[0] !== 'Terminated'; });
    if (!live) providerBreaks(sim, a, { message: `No activity created within ${sec}s`, 'golem.provider.code': 'NoActivity' });
  });
}

async function waitApproval(sim, c) {
  const a = getAgreement(sim, c);
  const timeout = checkTimeout(sim, c, 5);
  const answer = () => {
    if (a.state === 'Approved') return { status: 204 };
    if (a.state === 'Proposal') throw jsonErr(400, `Agreement [${a.id}] should be confirmed, before waiting for approval.`);
    if (a.state === 'Expired') throw jsonErr(410, `Agreement [${a.id}] expired.`);
    if (a.state === 'Terminated') throw jsonErr(400, `Agreement [${a.id}] terminated.`);
    if (a.state !== 'Pending') throw new HttpError(410, { message: a.state });
    return null;
  };
  const now = answer();
  if (now) return now;
  const closed = waitClose(c);
  const r = await Promise.race([waitFor(a.waiters, timeout * 1000), closed.promise]);
  closed.dispose();
  if (r === 'closed') return { streamed: true };
  // A call already waiting when validTo passes still ends 408 (§4.8).
  const after = answer();
  if (after) return after;
  throw jsonErr(408, `Timeout while waiting for Agreement [${a.id}] approval.`);
}

/** POST /agreements/{id}/cancel (§4.8a). */
function cancel(sim, c) {
  const a = getAgreement(sim, c);
  if (!c.hasBody) throw sim.invalid(c.req, 'Json deserialize error: expected a reason or null');
  if (c.body !== null && (typeof c.body !== 'object' || typeof c.body.message !== 'string')) throw sim.invalid(c.req, 'Json deserialize error: missing field `message`');
  if (a.state !== 'Proposal' && a.state !== 'Pending') throw jsonErr(410, `Agreement [${a.id}] in state ${a.state}`);
  const p = a.provider;
  // The provider is told first; it does not know a never-confirmed agreement.
  if (a.state === 'Proposal') throw jsonErr(500, `Failed to cancel Agreement [${a.id}]: Provider [${p.nodeId}] doesn't know it`);
  if (!linkUp(sim, p)) throw jsonErr(500, `Failed to cancel Agreement [${a.id}]: GSB failure: Net: error forwarding message`);
  if (a.providerApproved) throw jsonErr(500, `Failed to cancel Agreement [${a.id}]: already approved by the Provider`);
  a.cancelled = true;
  setState(sim, a, 'Cancelled');
  pushEvent(sim, a, 'AgreementCancelledEvent', { reason: c.body });
  return { status: 200 };
}

/** The requestor terminates (§4.9): the provider is told first (unreachable -> 500, stays Approved). */
function requestorTerminates(sim, c) {
  const a = getAgreement(sim, c);
  if (c.hasBody && (typeof c.body !== 'object' || c.body === null || typeof c.body.message !== 'string')) {
    throw sim.invalid(c.req, 'Json deserialize error: missing field `message`');
  }
  if (a.state === 'Proposal') throw jsonErr(409, `Agreement [${a.id}] not approved yet (state Proposal)`);
  if (a.state !== 'Approved') throw jsonErr(410, `Agreement [${a.id}] in state ${a.state}`);
  if (!linkUp(sim, a.provider)) throw jsonErr(500, `Failed to terminate Agreement [${a.id}]: GSB failure: Net: error forwarding message`);
  a.providerEnded = true;
  endAgreement(sim, a, 'Requestor', c.hasBody ? c.body : { message: 'Terminated by requestor' }, sim.clock.next());
  return { status: 200 };
}

/**
 * The provider breaks an agreement on its side (§9.1): its activities stop at once, its payment
 * module sends their final debit notes and then the invoice, its market sends the termination;
 * while the requestor is unreachable each is retried on its own schedule (lib/relay.js), so the
 * invoice may arrive before the termination. The termination carries the provider's clock at the
 * attempt that got through (yagna market terminate_agreement stamps each attempt).
 */
function providerBreaks(sim, a, reason) {
  if (a.providerEnded || a.state !== 'Approved') return false;
  a.providerEnded = true;
  const p = a.provider;
  sim.activityApi.agreementEnded(a, reason);
  fromProvider(sim, p, () => endAgreement(sim, a, 'Provider', reason, providerDate(sim, p), { invoice: false }), 'terminate', { agreementId: a.id, reason });
  sim.paymentApi.sendInvoice(a);
  return true;
}

/** End an Approved agreement: its activities end, the provider issues the invoice (unless it sends
 *  it on its own, see providerBreaks), the offer comes again. */
function endAgreement(sim, a, terminator, reason, dateMs, { invoice = true } = {}) {
  if (a.state !== 'Approved') return false;
  a.terminationReason = reason;
  a.terminatedBy = terminator;
  setState(sim, a, 'Terminated');
  for (const t of [a.endTimer, a.idleTimer]) sim.cancel(t);
  pushEvent(sim, a, 'AgreementTerminatedEvent', { terminator, signature: 'NoSignature', reason }, dateMs);
  sim.activityApi.agreementEnded(a, reason);
  if (invoice) sim.paymentApi.issueInvoice(a);
  providerFreed(sim, a.provider);
  // A fresh Initial proposal for that offer, if the demand is still subscribed (§4.2).
  const s = sim.market.subs.get(a.subId);
  if (s && s.alive) offerTo(sim, s, a.provider, sim.opts.offerDelayMs);
  return true;
}

/** Kept for the other modules: a Provider termination goes through the provider's side first. */
function terminate(sim, a, terminator, reason) {
  if (terminator === 'Provider') return providerBreaks(sim, a, reason);
  a.providerEnded = true;
  return endAgreement(sim, a, terminator, reason, sim.clock.next());
}

async function agreementEvents(sim, c) {
  const timeout = checkTimeout(sim, c, 5);
  let after = -Infinity;
  if (c.query.afterTimestamp !== undefined) {
    after = parseTime(c.query.afterTimestamp);
    if (Number.isNaN(after)) throw sim.invalid(c.req, `Invalid afterTimestamp ${c.query.afterTimestamp}`);
  }
  const max = c.query.maxEvents !== undefined ? Number(c.query.maxEvents) : 20;
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

/** A daemon crash: demands, offers, proposals and their events live in memory only (§9.7). */
function forgetVolatile(sim) {
  for (const s of sim.market.subs.values()) { s.alive = false; wakeAll(s.waiters, 'gone'); }
  sim.market.subs.clear();
  sim.market.proposals.clear();
  for (const p of sim.providers) p.waitingCounters = [];
}

function shutdown(sim) {
  for (const s of sim.market.subs.values()) { s.alive = false; wakeAll(s.waiters, 'gone'); }
}

module.exports = { init, shutdown, forgetVolatile, terminate, agreementView, scheduleProviderEnd, negotiationProblem, offerPublished };
