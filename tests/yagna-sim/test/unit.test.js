'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const ldap = require('../lib/ldap');
const { imageHash, parseTaskPackage } = require('../lib/images');
const { toWei, fromWei, parseTime } = require('../lib/util');

test('constraint filter parser/evaluator', () => {
  const p = { a: 'xyz', n: 5, arr: ['vpn', 'gpu'], b: true, v: '3' };
  const cases = [
    ['(a=xyz)', true], ['(a=x*)', true], ['(a=*z)', true], ['(a=q*)', false], ['(a=*)', true], ['(missing=*)', false],
    ['(n>=5)', true], ['(n>5)', false], ['(n<6)', true], ['(n<=4)', false], ['(v>1)', true],
    ['(arr=vpn)', true], ['(arr=cpu)', false], ['(b=true)', true],
    ['(&(a=xyz)(n=5))', true], ['(|(a=no)(n=5))', true], ['(!(a=xyz))', false], ['(!(missing=1))', true],
    ['(&\n\t(a=xyz)\n\t(|(n>100)(arr=gpu)))', true], ['(&)', true], ['(n<>5)', false],
  ];
  for (const [c, want] of cases) assert.equal(ldap.matches(c, p), want, c);
  for (const bad of ['(a=1', 'a=1', '(&(a=1)))', '(=1)']) assert.throws(() => ldap.parse(bad), ldap.ConstraintError, bad);
  assert.deepEqual(ldap.flatten({ golem: { com: { scheme: { '@tag': 'payu', payu: { 'x?': 1 } } } } }), { 'golem.com.scheme': 'payu', 'golem.com.scheme.payu.x?': 1 });
});

test('image hash: SHA3-224 over path\\0size\\0content in sorted order; --print-hash', () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'img-'));
  fs.mkdirSync(path.join(d, 'sub'));
  fs.writeFileSync(path.join(d, 'b.txt'), 'bb');
  fs.writeFileSync(path.join(d, 'sub', 'a.txt'), 'a');
  const crypto = require('node:crypto');
  const want = crypto.createHash('sha3-224').update(Buffer.from('b.txt\x002\x00bbsub/a.txt\x001\x00a')).digest('hex');
  assert.equal(imageHash(d).hash, want);
  assert.equal(want.length, 56);
  const out = execFileSync(process.execPath, [path.join(__dirname, '..', 'index.js'), '--print-hash', d]).toString().trim();
  assert.equal(out, want);
  assert.deepEqual(parseTaskPackage(`hash:sha3:${want}:http://h/x\n`), { hash: want, url: 'http://h/x' });
  fs.rmSync(d, { recursive: true });
});

test('money and time helpers', () => {
  assert.equal(fromWei(toWei('0.000869307866200000')), '0.000869307866200000');
  assert.equal(toWei(5), toWei('5.0'));
  assert.ok(Math.abs(parseTime('2022-11-28T10:38:57.517431370Z') - Date.parse('2022-11-28T10:38:57.517Z') - 0.43137) < 0.001);
  assert.ok(Number.isNaN(parseTime('yesterday')));
});

test('CLI: starts, prints the listening line, stops on SIGTERM', async () => {
  const { spawn } = require('node:child_process');
  const cp = spawn(process.execPath, [path.join(__dirname, '..', 'index.js'), '--port', '0', '--appkey', 'k', '--providers', '1', '--quiet']);
  let out = '';
  const url = await new Promise((resolve, reject) => {
    cp.stdout.on('data', (d) => { out += d; const m = /yagna-sim listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out); if (m) resolve(m[1]); });
    cp.on('exit', () => reject(new Error(`exited: ${out}`)));
  });
  const r = await fetch(`${url}/me`, { headers: { authorization: 'Bearer k' } });
  assert.equal(r.status, 200);
  const code = await new Promise((resolve) => { cp.removeAllListeners('exit'); cp.on('exit', resolve); cp.kill('SIGTERM'); });
  assert.equal(code, 0);
});
