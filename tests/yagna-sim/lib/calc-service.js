'use strict';
// The built-in service of a shared-mode VM (`--vm-mode shared`, lib/shared-host.js): the HTTP API of
// examples/calc-image/calculator_server.py, in-process, one instance (own state) per VM:
//   GET  /add/A/B /sub/A/B /mul/A/B /div/A/B   -> result as text ("7"); integers are exact
//   POST /calc    {"expr": "1+2*3"} / {"op":"add","a":1,"b":2} / plain "1+2*3" -> result
//   GET|POST /echo -> JSON {method, path, headers, body, body_b64, body_len}
//   GET  /bytes/N  -> N bytes of the pattern bytes(i % 251)
//   GET  /sleep/MS -> waits MS milliseconds, answers "slept MS"
//   GET  /health   -> "ok"
// plus, only here (the stand-in's, not the image's): GET /_vm -> JSON {activityId, providerId,
// providerName, requests} so a test can tell which VM answered and how many requests it served.
// Keep-alive connections stay open as long as the client wants (as with the Python server).
const http = require('node:http');

const MAX_BODY = 64 * 1024 * 1024;
const MAX_BYTES = 256 * 1024 * 1024;
const MAX_EXPR = 10000;
const PATTERN = Buffer.from(Array.from({ length: 251 }, (_, i) => i));

class BadRequest extends Error {}

/** A number as Python's int() or float() reads it: integers stay exact (BigInt). */
function num(s) {
  const t = String(s).trim();
  if (/^[+-]?\d+$/.test(t)) return BigInt(t);
  const x = Number(t);
  if (t === '' || Number.isNaN(x)) throw new BadRequest(`could not convert string to float: '${s}'`);
  return x;
}

/** Python's arithmetic on int (BigInt) and float (Number). */
function arith(op, a, b) {
  if (typeof a === 'bigint' && typeof b === 'bigint' && op !== '/') {
    if ((op === '//' || op === '%') && b === 0n) throw new BadRequest('integer division or modulo by zero');
    switch (op) {
      case '+': return a + b;
      case '-': return a - b;
      case '*': return a * b;
      case '//': { const q = a / b; return (a % b !== 0n && (a < 0n) !== (b < 0n)) ? q - 1n : q; }
      case '%': { const r = a % b; return (r !== 0n && (r < 0n) !== (b < 0n)) ? r + b : r; }
      case '**': if (b < 0n) return Number(a) ** Number(b); if (b > 1000n) throw new BadRequest('exponent too large'); return a ** b;
      default: throw new BadRequest('unsupported expression');
    }
  }
  const x = Number(a); const y = Number(b);
  if ((op === '/' || op === '//' || op === '%') && y === 0) throw new BadRequest('division by zero');
  switch (op) {
    case '+': return x + y;
    case '-': return x - y;
    case '*': return x * y;
    case '/': return x / y;
    case '//': return Math.floor(x / y);
    case '%': return x - y * Math.floor(x / y);
    case '**': if (Math.abs(y) > 1000) throw new BadRequest('exponent too large'); return x ** y;
    default: throw new BadRequest('unsupported expression');
  }
}

const fmt = (x) => String(x); // 6/3 -> "2" as the Python server's fmt()

/** Arithmetic expressions: numbers, + - * / // % **, unary +/-, parentheses. */
function evaluate(expr) {
  if (expr.length > MAX_EXPR) throw new BadRequest('expression too long');
  const toks = expr.match(/\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\*\*|\/\/|[-+*/%()]|\S/g) || [];
  let i = 0;
  const peek = () => toks[i];
  const atom = () => {
    const t = toks[i++];
    if (t === '(') { const v = sum(); if (toks[i++] !== ')') throw new BadRequest('unsupported expression'); return v; }
    if (t === '-' || t === '+') { const v = power(); return t === '-' ? arith('-', typeof v === 'bigint' ? 0n : 0, v) : v; }
    if (t !== undefined && /^[\d.]/.test(t)) return num(t);
    throw new BadRequest('unsupported expression');
  };
  const power = () => { const a = atom(); if (peek() === '**') { i++; return arith('**', a, power()); } return a; };
  const product = () => { let a = power(); while (['*', '/', '//', '%'].includes(peek())) { const op = toks[i++]; a = arith(op, a, power()); } return a; };
  const sum = () => { let a = product(); while (peek() === '+' || peek() === '-') { const op = toks[i++]; a = arith(op, a, product()); } return a; };
  const v = sum();
  if (i !== toks.length) throw new BadRequest('unsupported expression');
  return v;
}

const BINARY = { add: '+', sub: '-', mul: '*', div: '/' };

function readBody(req, cb) {
  const parts = []; let size = 0; let failed = false;
  req.on('data', (d) => {
    size += d.length;
    if (size > MAX_BODY) { if (!failed) { failed = true; cb(new BadRequest('body too large')); } return; }
    parts.push(d);
  });
  req.on('end', () => { if (!failed) cb(null, Buffer.concat(parts)); });
}

function route(vm, req, body) {
  const [pathname] = req.url.split('?');
  const parts = pathname.split('/').filter(Boolean);
  if (pathname === '/health') return [200, 'ok'];
  if (pathname === '/_vm') return [200, JSON.stringify(vm), 'application/json'];
  if (parts[0] === 'echo') {
    const headers = []; for (let k = 0; k < req.rawHeaders.length; k += 2) headers.push([req.rawHeaders[k], req.rawHeaders[k + 1]]);
    return [200, JSON.stringify({ method: req.method, path: req.url, headers, body: body.toString('utf8'), body_b64: body.toString('base64'), body_len: body.length }), 'application/json'];
  }
  if (parts.length === 3 && BINARY[parts[0]] && (req.method === 'GET' || req.method === 'HEAD')) {
    return [200, fmt(arith(BINARY[parts[0]], num(parts[1]), num(parts[2])))];
  }
  if (pathname === '/calc' && req.method === 'POST') {
    const text = body.toString('utf8').trim();
    let doc; try { doc = JSON.parse(text); } catch { doc = text; }
    if (doc && typeof doc === 'object' && 'op' in doc) {
      if (!BINARY[doc.op]) return [400, 'unknown op'];
      return [200, fmt(arith(BINARY[doc.op], num(doc.a), num(doc.b)))];
    }
    return [200, fmt(evaluate(String(doc && typeof doc === 'object' ? doc.expr : doc)))];
  }
  if (parts.length === 2 && parts[0] === 'bytes') {
    const n = Number(parts[1]);
    if (!Number.isInteger(n) || n < 0 || n > MAX_BYTES) return [400, 'bad size'];
    const data = Buffer.alloc(n);
    for (let o = 0; o < n; o += PATTERN.length) PATTERN.copy(data, o, 0, Math.min(PATTERN.length, n - o));
    return [200, data, 'application/octet-stream'];
  }
  if (parts.length === 2 && parts[0] === 'sleep') return ['sleep', Math.max(0, Math.min(Number(parts[1]) | 0, 600000))];
  return [404, `not found: ${pathname}\n`];
}

/** An http.Server that listens nowhere: the shared host hands it each accepted connection. */
function createService(info) {
  const vm = { activityId: info.activityId || null, providerId: info.providerId || null, providerName: info.providerName || null, requests: 0 };
  const srv = http.createServer((req, res) => {
    const reply = (status, body, ctype = 'text/plain; charset=utf-8') => {
      const buf = Buffer.isBuffer(body) ? body : Buffer.from(String(body));
      res.writeHead(status, { 'Content-Type': ctype, 'Content-Length': buf.length, Server: 'yhc-calc/1.0 yagna-sim-shared' });
      res.end(req.method === 'HEAD' ? undefined : buf);
    };
    readBody(req, (e, body) => {
      vm.requests++;
      if (e) { res.shouldKeepAlive = false; reply(413, `${e.message}\n`); return; }
      let r;
      try { r = route(vm, req, body); } catch (err) {
        if (err instanceof BadRequest || err instanceof RangeError || err instanceof SyntaxError || err instanceof TypeError) { reply(400, `bad request: ${err.message}\n`); return; }
        throw err;
      }
      if (r[0] === 'sleep') { const t = setTimeout(() => reply(200, `slept ${r[1]}`), r[1]); res.on('close', () => clearTimeout(t)); return; }
      reply(...r);
    });
  });
  srv.keepAliveTimeout = 0; // the Python server never closes an idle keep-alive connection
  srv.headersTimeout = 0;
  srv.requestTimeout = 0;
  return srv;
}

module.exports = { createService, evaluate, arith, num };
