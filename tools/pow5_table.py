#!/usr/bin/env python3
# tools/pow5_table.py -- prints yhc.h's yhc__json_pow5 table: 5^q for q in [-342, 308] as
# 128-bit values with the top bit set, for the Eisel-Lemire number conversion. Positive
# powers are truncated; negative ones are floor(2^b / 5^-q) + 1 (never below the true
# reciprocal), cut to 128 bits. Exact integer arithmetic, so the table is reproducible.
rows = []
for q in range(-342, 309):
    if q < 0:
        p5 = 5 ** -q
        z = p5.bit_length()
        b = z + 127 if q >= -27 else 2 * z + 128
        c = (1 << b) // p5 + 1
        while c >= 1 << 128:
            c >>= 1
    else:
        c = 5 ** q
        while c < 1 << 127:
            c <<= 1
        while c >= 1 << 128:
            c >>= 1
    rows.append("0x%016x, 0x%016x" % (c >> 64, c & (1 << 64) - 1))
for i in range(0, len(rows), 2):
    print("    " + ", ".join(rows[i:i + 2]) + ",")
