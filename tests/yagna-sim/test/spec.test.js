'use strict';
// The stand-in's own answers validate against the official response schemas, and non-conforming
// requests are rejected with 400 and recorded as violations.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');
const { findSpecDir } = require('../lib/spec');

const specDir = findSpecDir();

test('responses conform to the spec; violations are recorded', { skip: specDir ? false : 'spec dir ../shared/yagna-api absent (set YHC_YAGNA_API_DIR)' }, async (t) => {
  const s = await h.startSim({ providers: 2, debitNoteInterval: 0.3 });
  t.after(() => s.sim.stop());
  const { sim } = s;
  const checked = []; const failures = [];
  sim.checkResponses = (method, p, status, body) => {
    if (body === undefined || status >= 400) return;
    const r = sim.spec.validateResponse(method, p.split('?')[0], status, body);
    if (r.skipped) return;
    checked.push(r.operationId);
    if (!r.ok) failures.push({ method, p, status, errors: r.errors });
  };
  const { api } = s;
  const since = new Date().toISOString();
  const alloc = (await api('POST', '/payment-api/v1/allocations', { totalAmount: '5' })).body;
  await api('GET', `/payment-api/v1/allocations/${alloc.allocationId}`);
  await api('GET', '/payment-api/v1/allocations');
  await api('GET', `/payment-api/v1/demandDecorations?allocationIds=${alloc.allocationId}`);
  const svc = await h.startService(s);
  await api('GET', `/market-api/v1/agreements/${svc.agreementId}`);
  await api('GET', `/market-api/v1/demands/${svc.sub}/proposals/${svc.draft.proposal.proposalId}`);
  await api('GET', `/activity-api/v1/activity/${svc.act}/state`);
  await api('GET', `/activity-api/v1/activity/${svc.act}/usage`);
  await api('GET', '/net-api/v1/net');
  await api('GET', `/net-api/v1/net/${svc.net.id}/nodes`);
  await api('GET', `/net-api/v2/vpn/net/${svc.net.id}`);
  await h.waitUntil(async () => (await api('GET', `/payment-api/v1/debitNoteEvents?afterTimestamp=${encodeURIComponent(since)}&timeout=1`)).body.length > 0);
  const [dn] = (await api('GET', `/payment-api/v1/debitNoteEvents?afterTimestamp=${encodeURIComponent(since)}&timeout=0`)).body;
  await api('GET', `/payment-api/v1/debitNotes/${dn.debitNoteId}`);
  await api('POST', `/market-api/v1/agreements/${svc.agreementId}/terminate`, { message: 'done' });
  const inv = await h.waitUntil(async () => (await api('GET', `/payment-api/v1/invoiceEvents?afterTimestamp=${encodeURIComponent(since)}&timeout=1`)).body[0]);
  await api('GET', `/payment-api/v1/invoices/${inv.invoiceId}`);
  await api('GET', `/market-api/v1/agreementEvents?afterTimestamp=${encodeURIComponent(since)}&timeout=0`);
  await api('GET', '/me');
  await api('GET', '/version/get');
  assert.deepEqual(failures, []);
  for (const op of ['createAllocation', 'getAgreement', 'collectOffers', 'getDebitNote', 'getInvoice', 'getExecBatchResults', 'createNetwork', 'GetActivityState']) {
    assert.ok(checked.includes(op), `checked ${op}`);
  }
  assert.equal(sim.violationCount, 0, JSON.stringify(sim.violations));

  // non-conforming requests: 400 {"message"} and recorded
  const bad = await api('GET', `/market-api/v1/demands/${svc.sub}/events?timeout=abc`);
  assert.equal(bad.status, 400); assert.equal(typeof bad.body.message, 'string');
  assert.equal((await api('POST', '/market-api/v1/demands', { properties: {} })).status, 400);
  assert.equal((await api('POST', `/activity-api/v1/activity/${svc.act}/exec`, { txt: '[]' })).status, 400);
  const v = (await api('GET', '/_sim/violations')).body;
  assert.equal(v.count, 3);
  // documented daemon deviations are accepted: bare-string createActivity, numeric totalAmount
  assert.equal((await api('POST', '/payment-api/v1/allocations', { totalAmount: 1 })).status, 201);
  assert.equal(sim.violationCount, 3);
});
