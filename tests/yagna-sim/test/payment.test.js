'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

test('payments: allocations, debit notes, invoices, accept rules', async (t) => {
  const s = await h.startSim({ providers: 2, debitNoteInterval: 0.3, acceptTimeout: 30 });
  t.after(() => s.sim.stop());
  const { api, sim } = s;
  const start = new Date().toISOString();

  const alloc = await api('POST', '/payment-api/v1/allocations', { totalAmount: '1', paymentPlatform: 'erc20-holesky-tglm', timeout: '2035-11-27T08:00:00.000000Z', makeDeposit: false });
  assert.equal(alloc.status, 201);
  assert.equal(alloc.body.remainingAmount, '1'); assert.equal(alloc.body.spentAmount, '0');
  const aid = alloc.body.allocationId;
  assert.equal((await api('POST', '/payment-api/v1/allocations', { totalAmount: 5, paymentPlatform: { driver: 'erc20', network: 'holesky' } })).status, 201);
  const poor = await api('POST', '/payment-api/v1/allocations', { totalAmount: '100000' }, { raw: true });
  assert.equal(poor.status, 400); assert.match(poor.headers.get('content-type'), /problem\+json/);
  const dec = (await api('GET', `/payment-api/v1/demandDecorations?allocationIds=${aid}`)).body;
  assert.deepEqual(dec.constraints, ['(golem.com.payment.platform.erc20-holesky-tglm.address=*)', '(golem.com.payment.protocol.version>1)']);
  assert.equal((await api('GET', '/payment-api/v1/demandDecorations?allocationIds=nope')).status, 404);

  const svc = await h.startService(s);
  await h.waitUntil(async () => (await api('GET', `/payment-api/v1/debitNoteEvents?afterTimestamp=${encodeURIComponent(start)}&timeout=0`)).body.length >= 3, 5000);
  const evs = (await api('GET', `/payment-api/v1/debitNoteEvents?afterTimestamp=${encodeURIComponent(start)}&timeout=0`)).body;
  assert.ok(evs.every((e) => e.eventType === 'DebitNoteReceivedEvent'));
  // not consumed; strict afterTimestamp
  const again = (await api('GET', `/payment-api/v1/debitNoteEvents?afterTimestamp=${encodeURIComponent(start)}&timeout=0`)).body;
  assert.deepEqual(again.slice(0, evs.length), evs);
  const after1 = (await api('GET', `/payment-api/v1/debitNoteEvents?afterTimestamp=${encodeURIComponent(evs[0].eventDate)}&timeout=0&maxEvents=1`)).body;
  assert.equal(after1[0].debitNoteId, evs[1].debitNoteId);
  const notes = await Promise.all(evs.slice(0, 3).map(async (e) => (await api('GET', `/payment-api/v1/debitNotes/${e.debitNoteId}`)).body));
  assert.ok(Number(notes[2].totalAmountDue) > Number(notes[0].totalAmountDue), 'growing amounts');
  assert.equal(notes[1].previousDebitNoteId, notes[0].debitNoteId);
  assert.equal(notes[0].activityId, svc.act); assert.equal(notes[0].agreementId, svc.agreementId);
  const n = notes[2];
  assert.equal((await api('POST', `/payment-api/v1/debitNotes/${n.debitNoteId}/accept`, { totalAmountAccepted: '0.1', allocationId: aid })).status, 400);
  assert.equal((await api('POST', `/payment-api/v1/debitNotes/${n.debitNoteId}/accept`, { totalAmountAccepted: n.totalAmountDue, allocationId: 'nope' })).status, 400);
  const ok = await api('POST', `/payment-api/v1/debitNotes/${n.debitNoteId}/accept`, { totalAmountAccepted: n.totalAmountDue, allocationId: aid });
  assert.equal(ok.status, 200); assert.equal(ok.text, 'null');
  assert.equal((await api('POST', `/payment-api/v1/debitNotes/${n.debitNoteId}/accept`, { totalAmountAccepted: n.totalAmountDue, allocationId: aid })).status, 200);
  const a2 = (await api('GET', `/payment-api/v1/allocations/${aid}`)).body;
  assert.equal(Number(a2.spentAmount), Number(n.totalAmountDue));
  assert.equal((await api('GET', `/payment-api/v1/debitNotes/${'0'.repeat(8)}-0000-0000-0000-000000000000`)).status, 404);

  // invoice after termination
  assert.equal((await api('POST', `/market-api/v1/agreements/${svc.agreementId}/terminate`, { message: 'done', 'golem.requestor.code': 'Success' })).status, 200);
  const inv = await h.waitUntil(async () => (await api('GET', `/payment-api/v1/invoiceEvents?afterTimestamp=${encodeURIComponent(start)}&timeout=1`)).body[0]);
  assert.equal(inv.eventType, 'InvoiceReceivedEvent');
  const invoice = (await api('GET', `/payment-api/v1/invoices/${inv.invoiceId}`)).body;
  assert.equal(invoice.agreementId, svc.agreementId); assert.deepEqual(invoice.activityIds, [svc.act]);
  assert.ok(Number(invoice.amount) >= Number(n.totalAmountDue));
  assert.equal((await api('POST', `/payment-api/v1/invoices/${inv.invoiceId}/accept`, { totalAmountAccepted: '0', allocationId: aid })).status, 400);
  assert.equal((await api('POST', `/payment-api/v1/invoices/${inv.invoiceId}/accept`, { totalAmountAccepted: invoice.amount, allocationId: aid })).status, 200);
  const a3 = (await api('GET', `/payment-api/v1/allocations/${aid}`)).body;
  assert.equal(Number(a3.spentAmount), Number(invoice.amount));
  assert.equal((await api('DELETE', `/payment-api/v1/allocations/${aid}`)).status, 200);
  assert.equal((await api('GET', `/payment-api/v1/allocations/${aid}`)).status, 410);
  assert.equal((await api('DELETE', `/payment-api/v1/allocations/${aid}`)).status, 410);
  const st = sim.state();
  assert.ok(st.payments.invoices.some((i) => i.status === 'ACCEPTED'));
});

test('provider breaks the agreement when debit notes are not accepted in time', async (t) => {
  const s = await h.startSim({ providers: 1, debitNoteInterval: 0.3, acceptTimeout: 6 });
  t.after(() => s.sim.stop());
  const { api, sim } = s;
  // the demand echoes an accept timeout of 5 s (minimum the provider takes)
  const d = h.demand(s.calc, { 'golem.com.payment.debit-notes.accept-timeout?': 5 });
  d.properties['golem.srv.comp.expiration'] = Date.now() + 20 * 60e3;
  const neg = await h.negotiate(s, { dem: d });
  const act = (await api('POST', '/activity-api/v1/activity', neg.agreementId)).body;
  const since = new Date().toISOString();
  const ev = await h.waitUntil(async () => (await api('GET', `/market-api/v1/agreementEvents?afterTimestamp=${encodeURIComponent(since)}&timeout=1`)).body.find((e) => e.eventType === 'AgreementTerminatedEvent'), 9000, 200);
  assert.equal(ev.terminator, 'Provider'); assert.match(ev.reason.message, /isn't accepting DebitNotes in time/);
  assert.equal(ev.reason['golem.provider.code'], 'DebitNotesDeadline');
  assert.deepEqual((await api('GET', `/activity-api/v1/activity/${act}/state`)).body.state, ['Terminated', null]);
  assert.equal((await api('GET', `/market-api/v1/agreements/${neg.agreementId}`)).body.state, 'Terminated');
  assert.ok(sim.state().payments.invoices.some((i) => i.agreementId === neg.agreementId));
});
