/* fuzz_dns.c -- the DNS answer parser, and the resolv.conf and hosts parsers, on any bytes.
   Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -I. fuzz/fuzz_dns.c -o /tmp/fd -lm

   The packet is parsed as the answer to "a.test" (A, then AAAA) with the id it carries, so
   the fuzzer gets past the id check at once and the question echo soon (seeds in
   fuzz/seeds/fuzz_dns). Every parse sees a heap copy of exactly the input, so an overread by
   one byte is an ASan report. An accepted answer must be self-consistent: at most 16
   addresses, all of the asked family, a TTL within 31 bits. */
#define YHC_IMPLEMENTATION
#include "yhc.h"

#include <stdlib.h>

static void check_answer(const yhc__dns_answer *a, unsigned qtype) {
  size_t i;
  if (a->naddrs > YHC__MAX_ADDRS || a->ttl > 0x7fffffffu || a->rcode < 0 || a->rcode > 15) abort();
  if (a->truncated && a->naddrs) abort();
  for (i = 0; i < a->naddrs; i++)
    if (a->addrs[i].family != (qtype == YHC__DNS_A ? 4 : 6)) abort();
  if (a->cnames > YHC__DNS_MAX_CNAMES) abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  unsigned char *copy = (unsigned char *)malloc(size ? size : 1);
  unsigned id = size >= 2 ? (unsigned)data[0] << 8 | data[1] : 0;
  int k;
  if (!copy) return 0;
  if (size) memcpy(copy, data, size);
  for (k = 0; k < 2; k++) {
    unsigned qtype = k ? YHC__DNS_AAAA : YHC__DNS_A;
    yhc__dns_answer a;
    yhc_error e;
    memset(&e, 0, sizeof e);
    if (yhc__dns_parse(copy, size, id, "a.test", qtype, &a, &e) == 0) check_answer(&a, qtype);
    else if (!e.msg[0] || e.offset > size) abort();
  }
  {
    yhc__rconf c;
    yhc_ip out[YHC__MAX_ADDRS];
    memset(&c, 0, sizeof c);
    yhc__rconf_parse(&c, (const char *)copy, size);
    if (c.nns > YHC__NS_MAX || c.nsearch > YHC__SEARCH_MAX) abort();
    if (yhc__hosts_lookup((const char *)copy, size, "a.test", out, YHC__MAX_ADDRS) > YHC__MAX_ADDRS)
      abort();
  }
  free(copy);
  return 0;
}
