/* fuzz_http.c -- libFuzzer target for the HTTP response parsers: the head parser (status line
   and header fields), the framing decision, and the chunked decoder, each fed whole and at a
   split point taken from the input. The parsers must never read out of bounds, must agree
   between whole and split feeding, and must keep every view inside the input. */
#define YHC_IMPLEMENTATION
#include "yhc.h"

#include <stdlib.h>

static void check_views(const char *base, size_t len, const yhc_header_view *hv, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    if (hv[i].name.ptr < base || hv[i].name.ptr + hv[i].name.len > base + len) abort();
    if (hv[i].value.ptr < base || hv[i].value.ptr + hv[i].value.len > base + len) abort();
    if (hv[i].name.len == 0) abort();
  }
}

static void fuzz_head(const char *p, size_t len) {
  yhc_header_view hv[32];
  yhc__head h;
  yhc_error e;
  long n = yhc__parse_head(p, len, &h, hv, 32, &e);
  if (n > 0) {
    yhc__req r;
    if ((size_t)n > len) abort();
    if (h.status < 100 || h.status > 999) abort();
    check_views(p, len, hv, h.nheaders);
    /* framing over what was parsed */
    memset(&r, 0, sizeof r);
    r.hv = hv;
    r.nh = h.nheaders;
    r.status = h.status;
    r.minor = h.minor;
    yhc__req_framing(&r, &e);
    /* a complete head is also complete when found by the blank-line scan */
    if (yhc__find_head_end(p, len, 0) == 0) abort();
  }
}

/* Decodes a chunked body in pieces of `step` bytes (keeping unconsumed bytes, as the client
   does) and returns the decoded body's checksum, or -1 on error/incomplete. */
static long long chunked(const char *p, size_t len, size_t step, size_t *body_len) {
  yhc__chunked c;
  size_t have = 0, pos = 0;
  unsigned long long sum = 0;
  memset(&c, 0, sizeof c);
  *body_len = 0;
  while (pos < len || have < len) {
    yhc__chunk_out out;
    yhc_error e;
    long n;
    if (have < len) have = have + step > len ? len : have + step;
    n = yhc__chunk_step(&c, p + pos, have - pos, 16, 4096, pos, &out, &e);
    if (n < 0) return -1;
    if ((size_t)n > have - pos) abort();
    if (out.data) {
      size_t i;
      if (out.data < p + pos || out.data + out.len > p + have) abort();
      for (i = 0; i < out.len; i++) sum = sum * 31 + (unsigned char)out.data[i];
      *body_len += out.len;
    }
    pos += (size_t)n;
    if (out.done) return (long long)(sum & 0x7fffffffffffffffULL);
    if (n == 0 && !out.data && have == len) return -1; /* needs more than there is */
  }
  return -1;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  char *p;
  size_t split, la, lb;
  long long a, b;
  if (size < 1) return 0;
  split = data[0];
  /* an exact-size heap copy: reading one byte past it is an ASan error */
  p = (char *)malloc(size - 1 ? size - 1 : 1);
  if (!p) return 0;
  memcpy(p, data + 1, size - 1);
  fuzz_head(p, size - 1);
  a = chunked(p, size - 1, size, &la);
  b = chunked(p, size - 1, split ? split : 1, &lb);
  if (a != b || (a >= 0 && la != lb)) abort(); /* feeding in pieces must not change the result */
  free(p);
  return 0;
}
