#!/usr/bin/env python3
"""Parses an OpenMetrics text exposition with the reference parser (prometheus_client, Debian's
python3-prometheus-client) and prints one line per sample, sorted:

    name{label=value,...} value

Exit 0 when the text parses, 1 with the parser's complaint when it does not, 77 when the
parser is not installed (the caller prints a skip line).

    check_metrics.py FILE      (or - for standard input)
"""
import sys

try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError:
    # Debian's package lands in the system interpreter's path; a python3 of its own (pyenv,
    # a venv) first on PATH does not look there
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
    except ImportError:
        print("prometheus_client not installed (apt-get install python3-prometheus-client)")
        sys.exit(77)


def main():
    src = sys.stdin if sys.argv[1:] in ([], ["-"]) else open(sys.argv[1], encoding="utf-8")
    text = src.read()
    lines = []
    try:
        for fam in text_string_to_metric_families(text):
            lines.append("# family %s %s" % (fam.name, fam.type))
            for s in fam.samples:
                labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
                lines.append("%s{%s} %r" % (s.name, labels, float(s.value)))
    except Exception as e:  # the parser raises ValueError and friends on any deviation
        print("not valid OpenMetrics: %s" % e)
        return 1
    print("\n".join(sorted(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
