'use strict';
// The exe-unit's state machine and the results semantics of the real daemon (PROTOCOL.md §5.1-5.3,
// §5.6, §8 items 21-24 and 26).
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const A = '/activity-api/v1/activity';

test('activity lifecycle like the exe-unit', async (t) => {
  const s = await h.startSim({ providers: 2 });
  t.after(() => s.sim.stop());
  const { api } = s;
  const neg = await h.negotiate(s, { providerIndex: 0 });
  const state = async (act) => (await api('GET', `${A}/${act}/state`)).body;
  const exec = async (act, cmds) => {
    const r = await api('POST', `${A}/${act}/exec`, { text: JSON.stringify(cmds) });
    assert.equal(r.status, 200, r.text);
    return r.body;
  };
  const sh = (script) => ({ run: { entry_point: '/bin/sh', args: ['-c', script], capture: { stdout: { atEnd: {} } } } });
  let act;

  await t.test('POST /activity answers once Initialized', async () => {
    const r = await api('POST', A, { agreementId: neg.agreementId });
    assert.equal(r.status, 200); act = r.body.activityId;
    assert.deepEqual(await state(act), { state: ['Initialized', null] });
  });

  await t.test('commands out of order fail with the exe-unit messages', async () => {
    let r = await h.execWait(api, act, [sh('echo early')]);
    assert.equal(r[0].result, 'Error');
    assert.equal(r[0].message, 'Local service error: State error: Activity is initialized - deploy() command is expected now');
    r = await h.execWait(api, act, [{ start: {} }]);
    assert.match(r[0].message, /deploy\(\) command is expected now$/);
    r = await h.execWait(api, act, [{ deploy: {} }]);
    assert.deepEqual([r[0].result, r[0].message], ['Ok', null]);
    assert.deepEqual(await state(act), { state: ['Deployed', null] });
    for (const cmd of [{ deploy: {} }, sh('true'), { transfer: { from: 'container:/golem/run/x', to: 'container:/golem/work/x' } }]) {
      r = await h.execWait(api, act, [cmd]);
      assert.equal(r[0].message, 'Local service error: State error: Activity is deployed - start() command is expected now');
    }
    r = await h.execWait(api, act, [{ start: {} }, sh('echo hi')]);
    assert.deepEqual(r.map((x) => [x.result, x.message, x.stdout]), [['Ok', null, null], ['Ok', null, 'hi\n']]);
    assert.deepEqual(await state(act), { state: ['Ready', null] });
    for (const cmd of [{ deploy: {} }, { start: {} }]) {
      r = await h.execWait(api, act, [cmd]);
      assert.equal(r[0].message, 'Local service error: State error: Cannot send command after a successful start()');
    }
    assert.equal((await api('POST', `${A}/${act}/exec`, { text: '[{"frobnicate":{}}]' })).status, 400);
  });

  await t.test('a command while another runs: Busy', async () => {
    const long = await exec(act, [sh('sleep 1.5; echo slept')]);
    await h.waitUntil(async () => (await state(act)).state[1] === 'Ready');
    assert.deepEqual(await state(act), { state: ['Ready', 'Ready'] });
    const r = await h.execWait(api, act, [sh('echo second')]);
    assert.equal(r[0].result, 'Error');
    assert.equal(r[0].message, 'Local service error: State error: Busy: StatePair(Ready, Some(Ready))');
    const done = (await api('GET', `${A}/${act}/exec/${long}?timeout=10`)).body;
    assert.deepEqual(done.map((x) => [x.result, x.stdout]), [['Ok', 'slept\n']]);
  });

  await t.test('results: prefix, commandIndex, 408 only with commandIndex', async () => {
    const b = await exec(act, [sh('echo a'), sh('echo b; exit 4'), sh('echo never')]);
    // Without commandIndex the call waits for the last command: an early failure costs the full timeout.
    const t0 = Date.now();
    let r = await api('GET', `${A}/${act}/exec/${b}?timeout=1`);
    assert.ok(Date.now() - t0 >= 950, `answered after ${Date.now() - t0} ms`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.map((x) => [x.index, x.result, x.stdout, x.isBatchFinished]), [[0, 'Ok', 'a\n', false], [1, 'Error', 'b\n', true]]);
    assert.equal(r.body[1].message, 'ExeScript command exited with code 4');
    // With commandIndex: that command is awaited, only it carries output, it is "finished".
    r = await api('GET', `${A}/${act}/exec/${b}?commandIndex=0&timeout=1`);
    assert.deepEqual(r.body.map((x) => [x.index, x.stdout, x.isBatchFinished]), [[0, 'a\n', true]]);
    r = await api('GET', `${A}/${act}/exec/${b}?commandIndex=1`);
    assert.deepEqual(r.body.map((x) => [x.index, x.stdout, x.isBatchFinished]), [[0, null, false], [1, 'b\n', true]]);
    r = await api('GET', `${A}/${act}/exec/${b}?commandIndex=2&timeout=0.3`);
    assert.equal(r.status, 408); assert.deepEqual(r.body, { message: 'Timeout' });
    r = await api('GET', `${A}/${act}/exec/${b}?commandIndex=7&timeout=0.1`);
    assert.equal(r.status, 408);
    // No timeout: no wait at all.
    const slow = await exec(act, [sh('sleep 0.5')]);
    assert.deepEqual((await api('GET', `${A}/${act}/exec/${slow}`)).body, []);
    assert.equal((await api('GET', `${A}/${act}/exec/${slow}?commandIndex=0`)).status, 408);
    assert.equal((await api('GET', `${A}/${act}/exec/${slow}?commandIndex=0&timeout=5`)).body[0].result, 'Ok');
    assert.deepEqual((await api('GET', `${A}/${act}/exec/${await exec(act, [])}?timeout=1`)).body, []);
  });

  await t.test('terminate stops the runtime and other batches, back to Initialized', async () => {
    const bg = await exec(act, [sh('sleep 30 & echo $! > /golem/work/pid; wait'), sh('echo after')]);
    await h.waitUntil(async () => (await state(act)).state[1] === 'Ready');
    const term = await h.execWait(api, act, [{ terminate: {} }]);
    assert.deepEqual(term.map((x) => [x.result, x.message, x.isBatchFinished]), [['Ok', null, true]]);
    assert.deepEqual(await state(act), { state: ['Initialized', null] });
    const r = await api('GET', `${A}/${act}/exec/${bg}?commandIndex=0&timeout=5`);
    assert.equal(r.body[0].result, 'Error');
    assert.equal((await api('GET', `${A}/${act}/exec/${bg}?commandIndex=1&timeout=0.5`)).status, 408, 'an aborted batch runs nothing more');
    // The activity lives on: a new deploy is accepted.
    const again = await h.execWait(api, act, [{ deploy: {} }, { start: {} }, sh('echo again')]);
    assert.deepEqual(again.map((x) => x.result), ['Ok', 'Ok', 'Ok']);
    assert.equal(again[2].stdout, 'again\n');
  });

  await t.test('DELETE: Terminated from the cache, reason cleared, GSB error after', async () => {
    assert.deepEqual((await api('DELETE', `${A}/${act}?timeout=5`)).body, null);
    assert.deepEqual(await state(act), { state: ['Terminated', null] });
    assert.equal((await api('DELETE', `${A}/${act}`)).status, 200, 'already terminated: at once');
    const ex = await api('POST', `${A}/${act}/exec`, { text: '[]' });
    assert.equal(ex.status, 500); assert.match(ex.body.message, /GSB error.*endpoint address not found/);
  });

  await t.test('DELETE waits for the provider: 408 when it takes longer than timeout', async () => {
    const a2 = (await api('POST', A, neg.agreementId)).body;
    assert.equal((await api('DELETE', `${A}/${a2}?timeout=0`)).status, 408);
    assert.equal((await api('DELETE', `${A}/${a2}`)).status, 200);
    assert.deepEqual(await state(a2), { state: ['Terminated', null] });
  });

  await t.test('a provider-set reason is cleared by DELETE', async () => {
    const a3 = (await api('POST', A, neg.agreementId)).body;
    await h.execWait(api, a3, [{ deploy: {} }, { start: {} }]);
    await api('POST', '/_sim/fault', { provider: 0, fault: 'crashVm' });
    await h.waitUntil(async () => (await state(a3)).state[0] === 'Terminated');
    const st = await state(a3);
    assert.deepEqual([st.reason, st.errorMessage], ['execution aborted', 'exit code None'], 'the provider says why');
    assert.equal((await api('DELETE', `${A}/${a3}`)).status, 200);
    assert.deepEqual(await state(a3), { state: ['Terminated', null] });
    // the multi-activity agreement outlives the crashed exe-unit (§9.3): a new activity is welcome
    const a4 = await api('POST', A, neg.agreementId);
    assert.ok(a4.status === 200 || a4.status === 201, `new activity: ${a4.status} ${JSON.stringify(a4.body)}`);
    assert.equal((await api('DELETE', `${A}/${a4.body}`)).status, 200);
  });
});
