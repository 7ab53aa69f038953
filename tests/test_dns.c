/* test_dns.c -- the resolver layer: the DNS packet parser against hand-built hostile packets,
   the resolv.conf and hosts parsers, and whole lookups over real sockets against dnsmasq on
   loopback (A, AAAA, CNAME chains, NXDOMAIN, REFUSED, truncation to TCP, search list,
   timeouts and failover, IPv6 transport, the cache and its TTL bound) and against a scripted
   server of our own for the answers dnsmasq will not give (SERVFAIL, forged ids, a wrong
   question echo). Also the resolver hook and HTTP requests by name. */
#define YHC_IMPLEMENTATION
#include "yhc.h"
#include "yt.h"
#include "yt_proc.h"

#include <signal.h>
#include <sys/wait.h>

static yhc_loop *L;

/* ================================================================ packet builder */
typedef struct pkt {
  unsigned char b[70000];
  size_t n;
} pkt;

static void put8(pkt *p, unsigned v) { p->b[p->n++] = (unsigned char)v; }
static void put16(pkt *p, unsigned v) { put8(p, v >> 8); put8(p, v & 0xff); }
static void put32(pkt *p, uint32_t v) { put16(p, v >> 16); put16(p, v & 0xffff); }
static void putname(pkt *p, const char *name) {
  while (*name) {
    const char *dot = strchr(name, '.');
    size_t l = dot ? (size_t)(dot - name) : strlen(name);
    put8(p, (unsigned)l);
    memcpy(p->b + p->n, name, l);
    p->n += l;
    name += l + (dot ? 1 : 0);
  }
  put8(p, 0);
}
static void head(pkt *p, unsigned id, unsigned flags, unsigned qd, unsigned an, unsigned ns,
                 unsigned ar) {
  p->n = 0;
  put16(p, id);
  put16(p, flags);
  put16(p, qd);
  put16(p, an);
  put16(p, ns);
  put16(p, ar);
}
static void question(pkt *p, const char *name, unsigned type) {
  putname(p, name);
  put16(p, type);
  put16(p, 1);
}
static void rr_a(pkt *p, unsigned name_ptr, uint32_t ttl, unsigned a, unsigned b, unsigned c,
                 unsigned d) {
  put16(p, 0xc000 | name_ptr);
  put16(p, 1);
  put16(p, 1);
  put32(p, ttl);
  put16(p, 4);
  put8(p, a); put8(p, b); put8(p, c); put8(p, d);
}
/* A standard answer header with one question. */
static void answer_head(pkt *p, unsigned id, unsigned rcode, unsigned an, const char *q, unsigned t) {
  head(p, id, 0x8180 | rcode, 1, an, 0, 0);
  question(p, q, t);
}

static int parse(const pkt *p, unsigned id, const char *q, unsigned t, yhc__dns_answer *a,
                 yhc_error *e) {
  memset(e, 0, sizeof *e);
  return yhc__dns_parse(p->b, p->n, id, q, t, a, e);
}

static void test_query_builder(void) {
  unsigned char b[300];
  char long_label[80], long_name[400];
  size_t n;
  YT_GROUP("DNS query builder");
  n = yhc__dns_build_query(b, sizeof b, 0xbeef, "www.Example.com.", YHC__DNS_AAAA);
  YT_EQ_INT(n, 12 + 17 + 4);
  YT_EQ_INT(b[0], 0xbe);
  YT_EQ_INT(b[1], 0xef);
  YT_EQ_INT(b[2], 0x01); /* RD */
  YT_EQ_INT(b[12], 3);
  YT_CHECK(memcmp(b + 13, "www", 3) == 0);
  YT_EQ_INT(b[n - 3], 28);
  YT_EQ_INT(yhc__dns_build_query(b, sizeof b, 1, "", 1), 0);
  YT_EQ_INT(yhc__dns_build_query(b, sizeof b, 1, ".", 1), 0);
  YT_EQ_INT(yhc__dns_build_query(b, sizeof b, 1, "a..b", 1), 0);
  YT_EQ_INT(yhc__dns_build_query(b, sizeof b, 1, ".a", 1), 0);
  YT_EQ_INT(yhc__dns_build_query(b, sizeof b, 1, "a b", 1), 0);
  YT_EQ_INT(yhc__dns_build_query(b, sizeof b, 1, "a\nb", 1), 0);
  memset(long_label, 'x', 64);
  long_label[64] = 0;
  YT_EQ_INT(yhc__dns_build_query(b, sizeof b, 1, long_label, 1), 0);
  long_label[63] = 0;
  YT_CHECK(yhc__dns_build_query(b, sizeof b, 1, long_label, 1) > 0);
  snprintf(long_name, sizeof long_name, "%s.%s.%s.%s", long_label, long_label, long_label, long_label);
  YT_EQ_INT(yhc__dns_build_query(b, sizeof b, 1, long_name, 1), 0); /* 255 > 253 */
  YT_EQ_INT(yhc__dns_build_query(b, 20, 1, "example.com", 1), 0);   /* no room */
}

static void test_parser_good(void) {
  pkt p;
  yhc__dns_answer a;
  yhc_error e;
  int i;
  YT_GROUP("DNS parser: well-formed answers");
  answer_head(&p, 7, 0, 2, "host.test", 1);
  rr_a(&p, 12, 300, 10, 0, 0, 1);
  rr_a(&p, 12, 60, 10, 0, 0, 2);
  YT_EQ_INT(parse(&p, 7, "HOST.test.", 1, &a, &e), 0);
  YT_EQ_INT(a.rcode, 0);
  YT_EQ_INT(a.naddrs, 2);
  YT_EQ_INT(a.addrs[1].addr[3], 2);
  YT_EQ_INT(a.addrs[0].family, 4);
  YT_EQ_INT(a.ttl, 60);
  /* TTL with the top bit set counts as 0 (RFC 2181) */
  answer_head(&p, 7, 0, 1, "host.test", 1);
  rr_a(&p, 12, 0x80000000u, 10, 0, 0, 1);
  YT_EQ_INT(parse(&p, 7, "host.test", 1, &a, &e), 0);
  YT_EQ_INT(a.ttl, 0);
  /* a CNAME chain given out of order; a record for an unrelated name is ignored */
  answer_head(&p, 9, 0, 4, "a.test", 1);
  {
    size_t b_at, c_at;
    rr_a(&p, 0, 5, 6, 6, 6, 6); /* placeholder, rewritten below */
    p.n -= 16;
    /* c.test A 1.2.3.4 (owner written in full) */
    c_at = p.n;
    putname(&p, "c.test"); put16(&p, 1); put16(&p, 1); put32(&p, 100); put16(&p, 4);
    put8(&p, 1); put8(&p, 2); put8(&p, 3); put8(&p, 4);
    /* b.test CNAME c.test (compressed target) */
    b_at = p.n;
    putname(&p, "b.test"); put16(&p, 5); put16(&p, 1); put32(&p, 50); put16(&p, 2);
    put16(&p, 0xc000 | (unsigned)c_at);
    /* a.test CNAME b.test */
    put16(&p, 0xc000 | 12); put16(&p, 5); put16(&p, 1); put32(&p, 40); put16(&p, 2);
    put16(&p, 0xc000 | (unsigned)b_at);
    /* evil.test A 6.6.6.6: not on the chain */
    putname(&p, "evil.test"); put16(&p, 1); put16(&p, 1); put32(&p, 100); put16(&p, 4);
    put8(&p, 6); put8(&p, 6); put8(&p, 6); put8(&p, 6);
  }
  YT_EQ_INT(parse(&p, 9, "a.test", 1, &a, &e), 0);
  YT_EQ_INT(a.cnames, 2);
  YT_EQ_INT(a.naddrs, 1);
  YT_EQ_INT(a.addrs[0].addr[0], 1);
  YT_EQ_INT(a.ttl, 40);
  /* more addresses than kept: the first 16 */
  answer_head(&p, 1, 0, 40, "many.test", 1);
  for (i = 0; i < 40; i++) rr_a(&p, 12, 30, 10, 0, 0, (unsigned)i);
  YT_EQ_INT(parse(&p, 1, "many.test", 1, &a, &e), 0);
  YT_EQ_INT(a.naddrs, 16);
  YT_EQ_INT(a.addrs[15].addr[3], 15);
  /* NXDOMAIN and a truncated answer */
  answer_head(&p, 2, 3, 0, "nx.test", 28);
  YT_EQ_INT(parse(&p, 2, "nx.test", 28, &a, &e), 0);
  YT_EQ_INT(a.rcode, 3);
  YT_EQ_INT(a.naddrs, 0);
  head(&p, 3, 0x8380, 1, 30, 0, 0); /* TC, counts that the cut packet does not hold */
  question(&p, "big.test", 1);
  YT_EQ_INT(parse(&p, 3, "big.test", 1, &a, &e), 0);
  YT_EQ_INT(a.truncated, 1);
  /* an AAAA answer */
  answer_head(&p, 4, 0, 1, "v6.test", 28);
  put16(&p, 0xc00c); put16(&p, 28); put16(&p, 1); put32(&p, 10); put16(&p, 16);
  for (i = 0; i < 16; i++) put8(&p, i == 15);
  YT_EQ_INT(parse(&p, 4, "v6.test", 28, &a, &e), 0);
  YT_EQ_INT(a.naddrs, 1);
  YT_EQ_INT(a.addrs[0].family, 6);
  YT_EQ_INT(a.addrs[0].addr[15], 1);
}

static void expect_refused(const pkt *p, unsigned id, const char *q, unsigned t, const char *why) {
  yhc__dns_answer a;
  yhc_error e;
  int rc = parse(p, id, q, t, &a, &e);
  YT_CHECKF(rc < 0 && strstr(e.msg, why), "wanted \"%s\", got rc %d \"%s\"", why, rc, e.msg);
}

static void test_parser_hostile(void) {
  pkt p;
  size_t i, full;
  YT_GROUP("DNS parser: hostile packets");
  head(&p, 1, 0x8180, 1, 0, 0, 0);
  p.n = 11;
  expect_refused(&p, 1, "x.test", 1, "shorter than its header");
  answer_head(&p, 1, 0, 0, "x.test", 1);
  expect_refused(&p, 2, "x.test", 1, "is not ours");
  head(&p, 1, 0x0100, 1, 0, 0, 0); /* a query, not an answer */
  question(&p, "x.test", 1);
  expect_refused(&p, 1, "x.test", 1, "not an answer");
  head(&p, 1, 0x8180 | (2 << 11), 1, 0, 0, 0); /* opcode STATUS */
  question(&p, "x.test", 1);
  expect_refused(&p, 1, "x.test", 1, "not an answer");
  head(&p, 1, 0x8180, 2, 0, 0, 0);
  question(&p, "x.test", 1);
  question(&p, "x.test", 1);
  expect_refused(&p, 1, "x.test", 1, "2 questions");
  head(&p, 1, 0x8183, 0, 0, 0, 0); /* no question echoed, even with an error code */
  expect_refused(&p, 1, "x.test", 1, "0 questions");
  answer_head(&p, 1, 0, 0, "y.test", 1);
  expect_refused(&p, 1, "x.test", 1, "another question");
  answer_head(&p, 1, 0, 0, "x.test", 28);
  expect_refused(&p, 1, "x.test", 1, "another question");
  head(&p, 1, 0x8180, 1, 0, 0, 0);
  putname(&p, "x.test"); put16(&p, 1); put16(&p, 3); /* class CH */
  expect_refused(&p, 1, "x.test", 1, "another question");
  answer_head(&p, 1, 0, 1, "x.test", 1);
  p.n -= 2;
  expect_refused(&p, 1, "x.test", 1, "question cut short");
  /* counts that cannot fit */
  answer_head(&p, 1, 0, 1000, "x.test", 1);
  rr_a(&p, 12, 1, 1, 1, 1, 1);
  expect_refused(&p, 1, "x.test", 1, "do not fit");
  answer_head(&p, 1, 0, 1, "x.test", 1);
  p.b[9] = 5; /* NSCOUNT 5 with nothing there */
  rr_a(&p, 12, 1, 1, 1, 1, 1);
  expect_refused(&p, 1, "x.test", 1, "do not fit");
  /* too many records */
  answer_head(&p, 1, 0, 300, "x.test", 1);
  for (i = 0; i < 300; i++) rr_a(&p, 12, 1, 1, 1, 1, 1);
  expect_refused(&p, 1, "x.test", 1, "limit 256");
  /* an A record of 5 bytes */
  answer_head(&p, 1, 0, 1, "x.test", 1);
  put16(&p, 0xc00c); put16(&p, 1); put16(&p, 1); put32(&p, 1); put16(&p, 5);
  put32(&p, 0); put8(&p, 0);
  expect_refused(&p, 1, "x.test", 1, "A record of 5 bytes");
  /* record data past the end */
  answer_head(&p, 1, 0, 1, "x.test", 1);
  put16(&p, 0xc00c); put16(&p, 1); put16(&p, 1); put32(&p, 1); put16(&p, 400);
  put32(&p, 0);
  expect_refused(&p, 1, "x.test", 1, "past the end");
  /* compression: pointing forwards, at itself, and two pointers at each other */
  answer_head(&p, 1, 0, 1, "x.test", 1);
  put16(&p, 0xc000 | (unsigned)(p.n + 2)); put16(&p, 1); put16(&p, 1); put32(&p, 1); put16(&p, 4);
  put32(&p, 0);
  expect_refused(&p, 1, "x.test", 1, "does not point backwards");
  answer_head(&p, 1, 0, 1, "x.test", 1);
  put16(&p, 0xc000 | (unsigned)p.n); put16(&p, 1); put16(&p, 1); put32(&p, 1); put16(&p, 4);
  put32(&p, 0);
  expect_refused(&p, 1, "x.test", 1, "does not point backwards");
  answer_head(&p, 1, 0, 2, "x.test", 1);
  {
    size_t first = p.n;
    put8(&p, 1); put8(&p, 'a'); put16(&p, 0xc000 | (unsigned)(first + 16)); /* a.<next> */
    put16(&p, 1); put16(&p, 1); put32(&p, 1); put16(&p, 4); put32(&p, 0);
    put8(&p, 1); put8(&p, 'b'); put16(&p, 0xc000 | (unsigned)first);       /* b.<first> */
    put16(&p, 1); put16(&p, 1); put32(&p, 1); put16(&p, 4); put32(&p, 0);
  }
  expect_refused(&p, 1, "x.test", 1, "does not point backwards");
  /* a pointer in the question to the header */
  head(&p, 1, 0x8180, 1, 0, 0, 0);
  put16(&p, 0xc002); put16(&p, 1); put16(&p, 1);
  expect_refused(&p, 1, "x.test", 1, "");
  /* extended label types, a label past the end, a name over 255 bytes, a dot in a label */
  head(&p, 1, 0x8180, 1, 0, 0, 0);
  put8(&p, 0x41); put8(&p, 0); put16(&p, 1); put16(&p, 1);
  expect_refused(&p, 1, "x.test", 1, "label type");
  head(&p, 1, 0x8180, 1, 0, 0, 0);
  put8(&p, 40); put8(&p, 'x');
  expect_refused(&p, 1, "x.test", 1, "label runs past");
  head(&p, 1, 0x8180, 1, 0, 0, 0);
  for (i = 0; i < 5; i++) {
    put8(&p, 60);
    memset(p.b + p.n, 'a', 60);
    p.n += 60;
  }
  put8(&p, 0); put16(&p, 1); put16(&p, 1);
  expect_refused(&p, 1, "x.test", 1, "longer than 255");
  head(&p, 1, 0x8180, 1, 0, 0, 0);
  put8(&p, 3); put8(&p, 'x'); put8(&p, '.'); put8(&p, 't'); put8(&p, 0); put16(&p, 1); put16(&p, 1);
  expect_refused(&p, 1, "x.t", 1, "holds byte 0x2e");
  /* a CNAME loop and an over-long chain */
  answer_head(&p, 1, 0, 2, "x.test", 1);
  {
    size_t y_at;
    put16(&p, 0xc00c); put16(&p, 5); put16(&p, 1); put32(&p, 1); put16(&p, 4);
    y_at = p.n;
    put8(&p, 1); put8(&p, 'y'); put16(&p, 0xc00c + 2); /* y.test */
    put16(&p, 0xc000 | (unsigned)y_at); put16(&p, 5); put16(&p, 1); put32(&p, 1); put16(&p, 2);
    put16(&p, 0xc00c);
  }
  expect_refused(&p, 1, "x.test", 1, "CNAME chain longer than 16");
  /* CNAME data with bytes after the name */
  answer_head(&p, 1, 0, 1, "x.test", 1);
  put16(&p, 0xc00c); put16(&p, 5); put16(&p, 1); put32(&p, 1); put16(&p, 3);
  put16(&p, 0xc00c); put8(&p, 0);
  expect_refused(&p, 1, "x.test", 1, "bytes after the name");
  /* every proper prefix of a good answer is refused, never read past */
  answer_head(&p, 5, 0, 2, "host.test", 1);
  rr_a(&p, 12, 300, 10, 0, 0, 1);
  rr_a(&p, 12, 60, 10, 0, 0, 2);
  full = p.n;
  {
    int bad = 0;
    unsigned char *copy = (unsigned char *)malloc(full);
    for (i = 0; i < full; i++) {
      yhc__dns_answer a;
      yhc_error e;
      memcpy(copy, p.b, i); /* a heap copy of exactly i bytes: ASan sees any overread */
      if (yhc__dns_parse(copy, i, 5, "host.test", 1, &a, &e) == 0) bad++;
    }
    free(copy);
    YT_EQ_INT(bad, 0);
  }
}

static void test_conf_parsers(void) {
  yhc__rconf c;
  yhc_ip out[16];
  const char *conf =
      "# comment\n; another\nnameserver 10.0.0.1\nnameserver ::1\n"
      "nameserver 10.0.0.3\nnameserver 10.0.0.4\nnameserver bogus\n"
      "domain first.example\nsearch a.example b.example.\t c.example\r\n"
      "options rotate ndots:3 timeout:99 attempts:0\n";
  const char *hosts =
      "127.0.0.1 localhost\n::1 ip6-localhost\n"
      "fd00::7 Both.Example\n10.9.9.9 other both.example # trailing comment\n"
      "# 10.6.6.6 both.example\n10.8.8.8\tBOTH.example.\n";
  size_t n;
  YT_GROUP("resolv.conf and hosts parsers");
  memset(&c, 0, sizeof c);
  yhc__rconf_parse(&c, conf, strlen(conf));
  YT_EQ_INT(c.nns, 3);
  YT_EQ_INT(c.ns[1].family, 6);
  YT_EQ_INT(c.ns[2].addr[3], 3);
  YT_EQ_INT(c.ns_port[0], 53);
  YT_EQ_INT(c.nsearch, 3);
  YT_EQ_STR(c.search[1], "b.example");
  YT_EQ_INT(c.ndots, 3);
  YT_EQ_INT(c.timeout_ms, 30000);
  YT_EQ_INT(c.attempts, 1);
  memset(&c, 0, sizeof c);
  yhc__rconf_add_server(&c, "[::1]:5353");
  yhc__rconf_add_server(&c, "127.0.0.1:54");
  yhc__rconf_add_server(&c, "127.0.0.1:0");
  yhc__rconf_add_server(&c, "[::1");
  YT_EQ_INT(c.nns, 2);
  YT_EQ_INT(c.ns_port[0], 5353);
  YT_EQ_INT(c.ns_port[1], 54);
  n = yhc__hosts_lookup(hosts, strlen(hosts), "both.example", out, 16);
  YT_EQ_INT(n, 3);
  YT_EQ_INT(out[0].addr[1], 9);  /* IPv4 lines first, in file order */
  YT_EQ_INT(out[1].addr[1], 8);
  YT_EQ_INT(out[2].family, 6);
  YT_EQ_INT(yhc__hosts_lookup(hosts, strlen(hosts), "nothere", out, 16), 0);
  YT_EQ_INT(yhc__hosts_lookup(hosts, strlen(hosts), "both.example", out, 1), 1);
}

/* ================================================================ lookups */
typedef struct answer {
  int done;
  yhc_err err;
  char msg[256];
  yhc_ip addrs[16];
  size_t n;
  long long at;
} answer;

static int in_call; /* set while yhc_resolve()/yhc_http_request() runs */
static int answered_inside;

static void on_answer(void *user, yhc_err err, const char *msg, const yhc_ip *addrs, size_t n) {
  answer *a = (answer *)user;
  if (in_call) answered_inside++;
  a->done = 1;
  a->err = err;
  snprintf(a->msg, sizeof a->msg, "%s", msg ? msg : "");
  a->n = n;
  if (n) memcpy(a->addrs, addrs, n * sizeof *addrs);
  a->at = yt_now_ms();
}

static int turn_until(yhc_loop *loop, const int *flag, int ms) {
  long long end = yt_now_ms() + ms;
  while (!*flag && yt_now_ms() < end) yhc_loop_poll(loop, 50);
  return *flag;
}

static void resolve(yhc_loop *loop, const char *host, answer *a) {
  memset(a, 0, sizeof *a);
  in_call = 1;
  YT_CHECK(yhc_resolve(loop, host, on_answer, a) != 0);
  in_call = 0;
  YT_CHECKF(!a->done, "%s answered inside yhc_resolve()", host);
  YT_CHECKF(turn_until(loop, &a->done, 15000), "%s: no answer", host);
}

static const char *ip_text(const yhc_ip *ip, char *buf) {
  inet_ntop(ip->family == 6 ? AF_INET6 : AF_INET, ip->addr, buf, 64);
  return buf;
}

#define EXPECT_IP(a, i, text)                                                             \
  do {                                                                                    \
    char b_[64];                                                                          \
    YT_CHECKF((a)->n > (size_t)(i) && !strcmp(ip_text(&(a)->addrs[i], b_), text),         \
              "address %d is %s, wanted %s", (int)(i), (a)->n > (size_t)(i) ? b_ : "none", \
              text);                                                                      \
  } while (0)

static yhc_loop *loop_with(const char *servers, const char *search, int timeout_ms,
                           int attempts, yhc_clock_fn clock) {
  yhc_loop_desc ld;
  memset(&ld, 0, sizeof ld);
  ld.resolver.nameservers = servers;
  ld.resolver.search = search;
  ld.resolver.hosts_file = "";
  ld.resolver.resolv_conf = "/nonexistent";
  ld.resolver.timeout_ms = timeout_ms;
  ld.resolver.attempts = attempts;
  ld.clock = clock;
  return yhc_loop_create(&ld);
}

static void test_at_once(void) {
  answer a;
  yhc_loop_desc ld;
  yhc_loop *l;
  FILE *f = fopen("build/test_dns.hosts", "w");
  YT_GROUP("answers known at once: numeric, localhost, hosts file");
  YT_CHECK(f != NULL);
  if (!f) return;
  fprintf(f, "# test hosts\n10.20.30.40 Named.Example other\nfd00::40 named.example\n");
  fclose(f);
  memset(&ld, 0, sizeof ld);
  ld.resolver.hosts_file = "build/test_dns.hosts";
  ld.resolver.nameservers = "127.0.0.1:9"; /* never asked */
  ld.resolver.resolv_conf = "/nonexistent";
  l = yhc_loop_create(&ld);
  resolve(l, "192.0.2.7", &a);
  YT_EQ_INT(a.err, YHC_ERR_OK);
  EXPECT_IP(&a, 0, "192.0.2.7");
  resolve(l, "::1", &a);
  EXPECT_IP(&a, 0, "::1");
  resolve(l, "LocalHost", &a);
  YT_EQ_INT(a.n, 2);
  EXPECT_IP(&a, 0, "127.0.0.1");
  EXPECT_IP(&a, 1, "::1");
  resolve(l, "api.localhost.", &a);
  EXPECT_IP(&a, 0, "127.0.0.1");
  resolve(l, "named.EXAMPLE", &a);
  YT_EQ_INT(a.n, 2);
  EXPECT_IP(&a, 0, "10.20.30.40");
  EXPECT_IP(&a, 1, "fd00::40");
  resolve(l, "bad name", &a);
  YT_EQ_INT(a.err, YHC_ERR_DNS);
  YT_CHECKF(strstr(a.msg, "not a valid host name") != NULL, "%s", a.msg);
  resolve(l, "", &a);
  YT_EQ_INT(a.err, YHC_ERR_DNS);
  YT_EQ_INT(answered_inside, 0);
  {
    /* cancelled before the loop turns: never answered */
    answer c;
    uint64_t id;
    memset(&c, 0, sizeof c);
    id = yhc_resolve(l, "10.1.1.1", on_answer, &c);
    YT_EQ_INT(yhc_resolve_cancel(l, id), 1);
    YT_EQ_INT(yhc_resolve_cancel(l, id), 0);
    yhc_loop_poll(l, 10);
    YT_EQ_INT(c.done, 0);
  }
  yhc_loop_destroy(l);
}

/* ---- dnsmasq */
static pid_t dnsmasq_pid;
static int dns_port;

static int free_udp_port(void) {
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  int fd = socket(AF_INET, SOCK_DGRAM, 0), port = 0;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
      getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
    port = ntohs(sa.sin_port);
  close(fd);
  return port;
}

static const char *dnsmasq_path(void) {
  static const char *const c[] = {"/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq"};
  size_t i;
  for (i = 0; i < sizeof c / sizeof c[0]; i++)
    if (access(c[i], X_OK) == 0) return c[i];
  return NULL;
}

/* Starts dnsmasq on 127.0.0.1 and ::1 with the test zone; 0 when it answers. */
static int dnsmasq_start(void) {
  char port_arg[32], addn[4200], cwd[4096];
  const char *exe = dnsmasq_path();
  FILE *f;
  int i, attempt;
  if (!exe) return -1;
  f = fopen("build/test_dns.big", "w");
  if (!f) return -1;
  for (i = 1; i <= 60; i++) fprintf(f, "10.0.1.%d big.test\n", i);
  fclose(f);
  /* dnsmasq works from /: the file's path must be absolute */
  if (!getcwd(cwd, sizeof cwd)) return -1;
  snprintf(addn, sizeof addn, "--addn-hosts=%s/build/test_dns.big", cwd);
  for (attempt = 0; attempt < 5; attempt++) {
    answer a;
    yhc_loop *l;
    char servers[64];
    dns_port = free_udp_port();
    snprintf(port_arg, sizeof port_arg, "--port=%d", dns_port);
    dnsmasq_pid = fork();
    if (dnsmasq_pid == 0) {
      int devnull = open("/dev/null", O_RDWR);
      dup2(devnull, 0);
      dup2(devnull, 1);
      if (!getenv("YHC_TEST_LOG")) dup2(devnull, 2);
      execl(exe, exe, "-k", "--conf-file=/dev/null", port_arg, "--listen-address=127.0.0.1,::1",
            "--bind-interfaces", "--no-resolv", "--no-hosts", "--local=/test/", "--local-ttl=60",
            "--host-record=web.test,127.0.0.1", "--host-record=v6.test,fd00::1",
            "--host-record=both.test,10.0.0.1,fd00::2", "--cname=c1.test,c2.test",
            "--cname=c2.test,c3.test", "--cname=c3.test,both.test", addn, "--user=root",
            "--pid-file=", (char *)NULL);
      _exit(127);
    }
    /* ready when it answers */
    snprintf(servers, sizeof servers, "127.0.0.1:%d", dns_port);
    l = loop_with(servers, "", 200, 1, NULL);
    for (i = 0; i < 25; i++) { /* a probe, not a check: how soon it answers varies */
      memset(&a, 0, sizeof a);
      if (yhc_resolve(l, "web.test", on_answer, &a)) turn_until(l, &a.done, 2000);
      if (a.err == YHC_ERR_OK) break;
      yt_sleep_ms(100);
    }
    yhc_loop_destroy(l);
    if (a.err == YHC_ERR_OK) return 0;
    kill(dnsmasq_pid, SIGKILL);
    waitpid(dnsmasq_pid, NULL, 0);
    dnsmasq_pid = 0;
  }
  return -1;
}

static void dnsmasq_stop(void) {
  if (dnsmasq_pid <= 0) return;
  kill(dnsmasq_pid, SIGTERM);
  waitpid(dnsmasq_pid, NULL, 0);
  dnsmasq_pid = 0;
}

static long long clock_skew;
static uint64_t skewed_clock(void *user) {
  (void)user;
  return (uint64_t)(yt_now_ms() + clock_skew);
}

static void test_dnsmasq(void) {
  answer a, b;
  yhc_loop *l;
  char servers[128];
  long long t0;
  int silent;
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  YT_GROUP("lookups against dnsmasq");
  snprintf(servers, sizeof servers, "127.0.0.1:%d", dns_port);
  l = loop_with(servers, "test", 1000, 2, skewed_clock);
  resolve(l, "web.test", &a);
  YT_EQ_INT(a.err, YHC_ERR_OK);
  YT_EQ_INT(a.n, 1);
  EXPECT_IP(&a, 0, "127.0.0.1");
  resolve(l, "v6.test", &a);
  YT_EQ_INT(a.n, 1);
  EXPECT_IP(&a, 0, "fd00::1");
  resolve(l, "both.test", &a);
  YT_EQ_INT(a.n, 2);
  EXPECT_IP(&a, 0, "10.0.0.1");
  EXPECT_IP(&a, 1, "fd00::2");
  resolve(l, "c1.test", &a); /* c1 -> c2 -> c3 -> both */
  YT_EQ_INT(a.err, YHC_ERR_OK);
  YT_EQ_INT(a.n, 2);
  EXPECT_IP(&a, 0, "10.0.0.1");
  resolve(l, "nx.test", &a);
  YT_EQ_INT(a.err, YHC_ERR_DNS);
  YT_CHECKF(strstr(a.msg, "NXDOMAIN") && strstr(a.msg, "nx.test"), "%s", a.msg);
  resolve(l, "web", &a); /* no dot: the search list first */
  YT_EQ_INT(a.err, YHC_ERR_OK);
  EXPECT_IP(&a, 0, "127.0.0.1");
  resolve(l, "big.test", &a); /* 60 addresses: truncated over UDP, asked again over TCP */
  YT_CHECKF(a.err == YHC_ERR_OK, "%s", a.msg);
  YT_EQ_INT(a.n, 16);
  YT_CHECK(a.n && a.addrs[0].family == 4 && a.addrs[0].addr[0] == 10 && a.addrs[0].addr[2] == 1);
  resolve(l, "host.other", &a); /* outside dnsmasq's zone: REFUSED */
  YT_EQ_INT(a.err, YHC_ERR_DNS);
  YT_CHECKF(strstr(a.msg, "server failure") != NULL, "%s", a.msg);
  {
    /* two askers share one lookup; one cancels, the other is still answered */
    uint64_t id1, id2;
    yhc__resolver *r = l->resolver;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    id1 = yhc_resolve(l, "both.test.", on_answer, &a);
    id2 = yhc_resolve(l, "BOTH.test.", on_answer, &b);
    YT_CHECK(r->queries && !r->queries->next);
    YT_EQ_INT(yhc_resolve_cancel(l, id1), 1);
    YT_CHECK(r->queries != NULL);
    YT_CHECK(turn_until(l, &b.done, 5000));
    YT_EQ_INT(a.done, 0);
    YT_EQ_INT(b.n, 2);
    /* cancelling every asker stops the lookup */
    id1 = yhc_resolve(l, "c2.test.", on_answer, &a);
    YT_CHECK(r->queries != NULL);
    yhc_resolve_cancel(l, id1);
    YT_CHECK(r->queries == NULL);
    (void)id2;
  }
  /* the cache: answers stay after the server is gone, until their TTL (60 s) runs out */
  resolve(l, "both.test", &a);
  YT_EQ_INT(a.n, 2);
  yhc_loop_destroy(l);

  /* IPv6 transport to the nameserver */
  snprintf(servers, sizeof servers, "[::1]:%d", dns_port);
  l = loop_with(servers, "", 1000, 1, NULL);
  resolve(l, "both.test", &a);
  YT_EQ_INT(a.err, YHC_ERR_OK);
  YT_EQ_INT(a.n, 2);
  yhc_loop_destroy(l);

  /* a server that never answers: the next one is tried after one timeout */
  silent = socket(AF_INET, SOCK_DGRAM, 0);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(silent, (struct sockaddr *)&sa, sizeof sa);
  getsockname(silent, (struct sockaddr *)&sa, &len);
  snprintf(servers, sizeof servers, "127.0.0.1:%d 127.0.0.1:%d", ntohs(sa.sin_port), dns_port);
  l = loop_with(servers, "", 300, 1, NULL);
  t0 = yt_now_ms();
  resolve(l, "web.test", &a);
  YT_EQ_INT(a.err, YHC_ERR_OK);
  YT_CHECKF(a.at - t0 >= 290, "answered after %lld ms, before the first server's timeout",
            a.at - t0);
  yhc_loop_destroy(l);
  /* only the silent one: every try times out, and the lookup ends within its bound */
  snprintf(servers, sizeof servers, "127.0.0.1:%d", ntohs(sa.sin_port));
  l = loop_with(servers, "", 200, 3, NULL);
  t0 = yt_now_ms();
  resolve(l, "web.test", &a);
  YT_EQ_INT(a.err, YHC_ERR_DNS);
  YT_CHECKF(strstr(a.msg, "no DNS answer after 3 tries") != NULL, "%s", a.msg);
  YT_CHECKF(a.at - t0 >= 590 && a.at - t0 < 5000, "took %lld ms", a.at - t0);
  yhc_loop_destroy(l);
  /* destroying the loop while a lookup waits frees it (ASan and valgrind watch) */
  l = loop_with(servers, "", 5000, 1, NULL);
  memset(&a, 0, sizeof a);
  YT_CHECK(yhc_resolve(l, "web.test", on_answer, &a) != 0);
  yhc_loop_poll(l, 20);
  yhc_loop_destroy(l);
  YT_EQ_INT(a.done, 0);
  close(silent);
}

/* The cache outlives the server, up to the TTL bound. */
static void test_cache(void) {
  answer a;
  yhc_loop_desc ld;
  yhc_loop *l;
  char servers[64];
  YT_GROUP("cache and its TTL bound");
  snprintf(servers, sizeof servers, "127.0.0.1:%d", dns_port);
  memset(&ld, 0, sizeof ld);
  ld.resolver.nameservers = servers;
  ld.resolver.hosts_file = "";
  ld.resolver.resolv_conf = "/nonexistent";
  ld.resolver.timeout_ms = 200;
  ld.resolver.attempts = 1;
  ld.resolver.max_ttl_s = 30; /* below dnsmasq's 60 */
  ld.clock = skewed_clock;
  clock_skew = 0;
  l = yhc_loop_create(&ld);
  resolve(l, "v6.test", &a);
  YT_EQ_INT(a.err, YHC_ERR_OK);
  dnsmasq_stop();
  clock_skew = 15000; /* well inside the 30 s bound, however slow stopping dnsmasq was */
  resolve(l, "v6.test", &a);
  YT_EQ_INT(a.err, YHC_ERR_OK);
  EXPECT_IP(&a, 0, "fd00::1");
  clock_skew = 30500; /* past the bound: asked again, and nobody answers */
  resolve(l, "v6.test", &a);
  YT_EQ_INT(a.err, YHC_ERR_DNS);
  yhc_loop_destroy(l);
  clock_skew = 0;
}

/* ---- a scripted server for what dnsmasq will not say: its first label picks the script */
static pid_t scripted_pid;
static int scripted_port;

static void scripted_serve(int fd) {
  unsigned char q[512];
  for (;;) {
    struct sockaddr_storage from;
    socklen_t flen = sizeof from;
    ssize_t n = recvfrom(fd, q, sizeof q, 0, (struct sockaddr *)&from, &flen);
    pkt p;
    size_t qend;
    unsigned id, qtype;
    char label[64];
    if (n < 17) continue;
    id = (unsigned)q[0] << 8 | q[1];
    memcpy(label, q + 13, q[12] < 63 ? q[12] : 63);
    label[q[12] < 63 ? q[12] : 63] = 0;
    for (qend = 12; qend < (size_t)n && q[qend]; qend += q[qend] + 1) {}
    qend += 5;
    if (qend > (size_t)n) continue;
    qtype = (unsigned)q[qend - 4] << 8 | q[qend - 3];
#define SEND() sendto(fd, p.b, p.n, 0, (struct sockaddr *)&from, flen)
    if (!strcmp(label, "servfail")) {
      head(&p, id, 0x8182, 1, 0, 0, 0);
      memcpy(p.b + 12, q + 12, qend - 12);
      p.n = qend;
      SEND();
    } else if (!strcmp(label, "forged")) {
      /* a wrong id, then the right id with another question, then garbage, then the truth */
      head(&p, id ^ 1, 0x8180, 1, qtype == 1, 0, 0);
      memcpy(p.b + 12, q + 12, qend - 12);
      p.n = qend;
      if (qtype == 1) rr_a(&p, 12, 60, 6, 6, 6, 6);
      SEND();
      answer_head(&p, id, 0, qtype == 1, "other.test", qtype);
      if (qtype == 1) rr_a(&p, 12, 60, 6, 6, 6, 7);
      SEND();
      p.n = 5;
      SEND();
      head(&p, id, 0x8180, 1, qtype == 1, 0, 0);
      memcpy(p.b + 12, q + 12, qend - 12);
      p.n = qend;
      if (qtype == 1) rr_a(&p, 12, 60, 192, 0, 2, 1);
      SEND();
    } else if (!strcmp(label, "loop")) {
      head(&p, id, 0x8180, 1, 1, 0, 0);
      memcpy(p.b + 12, q + 12, qend - 12);
      p.n = qend;
      put16(&p, 0xc000 | (unsigned)p.n); put16(&p, qtype); put16(&p, 1); put32(&p, 1);
      put16(&p, 4); put32(&p, 0);
      SEND();
    }
    /* anything else: silence */
#undef SEND
  }
}

static int scripted_start(void) {
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
    return -1;
  scripted_port = ntohs(sa.sin_port);
  scripted_pid = fork();
  if (scripted_pid == 0) {
    scripted_serve(fd);
    _exit(0);
  }
  close(fd);
  return scripted_pid > 0 ? 0 : -1;
}

static void test_scripted(void) {
  answer a;
  yhc_loop *l;
  char servers[64];
  YT_GROUP("a scripted server: SERVFAIL, forgeries, a compression loop");
  if (scripted_start() < 0) {
    YT_CHECK(0);
    return;
  }
  snprintf(servers, sizeof servers, "127.0.0.1:%d", scripted_port);
  l = loop_with(servers, "", 500, 2, NULL);
  resolve(l, "servfail.test", &a);
  YT_EQ_INT(a.err, YHC_ERR_DNS);
  YT_CHECKF(strstr(a.msg, "server failure (2 of 2 tries") != NULL, "%s", a.msg);
  resolve(l, "forged.test", &a);
  YT_EQ_INT(a.err, YHC_ERR_OK);
  YT_EQ_INT(a.n, 1);
  EXPECT_IP(&a, 0, "192.0.2.1");
  resolve(l, "loop.test", &a); /* refused packets are waited past, until the tries run out */
  YT_EQ_INT(a.err, YHC_ERR_DNS);
  YT_CHECKF(strstr(a.msg, "no DNS answer") != NULL, "%s", a.msg);
  yhc_loop_destroy(l);
  kill(scripted_pid, SIGKILL);
  waitpid(scripted_pid, NULL, 0);
}

/* ---- the resolver hook */
typedef struct hook_state {
  yhc_loop *loop;
  int starts, cancels;
  yhc_resolve_query *pending;
  uint64_t timer;
} hook_state;

static void hook_answer_later(void *user) {
  hook_state *h = (hook_state *)user;
  yhc_ip ip;
  memset(&ip, 0, sizeof ip);
  ip.family = 4;
  ip.addr[0] = 198; ip.addr[1] = 51; ip.addr[2] = 100; ip.addr[3] = 9;
  h->timer = 0;
  yhc_resolve_done(h->pending, YHC_ERR_OK, NULL, &ip, 1, 0);
  h->pending = NULL;
}

static int hook_start(void *user, yhc_resolve_query *q, const char *host) {
  hook_state *h = (hook_state *)user;
  h->starts++;
  if (!strcmp(host, "now.hook")) { /* answered from inside start */
    yhc_ip ip;
    memset(&ip, 0, sizeof ip);
    ip.family = 6;
    ip.addr[15] = 5;
    yhc_resolve_done(q, YHC_ERR_OK, NULL, &ip, 1, 60);
    return 0;
  }
  if (!strcmp(host, "fail.hook")) {
    yhc_resolve_done(q, YHC_ERR_DNS, "the platform says no", NULL, 0, 0);
    return 0;
  }
  if (!strcmp(host, "refuse.hook")) return -1;
  h->pending = q;
  h->timer = yhc_timer_add(h->loop, 20, hook_answer_later, h);
  return 0;
}

static void hook_cancel(void *user, yhc_resolve_query *q) {
  hook_state *h = (hook_state *)user;
  if (q == h->pending) {
    yhc_timer_cancel(h->loop, h->timer);
    h->pending = NULL;
  }
  h->cancels++;
}

static void test_hook(void) {
  hook_state h;
  yhc_loop_desc ld;
  answer a;
  uint64_t id;
  YT_GROUP("resolver hook");
  memset(&h, 0, sizeof h);
  memset(&ld, 0, sizeof ld);
  ld.resolver.hook.start = hook_start;
  ld.resolver.hook.cancel = hook_cancel;
  ld.resolver.hook.user = &h;
  ld.resolver.hosts_file = "";
  h.loop = yhc_loop_create(&ld);
  resolve(h.loop, "now.hook", &a);
  YT_EQ_INT(a.err, YHC_ERR_OK);
  EXPECT_IP(&a, 0, "::5");
  resolve(h.loop, "now.hook", &a); /* cached: the hook is not asked again */
  YT_EQ_INT(h.starts, 1);
  resolve(h.loop, "later.hook", &a);
  EXPECT_IP(&a, 0, "198.51.100.9");
  resolve(h.loop, "fail.hook", &a);
  YT_EQ_INT(a.err, YHC_ERR_DNS);
  YT_CHECKF(strstr(a.msg, "the platform says no") != NULL, "%s", a.msg);
  resolve(h.loop, "refuse.hook", &a);
  YT_EQ_INT(a.err, YHC_ERR_DNS);
  resolve(h.loop, "127.0.0.2", &a); /* numeric: never the hook */
  YT_EQ_INT(h.starts, 4);
  memset(&a, 0, sizeof a);
  id = yhc_resolve(h.loop, "slow.hook", on_answer, &a);
  YT_CHECK(h.pending != NULL);
  yhc_resolve_cancel(h.loop, id);
  YT_EQ_INT(h.cancels, 1);
  YT_CHECK(h.pending == NULL);
  yhc_loop_poll(h.loop, 50);
  YT_EQ_INT(a.done, 0);
  yhc_loop_destroy(h.loop);
}

/* ---- HTTP by name */
typedef struct http_answer {
  int done;
  yhc_err err;
  int status;
  char msg[256];
} http_answer;

static void on_http(const yhc_response *r, void *user) {
  http_answer *a = (http_answer *)user;
  if (in_call) answered_inside++;
  a->done = 1;
  a->err = r->err;
  a->status = r->status;
  snprintf(a->msg, sizeof a->msg, "%s", r->error);
}

static void http_get(yhc_loop *l, yhc_http *h, const char *url, http_answer *a) {
  yhc_request rq;
  memset(a, 0, sizeof *a);
  memset(&rq, 0, sizeof rq);
  rq.url = url;
  in_call = 1;
  yhc_http_request(h, &rq, on_http, a);
  in_call = 0;
  YT_CHECKF(turn_until(l, &a->done, 15000), "%s: no answer", url);
}

static void test_http_by_name(void) {
  yt_proc origin;
  yhc_loop *l;
  yhc_http *h;
  http_answer a;
  char servers[64], url[128];
  YT_GROUP("HTTP requests by name");
  memset(&origin, 0, sizeof origin);
  if (yt_proc_start_py(&origin, "tests/servers/origin.py", NULL, 30000) != 0) { /* a loaded machine */
    YT_CHECK(0);
    return;
  }
  snprintf(servers, sizeof servers, "127.0.0.1:%d", dns_port);
  l = loop_with(servers, "test", 1000, 2, NULL);
  h = yhc_http_create(l, NULL);
  snprintf(url, sizeof url, "http://web.test:%d/hello", origin.port);
  http_get(l, h, url, &a);
  YT_EQ_INT(a.err, YHC_ERR_OK);
  YT_EQ_INT(a.status, 200);
  snprintf(url, sizeof url, "http://web:%d/hello", origin.port); /* through the search list */
  http_get(l, h, url, &a);
  YT_EQ_INT(a.status, 200);
  snprintf(url, sizeof url, "http://nx.test:%d/hello", origin.port);
  http_get(l, h, url, &a);
  YT_EQ_INT(a.err, YHC_ERR_DNS);
  YT_CHECKF(strstr(a.msg, "NXDOMAIN") != NULL, "%s", a.msg);
  YT_EQ_INT(answered_inside, 0);
  yhc_http_destroy(h);
  yhc_loop_destroy(l);
  yt_proc_stop(&origin);
}

#ifdef YHC_RESOLVER_GETADDRINFO
/* The compile-time choice: the DNS step is getaddrinfo(), still answered from the loop. */
static void test_getaddrinfo_choice(void) {
  answer a;
  char name[256];
  yhc_loop_desc ld;
  yhc_loop *l;
  YT_GROUP("YHC_RESOLVER_GETADDRINFO");
  memset(&ld, 0, sizeof ld);
  ld.resolver.hosts_file = ""; /* so that the name reaches getaddrinfo */
  l = yhc_loop_create(&ld);
  if (gethostname(name, sizeof name) != 0) snprintf(name, sizeof name, "localhost");
  resolve(l, name, &a);
  YT_CHECKF(a.err == YHC_ERR_OK ? a.n > 0 : strstr(a.msg, name) != NULL, "%s: %s", name, a.msg);
  resolve(l, "bad name", &a);
  YT_EQ_INT(a.err, YHC_ERR_DNS);
  YT_EQ_INT(answered_inside, 0);
  yhc_loop_destroy(l);
}
#endif

int main(void) {
  long long t0 = yt_now_ms();
  int have_dnsmasq;
  signal(SIGPIPE, SIG_IGN);
  mkdir("build", 0777);
  (void)L;
  test_query_builder();
  test_parser_good();
  test_parser_hostile();
  test_conf_parsers();
  test_at_once();
  test_hook();
#ifdef YHC_RESOLVER_GETADDRINFO
  test_getaddrinfo_choice();
  printf("built with YHC_RESOLVER_GETADDRINFO: the DNS server tests are the default build's\n");
  (void)have_dnsmasq;
  (void)test_scripted;
  (void)test_dnsmasq;
  (void)test_http_by_name;
  (void)test_cache;
  (void)dnsmasq_start;
  return yt_done();
#endif
  test_scripted();
  have_dnsmasq = dnsmasq_start() == 0;
  if (have_dnsmasq) {
    test_dnsmasq();
    test_http_by_name();
    test_cache(); /* stops dnsmasq */
  } else if (dnsmasq_path()) {
    YT_CHECKF(0, "dnsmasq is installed but did not start");
  } else {
    printf("dnsmasq not installed (Debian package dnsmasq-base): DNS server tests skipped\n");
  }
  dnsmasq_stop();
  fprintf(stderr, "test_dns: %lld ms\n", yt_now_ms() - t0);
  return yt_done();
}
