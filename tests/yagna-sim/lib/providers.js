'use strict';
// Simulated providers: identity, hardware, prices and the offer they publish (real property keys,
// as in the fixtures), plus per-provider behaviour switches that the fault API changes at run time.
const { ids } = require('./util');
const { outboxView } = require('./relay');

const DEFAULT_PLATFORMS = ['erc20-holesky-tglm', 'erc20-sepolia-tglm', 'erc20-polygon-glm'];
const NAMES = ['golem2004', 'azathoth-rnd', 'smok1', 'nyarlathotep', 'dagon', 'hastur', 'yog-sothoth', 'shub-niggurath', 'cthulhu', 'tsathoggua'];

function defaultsFor(i, sim) {
  const o = sim.opts;
  return {
    name: i < NAMES.length ? NAMES[i] : `sim-provider-${i}`,
    nodeId: ids.node(),
    subnet: o.subnet,
    // linear coefficients follow golem.com.usage.vector: [duration_sec, cpu_sec] + constant
    coeffs: [0.00005 * (1 + i * 0.1), 0.0001 * (1 + i * 0.05), 0],
    cpuThreads: 1 + (i % 4), cpuCores: 6, memGib: 4 + 2 * (i % 3), storageGib: 20 + 10 * (i % 2),
    runtime: 'vm', runtimeVersion: '0.4.2', capabilities: ['vpn'],
    platforms: DEFAULT_PLATFORMS,
    debitNoteIntervalSec: o.debitNoteInterval,
    acceptTimeoutSec: o.acceptTimeout,
    paymentTimeoutSec: o.paymentTimeout,
    cpuFactor: 0.1, // simulated cpu_sec per second of activity
    onCounter: 'draft', // draft | reject | ignore
    onAgreement: 'approve', // approve | reject | ignore
    counterDelayMs: o.negotiationDelayMs,
    approveDelayMs: o.negotiationDelayMs,
    strictNegotiation: o.strictNegotiation,
    timeScale: Number(o.timeScale) || 1, // usage counters run this many times faster (time compression)
    maxAgreements: o.maxAgreements, // max_simultaneous_agreements (ya-provider default 1)
    minExpirationSec: o.minExpirationSec, // shortest golem.srv.comp.expiration ahead the provider accepts
    clockSkewMs: 0, // the provider's clock runs this far ahead of ours (negative: behind)
    idleAgreementTimeoutSec: o.idleAgreementTimeoutSec, // NoActivity break (ya-provider 90 s)
  };
}

/** Run-time faults (admin API); `clear` resets them to these. */
function freshFaults() {
  return {
    failActivityCreate: 0, tunnelDelayMs: 0, terminateAtMs: null, debitNoteFactor: 1,
    vanished: false, vanishMode: 'timeout', unresponsive: false, unresponsivePeriodMs: 1000, unresponsiveSince: 0, unresponsiveCalls: 0,
    slowConnectMs: 0, refuseConnect: false, paymentStallMs: 0,
  };
}

class Provider {
  constructor(i, cfg, sim) {
    Object.assign(this, defaultsFor(i, sim), cfg || {});
    this.index = i;
    this.createdMs = Date.now();
    this.faults = freshFaults();
    this.offerId = ids.subscription();
    this.outbox = []; // provider -> requestor deliveries retried while the link is down (lib/relay.js)
  }

  /** The provider's own clock (ms), skewed by clockSkewMs. */
  now() { return Date.now() + (Number(this.clockSkewMs) || 0); }

  offerProperties() {
    const p = {
      'golem.activity.caps.transfer.protocol': ['http', 'https', 'gftp'],
      'golem.com.payment.debit-notes.accept-timeout?': this.acceptTimeoutSec,
    };
    for (const pl of this.platforms) p[`golem.com.payment.platform.${pl}.address`] = this.nodeId;
    Object.assign(p, {
      'golem.com.payment.protocol.version': '3',
      'golem.com.pricing.model': 'linear',
      'golem.com.pricing.model.linear.coeffs': this.coeffs,
      'golem.com.scheme': 'payu',
      'golem.com.scheme.payu.debit-note.interval-sec?': this.debitNoteIntervalSec,
      'golem.com.scheme.payu.payment-timeout-sec?': this.paymentTimeoutSec,
      'golem.com.usage.vector': ['golem.usage.duration_sec', 'golem.usage.cpu_sec'],
      'golem.inf.cpu.architecture': 'x86_64',
      'golem.inf.cpu.cores': this.cpuCores,
      'golem.inf.cpu.threads': this.cpuThreads,
      'golem.inf.mem.gib': this.memGib,
      'golem.inf.storage.gib': this.storageGib,
      'golem.node.debug.subnet': this.subnet,
      'golem.node.id.name': this.name,
      'golem.runtime.capabilities': this.capabilities,
      'golem.runtime.name': this.runtime,
      'golem.runtime.version': this.runtimeVersion,
      'golem.srv.caps.multi-activity': true,
    });
    return p;
  }

  offerConstraints() {
    return `(&\n  (golem.srv.comp.expiration>${this.createdMs})\n  (golem.node.debug.subnet=${this.subnet})\n)`;
  }

  summary() {
    return {
      index: this.index, name: this.name, nodeId: this.nodeId, subnet: this.subnet, coeffs: this.coeffs,
      runtime: this.runtime, capabilities: this.capabilities, platforms: this.platforms,
      debitNoteIntervalSec: this.debitNoteIntervalSec, acceptTimeoutSec: this.acceptTimeoutSec,
      onCounter: this.onCounter, onAgreement: this.onAgreement, maxAgreements: this.maxAgreements, clockSkewMs: this.clockSkewMs,
      faults: { ...this.faults }, outbox: this.outbox.length, held: outboxView(this),
    };
  }
}

module.exports = { Provider, DEFAULT_PLATFORMS, freshFaults };
