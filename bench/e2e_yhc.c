/* e2e_yhc.c -- a Golem service reached three ways, for bench/run.sh's end-to-end figures.
     e2e_yhc session YAGNA_URL APPKEY IMAGE_HASH SECONDS
       rents one instance of the bench calc image (calculator_server.py started through
       bench_server.py, see there) through the daemon (yagna-sim), then measures
       requests/s at 1 and 8 in flight:
         mode=tunnel     yhc_session_request to http://calc/add/1/2 (the session's keep-alive
                         connections through the instance's VPN tunnel)
         mode=newtunnel  the original library's approach: a fresh WebSocket tunnel per request
                         (yhc__ws_open, one request with Connection: close, read to the end)
       The tunnel target (network id, provider IP) is read from the stand-in's /_sim/state.
     (mode=direct is http_yhc rate against the same server run on loopback.)
   Output: "RESULT mode=... inflight=... rps=... p50_us=... errors=..." lines. */
#include "common.h"
#define YHC_IMPLEMENTATION
#include "yhc.h"

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

static void report(const char *mode, int n, double secs) {
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
  if (r->err || r->status != 200) {
    errors++;
    snprintf(last_err, sizeof last_err, "%s (status %d)", r->err ? r->error : "", r->status);
  } else {
    completed++;
    if (nlat < lat_cap) lat[nlat++] = t - sub_at[slot];
  }
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

int main(int argc, char **argv) {
  yhc_session_desc sd;
  yhc_service_desc svc;
  yhc_error err;
  double secs;
  yhc_response *r;
  int i;
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
  sd.offer_window_ms = 300;
  sd.instance_concurrency = 8;
  sd.log_events = getenv("E2E_LOG_EVENTS") != NULL; /* progress on stderr */
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
  svc.initial_size = 1;
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
  }
  req.timeout_ms = 0;
  for (i = 0; i < 20; i++) { /* warm-up: open the tunnel connections */
    r = yhc_session_fetch(sess, &req);
    yhc_response_free(r);
  }
  run_session(1, secs);
  run_session(8, secs);
  if (find_tunnel(argv[2], argv[3]) == 0) {
    run_newtunnel(1, secs);
    run_newtunnel(8, secs);
  }
  yhc_session_close(sess);
  yhc_session_close_wait(sess);
  yhc_session_destroy(sess);
  return 0;
}
