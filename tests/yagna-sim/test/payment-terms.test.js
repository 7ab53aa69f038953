'use strict';
// Providers negotiate and enforce mid-agreement payments (PROTOCOL.md §3.8, §4.4, §8.14-15, §9.1),
// with time compression (option timeScale).
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const PAY = '/payment-api/v1';
const K_INTERVAL = 'golem.com.scheme.payu.debit-note.interval-sec?';
const K_PAYMENT = 'golem.com.scheme.payu.payment-timeout-sec?';
const K_ACCEPT = 'golem.com.payment.debit-notes.accept-timeout?';
const q = (s) => encodeURIComponent(s);

/** Counter the first offer with `extra` demand properties; the provider's answer (Draft or rejection). */
async function counterWith(s, extra, expirationSec) {
  const { api, calc } = s;
  const d = h.demand(calc, extra);
  d.properties['golem.srv.comp.expiration'] = Date.now() + expirationSec * 1000;
  for (const [k, v] of Object.entries(extra)) if (v === undefined) delete d.properties[k];
  const sub = (await api('POST', '/market-api/v1/demands', d)).body;
  const [offer] = await h.collect(api, sub, 1);
  const mine = (await api('POST', `/market-api/v1/demands/${sub}/proposals/${offer.proposal.proposalId}`,
    { properties: { ...d.properties, 'golem.com.payment.chosen-platform': 'erc20-holesky-tglm' }, constraints: d.constraints })).body;
  const evs = await h.collect(api, sub, 1, 1.5);
  return { sub, offer, mine, answer: evs[0] || null, demand: d };
}

test('negotiation: interval and payment timeout adopted in [1 s, 24 h], the 10 h rule, finality, dropped keys', async (t) => {
  const s = await h.startSim({ providers: 1, acceptTimeout: 240, debitNoteInterval: 120, paymentTimeout: 120 });
  t.after(() => s.sim.stop());
  const hour = 3600;
  let r = await counterWith(s, { [K_ACCEPT]: 60, [K_INTERVAL]: 600, [K_PAYMENT]: 18000 }, 12 * hour);
  assert.equal(r.answer.eventType, 'ProposalEvent');
  assert.equal(r.answer.proposal.properties[K_INTERVAL], 600);
  assert.equal(r.answer.proposal.properties[K_PAYMENT], 18000);
  assert.equal(r.answer.proposal.properties[K_ACCEPT], 60);

  r = await counterWith(s, { [K_ACCEPT]: 60 }, 20 * 60);
  assert.equal(r.answer.eventType, 'ProposalEvent');
  assert.ok(!(K_INTERVAL in r.answer.proposal.properties) && !(K_PAYMENT in r.answer.proposal.properties), 'keys the demand lacks are dropped');

  r = await counterWith(s, { [K_ACCEPT]: 60 }, 10 * hour + 60);
  assert.equal(r.answer.eventType, 'ProposalRejectedEvent');
  assert.match(r.answer.reason.message, /exceeds the 10h threshold/);
  assert.equal(r.answer.reason['golem.proposal.rejection.is-final'], true);

  for (const bad of [{ [K_INTERVAL]: 0 }, { [K_INTERVAL]: 86401 }, { [K_PAYMENT]: 86401, [K_INTERVAL]: 60 }]) {
    r = await counterWith(s, { [K_ACCEPT]: 60, ...bad }, 20 * 60);
    assert.equal(r.answer.eventType, 'ProposalRejectedEvent', JSON.stringify(bad));
    assert.match(r.answer.reason.message, /not in acceptable range of \[1s; 24h\]/);
    assert.equal(r.answer.reason['golem.proposal.rejection.is-final'], true);
  }
  r = await counterWith(s, { [K_ACCEPT]: 60, [K_INTERVAL]: 86400, [K_PAYMENT]: 1 }, 20 * 60);
  assert.equal(r.answer.eventType, 'ProposalEvent', 'bounds are inclusive');

  r = await counterWith(s, { [K_ACCEPT]: 300 }, 20 * 60);
  assert.equal(r.answer.reason.message, 'DebitNote acceptance deadline should be less than 4m.');
  assert.equal(r.answer.reason['golem.proposal.rejection.is-final'], true);
  r = await counterWith(s, { [K_ACCEPT]: undefined }, 40 * 60);
  assert.equal(r.answer.eventType, 'ProposalRejectedEvent');
  assert.equal(r.answer.reason['golem.proposal.rejection.is-final'], false, 'no accept timeout beyond 30 min: not final');
  r = await counterWith(s, { [K_ACCEPT]: 60, [K_INTERVAL]: 60.5 }, 20 * 60);
  assert.equal(r.answer, null, 'a non-integer value is never answered');
});

test('mid-agreement payments, compressed 12 h: payable notes at the payment timeout, a payable final note, paid before due', async (t) => {
  const F = 2000; // 12 h in 21.6 s
  // an operator's longer accept timeout (1 h → 1.8 s real) keeps a loaded machine from missing it
  const s = await h.startSim({ providers: 1, acceptTimeout: 3600, debitNoteInterval: 1800, paymentTimeout: 18000, timeScale: F, settleDelaySec: 60 });
  t.after(() => s.sim.stop());
  const { api, sim } = s;
  const since = new Date().toISOString();
  const aid = (await api('POST', `${PAY}/allocations`, { totalAmount: '10' })).body.allocationId;
  const d = h.demand(s.calc, { [K_ACCEPT]: 3600, [K_INTERVAL]: 1800, [K_PAYMENT]: 18000 });
  d.properties['golem.srv.comp.expiration'] = Date.now() + 12 * 3600e3;
  const neg = await h.negotiate(s, { dem: d });
  const act = (await api('POST', '/activity-api/v1/activity', neg.agreementId)).body;
  const seen = new Map();
  let after = since; let terminated = null;
  const deadline = Date.now() + 40000;
  while (!terminated && Date.now() < deadline) {
    for (const e of (await api('GET', `${PAY}/debitNoteEvents?afterTimestamp=${q(after)}&timeout=1`)).body) {
      after = e.eventDate;
      const n = (await api('GET', `${PAY}/debitNotes/${e.debitNoteId}`)).body;
      seen.set(n.debitNoteId, n);
      if (n.paymentDueDate) assert.ok(Date.parse(n.paymentDueDate) > Date.now(), 'due in the future');
      assert.equal((await api('POST', `${PAY}/debitNotes/${n.debitNoteId}/accept`, { totalAmountAccepted: n.totalAmountDue, allocationId: aid })).status, 200);
    }
    const ag = (await api('GET', `/market-api/v1/agreements/${neg.agreementId}`)).body;
    if (ag.state === 'Terminated') terminated = (await api('GET', `/market-api/v1/agreements/${neg.agreementId}/terminate/reason`)).body;
  }
  assert.ok(terminated, 'the agreement ended');
  assert.equal(terminated['golem.provider.code'], 'Expired', 'at the 12 h expiration, not for an unpaid note');
  await h.waitUntil(() => sim.state().payments.debitNotes.filter((n) => n.agreementId === neg.agreementId).length > seen.size || true);
  const notes = [...seen.values()];
  const payable = notes.filter((n) => n.paymentDueDate);
  // 12 h / 30 min = 24 notes (fewer on a loaded machine), payable at 5 h and 10 h, plus the final one
  assert.ok(notes.length >= 18 && notes.length <= 26, `notes ${notes.length}`); // timers run late under load, never early
  assert.ok(payable.length >= 2 && payable.length <= 3, `payable ${payable.length}`);
  const st = sim.state();
  assert.ok(st.payments.debitNotes.filter((n) => n.agreementId === neg.agreementId && seen.has(n.debitNoteId) && seen.get(n.debitNoteId).paymentDueDate).every((n) => n.status === 'SETTLED' || n.status === 'ACCEPTED'));
  // duration_sec ran F times faster: the last note covers about 12 h
  const last = notes[notes.length - 1];
  assert.ok(last.usageCounterVector[0] > 11.5 * 3600 && last.usageCounterVector[0] < 12.5 * 3600, `duration ${last.usageCounterVector[0]}`);
  void act;
});

test('a payable note not paid by its due date breaks the agreement (DebitNoteNotPaid)', async (t) => {
  const s = await h.startSim({ providers: 1, acceptTimeout: 240, debitNoteInterval: 1, paymentTimeout: 2 });
  t.after(() => s.sim.stop());
  const { api, sim } = s;
  const d = h.demand(s.calc, { [K_ACCEPT]: 240, [K_INTERVAL]: 1, [K_PAYMENT]: 2 });
  d.properties['golem.srv.comp.expiration'] = Date.now() + 20 * 60e3;
  const neg = await h.negotiate(s, { dem: d });
  await api('POST', '/activity-api/v1/activity', neg.agreementId);
  // accept nothing: the first payable note (after 2 s) is unpaid at its due date (2 s later)
  const reason = await h.waitUntil(async () => (await api('GET', `/market-api/v1/agreements/${neg.agreementId}/terminate/reason`)).status === 200
    && (await api('GET', `/market-api/v1/agreements/${neg.agreementId}/terminate/reason`)).body, 9000, 100);
  assert.equal(reason['golem.provider.code'], 'DebitNoteNotPaid');
  assert.match(reason.message, /didn't pay for DebitNote in time/);
  assert.ok(sim.state().payments.invoices.some((i) => i.agreementId === neg.agreementId), 'invoice issued after the break');
});

test('DebitNotesDeadline: a note not accepted within the agreed accept timeout', async (t) => {
  const s = await h.startSim({ providers: 1, acceptTimeout: 240, debitNoteInterval: 1, timeScale: 60 });
  t.after(() => s.sim.stop());
  const { api } = s;
  const d = h.demand(s.calc, { [K_ACCEPT]: 120 });
  d.properties['golem.srv.comp.expiration'] = Date.now() + 20 * 60e3;
  const neg = await h.negotiate(s, { dem: d });
  const since = new Date().toISOString();
  await api('POST', '/activity-api/v1/activity', neg.agreementId);
  const ev = await h.waitUntil(async () => (await api('GET', `/market-api/v1/agreementEvents?afterTimestamp=${q(since)}&timeout=1`)).body.find((e) => e.eventType === 'AgreementTerminatedEvent'), 9000, 100);
  assert.deepEqual(ev.reason, { message: "Requestor isn't accepting DebitNotes in time (2m)", 'golem.provider.code': 'DebitNotesDeadline' });
});
