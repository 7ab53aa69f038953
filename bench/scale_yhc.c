/* scale_yhc.c -- what one yhc session costs per instance and per request at scale, for
   bench/run.sh's "scale" part (bench/scale.sh runs it against yagna-sim --vm-mode shared).
     scale_yhc YAGNA_URL APPKEY IMAGE_HASH INSTANCES SECONDS poll|epoll
   rents INSTANCES instances of the bench calc image in one cluster (instance_concurrency
   SCALE_CONC, default 8 tunnel connections each), drives the loop with yhc_loop_poll()
   (tier 1: epoll inside on Linux, reported as loop=tier1; poll() when built with YHC_NO_EPOLL,
   loop=poll) or with the tier-3 socket/timer callbacks on an epoll set of its own, then:
     mode=steady  INSTANCES x CONC requests in flight for SECONDS (every answer submits the next):
                  loop CPU per request (getrusage user+sys of this process over the window /
                  requests answered), requests/s, p50/p99; library heap (counting YHC_MALLOC/
                  YHC_FREE) and VmRSS per instance, idle (every tunnel connection open, nothing
                  in flight) and under the load, both above the session before any instance
     mode=queue   SCALE_QUEUE="1000 10000" requests submitted at once, drained by the
                  instances: CPU per request from submission to the last answer, heap per
                  queued request right after the submission
   Every wait is bounded (SCALE_READY_S, default 300 s, for the rental). Output: "RESULT ..."
   lines; "RESULT mode=ready ... ready=K" and exit 1 when fewer than INSTANCES came up. */
#include "common.h"
#define YHC_MALLOC(n) bench_malloc(n)
#define YHC_REALLOC(p, n) bench_realloc(p, n)
#define YHC_FREE(p) bench_free(p)
#define YHC_IMPLEMENTATION
#include "yhc.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

static yhc_session *sess;
static yhc_loop *loop;
static yhc_request req;
static int use_epoll, ep = -1, tfd = -1, ep_errors;
static int load_on, in_flight;
static uint64_t completed, errors;
static double *lat, *sub_at;
static size_t nlat, lat_cap = 4000000, nslots;
static char last_err[300];

/* what drives the loop: the tier-3 epoll set here, or yhc_loop_poll() and what it waits in */
static const char *loop_name(void) { return use_epoll ? "epoll" : YHC__EPOLL ? "tier1" : "poll"; }

/* ---- the tier-3 driver: yhc's fds and deadline in an epoll set of our own */
static void on_socket(void *user, int fd, int events, int old_events, void **fd_data) {
  struct epoll_event ev;
  int op = !events ? EPOLL_CTL_DEL : old_events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  (void)user;
  (void)fd_data;
  memset(&ev, 0, sizeof ev);
  ev.events = (uint32_t)((events & POLLIN ? (int)EPOLLIN : 0) | (events & POLLOUT ? (int)EPOLLOUT : 0));
  ev.data.fd = fd;
  if (epoll_ctl(ep, op, fd, &ev) < 0) ep_errors++;
}

static void on_timeout(void *user, int ms) {
  struct itimerspec its;
  (void)user;
  memset(&its, 0, sizeof its);
  if (ms == 0) its.it_value.tv_nsec = 1;
  else if (ms > 0) {
    its.it_value.tv_sec = ms / 1000;
    its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
  }
  timerfd_settime(tfd, 0, &its, NULL);
}

/* One turn of the loop, waiting at most ms. */
static void turn(int ms) {
  struct epoll_event evs[256];
  int i, n;
  if (!use_epoll) {
    yhc_loop_poll(loop, ms);
    return;
  }
  n = epoll_wait(ep, evs, 256, ms);
  for (i = 0; i < n; i++) {
    if (evs[i].data.fd == tfd) {
      uint64_t expirations;
      if (read(tfd, &expirations, sizeof expirations) > 0) yhc_loop_timeout(loop);
      continue;
    }
    yhc_loop_action(loop, evs[i].data.fd, (int)evs[i].events);
  }
}

/* Turns the loop until *flag (or `secs` have passed). */
static void drive_until(const int *flag, double secs) {
  double until = bench_now() + secs;
  while (!*flag && bench_now() < until) turn(20);
}
static void drive_for(double secs) {
  static const int never = 0;
  drive_until(&never, secs);
}

/* ---- load: every answer submits the next while load_on */
static void on_answer(const yhc_response *r, void *user) {
  size_t slot = (size_t)(uintptr_t)user;
  double t = bench_now();
  if (bench_tally(r->err, r->error, r->status, &completed, &errors, last_err, sizeof last_err) && nlat < lat_cap &&
      slot < nslots)
    lat[nlat++] = t - sub_at[slot];
  if (load_on && slot < nslots) {
    sub_at[slot] = t;
    if (yhc_session_request(sess, &req, on_answer, user)) return;
  }
  in_flight--;
}

static int all_answered;
static void drain(double secs) {
  double until = bench_now() + secs;
  load_on = 0;
  while (in_flight > 0 && bench_now() < until) turn(20);
  all_answered = in_flight == 0;
}

static int ready_now(void) {
  yhc_cluster_stats st;
  if (yhc_session_stats(sess, "http://calc", &st) < 0) return 0;
  return st.ready;
}

static void start_server(yhc_ctx *ctx, const char *listen_on, void *user) {
  const char *argv[] = {"/bin/sh", "-c",
                        "python3 /golem/run/bench_server.py --port 80 >/dev/null 2>&1 &", NULL};
  (void)listen_on;
  (void)user;
  yhc_ctx_run(ctx, argv);
}

static size_t heap_base;
static long rss_base;

static void run_steady(int n_inst, int conc, double secs) {
  size_t i, n = (size_t)n_inst * (size_t)conc;
  double t0, c0, wall, cpu;
  size_t heap_idle, heap_load;
  long rss_idle, rss_load;
  nslots = n;
  sub_at = (double *)calloc(n, sizeof *sub_at);
  /* warm-up: as many in flight as the instances take, so every tunnel connection opens */
  load_on = 1;
  completed = errors = 0;
  for (i = 0; i < n; i++) {
    sub_at[i] = bench_now();
    if (yhc_session_request(sess, &req, on_answer, (void *)(uintptr_t)i)) in_flight++;
  }
  { /* until every slot has cycled a few times (so all n connections are open), bounded */
    double until = bench_now() + 60, least = bench_now() + (secs < 3 ? 3 : secs);
    while (bench_now() < until && (bench_now() < least || completed < 4 * (uint64_t)n)) turn(20);
  }
  drain(60);
  heap_idle = bench_h.live;
  rss_idle = bench_proc_kb("VmRSS");
  /* the timed window */
  load_on = 1;
  completed = errors = 0;
  nlat = 0;
  for (i = 0; i < n; i++) {
    sub_at[i] = bench_now();
    if (yhc_session_request(sess, &req, on_answer, (void *)(uintptr_t)i)) in_flight++;
  }
  drive_for(0.5); /* up to speed */
  completed = errors = 0;
  nlat = 0;
  t0 = bench_now();
  c0 = bench_cpu();
  drive_for(secs);
  cpu = bench_cpu() - c0;
  wall = bench_now() - t0;
  heap_load = bench_h.live;
  rss_load = bench_proc_kb("VmRSS");
  {
    uint64_t done_in_window = completed, errs = errors;
    drain(60);
    qsort(lat, nlat, sizeof *lat, bench_cmp_double);
    printf("RESULT mode=steady loop=%s instances=%d conc=%d inflight=%zu rps=%.1f cpu_us_per_req=%.2f "
           "cpu_util=%.3f p50_us=%.0f p99_us=%.0f completed=%llu errors=%llu heap_base=%zu "
           "heap_idle_per_inst=%.0f heap_load_per_inst=%.0f rss_base_kb=%ld rss_idle_per_inst_kb=%.1f "
           "rss_load_per_inst_kb=%.1f drained=%d\n",
           loop_name(), n_inst, conc, n, (double)done_in_window / wall,
           done_in_window ? cpu * 1e6 / (double)done_in_window : -1, cpu / wall,
           bench_pct(lat, nlat, 0.5) * 1e6, bench_pct(lat, nlat, 0.99) * 1e6,
           (unsigned long long)done_in_window, (unsigned long long)errs, heap_base,
           ((double)heap_idle - (double)heap_base) / n_inst, ((double)heap_load - (double)heap_base) / n_inst,
           rss_base, (double)(rss_idle - rss_base) / n_inst, (double)(rss_load - rss_base) / n_inst,
           all_answered);
    if (errs) fprintf(stderr, "scale_yhc: last error: %s\n", last_err);
  }
  fflush(stdout);
  free(sub_at);
  sub_at = NULL;
  nslots = 0;
}

static void run_queue(int n_inst, size_t q) {
  size_t i, h0, queued = 0;
  double t0, c0;
  completed = errors = 0;
  load_on = 0;
  h0 = bench_h.live;
  t0 = bench_now();
  c0 = bench_cpu();
  for (i = 0; i < q; i++)
    if (yhc_session_request(sess, &req, on_answer, (void *)(uintptr_t)SIZE_MAX)) queued++;
  in_flight += (int)queued;
  {
    size_t h1 = bench_h.live;
    double submit_s = bench_now() - t0;
    drain(600);
    printf("RESULT mode=queue loop=%s instances=%d queued=%zu accepted=%zu heap_per_queued=%.0f submit_us_per_req=%.2f "
           "cpu_us_per_req=%.2f rps=%.1f completed=%llu errors=%llu drained=%d\n",
           loop_name(), n_inst, q, queued, (double)(h1 - h0) / (double)(q ? q : 1),
           submit_s * 1e6 / (double)(q ? q : 1), (bench_cpu() - c0) * 1e6 / (double)(q ? q : 1),
           (double)completed / (bench_now() - t0), (unsigned long long)completed,
           (unsigned long long)errors, all_answered);
    if (errors) fprintf(stderr, "scale_yhc: queue %zu: last error: %s\n", q, last_err);
  }
  fflush(stdout);
}

int main(int argc, char **argv) {
  yhc_session_desc sd;
  yhc_service_desc svc;
  yhc_error err;
  int n_inst, conc, ready;
  double secs, t0, ready_bound;
  const char *qs;
  if (argc != 7 || (strcmp(argv[6], "poll") && strcmp(argv[6], "epoll"))) {
    fprintf(stderr, "usage: scale_yhc YAGNA_URL APPKEY IMAGE_HASH INSTANCES SECONDS poll|epoll\n");
    return 2;
  }
  n_inst = atoi(argv[4]);
  secs = atof(argv[5]);
  use_epoll = !strcmp(argv[6], "epoll");
  conc = getenv("SCALE_CONC") ? atoi(getenv("SCALE_CONC")) : 8;
  ready_bound = getenv("SCALE_READY_S") ? atof(getenv("SCALE_READY_S")) : 300;
  lat = (double *)malloc(lat_cap * sizeof *lat);
  rss_base = bench_proc_kb("VmRSS");
  memset(&sd, 0, sizeof sd);
  sd.yagna_url = argv[1];
  sd.app_key = argv[2];
  sd.image_repo = argv[1];
  sd.budget_glm = "900";
  /* the stand-in's providers ask more the higher their index: let every one of them in */
  sd.max_price_cpu_hour_glm = "100";
  sd.max_price_env_hour_glm = "100";
  sd.max_price_start_glm = "1";
  sd.offer_window_ms = 300;
  sd.instance_concurrency = conc;
  sd.max_queue = 200000;
  sd.request_timeout_ms = 600000;
  sess = yhc_session_create(&sd, &err);
  if (!sess) {
    fprintf(stderr, "scale_yhc: session: %s\n", err.msg);
    return 1;
  }
  loop = yhc_session_loop(sess);
  if (use_epoll) {
    struct epoll_event ev;
    ep = epoll_create1(EPOLL_CLOEXEC);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (ep < 0 || tfd < 0) return perror("epoll/timerfd"), 1;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.fd = tfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    yhc_loop_set_callbacks(loop, on_socket, on_timeout, NULL);
  }
  memset(&svc, 0, sizeof svc);
  svc.url = "http://calc";
  svc.image_hash = argv[3];
  svc.startup = start_server;
  svc.initial_size = n_inst;
  if (yhc_session_add_service(sess, &svc, &err) < 0) {
    fprintf(stderr, "scale_yhc: service: %s\n", err.msg);
    return 1;
  }
  heap_base = bench_h.live;
  memset(&req, 0, sizeof req);
  req.url = "http://calc/add/1/2";
  /* the rental, bounded */
  t0 = bench_now();
  while ((ready = ready_now()) < n_inst && bench_now() - t0 < ready_bound) turn(50);
  printf("RESULT mode=ready loop=%s instances=%d ready=%d secs=%.1f heap_per_inst=%.0f\n",
         loop_name(), n_inst, ready, bench_now() - t0,
         ((double)bench_h.live - (double)heap_base) / (n_inst ? n_inst : 1));
  fflush(stdout);
  if (ready < n_inst) {
    fprintf(stderr, "scale_yhc: %d of %d instances ready after %.0f s\n", ready, n_inst, ready_bound);
  } else {
    run_steady(n_inst, conc, secs);
    for (qs = getenv("SCALE_QUEUE") ? getenv("SCALE_QUEUE") : ""; *qs;) {
      char *end;
      unsigned long q = strtoul(qs, &end, 10);
      if (end == qs) break;
      run_queue(n_inst, q);
      qs = end + strspn(end, " ,");
    }
  }
  if (ep_errors) fprintf(stderr, "scale_yhc: %d epoll_ctl failures\n", ep_errors);
  /* a graceful close, bounded: the providers are free for the next run */
  yhc_session_close(sess);
  {
    int closed = 0;
    double until = bench_now() + 60;
    while (!(closed = yhc_session_closed(sess)) && bench_now() < until) turn(50);
    if (!closed) fprintf(stderr, "scale_yhc: session not closed within 60 s\n");
  }
  yhc_session_destroy(sess);
  if (use_epoll) {
    close(tfd);
    close(ep);
  }
  return ready < n_inst;
}
