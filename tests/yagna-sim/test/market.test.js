'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

test('market API', async (t) => {
  const s = await h.startSim({ providers: 3 });
  t.after(() => s.sim.stop());
  const { api, sim, calc } = s;

  await t.test('auth: 401 plain text before anything else', async () => {
    let r = await api('GET', '/market-api/v1/nope', undefined, { key: null });
    assert.equal(r.status, 401); assert.equal(r.text, 'Missing application key');
    r = await api('POST', '/market-api/v1/demands', {}, { key: 'wrong' });
    assert.equal(r.status, 401); assert.equal(r.text, 'Invalid application key');
    const q = await fetch(`${sim.url}/me?authToken=${h.KEY}`);
    assert.equal(q.status, 200);
    assert.equal((await api('GET', '/market-api/v1/nope')).status, 404);
  });

  await t.test('offers only for matching demands; events consumed; maxEvents', async () => {
    const d = h.demand(calc);
    const sub = await api('POST', '/market-api/v1/demands', d);
    assert.equal(sub.status, 201);
    assert.match(sub.body, /^[0-9a-f]{32}-[0-9a-f]{64}$/);
    const evs = await h.collect(api, sub.body, 3);
    assert.equal(evs.length, 3);
    for (const e of evs) {
      assert.equal(e.eventType, 'ProposalEvent'); assert.equal(e.proposal.state, 'Initial');
      assert.match(e.proposal.proposalId, /^R-[0-9a-f]{64}$/);
      assert.deepEqual(e.proposal.properties['golem.com.usage.vector'], ['golem.usage.duration_sec', 'golem.usage.cpu_sec']);
    }
    const again = await api('GET', `/market-api/v1/demands/${sub.body}/events?timeout=0`);
    assert.deepEqual(again.body, []);
    assert.equal((await api('GET', `/market-api/v1/demands/${sub.body}/events?maxEvents=0`)).status, 400);
    // wasm demand, another subnet, an unsupported platform: nothing matches
    for (const bad of [
      h.demand(calc, {}, '(golem.runtime.name=wasmtime)'),
      h.demand(calc, { 'golem.node.debug.subnet': 'other' }),
      { ...h.demand(calc), constraints: '(&(golem.com.payment.platform.zksync-mainnet-glm.address=*))' },
    ]) {
      const s2 = (await api('POST', '/market-api/v1/demands', bad)).body;
      const r = await api('GET', `/market-api/v1/demands/${s2}/events?timeout=0.3`);
      assert.deepEqual(r.body, [], JSON.stringify(bad.constraints));
    }
    assert.equal((await api('POST', '/market-api/v1/demands', { properties: {}, constraints: '(&(a=' })).status, 400);
  });

  await t.test('negotiation and agreement status codes', async () => {
    const d = h.demand(calc, { 'golem.com.payment.debit-notes.accept-timeout?': 240 });
    const sub = (await api('POST', '/market-api/v1/demands', d)).body;
    const first = await h.collect(api, sub, 1); // on a fast machine every provider's offer is in already
    const [offer] = first;
    const pid = offer.proposal.proposalId;
    const get = await api('GET', `/market-api/v1/demands/${sub}/proposals/${pid}`);
    assert.equal(get.status, 200); assert.equal(get.body.proposalId, pid);
    // agreement from an Initial proposal -> 400
    const validTo = new Date(Date.now() + 3600e3).toISOString();
    assert.equal((await api('POST', '/market-api/v1/agreements', { proposalId: pid, validTo })).status, 400);
    assert.equal((await api('POST', '/market-api/v1/agreements', { proposalId: pid.slice(2), validTo })).status, 400);
    const counterProps = { ...d.properties, 'golem.com.payment.chosen-platform': 'erc20-holesky-tglm' };
    const c1 = await api('POST', `/market-api/v1/demands/${sub}/proposals/${pid}`, { properties: counterProps, constraints: d.constraints });
    assert.equal(c1.status, 200); assert.match(c1.body, /^R-/);
    assert.equal((await api('POST', `/market-api/v1/demands/${sub}/proposals/${pid}`, { properties: d.properties, constraints: d.constraints })).status, 410);
    const evs = await h.collect(api, sub, 3);
    const draft = evs.find((e) => e.proposal && e.proposal.state === 'Draft');
    assert.ok(draft, JSON.stringify(evs));
    assert.equal(draft.proposal.prevProposalId, c1.body);
    // validTo is not checked at creation; the confirm that follows finds the agreement Expired
    const other = [...first, ...evs].find((e) => e.proposal && e.proposal.state === 'Initial' && e.proposal.issuerId !== draft.proposal.issuerId);
    assert.ok(other, JSON.stringify([...first, ...evs]));
    const c2 = (await api('POST', `/market-api/v1/demands/${sub}/proposals/${other.proposal.proposalId}`, { properties: counterProps, constraints: d.constraints })).body;
    const d2 = await h.answerTo(api, sub, c2);
    assert.ok(d2 && d2.proposal, JSON.stringify(d2));
    const old = await api('POST', '/market-api/v1/agreements', { proposalId: d2.proposal.proposalId, validTo: '2000-01-01T00:00:00Z' });
    assert.equal(old.status, 200);
    assert.equal((await api('POST', `/market-api/v1/agreements/${old.body}/confirm`)).status, 410);
    assert.equal((await api('GET', `/market-api/v1/agreements/${old.body}`)).body.state, 'Expired');
    const ag = await api('POST', '/market-api/v1/agreements', { proposalId: draft.proposal.proposalId, validTo });
    assert.equal(ag.status, 200); assert.match(ag.body, /^[0-9a-f]{64}$/);
    assert.equal((await api('POST', '/market-api/v1/agreements', { proposalId: draft.proposal.proposalId, validTo })).status, 409);
    assert.equal((await api('POST', `/market-api/v1/agreements/${ag.body}/wait?timeout=0.1`)).status, 400);
    assert.equal((await api('POST', `/market-api/v1/agreements/${ag.body}/terminate`, { message: 'x' })).status, 409);
    assert.equal((await api('POST', `/market-api/v1/agreements/${ag.body}/confirm`)).status, 204);
    assert.equal((await api('POST', `/market-api/v1/agreements/${ag.body}/confirm`)).status, 410);
    assert.equal((await api('POST', `/market-api/v1/agreements/${ag.body}/wait?timeout=3`)).status, 204);
    const a = await api('GET', `/market-api/v1/agreements/${ag.body}`);
    assert.equal(a.body.state, 'Approved'); assert.equal(a.body.offer.providerId, draft.proposal.issuerId);
    const term = await api('POST', `/market-api/v1/agreements/${ag.body}/terminate`, { message: 'Work cancelled', 'golem.requestor.code': 'Cancelled' });
    assert.equal(term.status, 200); assert.equal(term.text, '');
    assert.equal((await api('POST', `/market-api/v1/agreements/${ag.body}/terminate`, { message: 'x' })).status, 410);
    const w = await api('POST', `/market-api/v1/agreements/${ag.body}/wait?timeout=1`);
    assert.equal(w.status, 400); assert.match(w.body.message, /terminated\.$/);
    const reason = await api('GET', `/market-api/v1/agreements/${ag.body}/terminate/reason`);
    assert.equal(reason.body['golem.requestor.code'], 'Cancelled');
    const aev = await api('GET', `/market-api/v1/agreementEvents?timeout=0&afterTimestamp=${encodeURIComponent(new Date(Date.now() - 60e3).toISOString())}`);
    assert.deepEqual(aev.body.filter((e) => e.agreementId === ag.body).map((e) => e.eventType), ['AgreementApprovedEvent', 'AgreementTerminatedEvent']);
    assert.equal(aev.body.find((e) => e.eventType === 'AgreementTerminatedEvent').terminator, 'Requestor');
  });

  await t.test('wait 408 while pending; expiration check rejects long demands without accept-timeout', async () => {
    sim.providers[0].onAgreement = 'ignore';
    const neg = h.negotiate(s, { providerIndex: 0 });
    await assert.rejects(neg, /wait 408/);
    sim.providers[0].onAgreement = 'approve';
    const d = h.demand(calc); d.properties['golem.srv.comp.expiration'] = Date.now() + 3 * 3600e3;
    const sub = (await api('POST', '/market-api/v1/demands', d)).body;
    const [offer] = await h.collect(api, sub, 1);
    const c = (await api('POST', `/market-api/v1/demands/${sub}/proposals/${offer.proposal.proposalId}`, { properties: d.properties, constraints: d.constraints })).body;
    const evs = await h.collect(api, sub, 3);
    const ev = evs.find((e) => e.eventType !== 'ProposalEvent' || e.proposal.state !== 'Initial');
    assert.equal(ev.eventType, 'ProposalRejectedEvent'); assert.equal(ev.proposalId, c);
  });

  await t.test('unsubscribe ends a pending collect with 404', async () => {
    const sub = (await api('POST', '/market-api/v1/demands', h.demand(calc, {}, '(golem.runtime.name=none)'))).body;
    const pending = api('GET', `/market-api/v1/demands/${sub}/events?timeout=5`);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await api('DELETE', `/market-api/v1/demands/${sub}`)).status, 204);
    assert.equal((await pending).status, 404);
    assert.equal((await api('DELETE', `/market-api/v1/demands/${sub}`)).status, 404);
  });
});
