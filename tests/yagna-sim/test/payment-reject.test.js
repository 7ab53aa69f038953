'use strict';
// Invoice rejection, accept order, appSessionId and event visibility (PROTOCOL.md §3.3, §3.5, §3.6, §8.11-13).
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const PAY = '/payment-api/v1';
const q = (s) => encodeURIComponent(s);

async function invoiceFor(api, since, agreementId) {
  return h.waitUntil(async () => {
    const evs = (await api('GET', `${PAY}/invoiceEvents?afterTimestamp=${q(since)}&timeout=1`)).body;
    for (const e of evs) {
      const inv = (await api('GET', `${PAY}/invoices/${e.invoiceId}`)).body;
      if (inv.agreementId === agreementId) return inv;
    }
    return null;
  }, 8000, 100);
}

test('invoice rejection: status codes, events, later acceptance; debit-note rejection stays 501', async (t) => {
  const s = await h.startSim({ providers: 2, debitNoteInterval: 0.3, acceptTimeout: 30 });
  t.after(() => s.sim.stop());
  const { api, sim } = s;
  const since = new Date().toISOString();
  const aid = (await api('POST', `${PAY}/allocations`, { totalAmount: '1' })).body.allocationId;
  const neg = await h.negotiate(s, { appSessionId: 'sess-A' });
  await api('POST', '/activity-api/v1/activity', neg.agreementId);
  const dnEv = await h.waitUntil(async () => (await api('GET', `${PAY}/debitNoteEvents?afterTimestamp=${q(since)}&timeout=1`)).body[0], 5000);
  const note = (await api('GET', `${PAY}/debitNotes/${dnEv.debitNoteId}`)).body;

  // debit-note rejection: a malformed body is 400, a valid one 501 {"message":null}
  assert.equal((await api('POST', `${PAY}/debitNotes/${note.debitNoteId}/reject`, { rejectionReason: 'NOPE', totalAmountAccepted: '0' })).status, 400);
  const r501 = await api('POST', `${PAY}/debitNotes/${note.debitNoteId}/reject`, { rejectionReason: 'INCORRECT_AMOUNT', totalAmountAccepted: '0' });
  assert.equal(r501.status, 501); assert.deepEqual(r501.body, { message: null });

  // accept checks the amount before the status: accepted note + wrong amount → 400
  assert.equal((await api('POST', `${PAY}/debitNotes/${note.debitNoteId}/accept`, { totalAmountAccepted: note.totalAmountDue, allocationId: aid })).status, 200);
  const wrong = await api('POST', `${PAY}/debitNotes/${note.debitNoteId}/accept`, { totalAmountAccepted: '0.5', allocationId: aid });
  assert.equal(wrong.status, 400); assert.equal(wrong.body.message, 'Invalid amount accepted');

  assert.equal((await api('POST', `/market-api/v1/agreements/${neg.agreementId}/terminate`, { message: 'done', 'golem.requestor.code': 'Success' })).status, 200);
  const inv = await invoiceFor(api, since, neg.agreementId);
  const rej = (body) => api('POST', `${PAY}/invoices/${inv.invoiceId}/reject`, body);
  assert.equal((await api('POST', `${PAY}/invoices/00000000-0000-0000-0000-000000000000/reject`, { rejectionReason: 'BAD_SERVICE', totalAmountAccepted: '0' })).status, 404);
  assert.equal((await rej({ totalAmountAccepted: '0' })).status, 400, 'rejectionReason required');
  assert.equal((await rej({ rejectionReason: 'INCORRECT_AMOUNT' })).status, 400, 'totalAmountAccepted required');
  assert.equal((await rej({ rejectionReason: 'WHATEVER', totalAmountAccepted: '0' })).status, 400);
  const ok = await rej({ rejectionReason: 'INCORRECT_AMOUNT', totalAmountAccepted: note.totalAmountDue, message: 'over the agreed price' });
  assert.equal(ok.status, 200); assert.equal(ok.text, 'null');
  assert.equal((await api('GET', `${PAY}/invoices/${inv.invoiceId}`)).body.status, 'REJECTED');
  assert.equal((await rej({ rejectionReason: 'INCORRECT_AMOUNT', totalAmountAccepted: '0' })).status, 200, 'REJECTED again: 200');
  // nothing charged by a rejection
  assert.equal((await api('GET', `${PAY}/allocations/${aid}`)).body.spentAmount, note.totalAmountDue.replace(/\.?0+$/, ''));

  // the requestor's own REJECTED event is hidden by default, visible with X-Requestor-Events
  const def = (await api('GET', `${PAY}/invoiceEvents?afterTimestamp=${q(since)}&timeout=0`)).body;
  assert.deepEqual(def.map((e) => e.eventType), ['InvoiceReceivedEvent']);
  const wide = (await api('GET', `${PAY}/invoiceEvents?afterTimestamp=${q(since)}&timeout=0`, undefined, { headers: { 'X-Requestor-Events': 'RECEIVED,REJECTED' } })).body;
  const re = wide.find((e) => e.eventType === 'InvoiceRejectedEvent');
  assert.ok(re, 'InvoiceRejectedEvent recorded');
  assert.deepEqual(re.rejection, { rejectionReason: 'INCORRECT_AMOUNT', totalAmountAccepted: note.totalAmountDue, message: 'over the agreed price' });
  // maxEvents applies before the type filter: one row (RECEIVED) then the hidden REJECTED row
  const cur = def[0].eventDate;
  assert.deepEqual((await api('GET', `${PAY}/invoiceEvents?afterTimestamp=${q(cur)}&timeout=0&maxEvents=1`)).body, []);

  // appSessionId: only agreements confirmed with it
  assert.equal((await api('GET', `${PAY}/invoiceEvents?afterTimestamp=${q(since)}&timeout=0&appSessionId=sess-A`)).body.length, 1);
  assert.equal((await api('GET', `${PAY}/invoiceEvents?afterTimestamp=${q(since)}&timeout=0&appSessionId=sess-B`)).body.length, 0);
  assert.ok((await api('GET', `${PAY}/debitNoteEvents?afterTimestamp=${q(since)}&timeout=0&appSessionId=sess-A`)).body.length >= 1);
  assert.equal((await api('GET', `${PAY}/debitNoteEvents?afterTimestamp=${q(since)}&timeout=0&appSessionId=sess-B`)).body.length, 0);

  // a debit note of an agreement whose invoice is no longer RECEIVED: 200, nothing spent, stays RECEIVED
  const later = sim.state().payments.debitNotes.filter((d) => d.agreementId === neg.agreementId && d.status === 'RECEIVED').pop();
  if (later) {
    const before = (await api('GET', `${PAY}/allocations/${aid}`)).body.spentAmount;
    assert.equal((await api('POST', `${PAY}/debitNotes/${later.debitNoteId}/accept`, { totalAmountAccepted: later.totalAmountDue, allocationId: aid })).status, 200);
    assert.equal((await api('GET', `${PAY}/debitNotes/${later.debitNoteId}`)).body.status, 'RECEIVED');
    assert.equal((await api('GET', `${PAY}/allocations/${aid}`)).body.spentAmount, before);
  }

  // a rejected invoice can still be accepted; then rejecting is 400 "Invoice accepted"
  assert.equal((await api('POST', `${PAY}/invoices/${inv.invoiceId}/accept`, { totalAmountAccepted: '0', allocationId: aid })).status, 400);
  assert.equal((await api('POST', `${PAY}/invoices/${inv.invoiceId}/accept`, { totalAmountAccepted: inv.amount, allocationId: aid })).status, 200);
  const after = await rej({ rejectionReason: 'BAD_SERVICE', totalAmountAccepted: '0' });
  assert.equal(after.status, 400); assert.equal(after.body.message, 'Invoice accepted');
  assert.equal((await api('GET', `${PAY}/allocations/${aid}`)).body.spentAmount, inv.amount.replace(/\.?0+$/, ''));
});

test('invoice rejection: a hung delivery is 504, the local copy is REJECTED, a retry 200', async (t) => {
  const s = await h.startSim({ providers: 1, debitNoteInterval: 5, acceptTimeout: 30 });
  t.after(() => s.sim.stop());
  const { api, sim } = s;
  const since = new Date().toISOString();
  const neg = await h.negotiate(s);
  await api('POST', `/market-api/v1/agreements/${neg.agreementId}/terminate`, { message: 'done' });
  const inv = await invoiceFor(api, since, neg.agreementId);
  await api('POST', '/_sim/fault', { fault: 'paymentStall', provider: 0, ms: 3000 });
  const r = await api('POST', `${PAY}/invoices/${inv.invoiceId}/reject?timeout=1`, { rejectionReason: 'BAD_SERVICE', totalAmountAccepted: '0' });
  assert.equal(r.status, 504); assert.equal(r.body.message, 'Timeout rejecting Invoice on remote Node.');
  assert.equal((await api('GET', `${PAY}/invoices/${inv.invoiceId}`)).body.status, 'REJECTED');
  assert.equal((await api('POST', `${PAY}/invoices/${inv.invoiceId}/reject?timeout=1`, { rejectionReason: 'BAD_SERVICE', totalAmountAccepted: '0' })).status, 200);
  void sim;
});
