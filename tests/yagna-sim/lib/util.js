'use strict';
// Small helpers shared by the simulator modules. No module-level mutable state.
const crypto = require('node:crypto');

const hex = (bytes) => crypto.randomBytes(bytes).toString('hex');
const ids = {
  subscription: () => `${hex(16)}-${hex(32)}`,
  proposal: () => `R-${hex(32)}`,
  agreement: () => hex(32),
  simple: () => hex(16), // activity, batch, network ids (uuid "simple")
  uuid: () => crypto.randomUUID(),
  node: () => `0x${hex(20)}`,
};

const RE = {
  subscription: /^[0-9a-f]{32}-[0-9a-f]{64}$/,
  proposal: /^R-[0-9a-f]{64}$/,
  agreement: /^[0-9a-f]{64}$/,
  node: /^0x[0-9a-f]{40}$/,
};

/** Strictly increasing wall clock in ms, so payment/agreement events never share an eventDate. */
class MonotonicClock {
  constructor() { this.last = 0; }
  next() {
    const now = Date.now();
    this.last = now > this.last ? now : this.last + 1;
    return this.last;
  }
}

/** RFC 3339 with milliseconds and Z (like the eventDates in the fixtures). */
const isoMs = (ms) => new Date(ms).toISOString();
/** RFC 3339 with 9 fraction digits (like yagna's chrono timestamps). */
function isoNs(ms = Date.now()) {
  const s = new Date(Math.floor(ms)).toISOString(); // ...sss Z
  const sub = String(Math.floor((ms % 1) * 1e6)).padStart(6, '0');
  return s.slice(0, -1) + sub + 'Z';
}
/** Parse an RFC 3339 timestamp (any fraction precision, Z or offset) to fractional ms; NaN if invalid. */
function parseTime(str) {
  if (typeof str !== 'string') return NaN;
  const m = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:?\d{2})?$/.exec(str.trim());
  if (!m) return NaN;
  const zone = !m[4] || m[4] === 'z' ? 'Z' : m[4];
  const base = Date.parse(`${m[1]}T${m[2]}${zone}`);
  if (Number.isNaN(base)) return NaN;
  const frac = m[3] ? Number(`0.${m[3]}`) * 1000 : 0;
  return base + frac;
}

// ---- money: decimal strings with 18 fraction digits, exact arithmetic in BigInt "wei"
const SCALE = 10n ** 18n;
function toWei(v) {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error('not a finite number');
    v = v.toFixed(18);
  }
  if (typeof v !== 'string') throw new Error('not a decimal');
  const m = /^\s*(-)?(\d*)(?:\.(\d*))?\s*$/.exec(v);
  if (!m || (m[2] === '' && !m[3])) throw new Error(`invalid decimal ${JSON.stringify(v)}`);
  const frac = (m[3] || '').slice(0, 18).padEnd(18, '0');
  const w = BigInt(m[2] || '0') * SCALE + BigInt(frac || '0');
  return m[1] ? -w : w;
}
function fromWei(w) {
  const neg = w < 0n; if (neg) w = -w;
  const s = `${w / SCALE}.${String(w % SCALE).padStart(18, '0')}`;
  return neg ? `-${s}` : s;
}
/** Short form used for allocation amounts ("10", "9.5"): trims trailing zeros. */
function fromWeiShort(w) {
  const s = fromWei(w);
  return s.replace(/\.?0+$/, '') || '0';
}

/** Time compression (option timeScale F): a provider-side duration of `ms` runs in ms / F real time. */
function scaledMs(sim, ms) {
  const f = Number(sim.opts.timeScale) || 1;
  return ms / (f > 0 ? f : 1);
}

/** Deferred waiter helper: resolves with value or with `undefined` on timeout. */
function waitFor(set, timeoutMs, register) {
  return new Promise((resolve) => {
    let timer = null;
    const waiter = (v) => { if (timer) clearTimeout(timer); set.delete(waiter); resolve(v); };
    set.add(waiter);
    if (register) register(waiter);
    if (timeoutMs >= 0 && Number.isFinite(timeoutMs)) timer = setTimeout(() => waiter(undefined), timeoutMs);
  });
}
function wakeAll(set, v) { for (const w of [...set]) w(v); }

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class HttpError extends Error {
  constructor(status, body, { contentType } = {}) {
    super(typeof body === 'string' ? body : JSON.stringify(body));
    this.status = status; this.body = body; this.contentType = contentType;
  }
}
const jsonErr = (status, message) => new HttpError(status, { message });

module.exports = {
  ids, RE, MonotonicClock, isoMs, isoNs, parseTime, toWei, fromWei, fromWeiShort,
  waitFor, wakeAll, sleep, HttpError, jsonErr, scaledMs,
};
