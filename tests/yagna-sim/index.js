#!/usr/bin/env node
'use strict';
// yagna-sim CLI. See README.md. Exports the YagnaSim class for in-process use by tests.
const fs = require('node:fs');
const path = require('node:path');
const { YagnaSim, DEFAULTS } = require('./lib/daemon');
const { imageHash } = require('./lib/images');

const FLAGS = {
  '--port': ['port', Number], '--host': ['host', String], '--appkey': ['appkey', String], '--providers': ['providers', Number],
  '--images': ['images', String], '--config': ['config', String], '--spec-dir': ['specDir', String], '--log': ['log', String],
  '--subnet': ['subnet', String], '--debit-note-interval': ['debitNoteInterval', Number], '--accept-timeout': ['acceptTimeout', Number],
  '--ws-ping-interval-ms': ['wsPingIntervalMs', Number], '--ws-idle-timeout-ms': ['wsIdleTimeoutMs', Number],
  '--tunnel-connect-timeout-ms': ['tunnelConnectTimeoutMs', Number], '--keep-alive-ms': ['keepAliveMs', Number],
  '--balance': ['balance', String], '--registry-url': ['registryUrl', String], '--identity': ['identity', String],
  '--negotiation-delay-ms': ['negotiationDelayMs', Number],
  '--max-agreements': ['maxAgreements', Number], '--idle-agreement-timeout': ['idleAgreementTimeoutSec', Number],
  '--unresponsive-limit': ['unresponsiveLimitSec', Number], '--inactivity-limit': ['inactivityLimitSec', Number],
  '--process-termination-timeout': ['processTerminationTimeoutSec', Number],
  '--min-expiration-sec': ['minExpirationSec', Number], '--tcp-timeout-ms': ['tcpTimeoutMs', Number],
  '--tcp-keep-alive-ms': ['tcpKeepAliveMs', Number], '--vm-fin-timeout-ms': ['vmFinTimeoutMs', Number],
  '--relay-timeout-margin-ms': ['relayTimeoutMarginMs', Number],
  '--vpn-rtt-ms': ['vpnRttMs', Number], '--vpn-jitter-ms': ['vpnJitterMs', Number], '--vpn-rate': ['vpnRate', String],
  '--vm-mode': ['vmMode', String],
  '--payment-timeout': ['paymentTimeout', Number], '--time-scale': ['timeScale', Number], '--settle-delay': ['settleDelaySec', Number],
};
const BOOL = { '--strict': ['strict', true], '--quiet': ['quiet', true], '--no-netns': ['netns', false], '--netns': ['netns', true], '--lenient-negotiation': ['strictNegotiation', false] };

function usage() {
  return `usage: node tests/yagna-sim [--port 7465] --appkey KEY [--providers 5] [--images DIR] [--config FILE]
       [--spec-dir DIR] [--strict] [--quiet] [--log FILE] [--no-netns] [--subnet public]
       [--debit-note-interval SEC] [--accept-timeout SEC] [--ws-ping-interval-ms MS] [--ws-idle-timeout-ms MS]
       [--tunnel-connect-timeout-ms MS] [--keep-alive-ms MS] [--balance GLM] [--registry-url URL]
       [--identity 0x..] [--negotiation-delay-ms MS] [--lenient-negotiation]
       [--max-agreements N] [--idle-agreement-timeout SEC] [--min-expiration-sec SEC]
       [--unresponsive-limit SEC] [--inactivity-limit SEC] [--process-termination-timeout SEC]
       [--tcp-timeout-ms MS] [--tcp-keep-alive-ms MS] [--vm-fin-timeout-ms MS] [--relay-timeout-margin-ms MS]
       [--vpn-rtt-ms MS] [--vpn-jitter-ms MS] [--vpn-rate 2MB/s]
       [--payment-timeout SEC] [--time-scale F] [--settle-delay SEC]
       [--vm-mode process|shared]   shared: SCALE/BENCH MODE, one host process serves every VM's
                                    service (the calc image's API built in; run commands execute nothing)
       node tests/yagna-sim --print-hash IMAGE_DIR
defaults: ${JSON.stringify({ port: DEFAULTS.port, providers: DEFAULTS.providers, debitNoteInterval: DEFAULTS.debitNoteInterval, acceptTimeout: DEFAULTS.acceptTimeout })}`;
}

function parseArgs(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    if (flag === '--help' || flag === '-h') { process.stdout.write(`${usage()}\n`); process.exit(0); }
    if (flag === '--print-hash') { o.printHash = inline !== undefined ? inline : argv[++i]; continue; }
    if (BOOL[flag]) { o[BOOL[flag][0]] = BOOL[flag][1]; continue; }
    const f = FLAGS[flag];
    if (!f) throw new Error(`unknown argument ${a}\n${usage()}`);
    const v = inline !== undefined ? inline : argv[++i];
    if (v === undefined) throw new Error(`${flag} needs a value`);
    o[f[0]] = f[1](v);
    if (f[1] === Number && Number.isNaN(o[f[0]])) throw new Error(`${flag} needs a number`);
  }
  return o;
}

async function main() {
  let args;
  try { args = parseArgs(process.argv.slice(2)); } catch (e) { process.stderr.write(`${e.message}\n`); process.exit(2); }
  if (args.printHash) {
    process.stdout.write(`${imageHash(args.printHash).hash}\n`);
    return;
  }
  let opts = {};
  if (args.config) opts = JSON.parse(fs.readFileSync(args.config, 'utf8'));
  if (opts.images && args.config && !path.isAbsolute(opts.images)) opts.images = path.resolve(path.dirname(args.config), opts.images);
  delete args.config;
  opts = { ...opts, ...args };
  if (!opts.appkey) opts.appkey = process.env.YAGNA_APPKEY;
  if (!opts.appkey) { process.stderr.write(`--appkey is required\n${usage()}\n`); process.exit(2); }
  const sim = new YagnaSim(opts);
  await sim.start();
  for (const img of sim.images.values()) process.stdout.write(`yagna-sim image ${img.name} ${img.hash}\n`);
  process.stdout.write(`yagna-sim spec ${sim.spec ? sim.spec.dir : '(absent: built-in checks only)'}; netns ${sim.netns ? 'on' : 'off (fallback)'}; providers ${sim.providers.length}; vm-mode ${sim.opts.vmMode}${sim.opts.vmMode === 'shared' ? ' (scale/bench mode: VMs run no image, one shared host serves them)' : ''}\n`);
  process.stdout.write(`yagna-sim listening on ${sim.url}\n`);
  let stopping = false;
  const stop = async (sig) => {
    if (stopping) return;
    stopping = true;
    const count = sim.violationCount;
    await sim.stop().catch((e) => process.stderr.write(`stop: ${e.stack || e}\n`));
    if (sim.opts.strict) process.stderr.write(`yagna-sim: ${count} spec violation(s)\n`);
    process.exit(sim.opts.strict && count ? 3 : (sig === 'SIGINT' ? 130 : 0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  // SIGUSR1: the daemon crashes (stays down); SIGUSR2: it restarts (comes back up on the same port).
  process.on('SIGUSR1', () => { sim.crash().catch((e) => process.stderr.write(`crash: ${e.stack || e}\n`)); });
  process.on('SIGUSR2', () => { sim.restart().catch((e) => process.stderr.write(`restart: ${e.stack || e}\n`)); });
  process.on('SIGINT', () => stop('SIGINT'));
}

if (require.main === module) main().catch((e) => { process.stderr.write(`yagna-sim: ${e.stack || e}\n`); process.exit(1); });

module.exports = { YagnaSim, parseArgs };
