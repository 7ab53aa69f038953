#!/usr/bin/env python3
"""bench/coldsplit.py SIM_LOG COLD_RESULT_LINE... -- splits each cold start (e2e_yhc E2E_COLD=1)
into the daemon's and provider's share and yhc's own, from the stand-in's request log.

The daemon/provider share is the union, inside [session_create, first answer], of
- every REST call's time in the daemon (the log's "METHOD path status N ms", ended at its
  timestamp), long polls for events excepted: those wait for news, they do no work;
- the market's answer: demand published to the first offer (those events arrive by long poll);
- the service starting in the VM: from the first refused tunnel probe to the one that connects
  (yhc's probe spacing can add up to one interval; it is counted as the provider's here).
yhc's own share is the rest: its offer window, the gaps between one answer and its next call.
Prints one "e2esplit" raw line per run."""
import re
import sys
from datetime import datetime, timezone

LINE = re.compile(r'^\[yagna-sim (\S+)\] (\S+) (\S+) (\d+) ([0-9.]+)ms')
LONGPOLL = re.compile(r'/events|agreementEvents|debitNoteEvents|invoiceEvents')


def ts(iso):
    return datetime.strptime(iso, '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=timezone.utc).timestamp()


def union(iv):
    tot, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(iv):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                tot += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        tot += cur_e - cur_s
    return tot


def main():
    log = []
    with open(sys.argv[1], errors='replace') as f:
        for line in f:
            m = LINE.match(line)
            if m:
                end = ts(m.group(1))
                log.append((end - float(m.group(5)) / 1000, end, m.group(2), m.group(3), int(m.group(4))))
    for res in sys.argv[2:]:
        kv = dict(t.split('=', 1) for t in res.split() if '=' in t)
        t0, t1 = float(kv['t0_wall']), float(kv['t1_wall'])
        iv = []
        probes = []
        for s, e, method, path, status in log:
            if e < t0 or s > t1:
                continue
            if '/tcp/' in path:
                probes.append((s, e, status))
            elif not LONGPOLL.search(path):
                iv.append((max(s, t0), min(e, t1)))
        setup = float(kv['setup_ms']) / 1000
        market = float(kv['market_ms']) / 1000
        iv.append((t0 + setup, t0 + setup + market))  # demand published ~ session ready: the market
        refused = [p for p in probes if p[2] != 101]
        ok = [p for p in probes if p[2] == 101]
        if refused and ok:
            iv.append((refused[0][0], ok[0][1]))
        total = t1 - t0
        daemon = min(union(iv), total)
        print('e2esplit run=%s strict=%s total_ms=%.0f daemon_provider_ms=%.0f yhc_ms=%.0f' % (
            kv.get('run', '?'), kv.get('strict', '?'), total * 1e3, daemon * 1e3, (total - daemon) * 1e3))


main()
