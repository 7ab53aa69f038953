/* e2e_yhc.c -- a Golem service reached three ways, for bench/run.sh's end-to-end figures.
     e2e_yhc session YAGNA_URL APPKEY IMAGE_HASH SECONDS
       rents one instance of the bench calc image (calculator_server.py started through
       bench_server.py, see there) through the daemon (yagna-sim), then measures
       requests/s at 1 and 8 in flight:
         mode=tunnel     yhc_session_request to http://calc/add/1/2 (the session's keep-alive
                         connections through the instance's VPN tunnel)
         mode=newtunnel  the original library's approach: a fresh WebSocket tunnel per request
                         (yhc__ws_open, one request with Connection: close, read to the end)
         mode=rawtunnel  the floor under mode=tunnel at 1 in flight: one WebSocket tunnel
                         driven by the simplest possible client (blocking socket calls, no
                         event loop, frames built and parsed by hand), keep-alive requests one
                         after another: what the daemon and the VM cost whoever the client is
       The tunnel target (network id, provider IP) is read from the stand-in's /_sim/state.
     (mode=direct is http_yhc rate against the same server run on loopback.)
   Environment (all optional):
     E2E_INFLIGHT="1 8 32"  the in-flight counts to measure (default "1 8")
     E2E_CONC=N             instance_concurrency (tunnels per instance; default 8)
     E2E_BULK=BYTES         also time one download (GET /bytes/N) and one upload (POST /calc
                            with an N-byte body) through the session: mode=download/upload
     E2E_COLD=1             only the cold start: session_create to the first answer, split by
                            the session's events (mode=cold); E2E_STRICT=1 waits the whole offer
                            window (offer_window_strict), E2E_WINDOW=MS sets it [300; cold 1500]
     E2E_FAULT=KIND         only failover: 3 instances under steady load (E2E_LOAD in flight,
                            default 12), then POST /_sim/fault KIND on the provider of one of
                            them: mode=failover with fault-to-answer times of the requests that
                            were on it and fault-to-back-at-size
     E2E_PATH=/sleep/1000   with E2E_FAULT: the load's path (default /add/1/2); a slow one
                            leaves requests mid-service on the provider when the fault comes
   Output: "RESULT mode=... inflight=... rps=... p50_us=... errors=..." lines. */
#include "common.h"
#define YHC_IMPLEMENTATION
#include "yhc.h"
#include <ctype.h>

static yhc_session *sess;
static yhc_loop *loop;
static int done, in_flight;
static double deadline;
static uint64_t completed, errors;
static double *lat, *sub_at;
static size_t nlat, lat_cap = 1000000;
static char last_err[400];
static yhc_request req;

static void start_server(yhc_ctx *ctx, const char *listen_on, void *user) {
  const char *argv[] = {"/bin/sh", "-c",
                        "python3 /golem/run/bench_server.py --port 80 >/dev/null 2>&1 &", NULL};
  (void)listen_on;
  (void)user;
  yhc_ctx_run(ctx, argv);
}

static int warming;
static void report(const char *mode, int n, double secs) {
  if (warming) return;
  qsort(lat, nlat, sizeof *lat, bench_cmp_double);
  printf("RESULT mode=%s inflight=%d rps=%.1f p50_us=%.0f p99_us=%.0f completed=%llu errors=%llu\n",
         mode, n, (double)completed / secs, bench_pct(lat, nlat, 0.5) * 1e6,
         bench_pct(lat, nlat, 0.99) * 1e6, (unsigned long long)completed,
         (unsigned long long)errors);
  fflush(stdout);
  if (errors) fprintf(stderr, "e2e_yhc %s: last error: %s\n", mode, last_err);
}

/* ---- through the session */
static void on_sess(const yhc_response *r, void *user) {
  size_t slot = (size_t)(uintptr_t)user;
  double t = bench_now();
  if (bench_tally(r->err, r->error, r->status, &completed, &errors, last_err, sizeof last_err) && nlat < lat_cap)
    lat[nlat++] = t - sub_at[slot];
  if (t < deadline && errors < 50) {
    sub_at[slot] = t;
    if (!yhc_session_request(sess, &req, on_sess, user)) in_flight--;
  } else {
    in_flight--;
  }
  if (!in_flight) done = 1;
}

static void run_session(int n, double secs) {
  int i;
  double t0;
  completed = errors = 0;
  nlat = 0;
  done = 0;
  t0 = bench_now();
  deadline = t0 + secs;
  in_flight = n;
  for (i = 0; i < n; i++) {
    sub_at[i] = bench_now();
    yhc_session_request(sess, &req, on_sess, (void *)(uintptr_t)i);
  }
  yhc_session_run(sess, &done);
  report("tunnel", n, bench_now() - t0);
}

/* ---- a new tunnel per request */
static char tunnel_url[512], auth[300];
typedef struct slot {
  yhc__stream *ws;
  char buf[4096];
  size_t len, need; /* need: total bytes of the response once the head is in, else 0 */
  int sent;
  double t0;
  int idx;
} slot;
static slot slots[64];
static void slot_start(slot *s);

static void slot_end(slot *s, int ok, const char *why) {
  double t = bench_now();
  if (s->ws) s->ws->vt->close(s->ws);
  s->ws = NULL;
  if (ok) {
    completed++;
    if (nlat < lat_cap) lat[nlat++] = t - s->t0;
  } else {
    errors++;
    snprintf(last_err, sizeof last_err, "%s", why);
  }
  if (t < deadline && errors < 50) slot_start(s);
  else if (--in_flight == 0) done = 1;
}

static void slot_event(void *owner, int ev) {
  slot *s = (slot *)owner;
  static const char rq[] = "GET /add/1/2 HTTP/1.1\r\nHost: calc\r\nConnection: close\r\n\r\n";
  if (ev & YHC__EV_ERROR) {
    slot_end(s, 0, s->ws->err.msg);
    return;
  }
  if (!s->sent && (ev & (YHC__EV_CONNECT | YHC__EV_WRITE))) {
    long n = s->ws->vt->write(s->ws, rq, sizeof rq - 1);
    if (n == (long)(sizeof rq - 1)) s->sent = 1;
    else if (n != YHC__AGAIN) {
      slot_end(s, 0, "tunnel write failed");
      return;
    }
  }
  for (;;) {
    long n = s->ws->vt->read(s->ws, s->buf + s->len, sizeof s->buf - 1 - s->len);
    if (n == YHC__AGAIN) break;
    if (n <= 0) {
      slot_end(s, s->need && s->len >= s->need, n == 0 ? "EOF before the response ended" : s->ws->err.msg);
      return;
    }
    s->len += (size_t)n;
    s->buf[s->len] = 0;
    if (!s->need) {
      char *e = strstr(s->buf, "\r\n\r\n"), *cl = strcasestr(s->buf, "\ncontent-length:");
      if (e && cl) s->need = (size_t)(e + 4 - s->buf) + strtoul(cl + 16, NULL, 10);
    }
    if (s->need && s->len >= s->need) {
      slot_end(s, strncmp(s->buf, "HTTP/1.1 200", 12) == 0, "status not 200");
      return;
    }
    if (s->len >= sizeof s->buf - 1) {
      slot_end(s, 0, "response too large");
      return;
    }
  }
  s->ws->vt->want(s->ws, 1, !s->sent);
}

static void slot_start(slot *s) {
  yhc_error err;
  yhc_header h = {"Authorization", auth};
  memset(&err, 0, sizeof err);
  s->len = s->need = 0;
  s->sent = 0;
  s->t0 = bench_now();
  s->ws = yhc__ws_open(loop, NULL, NULL, tunnel_url, &h, 1, NULL, &err);
  if (!s->ws) {
    errors++;
    snprintf(last_err, sizeof last_err, "%s", err.msg);
    if (--in_flight == 0) done = 1;
    return;
  }
  s->ws->owner = s;
  s->ws->on_event = slot_event;
  s->ws->vt->want(s->ws, 1, 1);
}

static void run_newtunnel(int n, double secs) {
  int i;
  double t0;
  completed = errors = 0;
  nlat = 0;
  done = 0;
  t0 = bench_now();
  deadline = t0 + secs;
  in_flight = n;
  for (i = 0; i < n; i++) slot_start(&slots[i]);
  yhc_session_run(sess, &done);
  report("newtunnel", n, bench_now() - t0);
}

/* ---- cold start and failover: the session's events, timestamped */
static double t_create, t_create_wall, t_ev[YHC_EV__COUNT];
static int ready_count, fault_provider_set;
static double t_fault, t_back;
static char fault_provider[64];
#define MAX_REQ 200000
typedef struct req_rec {
  uint64_t id;
  double sent, done;
  char provider[64]; /* 'f' while on the faulted provider, 'm' once moved off it */
} req_rec;
static req_rec *recs;
static size_t nrec;
/* every forwarding, in order: a request is forwarded during yhc_session_request already, before
   its id is known here, and again when it moves; matched to the requests afterwards */
typedef struct fwd_rec {
  uint64_t id;
  double at;
  char provider[64];
} fwd_rec;
static fwd_rec *fwds;
static size_t nfwd;

static int log_events;
static void on_event(const yhc_event *ev, void *user) {
  double t = bench_now();
  (void)user;
  if (ev->kind > 0 && ev->kind < YHC_EV__COUNT && !t_ev[ev->kind]) t_ev[ev->kind] = t;
  if (ev->kind == YHC_EV_SERVICE_READY) {
    ready_count++;
    if (t_fault && !t_back && ev->provider_id && strcmp(ev->provider_id, fault_provider)) t_back = t;
  }
  if (ev->kind == YHC_EV_REQUEST_FORWARDED && fwds && nfwd < 2 * MAX_REQ && ev->provider_id) {
    fwds[nfwd].id = ev->request_id;
    fwds[nfwd].at = t;
    snprintf(fwds[nfwd].provider, sizeof fwds[0].provider, "%s", ev->provider_id);
    nfwd++;
  }
  if (log_events) fprintf(stderr, "[%.3f] %s\n", t - t_create, ev->message);
}

static void report_cold(double t_answer) {
  double ready = t_ev[YHC_EV_SESSION_READY], offer = t_ev[YHC_EV_OFFER_RECEIVED],
         sig = t_ev[YHC_EV_AGREEMENT_SIGNED], act = t_ev[YHC_EV_ACTIVITY_STARTED], srv = t_ev[YHC_EV_SERVICE_READY];
  if (!ready || !offer || !sig || !srv) {
    fprintf(stderr, "e2e_yhc: cold start events missing\n");
    return;
  }
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  /* wall-clock ends, so bench/coldsplit.py can lay the stand-in's request log over the run */
  printf("RESULT mode=cold t0_wall=%.3f t1_wall=%.3f strict=%d window_ms=%s total_ms=%.0f setup_ms=%.0f market_ms=%.0f choose_ms=%.0f "
         "deploy_ms=%.0f start_ms=%.0f answer_ms=%.0f\n",
         t_create_wall, (double)wall.tv_sec + wall.tv_nsec * 1e-9 - (bench_now() - t_answer),
         getenv("E2E_STRICT") ? 1 : 0, getenv("E2E_WINDOW") ? getenv("E2E_WINDOW") : "1500",
         (t_answer - t_create) * 1e3, (ready - t_create) * 1e3, (offer - ready) * 1e3, (sig - offer) * 1e3,
         ((act ? act : srv) - sig) * 1e3, (srv - (act ? act : sig)) * 1e3, (t_answer - srv) * 1e3);
}

static void run_bulk(size_t n) {
  yhc_request rq;
  yhc_response *r;
  char url[64];
  char *body = (char *)malloc(n);
  double t0;
  snprintf(url, sizeof url, "http://calc/bytes/%zu", n);
  memset(&rq, 0, sizeof rq);
  rq.url = url;
  rq.timeout_ms = 120000;
  t0 = bench_now();
  r = yhc_session_fetch(sess, &rq);
  if (r && !r->err && r->status == 200 && r->body.len == n)
    printf("RESULT mode=download bytes=%zu secs=%.3f mbps=%.3f\n", n, bench_now() - t0, (double)n / (bench_now() - t0) / 1e6);
  else
    fprintf(stderr, "e2e_yhc: download: %s (status %d)\n", r ? r->error : "no memory", r ? r->status : 0);
  yhc_response_free(r);
  if (!body) return;
  memset(body, 'x', n);
  memset(&rq, 0, sizeof rq);
  rq.url = "http://calc/calc";
  rq.method = "POST";
  rq.body = body;
  rq.body_len = n;
  rq.timeout_ms = 120000;
  t0 = bench_now();
  r = yhc_session_fetch(sess, &rq);
  if (r && !r->err && r->status > 0) /* the calculator refuses the body; it has read it all */
    printf("RESULT mode=upload bytes=%zu secs=%.3f mbps=%.3f status=%d\n", n, bench_now() - t0,
           (double)n / (bench_now() - t0) / 1e6, r->status);
  else
    fprintf(stderr, "e2e_yhc: upload: %s (status %d)\n", r ? r->error : "no memory", r ? r->status : 0);
  yhc_response_free(r);
  free(body);
}

/* steady load for failover: every completion submits the next */
static int fo_stop;
static char fo_url[200]; /* E2E_PATH: the load's path, e.g. /sleep/1000 (requests caught mid-service) */
static void on_fo(const yhc_response *r, void *user) {
  size_t k = (size_t)(uintptr_t)user;
  double t = bench_now();
  (void)r;
  if (k < MAX_REQ) recs[k].done = t;
  if (r->err) errors++;
  else completed++;
  if (!fo_stop && nrec < MAX_REQ) {
    size_t k2 = nrec++;
    recs[k2].sent = bench_now();
    if (!(recs[k2].id = yhc_session_request(sess, &req, on_fo, (void *)(uintptr_t)k2))) in_flight--;
  } else {
    in_flight--;
  }
  if (!in_flight) done = 1;
}

static int sim_fault(const char *yagna, const char *kind, const char *provider) {
  char url[300], body[300];
  yhc_request rq;
  yhc_response *r;
  yhc_header h[2] = {{"Authorization", auth}, {"Content-Type", "application/json"}};
  int st;
  snprintf(url, sizeof url, "%s/_sim/fault", yagna);
  snprintf(body, sizeof body, "{\"provider\":\"%s\",\"fault\":\"%s\"}", provider, kind);
  memset(&rq, 0, sizeof rq);
  rq.url = url;
  rq.method = "POST";
  rq.headers = h;
  rq.header_count = 2;
  rq.body = body;
  rq.body_len = strlen(body);
  r = yhc_session_fetch(sess, &rq);
  st = r && !r->err ? r->status : 0;
  if (st != 200) fprintf(stderr, "e2e_yhc: fault %s: status %d %.*s\n", kind, st, r ? (int)r->body.len : 0, r ? r->body.ptr : "");
  yhc_response_free(r);
  return st == 200 ? 0 : -1;
}

static void pump(double secs) {
  double until = bench_now() + secs;
  while (bench_now() < until) yhc_loop_poll(loop, 20);
}

static void run_failover(const char *yagna, const char *kind, int load) {
  double on[4096], back;
  size_t i, non = 0, lost = 0;
  int k;
  recs = (req_rec *)calloc(MAX_REQ, sizeof *recs);
  fwds = (fwd_rec *)calloc(2 * MAX_REQ, sizeof *fwds);
  for (k = 0; k < 50 && ready_count < 3; k++) pump(0.2);
  completed = errors = 0;
  in_flight = load;
  for (k = 0; k < load; k++) {
    size_t k2 = nrec++;
    recs[k2].sent = bench_now();
    recs[k2].id = yhc_session_request(sess, &req, on_fo, (void *)(uintptr_t)k2);
  }
  pump(2.0); /* steady state */
  if (nfwd) /* the provider of the latest forwarding: one instance of the three */
    snprintf(fault_provider, sizeof fault_provider, "%s", fwds[nfwd - 1].provider);
  /* the fault counts from the stand-in's answer: it is in force by then, and what the
     provider finished while the POST was under way (the loop runs) was not caught by it */
  if (!fault_provider[0] || sim_fault(yagna, kind, fault_provider) < 0) {
    printf("RESULT mode=failover fault=%s missing=1\n", kind);
    fo_stop = 1;
    yhc_session_run(sess, &done);
    return;
  }
  t_fault = bench_now();
  fault_provider_set = 1;
  for (k = 0; k < 600 && !t_back; k++) pump(0.1); /* up to 60 s for the cluster to be whole again */
  pump(1.0);
  fo_stop = 1;
  yhc_session_run(sess, &done);
  /* the fault's victims: the requests that were on that provider at the fault, or were sent
     to it after (before yhc knew), and moved to another one; each timed from the fault, or
     from its sending when later. Requests it finished after the fault are not victims. */
  for (i = 0; i < nfwd; i++) {
    size_t lo = 0, hi = nrec; /* ids grow with the index */
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (recs[mid].id < fwds[i].id) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= nrec || recs[lo].id != fwds[i].id) continue;
    if (!strcmp(fwds[i].provider, fault_provider)) {
      if (!recs[lo].done || recs[lo].done >= t_fault) recs[lo].provider[0] = 'f'; /* on it since the fault */
    } else if (recs[lo].provider[0] == 'f') {
      recs[lo].provider[0] = 'm'; /* moved off it */
    }
  }
  for (i = 0; i < nrec && non < sizeof on / sizeof on[0]; i++) {
    double from = recs[i].sent > t_fault ? recs[i].sent : t_fault;
    if (recs[i].provider[0] == 'f' && !recs[i].done) lost++;
    if (recs[i].provider[0] != 'm') continue;
    if (!recs[i].done) lost++;
    else on[non++] = recs[i].done - from;
  }
  qsort(on, non, sizeof on[0], bench_cmp_double);
  back = t_back ? t_back - t_fault : -1;
  printf("RESULT mode=failover fault=%s path=%s on_it=%zu unanswered=%zu answered_p50_ms=%.0f answered_p99_ms=%.0f "
         "back_at_size_ms=%.0f errors=%llu completed=%llu\n",
         kind, fo_url[0] ? fo_url + 11 : "/add/1/2", non + lost, lost, non ? bench_pct(on, non, 0.5) * 1e3 : -1, non ? bench_pct(on, non, 0.99) * 1e3 : -1,
         back * 1e3, (unsigned long long)errors, (unsigned long long)completed);
}

/* Finds the calc instance's tunnel target in the stand-in's state. */
static int find_tunnel(const char *yagna, const char *key) {
  char url[300];
  yhc_request rq;
  yhc_response *r;
  yhc_header h = {"Authorization", auth};
  const yhc_json *t;
  yhc_json_doc *d;
  int ok = -1;
  snprintf(url, sizeof url, "%s/_sim/state", yagna);
  memset(&rq, 0, sizeof rq);
  rq.url = url;
  rq.headers = &h;
  rq.header_count = 1;
  r = yhc_session_fetch(sess, &rq);
  (void)key;
  if (!r || r->err || r->status != 200) {
    fprintf(stderr, "e2e_yhc: GET /_sim/state failed\n");
    yhc_response_free(r);
    return -1;
  }
  d = yhc_json_parse(r->body.ptr, r->body.len, NULL, NULL);
  for (t = yhc_json_first(yhc_json_get(yhc_json_root(d), "tunnels")); t; t = yhc_json_next(t)) {
    const char *net = yhc_json_cstr(yhc_json_get(t, "networkId"), NULL);
    const char *ip = yhc_json_cstr(yhc_json_get(t, "ip"), NULL);
    int64_t port = yhc_json_int(yhc_json_get(t, "port"), 0);
    if (net && ip && port) {
      snprintf(tunnel_url, sizeof tunnel_url, "%s/net-api/v2/vpn/net/%s/tcp/%s/%d", yagna, net,
               ip, (int)port);
      memmove(tunnel_url + 2, tunnel_url + 4, strlen(tunnel_url + 4) + 1); /* http -> ws */
      memcpy(tunnel_url, "ws", 2);
      ok = 0;
      break;
    }
  }
  if (ok) fprintf(stderr, "e2e_yhc: no open tunnel in /_sim/state\n");
  yhc_json_free(d);
  yhc_response_free(r);
  return ok;
}

static void run_all(const char *yagna, double secs);

int main(int argc, char **argv) {
  yhc_session_desc sd;
  yhc_service_desc svc;
  yhc_error err;
  double secs;
  yhc_response *r;
  if (argc != 6 || strcmp(argv[1], "session")) {
    fprintf(stderr, "usage: e2e_yhc session YAGNA_URL APPKEY IMAGE_HASH SECONDS\n");
    return 2;
  }
  secs = atof(argv[5]);
  snprintf(auth, sizeof auth, "Bearer %s", argv[3]);
  lat = (double *)malloc(lat_cap * sizeof *lat);
  sub_at = (double *)calloc(64, sizeof *sub_at);
  memset(&sd, 0, sizeof sd);
  sd.yagna_url = argv[2];
  sd.app_key = argv[3];
  sd.image_repo = argv[2];
  sd.budget = 1.0;
  sd.offer_window_ms = getenv("E2E_WINDOW") ? atoi(getenv("E2E_WINDOW")) : getenv("E2E_COLD") ? 1500 : 300;
  sd.offer_window_strict = getenv("E2E_STRICT") != NULL;
  sd.instance_concurrency = getenv("E2E_CONC") ? atoi(getenv("E2E_CONC")) : 8;
  /* events only where they are measured: a user without a callback pays for none */
  log_events = getenv("E2E_LOG_EVENTS") != NULL;
  if (getenv("E2E_COLD") || getenv("E2E_FAULT") || log_events) sd.on_event = on_event;
  {
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    t_create = bench_now();
    t_create_wall = (double)wall.tv_sec + wall.tv_nsec * 1e-9;
  }
  sess = yhc_session_create(&sd, &err);
  if (!sess) {
    fprintf(stderr, "e2e_yhc: session: %s\n", err.msg);
    return 1;
  }
  loop = yhc_session_loop(sess);
  memset(&svc, 0, sizeof svc);
  svc.url = "http://calc";
  svc.image_hash = argv[4];
  svc.startup = start_server;
  svc.initial_size = getenv("E2E_FAULT") ? 3 : 1;
  if (yhc_session_add_service(sess, &svc, &err) < 0) {
    fprintf(stderr, "e2e_yhc: service: %s\n", err.msg);
    return 1;
  }
  memset(&req, 0, sizeof req);
  req.url = "http://calc/add/1/2";
  req.timeout_ms = 120000; /* the first request waits for the rental */
  {
    double t0 = bench_now();
    r = yhc_session_fetch(sess, &req);
    if (!r || r->err || r->status != 200) {
      fprintf(stderr, "e2e_yhc: first request: %s (status %d)\n", r ? r->error : "no memory",
              r ? r->status : 0);
      return 1;
    }
    fprintf(stderr, "e2e_yhc: instance ready after %.1f s\n", bench_now() - t0);
    yhc_response_free(r);
    if (getenv("E2E_COLD")) report_cold(bench_now());
  }
  req.timeout_ms = 0;
  if (getenv("E2E_FAULT") && getenv("E2E_PATH")) {
    snprintf(fo_url, sizeof fo_url, "http://calc%s", getenv("E2E_PATH"));
    req.url = fo_url;
  }
  if (getenv("E2E_FAULT")) {
    run_failover(argv[2], getenv("E2E_FAULT"), getenv("E2E_LOAD") ? atoi(getenv("E2E_LOAD")) : 12);
  } else if (!getenv("E2E_COLD")) {
    run_all(argv[2], secs);
  }
  yhc_session_close(sess);
  yhc_session_close_wait(sess);
  yhc_session_destroy(sess);
  return 0;
}

/* ---- the floor: one tunnel, blocking calls, no library in the way */
static int raw_io(int fd, char *buf, size_t len, int out) {
  while (len) {
    ssize_t n = out ? send(fd, buf, len, MSG_NOSIGNAL) : recv(fd, buf, len, 0);
    if (n <= 0) return -1;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* The next server frame's payload appended at buf+*len (cap bytes in all); -1 on anything odd. */
static int raw_frame(int fd, char *buf, size_t *len, size_t cap) {
  unsigned char h[8];
  size_t n;
  if (raw_io(fd, (char *)h, 2, 0)) return -1;
  n = h[1] & 0x7f;
  if (n == 126) {
    if (raw_io(fd, (char *)h + 2, 2, 0)) return -1;
    n = ((size_t)h[2] << 8) | h[3];
  } else if (n == 127 || (h[1] & 0x80)) {
    return -1;
  }
  if (*len + n > cap) return -1;
  if (raw_io(fd, buf + *len, n, 0)) return -1;
  if ((h[0] & 0x0f) == 0x2 || (h[0] & 0x0f) == 0x0) *len += n; /* pings and the rest: skipped */
  return 0;
}

static void run_rawtunnel(double secs) {
  static const char rq[] = "GET /add/1/2 HTTP/1.1\r\nHost: calc\r\n\r\n";
  char host[64], head[1024], buf[8192], frame[6 + sizeof rq];
  const char *hp = tunnel_url + 5, *path = strchr(hp, '/');
  struct sockaddr_in sa;
  int fd, port, one = 1;
  size_t k, hl;
  double t0;
  completed = errors = 0;
  nlat = 0;
  if (!path || sscanf(hp, "%63[^:]:%d", host, &port) != 2) return;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, host, &sa.sin_addr);
  fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  hl = (size_t)snprintf(head, sizeof head,
                        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                        "Authorization: %s\r\n\r\n",
                        path, host, port, auth);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) || raw_io(fd, head, hl, 1)) goto out;
  for (k = 0; k + 1 < sizeof head; k++) { /* the 101's head, a byte at a time: nothing more is read */
    if (raw_io(fd, head + k, 1, 0)) goto out;
    if (k >= 3 && memcmp(head + k - 3, "\r\n\r\n", 4) == 0) break;
  }
  if (strncmp(head, "HTTP/1.1 101", 12) != 0) goto out;
  frame[0] = (char)0x82; /* FIN, binary */
  frame[1] = (char)(0x80 | (sizeof rq - 1));
  memset(frame + 2, 0, 4); /* a zero mask: the payload goes as it is */
  memcpy(frame + 6, rq, sizeof rq - 1);
  t0 = bench_now();
  while (bench_now() - t0 < secs && errors < 50) {
    double t = bench_now();
    size_t len = 0, need = 0;
    if (raw_io(fd, frame, 6 + sizeof rq - 1, 1)) break;
    while (!need || len < need) {
      char *e, *cl;
      if (raw_frame(fd, buf, &len, sizeof buf - 1)) goto out;
      buf[len] = 0;
      e = strstr(buf, "\r\n\r\n");
      cl = strcasestr(buf, "\ncontent-length:");
      if (e && cl) need = (size_t)(e + 4 - buf) + strtoul(cl + 16, NULL, 10);
    }
    if (strncmp(buf, "HTTP/1.1 200", 12) == 0) {
      completed++;
      if (nlat < lat_cap) lat[nlat++] = bench_now() - t;
    } else {
      errors++;
    }
  }
  report("rawtunnel", 1, bench_now() - t0);
out:
  close(fd);
}

static void run_all(const char *yagna, double secs) {
  const char *inflight = getenv("E2E_INFLIGHT") ? getenv("E2E_INFLIGHT") : "1 8";
  const char *p;
  yhc_response *r;
  int i, n;
  for (i = 0; i < 20; i++) { /* warm-up */
    r = yhc_session_fetch(sess, &req);
    yhc_response_free(r);
  }
  for (p = inflight, i = 0; sscanf(p, "%d", &n) == 1; p += strspn(p, "0123456789"), p += strspn(p, " ,"))
    if (n > i && n <= 64) i = n;
  warming = 1; /* opens as many tunnel connections as the largest count will use */
  run_session(i, 1.0);
  warming = 0;
  for (p = inflight; sscanf(p, "%d", &n) == 1; p += strspn(p, "0123456789"), p += strspn(p, " ,"))
    if (n > 0 && n <= 64) run_session(n, secs);
  if (getenv("E2E_BULK")) run_bulk((size_t)atol(getenv("E2E_BULK")));
  if (find_tunnel(yagna, NULL) == 0)
    for (p = inflight; sscanf(p, "%d", &n) == 1; p += strspn(p, "0123456789"), p += strspn(p, " ,"))
      if (n > 0 && n <= 64) run_newtunnel(n, secs);
  if (tunnel_url[0] && inflight[0] == '1' && !isdigit((unsigned char)inflight[1])) run_rawtunnel(secs);
}
