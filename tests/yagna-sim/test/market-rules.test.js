'use strict';
// Market behaviour of the real daemon and reference providers (PROTOCOL.md §4, §8.16-20, §9.1-2):
// capacity, the approval re-run, expiry breaks, validTo, cancel, provider clocks, new offers.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const PLATFORM = { 'golem.com.payment.chosen-platform': 'erc20-holesky-tglm' };

test('market rules', async (t) => {
  const s = await h.startSim({
    providers: [
      { name: 'p0' }, { name: 'p1' },
      { name: 'short', minExpirationSec: 1 },
      { name: 'behind', clockSkewMs: -60000 },
      { name: 'ahead', clockSkewMs: 2000, minExpirationSec: 1 },
    ],
  });
  t.after(() => s.sim.stop());
  const { api, sim, calc } = s;
  const P = (i) => sim.providers[i].nodeId;

  /** Subscribe d; counter the Initial of provider i; returns {sub, counterId, answer}. */
  async function counterWith(i, d) {
    const sub = (await api('POST', '/market-api/v1/demands', d)).body;
    const offers = await h.collect(api, sub, sim.providers.length);
    const o = offers.find((e) => e.proposal.issuerId === P(i));
    const counterId = (await api('POST', `/market-api/v1/demands/${sub}/proposals/${o.proposal.proposalId}`, { properties: { ...d.properties, ...PLATFORM }, constraints: d.constraints })).body;
    return { sub, counterId, answer: await h.answerTo(api, sub, counterId) };
  }
  const agree = async (draftId, validTo = new Date(Date.now() + 3600e3).toISOString()) => (await api('POST', '/market-api/v1/agreements', { proposalId: draftId, validTo })).body;
  const dem = (extra = {}) => h.demand(calc, { 'golem.com.payment.debit-notes.accept-timeout?': 240, ...extra });

  await t.test('one agreement at a time: a busy provider rejects, not finally, and counters once free', async () => {
    const first = await h.negotiate(s, { providerIndex: 0 });
    const d = dem();
    const { sub, counterId, answer } = await counterWith(0, d);
    assert.equal(answer.eventType, 'ProposalRejectedEvent');
    assert.deepEqual(answer.reason, { message: 'No capacity available. Reached Agreements limit: 1', 'golem.proposal.rejection.is-final': false });
    assert.equal((await api('POST', `/market-api/v1/agreements/${first.agreementId}/terminate`, { message: 'done' })).status, 200);
    // the kept proposal is processed again (a Draft for our counter), and the offer comes again
    const evs = await h.collect(api, sub, 1);
    assert.ok(evs.some((e) => e.eventType === 'ProposalEvent' && e.proposal.state === 'Draft' && e.proposal.prevProposalId === counterId), JSON.stringify(evs));
    // the termination also brought a fresh Initial to the first demand
    const again = await h.collect(api, first.sub, 1);
    assert.ok(again.some((e) => e.proposal.state === 'Initial' && e.proposal.issuerId === P(0)));
  });

  await t.test('capacity taken between draft and confirm: AgreementRejectedEvent (not final), wait 410 Rejected', async () => {
    const a = await counterWith(1, dem());
    const b = await counterWith(1, dem());
    assert.equal(a.answer.eventType, 'ProposalEvent'); assert.equal(b.answer.eventType, 'ProposalEvent');
    const ida = await agree(a.answer.proposal.proposalId);
    const idb = await agree(b.answer.proposal.proposalId);
    await api('POST', `/market-api/v1/agreements/${ida}/confirm`);
    assert.equal((await api('POST', `/market-api/v1/agreements/${ida}/wait?timeout=3`)).status, 204);
    const since = new Date().toISOString();
    await api('POST', `/market-api/v1/agreements/${idb}/confirm`);
    const w = await api('POST', `/market-api/v1/agreements/${idb}/wait?timeout=3`);
    assert.equal(w.status, 410); assert.deepEqual(w.body, { message: 'Rejected' });
    const ev = (await api('GET', `/market-api/v1/agreementEvents?timeout=1&afterTimestamp=${encodeURIComponent(since)}`)).body.find((e) => e.agreementId === idb);
    assert.equal(ev.eventType, 'AgreementRejectedEvent');
    assert.equal(ev.reason['golem.proposal.rejection.is-final'], false);
    assert.match(ev.reason.message, /No capacity available/);
    await api('POST', `/market-api/v1/agreements/${ida}/terminate`, { message: 'done' });
  });

  await t.test('no chosen platform: not final; expiration under 5 min: final', async () => {
    const d = dem();
    const sub = (await api('POST', '/market-api/v1/demands', d)).body;
    const [o] = (await h.collect(api, sub, 5)).filter((e) => e.proposal.issuerId === P(1));
    const c = (await api('POST', `/market-api/v1/demands/${sub}/proposals/${o.proposal.proposalId}`, { properties: d.properties, constraints: d.constraints })).body;
    const r = await h.answerTo(api, sub, c);
    assert.deepEqual(r.reason, { message: 'Missing fields: /golem/com/payment/chosen-platform', 'golem.proposal.rejection.is-final': false });
    const soon = await counterWith(1, dem({ 'golem.srv.comp.expiration': Date.now() + 120e3 }));
    assert.equal(soon.answer.eventType, 'ProposalRejectedEvent');
    assert.equal(soon.answer.reason['golem.proposal.rejection.is-final'], true);
    assert.match(soon.answer.reason.message, /^Proposal expires at: /);
  });

  await t.test('approval re-runs the negotiators: an expiration now too close is a final rejection', async () => {
    const { answer } = await counterWith(2, dem({ 'golem.srv.comp.expiration': Date.now() + 8000 }));
    assert.equal(answer.eventType, 'ProposalEvent');
    const id = await agree(answer.proposal.proposalId);
    sim.providers[2].minExpirationSec = 60; // by the time of approval, 8 s ahead is too close
    await api('POST', `/market-api/v1/agreements/${id}/confirm`);
    const w = await api('POST', `/market-api/v1/agreements/${id}/wait?timeout=3`);
    assert.equal(w.status, 410); assert.deepEqual(w.body, { message: 'Rejected' });
    const ev = (await api('GET', '/market-api/v1/agreementEvents?timeout=0')).body.find((e) => e.agreementId === id);
    assert.equal(ev.eventType, 'AgreementRejectedEvent'); assert.equal(ev.reason['golem.proposal.rejection.is-final'], true);
    sim.providers[2].minExpirationSec = 1;
  });

  await t.test('the provider breaks the agreement at its demand expiration: Expired, with an invoice', async () => {
    const exp = Date.now() + 4000;
    const neg = await h.negotiate(s, { providerIndex: 2, dem: dem({ 'golem.srv.comp.expiration': exp }) });
    const ag = (await api('GET', `/market-api/v1/agreements/${neg.agreementId}`)).body;
    assert.equal(ag.demand.properties['golem.srv.comp.expiration'], exp);
    assert.equal(ag.demand.properties['golem.com.payment.chosen-platform'], 'erc20-holesky-tglm', 'the demand is our last counter-proposal');
    await h.waitUntil(async () => (await api('GET', `/market-api/v1/agreements/${neg.agreementId}`)).body.state === 'Terminated', 6000);
    assert.ok(Date.now() >= exp - 50);
    const reason = (await api('GET', `/market-api/v1/agreements/${neg.agreementId}/terminate/reason`)).body;
    assert.equal(reason['golem.provider.code'], 'Expired'); assert.match(reason.message, /^Agreement expired @ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
    await h.waitUntil(() => sim.state().payments.invoices.some((i) => i.agreementId === neg.agreementId), 2000);
  });

  await t.test('a provider clock ahead breaks earlier by its skew', async () => {
    const exp = Date.now() + 6000;
    const neg = await h.negotiate(s, { providerIndex: 4, dem: dem({ 'golem.srv.comp.expiration': exp }) });
    await h.waitUntil(async () => (await api('GET', `/market-api/v1/agreements/${neg.agreementId}`)).body.state === 'Terminated', 8000, 20);
    assert.ok(Date.now() < exp - 1000, 'broken by the provider clock, 2 s ahead');
  });

  await t.test('provider clock behind: its approval is stamped in our past, a cursor at "now" misses it', async () => {
    const since = new Date().toISOString();
    const neg = await h.negotiate(s, { providerIndex: 3 });
    const ev = await api('GET', `/market-api/v1/agreementEvents?timeout=0.5&afterTimestamp=${encodeURIComponent(since)}`);
    assert.ok(!ev.body.some((e) => e.agreementId === neg.agreementId), 'hidden behind the cursor');
    const all = (await api('GET', '/market-api/v1/agreementEvents?timeout=0')).body.find((e) => e.agreementId === neg.agreementId);
    assert.equal(all.eventType, 'AgreementApprovedEvent');
    assert.ok(Date.parse(all.eventDate) < Date.parse(since) - 50000);
    const ag = (await api('GET', `/market-api/v1/agreements/${neg.agreementId}`)).body;
    assert.ok(Date.parse(ag.approvedDate) < Date.now() - 50000, 'approvedDate is the provider clock');
    await api('POST', `/market-api/v1/agreements/${neg.agreementId}/terminate`, { message: 'done' });
  });

  await t.test('wait: 408 until validTo, then 410 expired; cancel', async () => {
    await api('POST', '/_sim/fault', { provider: 1, fault: 'agreements', mode: 'ignore' });
    const a = await counterWith(1, dem());
    const id = await agree(a.answer.proposal.proposalId, new Date(Date.now() + 1200).toISOString());
    assert.equal((await api('POST', `/market-api/v1/agreements/${id}/confirm`)).status, 204);
    assert.equal((await api('POST', `/market-api/v1/agreements/${id}/wait?timeout=0.2`)).status, 408);
    const across = await api('POST', `/market-api/v1/agreements/${id}/wait?timeout=1.5`); // waiting when validTo passes
    assert.equal(across.status, 408); assert.match(across.body.message, /^Timeout while waiting for Agreement \[[0-9a-f]{64}\] approval\.$/);
    const w = await api('POST', `/market-api/v1/agreements/${id}/wait?timeout=0.2`);
    assert.equal(w.status, 410); assert.equal(w.body.message, `Agreement [${id}] expired.`);
    assert.equal((await api('GET', `/market-api/v1/agreements/${id}`)).body.state, 'Expired');
    const evs = (await api('GET', '/market-api/v1/agreementEvents?timeout=0')).body;
    assert.ok(!evs.some((e) => e.agreementId === id), 'nothing for Expired');
    // cancel
    const b = await counterWith(1, dem());
    const idb = await agree(b.answer.proposal.proposalId);
    assert.equal((await api('POST', `/market-api/v1/agreements/${idb}/cancel`, { message: 'no' })).status, 500); // Proposal: the provider does not know it
    await api('POST', `/market-api/v1/agreements/${idb}/confirm`);
    const nobody = await fetch(`${sim.url}/market-api/v1/agreements/${idb}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${h.KEY}` } });
    assert.equal(nobody.status, 400);
    const cc = await api('POST', `/market-api/v1/agreements/${idb}/cancel`, { message: 'changed my mind' });
    assert.equal(cc.status, 200); assert.equal(cc.text, '');
    assert.deepEqual((await api('POST', `/market-api/v1/agreements/${idb}/wait?timeout=0.2`)).body, { message: 'Cancelled' });
    assert.equal((await api('POST', `/market-api/v1/agreements/${idb}/cancel`, null)).status, 410);
    const ce = (await api('GET', '/market-api/v1/agreementEvents?timeout=0')).body.find((e) => e.agreementId === idb);
    assert.equal(ce.eventType, 'AgreementCancelledEvent'); assert.deepEqual(ce.reason, { message: 'changed my mind' });
    await api('POST', '/_sim/fault', { provider: 1, fault: 'clear' });
    const neg = await h.negotiate(s, { providerIndex: 1 });
    assert.equal((await api('POST', `/market-api/v1/agreements/${neg.agreementId}/cancel`, null)).status, 410);
    await api('POST', `/market-api/v1/agreements/${neg.agreementId}/terminate`, { message: 'done' });
  });

  await t.test('new offers keep arriving on an existing subscription', async () => {
    const sub = (await api('POST', '/market-api/v1/demands', dem())).body;
    await h.collect(api, sub, sim.providers.length);
    const r = await api('POST', '/_sim/fault', { fault: 'addProvider', config: { name: 'late' } });
    assert.equal(r.status, 200);
    const evs = await h.collect(api, sub, 1);
    assert.equal(evs[0].proposal.state, 'Initial'); assert.equal(evs[0].proposal.issuerId, r.body.providers[0]);
    await api('POST', '/_sim/fault', { provider: 'late', fault: 'republishOffer' });
    assert.equal((await h.collect(api, sub, 1))[0].proposal.issuerId, r.body.providers[0]);
  });

  await t.test('NoActivity: the provider breaks an agreement left without activity', async () => {
    sim.providers[0].idleAgreementTimeoutSec = 0.5;
    const neg = await h.negotiate(s, { providerIndex: 0 });
    await h.waitUntil(async () => (await api('GET', `/market-api/v1/agreements/${neg.agreementId}`)).body.state === 'Terminated', 3000);
    const reason = (await api('GET', `/market-api/v1/agreements/${neg.agreementId}/terminate/reason`)).body;
    assert.deepEqual(reason, { message: 'No activity created within 0.5s', 'golem.provider.code': 'NoActivity' });
    sim.providers[0].idleAgreementTimeoutSec = 90;
  });
});
