/* fuzz_url.c -- libFuzzer target for yhc_url_parse: never reads past the input, every part
   it returns lies inside the input, ports are in range, and an accepted URL contains no
   whitespace or control bytes in its authority or target. */
#define YHC_IMPLEMENTATION
#include "yhc.h"

#include <stdlib.h>

static void inside(const char *base, size_t len, yhc_str s) {
  if (s.len && (s.ptr < base || s.ptr + s.len > base + len)) {
    /* the target "/" for an empty path is a literal, not a view */
    if (!(s.len == 1 && s.ptr[0] == '/')) abort();
  }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  char *p = (char *)malloc(size ? size : 1);
  yhc_url u;
  yhc_error e;
  if (!p) return 0;
  memcpy(p, data, size);
  if (yhc_url_parse(p, size, &u, &e) == 0) {
    size_t i;
    inside(p, size, u.scheme);
    inside(p, size, u.host);
    inside(p, size, u.target);
    inside(p, size, u.userinfo);
    inside(p, size, u.fragment);
    if (u.port < 1 || u.port > 65535 || u.host.len == 0 || u.scheme.len == 0) abort();
    for (i = 0; i < u.target.len; i++)
      if ((unsigned char)u.target.ptr[i] <= 0x20 || u.target.ptr[i] == 0x7f) abort();
  } else if (e.code != YHC_ERR_URL || !e.msg[0]) {
    abort();
  }
  free(p);
  return 0;
}
