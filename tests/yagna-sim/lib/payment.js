'use strict';
// Payment API (/payment-api/v1), requestor side: allocations, demand decorations, debit notes and
// invoices issued by the simulated providers, acceptance rules as yagna (PROTOCOL.md §3, §7, §8.7-8).
const { ids, isoMs, isoNs, parseTime, toWei, fromWei, fromWeiShort, jsonErr, HttpError, waitFor, wakeAll, scaledMs } = require('./util');

const P = '/payment-api/v1';
const PLATFORM_RE = /^(erc20|zksync)-(mainnet|polygon|holesky|sepolia|amoy|goerli|rinkeby|mumbai)-(t?glm)$/;
const MAX_EVENTS_KEPT = 100000;

function problem(status, detail, extra = {}) {
  return new HttpError(status, { type: 'about:blank', instance: '/payment-api/v1/allocations', detail, ...extra }, { contentType: 'application/problem+json' });
}

function platformName(pp) {
  if (pp === undefined || pp === null) return 'erc20-holesky-tglm';
  if (typeof pp === 'string') return pp;
  if (typeof pp === 'object') {
    const driver = pp.driver || 'erc20';
    const network = pp.network || 'holesky';
    const token = pp.token || (['mainnet', 'polygon'].includes(network) ? 'glm' : 'tglm');
    return `${driver}-${network}-${token}`;
  }
  return null;
}

function init(sim) {
  const pay = sim.payment = { allocations: new Map(), debitNotes: new Map(), invoices: new Map(), dnEvents: [], invEvents: [], waiters: new Set(), reserved: 0n };
  const api = sim.paymentApi = {
    activityStarted: (act) => startDebitNotes(sim, act),
    activityEnded: (act) => finalDebitNote(sim, act),
    issueInvoice: (a) => issueInvoice(sim, a),
    sendInvoice: (a) => sendInvoice(sim, a),
    termsProblem: (provider, props, leftSec) => termsProblem(sim, provider, props, leftSec),
    adoptTerms: (provider, props) => adoptTerms(provider, props),
  };
  void api;
  const r = (method, path, fn) => sim.route(method, P + path, fn);

  r('POST', '/allocations', (c) => createAllocation(sim, c));
  r('GET', '/allocations', (c) => ({ body: [...pay.allocations.values()].filter((a) => a.owner === c.who.identity && !a.released).map(allocView) }));
  r('GET', '/allocations/:id', (c) => ({ body: allocView(getAlloc(sim, c, c.params.id)) }));
  r('DELETE', '/allocations/:id', (c) => {
    const a = getAlloc(sim, c, c.params.id);
    a.released = true; a.updatedTs = isoNs();
    return { body: null };
  });
  r('GET', '/demandDecorations', (c) => decorations(sim, c));
  r('GET', '/debitNoteEvents', (c) => events(sim, c, pay.dnEvents));
  r('GET', '/invoiceEvents', (c) => events(sim, c, pay.invEvents));
  r('GET', '/debitNotes', (c) => ({ body: [...pay.debitNotes.values()].filter((d) => d.recipientId === c.who.identity).map(dnView) }));
  r('GET', '/debitNotes/:id', (c) => ({ body: dnView(getDoc(pay.debitNotes, c)) }));
  r('POST', '/debitNotes/:id/accept', (c) => acceptDebitNote(sim, c));
  r('POST', '/debitNotes/:id/reject', (c) => {
    getDoc(pay.debitNotes, c);
    parseRejection(sim, c);
    throw jsonErr(501, null); // yagna: not implemented (a malformed body is 400 first)
  });
  r('GET', '/invoices', (c) => ({ body: [...pay.invoices.values()].filter((d) => d.recipientId === c.who.identity).map(invView) }));
  r('GET', '/invoices/:id', (c) => ({ body: invView(getDoc(pay.invoices, c)) }));
  r('POST', '/invoices/:id/accept', (c) => acceptInvoice(sim, c));
  r('POST', '/invoices/:id/reject', (c) => rejectInvoice(sim, c));
}

// ---------------------------------------------------------------- allocations
function allocView(a) {
  const v = {
    allocationId: a.id, address: a.address, paymentPlatform: a.paymentPlatform, totalAmount: fromWeiShort(a.total),
    spentAmount: fromWeiShort(a.spent), remainingAmount: fromWeiShort(a.total - a.spent), timestamp: a.timestamp,
  };
  if (a.timeout) v.timeout = a.timeout;
  if (a.extendTimeout !== undefined) v.extendTimeout = a.extendTimeout;
  if (a.deposit) v.deposit = a.deposit;
  Object.assign(v, { createdTs: a.createdTs, updatedTs: a.updatedTs, makeDeposit: a.makeDeposit });
  return v;
}

function getAlloc(sim, c, id) {
  const a = sim.payment.allocations.get(id);
  if (!a || a.owner !== c.who.identity) throw jsonErr(404, null);
  if (a.released) throw jsonErr(410, `Allocation ${id} has been released`);
  if (a.timeoutMs && Date.now() > a.timeoutMs) { a.released = true; throw jsonErr(410, `Allocation ${id} has expired`); }
  return a;
}

function createAllocation(sim, c) {
  const b = c.body;
  if (!b || typeof b !== 'object' || Array.isArray(b)) throw sim.invalid(c.req, 'Json deserialize error: expected an Allocation object');
  if (b.totalAmount === undefined) throw sim.invalid(c.req, 'Json deserialize error: missing field `totalAmount`');
  let total;
  try { total = toWei(b.totalAmount); } catch (e) { throw sim.invalid(c.req, `Json deserialize error: totalAmount: ${e.message}`); }
  const platform = platformName(b.paymentPlatform);
  const address = typeof b.address === 'string' ? b.address.toLowerCase() : c.who.identity;
  if (!platform || !PLATFORM_RE.test(platform)) throw problem(400, `Unsupported payment platform ${JSON.stringify(b.paymentPlatform)}`, { paymentPlatform: platform, address, requestBody: b });
  if (total < 0n) throw problem(400, 'totalAmount must not be negative', { requestBody: b });
  const balance = toWei(sim.opts.balance);
  let reserved = 0n;
  for (const a of sim.payment.allocations.values()) if (!a.released && a.owner === c.who.identity) reserved += a.total - a.spent;
  if (reserved + total > balance) {
    throw problem(400, `Insufficient funds to make allocation. Top up your account or release all existing allocations to unlock the funds via \`yagna payment release-allocations\``, {
      requestedFunds: fromWei(total), availableFunds: fromWei(balance - reserved), reservedFunds: fromWei(reserved), paymentPlatform: platform, address,
    });
  }
  let timeoutMs = null;
  if (b.timeout !== undefined && b.timeout !== null) {
    timeoutMs = parseTime(b.timeout);
    if (Number.isNaN(timeoutMs)) throw sim.invalid(c.req, `Json deserialize error: invalid timeout ${b.timeout}`);
  }
  const now = isoNs();
  const a = {
    id: ids.uuid(), owner: c.who.identity, address, paymentPlatform: platform, total, spent: 0n, timestamp: now,
    timeout: timeoutMs ? new Date(timeoutMs).toISOString().replace('.000Z', 'Z') : null, timeoutMs,
    extendTimeout: b.extendTimeout, deposit: b.deposit || null, createdTs: now, updatedTs: now, makeDeposit: !!b.makeDeposit, released: false,
  };
  sim.payment.allocations.set(a.id, a);
  return { status: 201, body: allocView(a) };
}

function decorations(sim, c) {
  const raw = c.query.allocationIds;
  if (!raw) throw sim.invalid(c.req, 'Query deserialize error: missing field `allocationIds`');
  const list = raw.split(',').map((s) => s.trim()).filter(Boolean);
  const allocs = list.map((id) => {
    const a = sim.payment.allocations.get(id);
    if (!a || a.owner !== c.who.identity || a.released) throw jsonErr(404, `Allocation ${id} not found`);
    return a;
  });
  const properties = []; const pres = [];
  for (const a of allocs) {
    const key = `golem.com.payment.platform.${a.paymentPlatform}.address`;
    if (!properties.some((p) => p.key === key)) { properties.push({ key, value: a.address }); pres.push(`(${key}=*)`); }
  }
  const deposit = allocs.some((a) => a.deposit);
  properties.push({ key: 'golem.com.payment.protocol.version', value: '3' });
  const first = pres.length === 1 ? pres[0] : `(|\n  ${pres.join('\n  ')}\n)`;
  return { body: { properties, constraints: [first, `(golem.com.payment.protocol.version>${deposit ? 2 : 1})`] } };
}

// ---------------------------------------------------------------- documents & events
function dnView(d) {
  const v = {
    debitNoteId: d.id, issuerId: d.issuerId, recipientId: d.recipientId, payeeAddr: d.payeeAddr, payerAddr: d.payerAddr,
    paymentPlatform: d.paymentPlatform, timestamp: d.timestamp, agreementId: d.agreementId, activityId: d.activityId,
    totalAmountDue: fromWei(d.amount), usageCounterVector: d.usage, status: d.status,
  };
  if (d.previousDebitNoteId) v.previousDebitNoteId = d.previousDebitNoteId;
  if (d.paymentDueDate) v.paymentDueDate = d.paymentDueDate;
  return v;
}
function invView(i) {
  return {
    invoiceId: i.id, issuerId: i.issuerId, recipientId: i.recipientId, payeeAddr: i.payeeAddr, payerAddr: i.payerAddr,
    paymentPlatform: i.paymentPlatform, timestamp: i.timestamp, agreementId: i.agreementId, activityIds: i.activityIds,
    amount: fromWei(i.amount), paymentDueDate: i.paymentDueDate, status: i.status,
  };
}
function getDoc(map, c) {
  const d = map.get(c.params.id);
  if (!d || d.recipientId !== c.who.identity) throw jsonErr(404, null);
  return d;
}

/** X-Requestor-Events: comma separated statuses; default RECEIVED,CANCELLED (yagna api/invoices.rs). */
function requestorEventTypes(header) {
  if (typeof header !== 'string') return new Set(['RECEIVED', 'CANCELLED']);
  return new Set(header.split(',').map((x) => x.trim()));
}

/** One payment event for the requestor; `type` is the status word the visibility filter matches. */
function docEvent(sim, list, doc, type, extra = {}) {
  const dateMs = sim.clock.next();
  const invoice = list === sim.payment.invEvents;
  const kind = invoice ? 'Invoice' : 'DebitNote';
  const word = type.charAt(0) + type.slice(1).toLowerCase();
  const view = { [invoice ? 'invoiceId' : 'debitNoteId']: doc.id, eventDate: isoMs(dateMs), eventType: `${kind}${word}Event`, ...extra };
  pushEvent(sim, list, { dateMs, recipientId: doc.recipientId, type, agreement: doc.agreement || (doc.act && doc.act.agreement), view });
}

function pushEvent(sim, list, ev) {
  if (list.length >= MAX_EVENTS_KEPT) list.shift();
  list.push(ev);
  wakeAll(sim.payment.waiters, 'event');
}

async function events(sim, c, list) {
  let after = -Infinity;
  if (c.query.afterTimestamp !== undefined) {
    after = parseTime(c.query.afterTimestamp);
    if (Number.isNaN(after)) throw sim.invalid(c.req, `Query deserialize error: invalid afterTimestamp ${c.query.afterTimestamp}`);
  }
  let timeout = 5;
  if (c.query.timeout !== undefined) {
    timeout = Number(c.query.timeout);
    if (!Number.isFinite(timeout) || timeout < 0) throw sim.invalid(c.req, `Query deserialize error: invalid timeout ${c.query.timeout}`);
  }
  let max = Infinity;
  if (c.query.maxEvents !== undefined) {
    max = Number(c.query.maxEvents);
    if (!Number.isInteger(max) || max < 1) throw sim.invalid(c.req, `Query deserialize error: invalid maxEvents ${c.query.maxEvents}`);
  }
  const visible = requestorEventTypes(c.req.headers['x-requestor-events']);
  const session = c.query.appSessionId;
  // yagna applies maxEvents to the node's rows after the cursor, before the type filter (§3.3)
  const pick = () => {
    const out = [];
    let rows = 0;
    for (const e of list) {
      if (e.recipientId !== c.who.identity || e.dateMs <= after) continue;
      if (session !== undefined && (!e.agreement || e.agreement.appSessionId !== session)) continue;
      if (++rows > max) break;
      if (visible.has(e.type)) out.push(e.view);
    }
    return out;
  };
  let out = pick();
  const deadline = Date.now() + timeout * 1000;
  while (!out.length && Date.now() < deadline) {
    let onClose; const closed = new Promise((r) => { onClose = () => r('closed'); c.res.on('close', onClose); });
    const r = await Promise.race([waitFor(sim.payment.waiters, deadline - Date.now()), closed]);
    c.res.removeListener('close', onClose);
    if (r === 'closed') return { streamed: true };
    out = pick();
  }
  return { body: out };
}

// ---------------------------------------------------------------- provider side: negotiation (§4.4 items 4-6)
const K_ACCEPT = 'golem.com.payment.debit-notes.accept-timeout?';
const K_INTERVAL = 'golem.com.scheme.payu.debit-note.interval-sec?';
const K_PAYMENT = 'golem.com.scheme.payu.payment-timeout-sec?';
const DAY_SEC = 24 * 3600;

/** The payment components of ya-provider's negotiator, first rejection winning; `leftSec` = expiration - now. */
function termsProblem(sim, provider, props, leftSec) {
  const no = (message, final) => ({ message, final });
  const vals = [K_ACCEPT, K_INTERVAL, K_PAYMENT].map((k) => props[k]);
  // not a u32: the provider's negotiator fails and the proposal is never answered
  if (vals.some((v) => v !== undefined && !(Number.isInteger(v) && v >= 0 && v < 2 ** 32))) return { ignore: true };
  const [at, interval, payment] = vals;
  if (at !== undefined) {
    if (at > provider.acceptTimeoutSec) return no(`DebitNote acceptance deadline should be less than ${fmtDuration(provider.acceptTimeoutSec)}.`, true);
    if (at < 5) return no(`DebitNote acceptance deadline should be greater than 5s.`, true);
  } else if (leftSec > sim.opts.maxExpirationNoAcceptSec) {
    return no(`Proposal expires at ${Math.round(leftSec)}s ahead which is too late (no '${K_ACCEPT}')`, false);
  }
  if (interval !== undefined && (interval < 1 || interval > DAY_SEC)) return no(`Demand DebitNote interval ${interval}s not in acceptable range of [1s; 24h]`, true);
  if (payment !== undefined && (payment < 1 || payment > DAY_SEC)) return no(`Demand payment timeout ${payment}s not in acceptable range of [1s; 24h]`, true);
  if (payment === undefined && leftSec >= sim.opts.maxExpirationNoPaymentTimeoutSec) {
    return no(`Expiration time ${Math.round(leftSec)}s ahead exceeds the 10h threshold of enforcing mid-agreement payments but the required property '${K_PAYMENT}' was not present in the Demand`, true);
  }
  if (leftSec < 0) return no('Expiration time in the past', true);
  return null;
}
const fmtDuration = (sec) => (sec % 60 === 0 ? `${sec / 60}m` : `${sec}s`);

/** The Draft the provider counters with: its offer, each negotiable key adopted from the demand or dropped. */
function adoptTerms(provider, props) {
  const out = { ...provider.offerProperties() };
  for (const k of [K_ACCEPT, K_INTERVAL, K_PAYMENT]) {
    if (props[k] === undefined) delete out[k]; else out[k] = props[k];
  }
  return out;
}

// ---------------------------------------------------------------- provider side: issuing (§3.8, §9.1)
function agreedTerms(a) {
  const o = a.offer.properties;
  const coeffs = o['golem.com.pricing.model.linear.coeffs'] || [0, 0, 0];
  const vector = o['golem.com.usage.vector'] || ['golem.usage.duration_sec', 'golem.usage.cpu_sec'];
  const num = (k) => (o[k] === undefined ? null : Number(o[k]));
  return {
    coeffs, vector,
    intervalSec: num(K_INTERVAL) || a.provider.debitNoteIntervalSec,
    acceptTimeoutSec: num(K_ACCEPT), // null: no acceptance deadline
    paymentTimeoutSec: num(K_PAYMENT), // null: no mid-agreement payments
    platform: a.demand.properties['golem.com.payment.chosen-platform'] || a.provider.platforms.find((p) => a.demand.properties[`golem.com.payment.platform.${p}.address`]) || a.provider.platforms[0],
    payer: (() => {
      const pl = a.demand.properties['golem.com.payment.chosen-platform'];
      return (pl && a.demand.properties[`golem.com.payment.platform.${pl}.address`]) || a.owner;
    })(),
  };
}

function cost(terms, usageVec) {
  let total = toWei(Number(terms.coeffs[terms.coeffs.length - 1] || 0).toFixed(18));
  usageVec.forEach((u, i) => { total += toWei((Number(terms.coeffs[i] || 0) * u).toFixed(18)); });
  return total;
}

// fault inflateDebitNotes: a provider asking more than its agreed price allows
function inflate(amount, factor) {
  if (!factor || factor === 1) return amount;
  return (amount * BigInt(Math.round(factor * 1e6))) / 1000000n;
}

const providerNow = (p) => (typeof p.now === 'function' ? p.now() : Date.now());

function startDebitNotes(sim, act) {
  const terms = agreedTerms(act.agreement);
  act.terms = terms;
  act.notes = [];
  act.accepted = 0n;
  act.lastPayableMs = Date.now();
  // fault debitNoteRate: notes this many times more often than agreed (a provider breaking the interval)
  const rate = act.provider.faults.debitNoteRate || 1;
  const ms = Math.max(20, scaledMs(sim, terms.intervalSec * 1000) / rate);
  act.dnTimer = sim.every(ms, () => issueDebitNote(sim, act, false));
}

function finalDebitNote(sim, act) {
  if (act.dnTimer) { clearInterval(act.dnTimer); sim.timers.delete(act.dnTimer); act.dnTimer = null; }
  if (sim.stopped) return; // the daemon is going away, not the activity
  if (act.terms && !act.finalNoteSent) { act.finalNoteSent = true; issueDebitNote(sim, act, true); }
}

function breakAgreement(sim, a, code, message) {
  if (a.state !== 'Approved') return;
  sim.log(`provider ${a.provider.name}: ${message}, breaking agreement ${a.id} (${code})`);
  sim.marketApi.terminate(sim, a, 'Provider', { message, 'golem.provider.code': code });
}

function issueDebitNote(sim, act, final) {
  if (act.state[0] === 'Terminated' && !final) return;
  // A provider cut off from the requestor (vanish, daemon down) cannot deliver notes; past the
  // accept timeout it breaks the agreement (RequestorUnreachable, PROTOCOL.md §9.1).
  if (!require('./relay').linkUp(sim, act.provider)) {
    // ya-provider retries the final note until it gets through (then the invoice may follow);
    // a periodic one is lost, and counts towards RequestorUnreachable.
    if (final) holdFinalNote(sim, act); else requestorUnreachable(sim, act);
    return;
  }
  act.unsentSinceMs = null;
  const a = act.agreement; const p = act.provider; const terms = act.terms;
  const usageVec = act.finalUsage || require('./activity').usage(act);
  const prev = act.notes[act.notes.length - 1];
  // with an agreed payment timeout, a note is payable when that long has passed since the last payable one
  const paymentMs = terms.paymentTimeoutSec ? scaledMs(sim, terms.paymentTimeoutSec * 1000) : null;
  const payable = paymentMs !== null && (final || Date.now() - act.lastPayableMs >= paymentMs);
  if (payable) act.lastPayableMs = Date.now();
  const dateMs = sim.clock.next();
  const d = {
    id: ids.uuid(), issuerId: p.nodeId, recipientId: a.owner, payeeAddr: p.nodeId, payerAddr: terms.payer,
    paymentPlatform: terms.platform, timestamp: isoMs(dateMs), agreementId: a.id, activityId: act.id,
    amount: inflate(cost(terms, usageVec), p.faults.debitNoteFactor), usage: usageVec, status: 'RECEIVED', previousDebitNoteId: prev ? prev.id : null, act,
    paymentDueDate: payable ? isoNs(providerNow(p) + paymentMs) : null,
  };
  act.notes.push(d);
  sim.payment.debitNotes.set(d.id, d);
  docEvent(sim, sim.payment.dnEvents, d, 'RECEIVED');
  if (terms.acceptTimeoutSec !== null) {
    // The provider breaks the agreement if this note (or a later one) is not accepted in time.
    sim.later(scaledMs(sim, terms.acceptTimeoutSec * 1000), () => {
      const idx = act.notes.indexOf(d);
      if (act.notes.slice(idx).some((n) => n.status === 'ACCEPTED' || n.status === 'SETTLED')) return;
      if (a.deadlineBroken) return; // after a DebitNotesDeadline break no further deadline breaks
      a.deadlineBroken = true;
      breakAgreement(sim, a, 'DebitNotesDeadline', `Requestor isn't accepting DebitNotes in time (${fmtDuration(terms.acceptTimeoutSec)})`);
    });
  }
  if (payable) {
    sim.later(paymentMs, () => {
      if (d.status === 'SETTLED') return;
      breakAgreement(sim, a, 'DebitNoteNotPaid', `Requestor didn't pay for DebitNote in time (${fmtDuration(terms.paymentTimeoutSec)})`);
    });
  }
}

/** The payment driver pays an accepted payable note or invoice after settleDelaySec (compressed). */
function settleLater(sim, doc, list) {
  sim.later(scaledMs(sim, sim.opts.settleDelaySec * 1000), () => {
    if (doc.status !== 'ACCEPTED') return;
    doc.status = 'SETTLED';
    docEvent(sim, list, doc, 'SETTLED');
  });
}

function requestorUnreachable(sim, act) {
  const now = Date.now();
  if (!act.unsentSinceMs) act.unsentSinceMs = now;
  // without an agreed accept timeout the provider's own (its offer's) is the limit
  const limitSec = act.terms.acceptTimeoutSec || act.provider.acceptTimeoutSec;
  if (now - act.unsentSinceMs < scaledMs(sim, limitSec * 1000)) return;
  const m = limitSec % 60 === 0 ? `${limitSec / 60}m` : `${limitSec}s`;
  sim.marketApi.terminate(sim, act.agreement, 'Provider', { message: `Requestor is unreachable more than ${m}`, 'golem.provider.code': 'RequestorUnreachable' });
}

function holdFinalNote(sim, act) {
  act.finalNoteHeld = true;
  require('./relay').fromProvider(sim, act.provider, () => {
    act.finalNoteHeld = false;
    issueDebitNote(sim, act, true);
    if (act.agreement.invoiceAfterNotes && !heldNotes(sim, act.agreement)) { act.agreement.invoiceAfterNotes = false; sendInvoice(sim, act.agreement); }
  }, 'payment', { debitNoteFor: act.id });
}

const heldNotes = (sim, a) => [...a.activities].some((id) => { const x = sim.activityApi.activities.get(id); return x && x.finalNoteHeld; });

/** The provider's payment module sends the invoice once every final debit note got through
 *  (FinalizeActivity), retrying while the requestor is unreachable. */
function sendInvoice(sim, a) {
  if (heldNotes(sim, a)) { a.invoiceAfterNotes = true; return; }
  require('./relay').fromProvider(sim, a.provider, () => issueInvoice(sim, a), 'payment', { invoiceFor: a.id });
}

function issueInvoice(sim, a) {
  const pay = sim.payment;
  if ([...pay.invoices.values()].some((i) => i.agreementId === a.id)) return;
  const acts = [...a.activities].map((id) => sim.activityApi.activities.get(id)).filter(Boolean);
  const terms = agreedTerms(a);
  let amount = 0n;
  for (const act of acts) {
    const usageVec = act.finalUsage || require('./activity').usage(act);
    const final = cost(terms, usageVec);
    amount += final > (act.accepted || 0n) ? final : act.accepted;
  }
  amount = inflate(amount, a.provider.faults.invoiceFactor); // fault inflateInvoices
  const dateMs = sim.clock.next();
  const dueMs = providerNow(a.provider) + scaledMs(sim, (terms.paymentTimeoutSec || DAY_SEC) * 1000);
  const i = {
    id: ids.uuid(), issuerId: a.provider.nodeId, recipientId: a.owner, payeeAddr: a.provider.nodeId, payerAddr: terms.payer,
    paymentPlatform: terms.platform, timestamp: isoMs(dateMs), agreementId: a.id, activityIds: acts.map((x) => x.id),
    amount, paymentDueDate: isoNs(dueMs), status: 'RECEIVED', agreement: a,
  };
  pay.invoices.set(i.id, i);
  docEvent(sim, pay.invEvents, i, 'RECEIVED');
}

// ---------------------------------------------------------------- acceptance (yagna's rules, §3.5/§3.6)
function parseAcceptance(sim, c) {
  const b = c.body;
  if (!b || typeof b !== 'object' || b.totalAmountAccepted === undefined || typeof b.allocationId !== 'string') {
    throw sim.invalid(c.req, 'Json deserialize error: expected {totalAmountAccepted, allocationId}');
  }
  let amount;
  try { amount = toWei(b.totalAmountAccepted); } catch (e) { throw sim.invalid(c.req, `Json deserialize error: totalAmountAccepted: ${e.message}`); }
  return { amount, allocationId: b.allocationId };
}
function acceptAlloc(sim, c, allocationId) {
  const a = sim.payment.allocations.get(allocationId);
  if (!a || a.owner !== c.who.identity) throw jsonErr(400, `Allocation ${allocationId} not found`);
  if (a.released || (a.timeoutMs && Date.now() > a.timeoutMs)) throw jsonErr(410, `Allocation ${allocationId} has been released`);
  return a;
}

async function acceptDebitNote(sim, c) {
  const d = getDoc(sim.payment.debitNotes, c);
  const { amount, allocationId } = parseAcceptance(sim, c);
  if (amount !== d.amount) throw jsonErr(400, 'Invalid amount accepted'); // before the status (§8.12)
  if (d.status === 'ACCEPTED' || d.status === 'SETTLED') return { body: null };
  if (d.status === 'CANCELLED') throw jsonErr(400, 'Debit note cancelled');
  const inv = [...sim.payment.invoices.values()].find((i) => i.agreementId === d.agreementId);
  if (inv && inv.status !== 'RECEIVED') return { body: null }; // yagna: 200, nothing spent, note stays RECEIVED
  const alloc = acceptAlloc(sim, c, allocationId);
  const act = d.act;
  const delta = amount > act.accepted ? amount - act.accepted : 0n;
  if (delta > alloc.total - alloc.spent) throw jsonErr(400, `Not enough funds. Allocated: ${fromWei(alloc.total - alloc.spent)} Needed: ${fromWei(delta)}`);
  alloc.spent += delta; alloc.updatedTs = isoNs();
  act.accepted += delta;
  act.agreement.acceptedWei = (act.agreement.acceptedWei || 0n) + delta;
  act.agreement.allocationId = alloc.id;
  d.status = 'ACCEPTED'; d.acceptedAmount = amount; d.allocationId = alloc.id;
  if (d.paymentDueDate) settleLater(sim, d, sim.payment.dnEvents);
  await deliver(sim, c, act.provider, 'Timeout accepting Debit Note on remote Node.');
  return { body: null };
}

async function acceptInvoice(sim, c) {
  const i = getDoc(sim.payment.invoices, c);
  const { amount, allocationId } = parseAcceptance(sim, c);
  if (amount !== i.amount) throw jsonErr(400, 'Invalid amount accepted'); // before the status (§8.12)
  if (i.status === 'ACCEPTED' || i.status === 'SETTLED') return { body: null };
  if (i.status === 'CANCELLED') throw jsonErr(400, 'Invoice cancelled');
  const already = i.agreement.acceptedWei || 0n;
  if (amount < already) throw jsonErr(400, `Invoice is smaller than agreement.total_amount_accepted: ${fromWei(amount)} < ${fromWei(already)}`);
  const alloc = acceptAlloc(sim, c, allocationId);
  const delta = amount - already;
  if (delta > alloc.total - alloc.spent) throw jsonErr(400, `Not enough funds. Allocated: ${fromWei(alloc.total - alloc.spent)} Needed: ${fromWei(delta)}`);
  alloc.spent += delta; alloc.updatedTs = isoNs();
  i.agreement.acceptedWei = amount;
  i.status = 'ACCEPTED'; i.allocationId = alloc.id;
  settleLater(sim, i, sim.payment.invEvents);
  await deliver(sim, c, i.agreement.provider, 'Timeout accepting Invoice on remote Node.');
  return { body: null };
}

/** The message to the provider after the local change (fault paymentStall: a hung delivery → 504). */
async function deliver(sim, c, p, timeoutMessage) {
  const stall = p.faults.paymentStallMs || 0;
  if (!stall) return;
  let timeout = Number(c.query.timeout === undefined ? 15 : c.query.timeout);
  if (!Number.isFinite(timeout) || timeout < 0) timeout = 15;
  if (stall > timeout * 1000) {
    await new Promise((r) => sim.later(timeout * 1000, r));
    throw jsonErr(504, timeoutMessage);
  }
  await new Promise((r) => sim.later(stall, r));
}

// ---------------------------------------------------------------- rejection (§3.6, §8.11)
const REJECTION_REASONS = ['UNSOLICITED_SERVICE', 'BAD_SERVICE', 'INCORRECT_AMOUNT'];
function parseRejection(sim, c) {
  const b = c.body;
  if (!b || typeof b !== 'object' || Array.isArray(b)) throw sim.invalid(c.req, 'Json deserialize error: expected a Rejection object');
  if (!REJECTION_REASONS.includes(b.rejectionReason)) throw sim.invalid(c.req, `Json deserialize error: rejectionReason: unknown variant ${JSON.stringify(b.rejectionReason)}, expected one of ${REJECTION_REASONS.join(', ')}`);
  if (b.totalAmountAccepted === undefined) throw sim.invalid(c.req, 'Json deserialize error: missing field `totalAmountAccepted`');
  let amount;
  try { amount = toWei(b.totalAmountAccepted); } catch (e) { throw sim.invalid(c.req, `Json deserialize error: totalAmountAccepted: ${e.message}`); }
  if (b.message !== undefined && b.message !== null && typeof b.message !== 'string') throw sim.invalid(c.req, 'Json deserialize error: message: expected a string');
  return { rejectionReason: b.rejectionReason, totalAmountAccepted: fromWei(amount), ...(typeof b.message === 'string' ? { message: b.message } : {}) };
}

/** POST /invoices/{id}/reject: no amount check, nothing charged; the provider agent only logs it. */
async function rejectInvoice(sim, c) {
  const i = getDoc(sim.payment.invoices, c);
  const rejection = parseRejection(sim, c);
  if (i.status === 'REJECTED') return { body: null }; // nothing sent again
  if (i.status === 'ACCEPTED') throw jsonErr(400, 'Invoice accepted');
  if (i.status === 'SETTLED') throw jsonErr(400, 'Invoice settled');
  if (i.status === 'CANCELLED') throw jsonErr(400, 'Invoice cancelled');
  i.status = 'REJECTED'; i.rejection = rejection;
  docEvent(sim, sim.payment.invEvents, i, 'REJECTED', { rejection });
  const p = i.agreement.provider;
  await deliver(sim, c, p, 'Timeout rejecting Invoice on remote Node.');
  i.providerStatus = 'REJECTED';
  sim.log(`provider ${p.name}: invoice ${i.id} rejected (${rejection.rejectionReason}, accepts ${rejection.totalAmountAccepted}); ignored`);
  return { body: null };
}

function shutdown(sim) { wakeAll(sim.payment.waiters, 'stop'); }

module.exports = { init, shutdown, dnView, invView, allocView };
