/* test_golem.c -- end to end through the yagna stand-in (tests/yagna-sim): the Golem session,
   services on rented providers, requests over the VPN tunnel, payments and close (issue 4).

   One stand-in (4 providers, a debit note every second) serves every scenario in turn; after
   each one its spec validation must report no non-conforming request from yhc. Scenarios that
   need no daemon (config validation, a daemon that is down) always run; the rest print a skip
   line when node or tests/yagna-sim/node_modules is missing (make sim-deps).

   Run from the repository root. YHC_TEST_EVENTS=1 prints every event the library emits. */
#define _POSIX_C_SOURCE 200809L
#define YHC_IMPLEMENTATION
#include <stddef.h>
#include <stdlib.h>

/* Every library allocation goes through these, so the end can check that nothing is left. */
static void *yt_malloc(size_t n);
static void *yt_realloc(void *p, size_t n);
static void yt_free(void *p);
#define YHC_MALLOC(sz) yt_malloc(sz)
#define YHC_REALLOC(p, sz) yt_realloc(p, sz)
#define YHC_FREE(p) yt_free(p)

/* a tiny seen-list, so the agreement-event window always holds more than it remembers */
#define YHC__SEEN_N 4
#include "yhc.h"
#include "tests/yt.h"
#include "tests/yt_proc.h"
#include "tests/yt_sim.h"

#include <arpa/inet.h>
#include <math.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* ---------------------------------------------------------------- tracked allocator */
typedef union yt_hdr {
  size_t n;
  void *p;
  long double ld;
  long long ll;
} yt_hdr;
static long long yt_mem_blocks;

static void *yt_malloc(size_t n) {
  yt_hdr *h = (yt_hdr *)malloc(sizeof(yt_hdr) + n);
  if (!h) return NULL;
  h->n = n;
  yt_mem_blocks++;
  return h + 1;
}
static void *yt_realloc(void *p, size_t n) {
  yt_hdr *h, *nh;
  if (!p) return yt_malloc(n);
  h = (yt_hdr *)p - 1;
  nh = (yt_hdr *)realloc(h, sizeof(yt_hdr) + n);
  if (!nh) return NULL;
  nh->n = n;
  return nh + 1;
}
static void yt_free(void *p) {
  if (!p) return;
  yt_mem_blocks--;
  free((yt_hdr *)p - 1);
}

/* ---------------------------------------------------------------- event recorder */
typedef struct ev_rec {
  int kind;
  yhc_err err;
  char provider_id[64];
  char provider_name[64];
  char agreement_id[160];
  char amount[64];
  char message[400];
  long long at_ms;
} ev_rec;

#define MAX_EV 2048
static ev_rec g_ev[MAX_EV];
static int g_nev, g_ev_dropped;

static const char *kind_name(int k) {
  static const char *const n[] = {"?", "SESSION_READY", "DEMAND_PUBLISHED", "OFFER_RECEIVED", "OFFER_REJECTED",
                                  "PROPOSAL_REJECTED", "AGREEMENT_SIGNED", "ACTIVITY_STARTED", "SERVICE_READY",
                                  "REQUEST_FORWARDED", "REQUEST_RETRIED", "DEBIT_NOTE_ACCEPTED",
                                  "DEBIT_NOTE_REJECTED", "INVOICE_ACCEPTED", "INVOICE_REJECTED", "SERVICE_FAILED",
                                  "SERVICE_STOPPED", "CLUSTER_FAILED", "SESSION_CLOSED", "ERROR"};
  return (k > 0 && k < (int)(sizeof n / sizeof *n)) ? n[k] : "?";
}

static void on_event(const yhc_event *ev, void *user) {
  ev_rec *e;
  (void)user;
  if (getenv("YHC_TEST_EVENTS"))
    fprintf(stderr, "  [event %-19s] %s\n", kind_name((int)ev->kind), ev->message ? ev->message : "");
  if (g_nev >= MAX_EV) {
    g_ev_dropped++;
    return;
  }
  e = &g_ev[g_nev++];
  memset(e, 0, sizeof *e);
  e->kind = (int)ev->kind;
  e->err = ev->err;
  e->at_ms = yt_now_ms();
  snprintf(e->provider_id, sizeof e->provider_id, "%s", ev->provider_id ? ev->provider_id : "");
  snprintf(e->provider_name, sizeof e->provider_name, "%s", ev->provider_name ? ev->provider_name : "");
  snprintf(e->agreement_id, sizeof e->agreement_id, "%s", ev->agreement_id ? ev->agreement_id : "");
  snprintf(e->amount, sizeof e->amount, "%s", ev->amount ? ev->amount : "");
  snprintf(e->message, sizeof e->message, "%s", ev->message ? ev->message : "");
}

static void ev_reset(void) {
  g_nev = 0;
  g_ev_dropped = 0;
}

static int ev_count(int kind) {
  int k, n = 0;
  for (k = 0; k < g_nev; k++) n += g_ev[k].kind == kind;
  return n;
}

/* Index of the first event of `kind` at or after `from`, or -1. */
static int ev_find(int kind, int from) {
  int k;
  for (k = from < 0 ? 0 : from; k < g_nev; k++)
    if (g_ev[k].kind == kind) return k;
  return -1;
}

static const ev_rec *ev_first(int kind) {
  int k = ev_find(kind, 0);
  return k < 0 ? NULL : &g_ev[k];
}

/* The word after `key` in a message ("allocation 3af8..." -> "3af8..."). */
static void word_after(const char *msg, const char *key, char *out, size_t cap) {
  const char *p = strstr(msg, key);
  size_t n = 0;
  out[0] = 0;
  if (!p) return;
  p += strlen(key);
  while (p[n] && p[n] != ' ' && p[n] != ',' && p[n] != ')' && n + 1 < cap) n++;
  memcpy(out, p, n);
  out[n] = 0;
}

/* ---------------------------------------------------------------- helpers */
static yt_sim g_sim;
static yhc_loop *g_admin_loop;
static yhc_http *g_admin; /* the stand-in's admin API */
static int g_have_sim;

static void start_server(yhc_ctx *ctx, const char *listen_on, void *user) {
  const char *argv[] = {"/bin/sh", "-c", "python3 /golem/run/calculator_server.py --port 80 >/dev/null 2>&1 &",
                        NULL};
  (void)listen_on;
  (void)user;
  yhc_ctx_run(ctx, argv);
}

static void session_defaults(yhc_session_desc *d) {
  memset(d, 0, sizeof *d);
  d->yagna_url = g_sim.url;
  d->app_key = YT_SIM_APPKEY;
  d->image_repo = g_sim.url;
  d->budget = 1.0;
  d->offer_window_ms = 300;
  d->state_poll_ms = 1000;
  d->close_timeout_ms = 8000;
  d->request_timeout_ms = 30000;
  d->on_event = on_event;
}

static void service_defaults(yhc_service_desc *d) {
  memset(d, 0, sizeof *d);
  d->url = "http://calc";
  d->image_hash = g_sim.hash;
  d->startup = start_server;
  d->initial_size = 1;
}

#define PUMP_UNTIL(s, cond, ms)                                                         \
  do {                                                                                  \
    long long pump_deadline_ = yt_now_ms() + (ms);                                      \
    while (!(cond) && yt_now_ms() < pump_deadline_) yhc_loop_poll(yhc_session_loop(s), 50); \
  } while (0)

static yhc_response *get(yhc_session *s, const char *url, int timeout_ms) {
  yhc_request rq;
  memset(&rq, 0, sizeof rq);
  rq.url = url;
  rq.timeout_ms = timeout_ms;
  return yhc_session_fetch(s, &rq);
}

/* Fetches and compares the whole body with `want`; returns 1 when it matched. */
static int get_expect(yhc_session *s, const char *url, const char *want) {
  yhc_response *r = get(s, url, 30000);
  int ok = r && r->err == YHC_ERR_OK && r->status == 200 && r->body.len == strlen(want) &&
           memcmp(r->body.ptr, want, r->body.len) == 0;
  if (!ok)
    fprintf(stderr, "  %s: err %d (%s) status %d body \"%.*s\", wanted \"%s\"\n", url, r ? (int)r->err : -1,
            r ? r->error : "no memory", r ? r->status : 0, r ? (int)YHC__MIN(r->body.len, 200) : 0,
            r ? r->body.ptr : "", want);
  if (r) yhc_response_free(r);
  return ok;
}

static int b64val(int c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/* Decodes base64 into out (cap bytes); returns the length or -1. */
static long b64decode(const char *in, size_t len, unsigned char *out, size_t cap) {
  unsigned acc = 0;
  int bits = 0;
  size_t k, n = 0;
  for (k = 0; k < len; k++) {
    int v;
    if (in[k] == '=') break;
    v = b64val((unsigned char)in[k]);
    if (v < 0) return -1;
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (n >= cap) return -1;
      out[n++] = (unsigned char)((acc >> bits) & 0xff);
    }
  }
  return (long)n;
}

static double json_money(const yhc_json *v) {
  const char *s = yhc_json_cstr(v, NULL);
  return s ? strtod(s, NULL) : -1;
}

static const yhc_json *find_by(const yhc_json *arr, const char *field, const char *value) {
  const yhc_json *e;
  for (e = yhc_json_first(arr); e; e = yhc_json_next(e)) {
    const char *v = yhc_json_cstr(yhc_json_get(e, field), NULL);
    if (v && !strcmp(v, value)) return e;
  }
  return NULL;
}

static long sim_tunnels_opened(void) {
  yhc_json_doc *d = yt_sim_state(&g_sim, g_admin);
  long n = d ? (long)yhc_json_int(yhc_json_get(yhc_json_root(d), "tunnelsOpened"), -1) : -1;
  yhc_json_free(d);
  return n;
}

static void sim_fault(const char *json) { YT_CHECKF(yt_sim_fault(&g_sim, g_admin, json) == 0, "%s", json); }

static void sim_clear(void) { yt_sim_fault(&g_sim, g_admin, "{\"fault\":\"clear\"}"); }

static void check_no_violations(void) {
  long v = yt_sim_violations(&g_sim, g_admin);
  YT_CHECKF(v == 0, "the stand-in saw %ld non-conforming request(s) from yhc", v);
}

/* Closes the session and turns its loop until closed; returns how long that took (ms). */
static long long close_session(yhc_session *s, int bound_ms) {
  long long t0 = yt_now_ms();
  yhc_session_close(s);
  PUMP_UNTIL(s, yhc_session_closed(s), bound_ms);
  return yt_now_ms() - t0;
}

/* After a close: what the stand-in says about the agreements this session signed, their
   activities and invoices, the session's allocation and network. */
static void check_closed_in_sim(int want_invoices_accepted) {
  yhc_json_doc *d = yt_sim_state(&g_sim, g_admin);
  const yhc_json *root = yhc_json_root(d);
  const ev_rec *ready = ev_first(YHC_EV_SESSION_READY);
  char alloc_id[80], net_id[80];
  int k, agreements = 0;
  YT_CHECK(d != NULL);
  if (!d || !ready) {
    yhc_json_free(d);
    return;
  }
  word_after(ready->message, "allocation ", alloc_id, sizeof alloc_id);
  word_after(ready->message, "network ", net_id, sizeof net_id);
  for (k = 0; k < g_nev; k++) {
    const yhc_json *ag, *a, *inv;
    const char *st;
    if (g_ev[k].kind != YHC_EV_AGREEMENT_SIGNED) continue;
    agreements++;
    ag = find_by(yhc_json_get(root, "agreements"), "agreementId", g_ev[k].agreement_id);
    st = yhc_json_cstr(yhc_json_get(ag, "state"), "(none)");
    YT_CHECKF(ag && !strcmp(st, "Terminated"), "agreement %s is %s", g_ev[k].agreement_id, st);
    for (a = yhc_json_first(yhc_json_get(root, "activities")); a; a = yhc_json_next(a)) {
      const char *aid = yhc_json_cstr(yhc_json_get(a, "agreementId"), "");
      const char *ast = yhc_json_cstr(yhc_json_at(yhc_json_get(a, "state"), 0), "");
      if (strcmp(aid, g_ev[k].agreement_id)) continue;
      YT_CHECKF(!strcmp(ast, "Terminated"), "activity of %s is %s", aid, ast);
      YT_CHECK(!yhc_json_bool(yhc_json_get(yhc_json_get(a, "vm"), "alive"), 1));
    }
    inv = find_by(yhc_json_get(yhc_json_get(root, "payments"), "invoices"), "agreementId", g_ev[k].agreement_id);
    if (want_invoices_accepted) {
      st = yhc_json_cstr(yhc_json_get(inv, "status"), "(no invoice)");
      /* the stand-in's payment driver settles an accepted invoice a little later */
      YT_CHECKF(!strcmp(st, "ACCEPTED") || !strcmp(st, "SETTLED"), "invoice of %s is %s", g_ev[k].agreement_id, st);
    }
  }
  YT_CHECKF(agreements > 0, "no agreement was signed");
  {
    const yhc_json *al = find_by(yhc_json_get(root, "allocations"), "allocationId", alloc_id);
    YT_CHECKF(al != NULL, "allocation \"%s\" unknown to the stand-in", alloc_id);
    YT_CHECKF(al && yhc_json_bool(yhc_json_get(al, "released"), 0), "allocation %s not released", alloc_id);
  }
  YT_CHECKF(net_id[0] && !find_by(yhc_json_get(root, "networks"), "id", net_id), "network \"%s\" not removed",
            net_id);
  YT_CHECKF(yhc_json_len(yhc_json_get(root, "tunnels")) == 0, "%zu tunnel(s) still open",
            yhc_json_len(yhc_json_get(root, "tunnels")));
  yhc_json_free(d);
}

/* The spent total the session reports equals what the stand-in recorded as accepted on its
   allocation; both within the budget. */
static void check_spent(yhc_session *s, double budget) {
  yhc_json_doc *d = yt_sim_state(&g_sim, g_admin);
  const ev_rec *ready = ev_first(YHC_EV_SESSION_READY);
  char alloc_id[80];
  const yhc_json *al;
  double sim_spent;
  if (!d || !ready) {
    YT_CHECK(d && ready);
    yhc_json_free(d);
    return;
  }
  word_after(ready->message, "allocation ", alloc_id, sizeof alloc_id);
  al = find_by(yhc_json_get(yhc_json_root(d), "allocations"), "allocationId", alloc_id);
  sim_spent = json_money(yhc_json_get(al, "spentAmount"));
  YT_CHECKF(sim_spent >= 0 && fabs(sim_spent - yhc_session_spent(s)) < 1e-12,
            "spent: yhc %.18f, stand-in %.18f", yhc_session_spent(s), sim_spent);
  YT_CHECKF(yhc_session_spent(s) <= budget, "spent %.9f above the budget %.9f", yhc_session_spent(s), budget);
  yhc_json_free(d);
}

/* ---------------------------------------------------------------- scenarios */

/* Creation refuses what cannot work, with a message that names the problem. */
/* ==== agreement events: a window of repeats larger than the seen-list ==================
   Each query starts clock_skew_ms before the newest event, so the daemon answers at once with
   the window's events, most of them repeats; yhc paces such answers to one query a second.
   The earlier groups left more events in the window than this build remembers, so evicted
   repeats look unseen each time: the pacing must follow time, not the seen-list, or the
   polls spin (thousands in these 3 s). */
static long sim_route_hits(void) {
  yhc_json_doc *d = yt_sim_state(&g_sim, g_admin);
  long n = d ? (long)yhc_json_int(yhc_json_get(yhc_json_first(yhc_json_get(yhc_json_root(d), "routeFaults")), "hits"), -1) : -1;
  yhc_json_free(d);
  return n;
}

static void test_event_window(void) {
  yhc_session_desc d;
  yhc_session *s;
  yhc_error err;
  long hits;
  long long t0;
  YT_GROUP("agreement events: repeats beyond the seen-list are paced, never spun");
  session_defaults(&d); /* no service: the feeds run from the session's start */
  s = yhc_session_create(&d, &err);
  YT_CHECKF(s != NULL, "%s", err.msg);
  if (!s) return;
  PUMP_UNTIL(s, yhc_session_state(s, NULL) == YHC_STATE_READY, 10000);
  YT_EQ_INT(yhc_session_state(s, NULL), YHC_STATE_READY);
  /* counts the queries from here on (a 1 ms stall, no error) */
  sim_fault("{\"fault\":\"route\",\"method\":\"GET\",\"path\":\"/agreementEvents\",\"stallMs\":1,\"count\":-1}");
  t0 = yt_now_ms();
  PUMP_UNTIL(s, 0, 3000);
  hits = sim_route_hits();
  sim_clear();
  YT_CHECKF(hits >= 1 && hits <= 8, "%ld agreementEvents queries in %lld ms", hits, yt_now_ms() - t0);
  close_session(s, 30000);
  YT_CHECK(yhc_session_closed(s));
  yhc_session_destroy(s);
}

static void test_config(void) {
  yhc_session_desc d;
  yhc_service_desc sv;
  yhc_session *s;
  yhc_error err;
  YT_GROUP("invalid config is a clear error at creation");
  unsetenv("YAGNA_APPKEY");
  memset(&d, 0, sizeof d);
  d.yagna_url = "http://127.0.0.1:9";
  s = yhc_session_create(&d, &err);
  YT_CHECK(s == NULL);
  YT_EQ_INT(err.code, YHC_ERR_CONFIG);
  YT_CHECKF(strstr(err.msg, "app key") != NULL, "%s", err.msg);

  d.app_key = "k";
  d.yagna_url = "ftp://127.0.0.1:9";
  s = yhc_session_create(&d, &err);
  YT_CHECK(s == NULL);
  YT_EQ_INT(err.code, YHC_ERR_CONFIG);
  YT_CHECKF(strstr(err.msg, "URL") && strstr(err.msg, "ftp://"), "%s", err.msg);
  d.yagna_url = "not a url";
  s = yhc_session_create(&d, &err);
  YT_CHECK(s == NULL && err.code == YHC_ERR_CONFIG && strstr(err.msg, "URL"));
  d.yagna_url = "http://";
  s = yhc_session_create(&d, &err);
  YT_CHECKF(s == NULL && err.code == YHC_ERR_CONFIG, "%s", err.msg);
  if (s) yhc_session_destroy(s);

  d.yagna_url = "http://127.0.0.1:9";
  d.budget = -1;
  s = yhc_session_create(&d, &err);
  YT_CHECK(s == NULL);
  YT_EQ_INT(err.code, YHC_ERR_CONFIG);
  YT_CHECKF(strstr(err.msg, "budget") != NULL, "%s", err.msg);
  d.budget = 0; /* money has no default */
  s = yhc_session_create(&d, &err);
  YT_CHECKF(s == NULL && err.code == YHC_ERR_CONFIG && strstr(err.msg, "no budget"), "%s", err.msg);
  d.budget = 1;
  d.max_price_cpu_hour = -0.5;
  s = yhc_session_create(&d, &err);
  YT_CHECK(s == NULL && err.code == YHC_ERR_CONFIG);
  d.max_price_cpu_hour = 0;

  /* a valid session (nothing is sent until the loop turns), then bad services */
  s = yhc_session_create(&d, &err);
  YT_CHECKF(s != NULL, "%s", err.msg);
  if (!s) return;
  memset(&sv, 0, sizeof sv);
  sv.url = "http://calc";
  sv.image_hash = "ad145acc09e93bd88e049158d2ef83063b246a54002f6691d47a1137";
  YT_EQ_INT(yhc_session_add_service(s, &sv, &err), 0);
  YT_EQ_INT(yhc_session_add_service(s, &sv, &err), -1);
  YT_EQ_INT(err.code, YHC_ERR_CONFIG);
  YT_CHECKF(strstr(err.msg, "already registered") && strstr(err.msg, "http://calc"), "%s", err.msg);
  sv.url = "http://CALC/";
  YT_CHECKF(yhc_session_add_service(s, &sv, &err) == -1 && err.code == YHC_ERR_CONFIG, "host names are case-insensitive: %s",
            err.msg);
  sv.url = "http://other";
  sv.image_hash = "not-a-hash!";
  YT_EQ_INT(yhc_session_add_service(s, &sv, &err), -1);
  YT_EQ_INT(err.code, YHC_ERR_CONFIG);
  YT_CHECKF(strstr(err.msg, "hex") != NULL, "%s", err.msg);
  sv.image_hash = "";
  YT_CHECK(yhc_session_add_service(s, &sv, &err) == -1 && err.code == YHC_ERR_CONFIG && strstr(err.msg, "image"));
  sv.image_hash = NULL;
  YT_CHECK(yhc_session_add_service(s, &sv, &err) == -1 && err.code == YHC_ERR_CONFIG);
  sv.image_hash = "abcdef";
  sv.url = "ftp://other";
  YT_CHECK(yhc_session_add_service(s, &sv, &err) == -1 && err.code == YHC_ERR_CONFIG);
  sv.url = "http://other/path";
  YT_CHECK(yhc_session_add_service(s, &sv, &err) == -1 && err.code == YHC_ERR_CONFIG);
  sv.url = "http://other";
  sv.extra_properties = "[1,2]";
  YT_CHECK(yhc_session_add_service(s, &sv, &err) == -1 && err.code == YHC_ERR_CONFIG);
  sv.extra_properties = NULL;
  sv.initial_size = -1;
  YT_CHECK(yhc_session_add_service(s, &sv, &err) == -1 && err.code == YHC_ERR_CONFIG);
  yhc_session_destroy(s);
}

/* Nothing listens at the daemon's address: requests fail clearly and soon. */
static void test_daemon_down(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  socklen_t alen = sizeof a;
  char url[64];
  yhc_session_desc d;
  yhc_service_desc sv;
  yhc_session *s;
  yhc_error err;
  yhc_response *r;
  long long t0, took;
  YT_GROUP("the daemon is down: a clear error, no hang");
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
    YT_CHECK(!"cannot find a free port");
    if (fd >= 0) close(fd);
    return;
  }
  close(fd); /* bound, never listened: connecting is refused */
  snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
  ev_reset();
  memset(&d, 0, sizeof d);
  d.yagna_url = url;
  d.app_key = "k";
  d.budget = 1.0;
  d.image_repo = url;
  d.on_event = on_event;
  s = yhc_session_create(&d, &err);
  YT_CHECKF(s != NULL, "%s", err.msg);
  if (!s) return;
  memset(&sv, 0, sizeof sv);
  sv.url = "http://calc";
  sv.image_hash = "ad145acc09e93bd88e049158d2ef83063b246a54002f6691d47a1137";
  YT_EQ_INT(yhc_session_add_service(s, &sv, &err), 0);
  t0 = yt_now_ms();
  r = get(s, "http://calc/add/1/2", 60000);
  took = yt_now_ms() - t0;
  YT_CHECK(r != NULL);
  if (r) {
    YT_CHECKF(r->err != YHC_ERR_OK, "status %d", r->status);
    YT_CHECKF(r->err == YHC_ERR_CONNECT || r->err == YHC_ERR_YAGNA, "err %d: %s", (int)r->err, r->error);
    {
      char port[16];
      snprintf(port, sizeof port, "%d", ntohs(a.sin_port));
      YT_CHECKF(strstr(r->error, "/me") && strstr(r->error, "127.0.0.1") && strstr(r->error, port),
                "the error names the call and address: %s", r->error);
    }
    yhc_response_free(r);
  }
  YT_CHECKF(took < 15000, "took %lld ms", took);
  YT_CHECK(ev_count(YHC_EV_ERROR) >= 1);
  YT_CHECK(ev_count(YHC_EV_SESSION_READY) == 0);
  /* later requests fail at once the same way */
  t0 = yt_now_ms();
  r = get(s, "http://calc/add/1/2", 60000);
  YT_CHECK(r && r->err != YHC_ERR_OK && yt_now_ms() - t0 < 1000);
  if (r) yhc_response_free(r);
  took = close_session(s, 10000);
  YT_CHECKF(yhc_session_closed(s) && took < 10000, "close took %lld ms", took);
  yhc_session_destroy(s);
}

/* A wrong app key: the daemon answers 401 and the session says so. */
static void test_bad_appkey(void) {
  yhc_session_desc d;
  yhc_service_desc sv;
  yhc_session *s;
  yhc_error err;
  yhc_response *r;
  long long t0;
  YT_GROUP("a bad app key is a clear 401 error");
  ev_reset();
  session_defaults(&d);
  d.app_key = "not-the-key";
  s = yhc_session_create(&d, &err);
  YT_CHECKF(s != NULL, "%s", err.msg);
  if (!s) return;
  service_defaults(&sv);
  YT_EQ_INT(yhc_session_add_service(s, &sv, &err), 0);
  t0 = yt_now_ms();
  r = get(s, "http://calc/add/1/2", 30000);
  YT_CHECK(r != NULL);
  if (r) {
    YT_EQ_INT(r->err, YHC_ERR_YAGNA);
    YT_CHECKF(strstr(r->error, "401") != NULL, "%s", r->error);
    yhc_response_free(r);
  }
  YT_CHECK(yt_now_ms() - t0 < 10000);
  YT_CHECK(ev_count(YHC_EV_ERROR) >= 1);
  {
    int k = ev_find(YHC_EV_ERROR, 0);
    YT_CHECKF(k >= 0 && strstr(g_ev[k].message, "401"), "%s", k >= 0 ? g_ev[k].message : "(no event)");
  }
  YT_CHECK(close_session(s, 10000) < 10000);
  yhc_session_destroy(s);
  check_no_violations();
}

/* Completion record for asynchronous requests. */
typedef struct req_slot {
  int calls;
  yhc_err err;
  int status;
  char body[64];
  char error[200];
} req_slot;

static void slot_done(const yhc_response *resp, void *user) {
  req_slot *sl = (req_slot *)user;
  sl->calls++;
  sl->err = resp->err;
  sl->status = resp->status;
  snprintf(sl->body, sizeof sl->body, "%.*s", (int)YHC__MIN(resp->body.len, 60), resp->body.ptr ? resp->body.ptr : "");
  snprintf(sl->error, sizeof sl->error, "%s", resp->error ? resp->error : "");
}

static int slots_done(const req_slot *sl, int n) {
  int k;
  for (k = 0; k < n; k++)
    if (!sl[k].calls) return 0;
  return 1;
}

/* Binary bodies, queries and repeated headers arrive at the service exactly as sent. */
static void check_echo(yhc_session *s) {
  static unsigned char body[256 * 1024 + 300], back[256 * 1024 + 300];
  size_t n = 0, k;
  yhc_request rq;
  yhc_header hd[5];
  yhc_response *r;
  YT_GROUP("lifecycle: binary bodies, query strings, repeated headers");
  for (k = 0; k < 256; k++) body[n++] = (unsigned char)k; /* every byte value, NULs included */
  for (k = 0; k < 40; k++) body[n++] = 0;
  for (k = 0; k < 256 * 1024; k++) body[n++] = (unsigned char)((k * 7 + k / 256) & 0xff);
  hd[0].name = "X-Rep";
  hd[0].value = "one";
  hd[1].name = "X-Other";
  hd[1].value = "a, b";
  hd[2].name = "X-Rep";
  hd[2].value = "two";
  hd[3].name = "X-Rep";
  hd[3].value = "three";
  hd[4].name = "Content-Type";
  hd[4].value = "application/octet-stream";
  memset(&rq, 0, sizeof rq);
  rq.method = "POST";
  rq.url = "http://calc/echo?a=1&b=x%20y&empty=&list=1&list=2";
  rq.headers = hd;
  rq.header_count = 5;
  rq.body = body;
  rq.body_len = n;
  r = yhc_session_fetch(s, &rq);
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200);
  if (r && r->err == YHC_ERR_OK) {
    yhc_json_doc *d = yhc_json_parse(r->body.ptr, r->body.len, NULL, NULL);
    const yhc_json *root = yhc_json_root(d), *h;
    yhc_str b64;
    long got;
    const char *order[8];
    int no = 0, has_host = 0, has_conn = 0;
    YT_CHECK(d != NULL);
    YT_EQ_STR(yhc_json_cstr(yhc_json_get(root, "method"), ""), "POST");
    YT_EQ_STR(yhc_json_cstr(yhc_json_get(root, "path"), ""), "/echo?a=1&b=x%20y&empty=&list=1&list=2");
    YT_EQ_INT(yhc_json_int(yhc_json_get(root, "body_len"), -1), (long long)n);
    b64.ptr = NULL;
    b64.len = 0;
    b64 = yhc_json_str(yhc_json_get(root, "body_b64"), b64);
    got = b64decode(b64.ptr, b64.len, back, sizeof back);
    YT_CHECKF(got == (long)n && memcmp(back, body, n) == 0, "body came back as %ld bytes, different", got);
    for (h = yhc_json_first(yhc_json_get(root, "headers")); h; h = yhc_json_next(h)) {
      const char *name = yhc_json_cstr(yhc_json_at(h, 0), "");
      const char *value = yhc_json_cstr(yhc_json_at(h, 1), "");
      if (!strcasecmp(name, "host")) has_host = 1;
      if (!strcasecmp(name, "connection")) has_conn = 1;
      if ((!strcasecmp(name, "x-rep") || !strcasecmp(name, "x-other")) && no < 8) order[no++] = value;
    }
    YT_EQ_INT(no, 4);
    if (no == 4) {
      YT_EQ_STR(order[0], "one");
      YT_EQ_STR(order[1], "a, b");
      YT_EQ_STR(order[2], "two");
      YT_EQ_STR(order[3], "three");
    }
    /* HTTP/1.1: a Host header and persistent connections without asking for keep-alive */
    YT_CHECK(has_host);
    YT_CHECK(!has_conn);
    yhc_json_free(d);
  }
  if (r) yhc_response_free(r);

  /* a GET with a query and no body */
  r = get(s, "http://calc/echo?q=%3F%26%3D&x", 30000);
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200);
  if (r && r->err == YHC_ERR_OK) {
    yhc_json_doc *d = yhc_json_parse(r->body.ptr, r->body.len, NULL, NULL);
    YT_EQ_STR(yhc_json_cstr(yhc_json_get(yhc_json_root(d), "path"), ""), "/echo?q=%3F%26%3D&x");
    YT_EQ_INT(yhc_json_int(yhc_json_get(yhc_json_root(d), "body_len"), -1), 0);
    yhc_json_free(d);
  }
  if (r) yhc_response_free(r);

  /* a large binary response, 5 MB */
  r = get(s, "http://calc/bytes/5000000", 60000);
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200);
  if (r && r->err == YHC_ERR_OK) {
    size_t bad = (size_t)-1;
    YT_EQ_INT(r->body.len, 5000000);
    for (k = 0; k < r->body.len; k++) {
      if ((unsigned char)r->body.ptr[k] != (unsigned char)(k % 251)) {
        bad = k;
        break;
      }
    }
    YT_CHECKF(bad == (size_t)-1, "byte %zu differs", bad);
    YT_CHECK(r->http_minor == 1);
  }
  if (r) yhc_response_free(r);
}

/* 500 sequential requests and a burst of 50 go over the tunnels the instance keeps open. */
static void check_tunnel_reuse(yhc_session *s, int concurrency) {
  static req_slot slots[50];
  long before, after_seq, after_burst;
  int k, bad = 0;
  char url[80], want[32];
  long long t0;
  YT_GROUP("lifecycle: many requests over one tunnel");
  before = sim_tunnels_opened();
  YT_CHECK(before >= 1);
  t0 = yt_now_ms();
  for (k = 0; k < 500; k++) {
    snprintf(url, sizeof url, "http://calc/add/%d/%d", k, 1000);
    snprintf(want, sizeof want, "%d", k + 1000);
    if (!get_expect(s, url, want) && ++bad > 3) break;
  }
  YT_CHECKF(bad == 0, "%d of 500 sequential requests wrong", bad);
  fprintf(stderr, "  500 sequential requests: %lld ms\n", yt_now_ms() - t0);
  after_seq = sim_tunnels_opened();
  YT_CHECKF(after_seq - before <= 1, "500 sequential requests opened %ld tunnels", after_seq - before);
  memset(slots, 0, sizeof slots);
  for (k = 0; k < 50; k++) {
    yhc_request rq;
    snprintf(url, sizeof url, "http://calc/mul/%d/3", k);
    memset(&rq, 0, sizeof rq);
    rq.url = url;
    YT_CHECK(yhc_session_request(s, &rq, slot_done, &slots[k]) != 0);
  }
  PUMP_UNTIL(s, slots_done(slots, 50), 60000);
  bad = 0;
  for (k = 0; k < 50; k++) {
    snprintf(want, sizeof want, "%d", k * 3);
    if (slots[k].calls != 1 || slots[k].err || slots[k].status != 200 || strcmp(slots[k].body, want)) {
      if (bad++ < 3)
        fprintf(stderr, "  burst %d: calls %d err %d %s status %d body %s\n", k, slots[k].calls, (int)slots[k].err,
                slots[k].error, slots[k].status, slots[k].body);
    }
  }
  YT_CHECKF(bad == 0, "%d of 50 concurrent requests wrong", bad);
  after_burst = sim_tunnels_opened();
  YT_CHECKF(after_burst - after_seq <= concurrency, "a burst of 50 opened %ld tunnels (concurrency %d)",
            after_burst - after_seq, concurrency);
  {
    yhc_cluster_stats st;
    YT_EQ_INT(yhc_session_stats(s, "http://calc", &st), 0);
    YT_CHECK(st.completed >= 550);
    YT_EQ_INT(st.failed, 0);
    YT_EQ_INT(st.ready, 1);
    YT_EQ_INT(st.in_flight, 0);
  }
}

/* The provider answers slowly: requests stay correct; a deadline shorter than the delay is a
   timeout, and the late answer must not leak into the next request. */
static void check_slow_provider(yhc_session *s, const char *provider_id) {
  char f[200];
  long long t0, took;
  yhc_response *r;
  YT_GROUP("a slow provider (tunnelDelay)");
  snprintf(f, sizeof f, "{\"provider\":\"%s\",\"fault\":\"tunnelDelay\",\"ms\":400}", provider_id);
  sim_fault(f);
  t0 = yt_now_ms();
  YT_CHECK(get_expect(s, "http://calc/add/2/2", "4"));
  took = yt_now_ms() - t0;
  YT_CHECKF(took >= 350 && took < 15000, "took %lld ms", took);
  t0 = yt_now_ms();
  r = get(s, "http://calc/add/1/1", 150);
  took = yt_now_ms() - t0;
  YT_CHECK(r != NULL);
  if (r) {
    YT_CHECKF(r->err == YHC_ERR_TIMEOUT, "err %d (%s) status %d", (int)r->err, r->error, r->status);
    yhc_response_free(r);
  }
  YT_CHECKF(took >= 140 && took < 1500, "the deadline fired after %lld ms", took);
  YT_CHECK(get_expect(s, "http://calc/add/5/5", "10")); /* not the late "2" */
  snprintf(f, sizeof f, "{\"provider\":\"%s\",\"fault\":\"tunnelDelay\",\"ms\":0}", provider_id);
  sim_fault(f);
  t0 = yt_now_ms();
  YT_CHECK(get_expect(s, "http://calc/sub/5/7", "-2"));
  YT_CHECKF(yt_now_ms() - t0 < 350, "still slow after the delay was lifted: %lld ms", yt_now_ms() - t0);
}

/* Debit notes while the service runs: accepted with growing amounts, recorded by the stand-in;
   then an inflated note is refused. */
static void check_debit_notes(yhc_session *s, long long ready_at, const char *provider_id, const char *agreement_id) {
  int k, n, growing = 1, nrej;
  double prev = -1;
  char f[200];
  YT_GROUP("debit notes over a long-running service");
  PUMP_UNTIL(s, yt_now_ms() - ready_at >= 5000 && ev_count(YHC_EV_DEBIT_NOTE_ACCEPTED) >= 3, 15000);
  n = ev_count(YHC_EV_DEBIT_NOTE_ACCEPTED);
  YT_CHECKF(n >= 3, "%d debit notes accepted", n);
  YT_EQ_INT(ev_count(YHC_EV_DEBIT_NOTE_REJECTED), 0);
  for (k = 0; k < g_nev; k++) {
    double v;
    if (g_ev[k].kind != YHC_EV_DEBIT_NOTE_ACCEPTED) continue;
    v = strtod(g_ev[k].amount, NULL);
    if (!(v > prev)) growing = 0;
    prev = v;
    YT_EQ_STR(g_ev[k].agreement_id, agreement_id);
  }
  YT_CHECKF(growing, "accepted amounts do not grow");
  {
    yhc_json_doc *d = yt_sim_state(&g_sim, g_admin);
    const yhc_json *dn;
    int accepted = 0;
    for (dn = yhc_json_first(yhc_json_get(yhc_json_get(yhc_json_root(d), "payments"), "debitNotes")); dn;
         dn = yhc_json_next(dn)) {
      if (strcmp(yhc_json_cstr(yhc_json_get(dn, "agreementId"), ""), agreement_id)) continue;
      accepted += !strcmp(yhc_json_cstr(yhc_json_get(dn, "status"), ""), "ACCEPTED");
    }
    YT_CHECKF(accepted >= n, "the stand-in recorded %d accepted notes, yhc %d", accepted, n);
    yhc_json_free(d);
  }
  YT_CHECK(yhc_session_spent(s) > 0 && yhc_session_spent(s) <= 1.0);
  check_spent(s, 1.0);

  YT_GROUP("a debit note above the agreed price is refused");
  snprintf(f, sizeof f, "{\"provider\":\"%s\",\"fault\":\"inflateDebitNotes\",\"factor\":1000}", provider_id);
  sim_fault(f);
  PUMP_UNTIL(s, ev_count(YHC_EV_DEBIT_NOTE_REJECTED) >= 1, 5000);
  nrej = ev_count(YHC_EV_DEBIT_NOTE_REJECTED);
  YT_CHECKF(nrej >= 1, "no DEBIT_NOTE_REJECTED");
  snprintf(f, sizeof f, "{\"provider\":\"%s\",\"fault\":\"clear\"}", provider_id);
  sim_fault(f);
  if (nrej >= 1) {
    const ev_rec *e = ev_first(YHC_EV_DEBIT_NOTE_REJECTED);
    char note_id[80];
    yhc_json_doc *d;
    const yhc_json *dn;
    YT_CHECKF(strstr(e->message, "price") != NULL, "%s", e->message);
    YT_EQ_STR(e->agreement_id, agreement_id);
    word_after(e->message, "debit note ", note_id, sizeof note_id);
    /* give a wrongly sent accept time to land, then ask the stand-in */
    PUMP_UNTIL(s, 0, 300);
    d = yt_sim_state(&g_sim, g_admin);
    dn = find_by(yhc_json_get(yhc_json_get(yhc_json_root(d), "payments"), "debitNotes"), "debitNoteId", note_id);
    YT_CHECKF(dn != NULL, "note \"%s\" unknown to the stand-in", note_id);
    YT_EQ_STR(yhc_json_cstr(yhc_json_get(dn, "status"), "?"), "RECEIVED");
    YT_CHECKF(fabs(json_money(yhc_json_get(dn, "totalAmountDue")) - strtod(e->amount, NULL)) < 1e-12, "amount %s",
              e->amount);
    yhc_json_free(d);
  }
  /* the refusal terminated that agreement (debit notes cannot be rejected, 501); honest notes
     are accepted again on its replacement after the fault is lifted */
  n = ev_count(YHC_EV_DEBIT_NOTE_ACCEPTED);
  PUMP_UNTIL(s, ev_count(YHC_EV_DEBIT_NOTE_ACCEPTED) > n, 30000);
  YT_CHECK(ev_count(YHC_EV_DEBIT_NOTE_ACCEPTED) > n);
}

/* The whole life of a session with one service, and what it leaves behind in the daemon. */
static void test_lifecycle(void) {
  static const int order[] = {YHC_EV_SESSION_READY,  YHC_EV_DEMAND_PUBLISHED, YHC_EV_OFFER_RECEIVED,
                              YHC_EV_AGREEMENT_SIGNED, YHC_EV_ACTIVITY_STARTED, YHC_EV_SERVICE_READY,
                              YHC_EV_INVOICE_ACCEPTED, YHC_EV_SESSION_CLOSED};
  yhc_session_desc d;
  yhc_service_desc sv;
  yhc_session *s;
  yhc_error err;
  const ev_rec *ready;
  char provider_id[64], agreement_id[160];
  long long ready_at, took;
  size_t k;
  int prev = -1, in_order = 1, n_closed;
  YT_GROUP("lifecycle: start, first requests");
  ev_reset();
  session_defaults(&d);
  d.instance_concurrency = 4;
  s = yhc_session_create(&d, &err);
  YT_CHECKF(s != NULL, "%s", err.msg);
  if (!s) return;
  service_defaults(&sv);
  YT_EQ_INT(yhc_session_add_service(s, &sv, &err), 0);
  YT_CHECK(get_expect(s, "http://calc/add/3/4", "7"));
  YT_CHECK(get_expect(s, "http://calc/mul/6/7", "42"));
  YT_CHECK(get_expect(s, "http://calc/div/1/4", "0.25"));
  ready = ev_first(YHC_EV_SERVICE_READY);
  YT_CHECK(ready != NULL);
  if (!ready) {
    yhc_session_destroy(s);
    return;
  }
  ready_at = yt_now_ms();
  snprintf(provider_id, sizeof provider_id, "%s", ready->provider_id);
  snprintf(agreement_id, sizeof agreement_id, "%s", ready->agreement_id);
  YT_CHECK(provider_id[0] && agreement_id[0]);
  YT_EQ_INT(ev_count(YHC_EV_SESSION_READY), 1);
  YT_EQ_INT(ev_count(YHC_EV_AGREEMENT_SIGNED), 1);
  YT_CHECK(ev_count(YHC_EV_OFFER_RECEIVED) >= 1);
  /* a plain URL (not a service) goes out as ordinary HTTP, here to the stand-in itself */
  {
    char url[128];
    yhc_response *r;
    snprintf(url, sizeof url, "%s/version/get", g_sim.url);
    r = get(s, url, 10000);
    YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200 && r->body.len && strstr(r->body.ptr, "yagna-sim"));
    if (r) yhc_response_free(r);
  }

  check_echo(s);
  check_tunnel_reuse(s, d.instance_concurrency);
  check_slow_provider(s, provider_id);
  check_debit_notes(s, ready_at, provider_id, agreement_id);

  YT_GROUP("lifecycle: close");
  took = close_session(s, 20000);
  YT_CHECKF(yhc_session_closed(s), "not closed after %lld ms", took);
  YT_CHECKF(took < 15000, "close took %lld ms", took);
  for (k = 0; k < sizeof order / sizeof *order; k++) {
    int at = ev_find(order[k], 0);
    if (at <= prev) {
      in_order = 0;
      fprintf(stderr, "  %s first at %d, after %d\n", kind_name(order[k]), at, prev);
    }
    prev = at;
  }
  YT_CHECKF(in_order, "events out of order");
  YT_EQ_INT(ev_count(YHC_EV_SESSION_CLOSED), 1);
  YT_CHECK(g_nev > 0 && g_ev[g_nev - 1].kind == YHC_EV_SESSION_CLOSED);
  YT_EQ_INT(ev_count(YHC_EV_SERVICE_STOPPED), 1);
  /* the over-priced debit note ended its agreement (issue 12: a refusal terminates) */
  YT_EQ_INT(ev_count(YHC_EV_SERVICE_FAILED), 1);
  YT_EQ_INT(ev_count(YHC_EV_ERROR), 0);
  YT_EQ_INT(g_ev_dropped, 0);
  check_closed_in_sim(1);
  check_spent(s, 1.0);
  /* after close: closing again is harmless, requests fail at once with SHUTDOWN */
  n_closed = ev_count(YHC_EV_SESSION_CLOSED);
  yhc_session_close(s);
  yhc_session_close(s);
  YT_CHECK(yhc_session_closed(s));
  YT_EQ_INT(yhc_session_close_wait(s), 0);
  {
    yhc_response *r = get(s, "http://calc/add/1/1", 1000);
    YT_CHECK(r && r->err == YHC_ERR_SHUTDOWN);
    if (r) yhc_response_free(r);
  }
  PUMP_UNTIL(s, 0, 200);
  YT_EQ_INT(ev_count(YHC_EV_SESSION_CLOSED), n_closed);
  yhc_session_destroy(s);
  check_no_violations();
}

/* Closing while requests are in flight or queued: every request ends exactly once. */
static void test_close_in_flight(void) {
  static req_slot slots[7];
  static const char *const paths[7] = {"/sleep/600", "/sleep/600", "/sleep/8000", "/sleep/8000",
                                       "/add/1/1",   "/add/2/2",   "/add/3/3"};
  yhc_session_desc d;
  yhc_service_desc sv;
  yhc_session *s;
  yhc_error err;
  yhc_cluster_stats st;
  long long took;
  int k;
  YT_GROUP("close with requests in flight");
  ev_reset();
  session_defaults(&d);
  d.instance_concurrency = 4;
  d.close_timeout_ms = 2500;
  s = yhc_session_create(&d, &err);
  YT_CHECKF(s != NULL, "%s", err.msg);
  if (!s) return;
  service_defaults(&sv);
  YT_EQ_INT(yhc_session_add_service(s, &sv, &err), 0);
  YT_CHECK(get_expect(s, "http://calc/health", "ok"));
  memset(slots, 0, sizeof slots);
  for (k = 0; k < 7; k++) {
    char url[64];
    yhc_request rq;
    snprintf(url, sizeof url, "http://calc%s", paths[k]);
    memset(&rq, 0, sizeof rq);
    rq.url = url;
    YT_CHECK(yhc_session_request(s, &rq, slot_done, &slots[k]) != 0);
  }
  /* four on the tunnels (concurrency 4), three queued behind them */
  PUMP_UNTIL(s, 0, 250);
  YT_EQ_INT(yhc_session_stats(s, "http://calc", &st), 0);
  YT_EQ_INT(st.in_flight, 4);
  YT_EQ_INT(st.queued, 3);
  took = close_session(s, 20000);
  YT_CHECKF(yhc_session_closed(s), "not closed after %lld ms", took);
  YT_CHECKF(took < 9000, "close took %lld ms", took);
  for (k = 0; k < 7; k++) YT_CHECKF(slots[k].calls == 1, "request %d answered %d times", k, slots[k].calls);
  for (k = 0; k < 2; k++)
    YT_CHECKF(slots[k].err == YHC_ERR_OK && slots[k].status == 200 && !strcmp(slots[k].body, "slept 600"),
              "%s: err %d (%s) body %s", paths[k], (int)slots[k].err, slots[k].error, slots[k].body);
  for (k = 2; k < 4; k++)
    YT_CHECKF(slots[k].err == YHC_ERR_SHUTDOWN, "%s cut by close: err %d (%s)", paths[k], (int)slots[k].err,
              slots[k].error);
  for (k = 4; k < 7; k++)
    YT_CHECKF(slots[k].err == YHC_ERR_SHUTDOWN, "%s was queued: err %d (%s)", paths[k], (int)slots[k].err,
              slots[k].error);
  YT_EQ_INT(ev_count(YHC_EV_SESSION_CLOSED), 1);
  yhc_session_destroy(s);
  for (k = 0; k < 7; k++) YT_CHECKF(slots[k].calls == 1, "after destroy: request %d answered %d times", k, slots[k].calls);
  {
    /* the agreement and activity ended even though work was cut */
    yhc_json_doc *doc = yt_sim_state(&g_sim, g_admin);
    const ev_rec *e = ev_first(YHC_EV_AGREEMENT_SIGNED);
    const yhc_json *ag = e ? find_by(yhc_json_get(yhc_json_root(doc), "agreements"), "agreementId", e->agreement_id) : NULL;
    YT_EQ_STR(yhc_json_cstr(yhc_json_get(ag, "state"), "?"), "Terminated");
    yhc_json_free(doc);
  }
  check_no_violations();
}

/* Abandoning a closing session (close, then destroy at once) with requests in flight: each
   is answered once, nothing leaks. */
static void test_destroy_in_flight(void) {
  static req_slot slots[3];
  yhc_session_desc d;
  yhc_service_desc sv;
  yhc_session *s;
  yhc_error err;
  int k;
  YT_GROUP("close, then destroy at once, with requests in flight");
  ev_reset();
  session_defaults(&d);
  s = yhc_session_create(&d, &err);
  YT_CHECKF(s != NULL, "%s", err.msg);
  if (!s) return;
  service_defaults(&sv);
  YT_EQ_INT(yhc_session_add_service(s, &sv, &err), 0);
  memset(slots, 0, sizeof slots);
  for (k = 0; k < 3; k++) {
    yhc_request rq;
    memset(&rq, 0, sizeof rq);
    rq.url = "http://calc/sleep/3000";
    YT_CHECK(yhc_session_request(s, &rq, slot_done, &slots[k]) != 0);
  }
  PUMP_UNTIL(s, ev_count(YHC_EV_SERVICE_READY) == 1, 20000);
  PUMP_UNTIL(s, 0, 200);
  yhc_session_close(s); /* the instance drains ... */
  PUMP_UNTIL(s, 0, 100);
  YT_CHECK(!yhc_session_closed(s));
  yhc_session_destroy(s); /* ... and is abandoned */
  for (k = 0; k < 3; k++) {
    YT_EQ_INT(slots[k].calls, 1);
    YT_EQ_INT(slots[k].err, YHC_ERR_SHUTDOWN);
  }
}

/* The callback rule at session level: from inside an event, a size function, a startup
   function and a service request's callback, the session takes new requests, cancels them,
   runs a nested blocking fetch and is destroyed; nothing is touched after it is gone (ASan),
   every request is answered once, and no callback runs after the destroy returned. One run
   also uses the session's own loop, which then goes when the outermost poll returns. */
enum { SC_EVENT, SC_SIZE, SC_STARTUP, SC_REQUEST, SC__COUNT };
typedef struct sc_state {
  yhc_session *s;
  int trigger, acted, destroyed, after_destroy;
  req_slot sub, cancelled, nested_slot, first;
  uint64_t cancel_id;
  int cancel_rc, nested_ok;
} sc_state;
static sc_state g_sc;

static void sc_act(void) {
  yhc_request rq;
  yhc_response *r;
  if (g_sc.acted) return;
  g_sc.acted = 1;
  memset(&rq, 0, sizeof rq);
  rq.url = "http://calc/add/2/3";
  rq.timeout_ms = 20000;
  yhc_session_request(g_sc.s, &rq, slot_done, &g_sc.sub);
  g_sc.cancel_id = yhc_session_request(g_sc.s, &rq, slot_done, &g_sc.cancelled);
  g_sc.cancel_rc = yhc_session_cancel(g_sc.s, g_sc.cancel_id);
  /* a nested blocking fetch (a plain URL: the stand-in itself) */
  memset(&rq, 0, sizeof rq);
  rq.url = g_sim.url;
  rq.timeout_ms = 5000;
  r = yhc_session_fetch(g_sc.s, &rq);
  g_sc.nested_ok = r != NULL;
  yhc_response_free(r);
  yhc_session_destroy(g_sc.s); /* pending events are delivered inside it */
  g_sc.destroyed = 1;
}

static void sc_event(const yhc_event *ev, void *user) {
  (void)user;
  if (g_sc.destroyed) g_sc.after_destroy++;
  if (g_sc.trigger == SC_EVENT && ev->kind == YHC_EV_SESSION_READY) sc_act();
}

static int sc_size(const yhc_cluster *c, void *user) {
  (void)c;
  (void)user;
  if (g_sc.destroyed) g_sc.after_destroy++;
  if (g_sc.trigger == SC_SIZE) sc_act();
  return 1;
}

static void sc_startup(yhc_ctx *ctx, const char *listen_on, void *user) {
  if (g_sc.destroyed) g_sc.after_destroy++;
  start_server(ctx, listen_on, user);
  if (g_sc.trigger == SC_STARTUP) sc_act();
}

static void sc_first_done(const yhc_response *resp, void *user) {
  slot_done(resp, user);
  if (g_sc.trigger == SC_REQUEST) sc_act();
}

static void sc_run(int trigger, int own_loop) {
  static const char *const names[] = {"event", "size function", "startup function", "request callback"};
  yhc_session_desc d;
  yhc_service_desc sv;
  yhc_error err;
  yhc_request rq;
  yhc_loop *loop = own_loop ? NULL : yhc_loop_create(NULL);
  long long end;
  memset(&g_sc, 0, sizeof g_sc);
  g_sc.trigger = trigger;
  session_defaults(&d);
  d.on_event = sc_event;
  d.loop = loop;
  g_sc.s = yhc_session_create(&d, &err);
  YT_CHECKF(g_sc.s != NULL, "%s", err.msg);
  if (!g_sc.s) return;
  if (own_loop) loop = yhc_session_loop(g_sc.s);
  service_defaults(&sv);
  sv.startup = sc_startup;
  YT_EQ_INT(yhc_session_add_service(g_sc.s, &sv, &err), 0);
  if (trigger == SC_SIZE) yhc_session_set_size_fn(g_sc.s, "http://calc", sc_size, NULL);
  memset(&rq, 0, sizeof rq);
  rq.url = "http://calc/add/1/1";
  rq.timeout_ms = 30000;
  yhc_session_request(g_sc.s, &rq, sc_first_done, &g_sc.first);
  end = yt_now_ms() + 40000;
  /* after a destroy from a callback, a loop of the session's own is gone: stop turning it */
  while (!g_sc.destroyed && yt_now_ms() < end) yhc_loop_poll(loop, 50);
  YT_CHECKF(g_sc.acted && g_sc.destroyed, "%s: the callback did not run", names[trigger]);
  if (!g_sc.destroyed) yhc_session_destroy(g_sc.s);
  if (!own_loop) {
    end = yt_now_ms() + 300;
    while (yt_now_ms() < end) yhc_loop_poll(loop, 20);
    yhc_loop_destroy(loop);
  }
  YT_CHECKF(g_sc.first.calls == 1 && g_sc.sub.calls == 1 && g_sc.cancelled.calls == 1,
            "%s: answers %d %d %d", names[trigger], g_sc.first.calls, g_sc.sub.calls,
            g_sc.cancelled.calls);
  YT_EQ_INT(g_sc.cancel_rc, 0);
  YT_EQ_INT(g_sc.cancelled.err, YHC_ERR_CANCELLED);
  YT_CHECKF(g_sc.nested_ok, "%s: the nested fetch returned nothing", names[trigger]);
  YT_EQ_INT(g_sc.after_destroy, 0);
  if (trigger == SC_REQUEST) YT_EQ_INT(g_sc.first.err, YHC_ERR_OK);
}

static void test_session_callbacks(void) {
  int t;
  YT_GROUP("every public call from every session callback, destroy included");
  for (t = 0; t < SC__COUNT; t++) sc_run(t, 0);
  sc_run(SC_REQUEST, 1);
}

/* Debit notes the budget cannot cover are not accepted, and the event says why. */
static void test_budget(void) {
  yhc_session_desc d;
  yhc_service_desc sv;
  yhc_session *s;
  yhc_error err;
  const ev_rec *e;
  long long took;
  YT_GROUP("a budget too small for the amounts");
  ev_reset();
  session_defaults(&d);
  d.budget = 0.00000001;
  d.close_timeout_ms = 4000;
  s = yhc_session_create(&d, &err);
  YT_CHECKF(s != NULL, "%s", err.msg);
  if (!s) return;
  service_defaults(&sv);
  YT_EQ_INT(yhc_session_add_service(s, &sv, &err), 0);
  /* issue 12: no agreement is signed that the budget cannot cover for budget_cover_min, and
     the request ends with YHC_ERR_BUDGET rather than being served unpaid */
  {
    yhc_response *r = get(s, "http://calc/add/1/1", 30000);
    YT_CHECKF(r && r->err == YHC_ERR_BUDGET, "err %d", r ? (int)r->err : -1);
    if (r) yhc_response_free(r);
  }
  YT_EQ_INT(ev_count(YHC_EV_AGREEMENT_SIGNED), 0);
  e = ev_first(YHC_EV_OFFER_REJECTED);
  YT_CHECK(e != NULL);
  took = close_session(s, 20000);
  YT_CHECK(yhc_session_closed(s));
  YT_CHECKF(took < 4000, "close waited %lld ms with nothing to wait for", took);
  YT_EQ_INT(ev_count(YHC_EV_DEBIT_NOTE_ACCEPTED), 0);
  YT_EQ_INT(ev_count(YHC_EV_INVOICE_ACCEPTED), 0);
  YT_CHECK(yhc_session_spent(s) == 0);
  yhc_session_destroy(s);
  check_no_violations();
}

/* Starts a session with one service, waits for it to answer, closes; returns the provider
   name the service ran on (in out). */
static void run_simple(const char *group, char *out, size_t cap, int expect_failures) {
  yhc_session_desc d;
  yhc_service_desc sv;
  yhc_session *s;
  yhc_error err;
  const ev_rec *ready;
  long long took;
  (void)group;
  out[0] = 0;
  ev_reset();
  session_defaults(&d);
  s = yhc_session_create(&d, &err);
  YT_CHECKF(s != NULL, "%s", err.msg);
  if (!s) return;
  service_defaults(&sv);
  YT_EQ_INT(yhc_session_add_service(s, &sv, &err), 0);
  YT_CHECK(get_expect(s, "http://calc/add/20/22", "42"));
  ready = ev_first(YHC_EV_SERVICE_READY);
  if (ready) snprintf(out, cap, "%s", ready->provider_name);
  YT_CHECK(ready != NULL);
  if (!expect_failures) YT_EQ_INT(ev_count(YHC_EV_SERVICE_FAILED), 0);
  took = close_session(s, 20000);
  YT_CHECKF(yhc_session_closed(s) && took < 15000, "close took %lld ms", took);
  check_closed_in_sim(1);
  yhc_session_destroy(s);
  check_no_violations();
}

static void test_rejected_proposals(void) {
  char name[64];
  int k;
  YT_GROUP("providers reject our proposals: the one that does not is used");
  sim_fault("{\"provider\":0,\"fault\":\"proposals\",\"mode\":\"reject\"}");
  sim_fault("{\"provider\":1,\"fault\":\"proposals\",\"mode\":\"reject\"}");
  sim_fault("{\"provider\":2,\"fault\":\"proposals\",\"mode\":\"reject\"}");
  run_simple("rejected", name, sizeof name, 0);
  YT_EQ_STR(name, "nyarlathotep");
  YT_CHECKF(ev_count(YHC_EV_PROPOSAL_REJECTED) >= 3, "%d PROPOSAL_REJECTED", ev_count(YHC_EV_PROPOSAL_REJECTED));
  for (k = 0; k < g_nev; k++)
    if (g_ev[k].kind == YHC_EV_AGREEMENT_SIGNED) YT_EQ_STR(g_ev[k].provider_name, "nyarlathotep");
  sim_clear();

  YT_GROUP("providers ignore our proposals: another is used");
  sim_fault("{\"provider\":0,\"fault\":\"proposals\",\"mode\":\"ignore\"}");
  sim_fault("{\"provider\":1,\"fault\":\"proposals\",\"mode\":\"ignore\"}");
  run_simple("ignored", name, sizeof name, 0);
  YT_CHECKF(name[0] && strcmp(name, "golem2004") && strcmp(name, "azathoth-rnd"), "ran on \"%s\"", name);
  sim_clear();
}

static void test_activity_create_fails(void) {
  char name[64];
  int k, failed_on_0 = 0;
  YT_GROUP("activity creation fails on one provider: another replaces it");
  sim_fault("{\"provider\":0,\"fault\":\"failActivityCreate\",\"count\":-1}");
  run_simple("failActivityCreate", name, sizeof name, 1);
  YT_CHECKF(name[0] && strcmp(name, "golem2004"), "ran on \"%s\"", name);
  for (k = 0; k < g_nev; k++)
    if (g_ev[k].kind == YHC_EV_SERVICE_FAILED && !strcmp(g_ev[k].provider_name, "golem2004")) failed_on_0++;
  YT_CHECKF(failed_on_0 == 1, "%d failures on golem2004", failed_on_0);
  YT_EQ_INT(ev_count(YHC_EV_AGREEMENT_SIGNED), 2);
  sim_clear();
}

static void test_offer_window(void) {
  yhc_session_desc d;
  yhc_service_desc sv;
  yhc_session *s;
  yhc_error err;
  const ev_rec *pub, *signed_ev;
  YT_GROUP("offer window: a waiting request signs the best offer at once, the window picks the rest");
  ev_reset();
  session_defaults(&d);
  d.offer_window_ms = 120000; /* longer than this test waits for anything */
  s = yhc_session_create(&d, &err);
  YT_CHECKF(s != NULL, "%s", err.msg);
  if (!s) return;
  service_defaults(&sv);
  sv.initial_size = 2;
  YT_EQ_INT(yhc_session_add_service(s, &sv, &err), 0);
  YT_CHECK(get_expect(s, "http://calc/add/20/22", "42")); /* its deadline is 30 s */
  YT_EQ_INT(ev_count(YHC_EV_AGREEMENT_SIGNED), 1);        /* the second waits for the window */
  close_session(s, 20000);
  YT_CHECK(yhc_session_closed(s));
  yhc_session_destroy(s);

  YT_GROUP("offer window: strict waits the whole window even for a waiting request");
  ev_reset();
  session_defaults(&d);
  d.offer_window_ms = 2500;
  d.offer_window_strict = 1;
  s = yhc_session_create(&d, &err);
  YT_CHECKF(s != NULL, "%s", err.msg);
  if (!s) return;
  service_defaults(&sv);
  YT_EQ_INT(yhc_session_add_service(s, &sv, &err), 0);
  YT_CHECK(get_expect(s, "http://calc/add/20/22", "42"));
  pub = ev_first(YHC_EV_DEMAND_PUBLISHED);
  signed_ev = ev_first(YHC_EV_AGREEMENT_SIGNED);
  YT_CHECK(pub && signed_ev);
  if (pub && signed_ev)
    YT_CHECKF(signed_ev->at_ms - pub->at_ms >= 2400, "signed %lld ms after the demand", signed_ev->at_ms - pub->at_ms);
  close_session(s, 20000);
  YT_CHECK(yhc_session_closed(s));
  yhc_session_destroy(s);
  check_no_violations();
}

/* YHC_GOLEM_ONLY=word runs only the scenarios whose name contains word (while debugging). */
static int want(const char *name) {
  const char *only = getenv("YHC_GOLEM_ONLY");
  return !only || !*only || strstr(name, only) != NULL;
}

#define RUN(fn)                                                                           \
  do {                                                                                    \
    if (want(#fn)) {                                                                      \
      long long run_t0_ = yt_now_ms();                                                    \
      fn();                                                                               \
      if (getenv("YHC_TEST_TIMES")) fprintf(stderr, "  %s: %lld ms\n", #fn, yt_now_ms() - run_t0_); \
    }                                                                                     \
  } while (0)

int main(void) {
  long long t0 = yt_now_ms();
  signal(SIGPIPE, SIG_IGN);
  RUN(test_config);
  RUN(test_daemon_down);
  g_have_sim = yt_sim_available();
  if (!g_have_sim) {
    printf("SKIP: yagna stand-in not available (needs node and tests/yagna-sim/node_modules: make sim-deps)\n");
  } else {
    static const char *const extra[] = {"--debit-note-interval", "1", NULL};
    if (yt_sim_start(&g_sim, 4, extra) < 0) {
      YT_CHECK(!"the stand-in did not start");
    } else {
      g_admin_loop = yhc_loop_create(NULL);
      g_admin = yhc_http_create(g_admin_loop, NULL);
      RUN(test_bad_appkey);
      RUN(test_lifecycle);
      RUN(test_close_in_flight);
      RUN(test_budget);
      RUN(test_rejected_proposals);
      RUN(test_activity_create_fails);
      RUN(test_offer_window);
      RUN(test_destroy_in_flight);
      RUN(test_session_callbacks);
      RUN(test_event_window);
      YT_GROUP("spec conformance over the whole run");
      check_no_violations();
      yhc_http_destroy(g_admin);
      yhc_loop_destroy(g_admin_loop);
      yt_sim_stop(&g_sim);
    }
  }
  YT_GROUP("nothing left allocated");
  YT_CHECKF(yt_mem_blocks == 0, "%lld blocks still allocated", yt_mem_blocks);
  fprintf(stderr, "test_golem: %lld ms\n", yt_now_ms() - t0);
  return yt_done();
}
