/* http_yhc.c -- yhc's HTTP client under load, for bench/run.sh.
     http_yhc rate URL CONC SECONDS   keep-alive request rate with CONC requests in flight (each
                                      completion submits the next); p50/p99 latency
     http_yhc get URL                 one streamed download (on_body): MB/s, peak library heap
                                      (counting YHC_MALLOC), VmHWM
     http_yhc allocs URL N            allocations and heap bytes per request on a warm
                                      keep-alive connection (after 100 warm-up requests)
     http_yhc queue URL N             RSS and library heap with N requests queued at once
                                      (submitted, then all run to completion on 16 connections)
   Output: one "RESULT k=v ..." line. */
#include "common.h"
#define YHC_MALLOC(n) bench_malloc(n)
#define YHC_REALLOC(p, n) bench_realloc(p, n)
#define YHC_FREE(p) bench_free(p)
#define YHC_IMPLEMENTATION
#include "yhc.h"

static yhc_loop *loop;
static yhc_http *http;
static yhc_request req;
static int done, in_flight;
static double deadline, t_start;
static uint64_t completed, errors, body_bytes;
static double *lat, *sub_at;
static size_t nlat, lat_cap;
static char last_err[300];

static void on_rate(const yhc_response *r, void *user) {
  size_t slot = (size_t)(uintptr_t)user;
  double t = bench_now();
  if (r->err != YHC_ERR_OK || r->status != 200) {
    errors++;
    snprintf(last_err, sizeof last_err, "%s (status %d)", r->err ? r->error : "", r->status);
  } else {
    completed++;
    body_bytes += r->body.len;
    if (nlat < lat_cap) lat[nlat++] = t - sub_at[slot];
  }
  if (t < deadline && errors < 100) {
    sub_at[slot] = t;
    if (!yhc_http_request(http, &req, on_rate, user)) { errors++; in_flight--; }
  } else {
    in_flight--;
  }
  if (!in_flight) done = 1;
}

static int mode_rate(const char *url, int conc, double secs) {
  yhc_http_desc d;
  int i;
  double t1, c0;
  memset(&d, 0, sizeof d);
  d.max_conns_per_host = conc;
  d.max_idle_per_host = conc;
  http = yhc_http_create(loop, &d);
  req.url = url;
  lat_cap = 4000000;
  lat = (double *)malloc(lat_cap * sizeof *lat);
  sub_at = (double *)calloc((size_t)conc, sizeof *sub_at);
  /* warm-up: open the connections and let the first requests go through */
  deadline = bench_now() + 0.3;
  in_flight = conc;
  for (i = 0; i < conc; i++) {
    sub_at[i] = bench_now();
    yhc_http_request(http, &req, on_rate, (void *)(uintptr_t)i);
  }
  yhc_loop_run(loop, &done);
  completed = 0;
  nlat = 0;
  done = 0;
  t_start = bench_now();
  c0 = bench_cpu();
  deadline = t_start + secs;
  in_flight = conc;
  for (i = 0; i < conc; i++) {
    sub_at[i] = bench_now();
    yhc_http_request(http, &req, on_rate, (void *)(uintptr_t)i);
  }
  yhc_loop_run(loop, &done);
  t1 = bench_now();
  qsort(lat, nlat, sizeof *lat, bench_cmp_double);
  printf("RESULT rps=%.0f p50_us=%.1f p99_us=%.1f cpu_us_per_req=%.2f completed=%llu errors=%llu\n",
         (double)completed / (t1 - t_start), bench_pct(lat, nlat, 0.5) * 1e6,
         bench_pct(lat, nlat, 0.99) * 1e6, (bench_cpu() - c0) * 1e6 / (double)(completed ? completed : 1),
         (unsigned long long)completed, (unsigned long long)errors);
  if (errors) fprintf(stderr, "http_yhc: last error: %s\n", last_err);
  yhc_http_destroy(http);
  return errors ? 1 : 0;
}

static int on_body(void *user, const void *data, size_t len) {
  (void)user;
  (void)data;
  body_bytes += len;
  return 0;
}
static yhc_err one_err;
static int one_status;
static void on_one(const yhc_response *r, void *user) {
  (void)user;
  one_err = r->err;
  one_status = r->status;
  if (r->err) snprintf(last_err, sizeof last_err, "%s", r->error);
  body_bytes += r->body.len;
  done = 1;
}

static int mode_get(const char *url) {
  double t0, t1;
  http = yhc_http_create(loop, NULL);
  req.url = url;
  req.on_body = on_body;
  {
    size_t base = bench_h.live;
    t0 = bench_now();
    yhc_http_request(http, &req, on_one, NULL);
    yhc_loop_run(loop, &done);
    t1 = bench_now();
    if (one_err || one_status != 200) {
      fprintf(stderr, "http_yhc: download failed: %s status %d\n", last_err, one_status);
      return 1;
    }
    /* peak_heap: everything the library held at its peak (client, connection, request,
       receive buffer); heap_base: the client alone, before the request */
    printf("RESULT mbps=%.1f bytes=%llu peak_heap=%zu heap_base=%zu vmhwm_kb=%ld\n",
           (double)body_bytes / (t1 - t0) / 1e6, (unsigned long long)body_bytes, bench_h.peak,
           base, bench_proc_kb("VmHWM"));
  }
  yhc_http_destroy(http);
  return 0;
}

static int mode_allocs(const char *url, int n) {
  int i;
  uint64_t a0, r0, bytes0 = 0;
  size_t live0, peak0;
  http = yhc_http_create(loop, NULL);
  req.url = url;
  for (i = 0; i < 100; i++) {
    done = 0;
    yhc_http_request(http, &req, on_one, NULL);
    yhc_loop_run(loop, &done);
    if (one_err || one_status != 200) {
      fprintf(stderr, "http_yhc: warm-up failed: %s\n", last_err);
      return 1;
    }
  }
  a0 = bench_h.allocs;
  r0 = bench_h.reallocs;
  live0 = bench_h.live;
  peak0 = bench_h.peak;
  bench_h.peak = bench_h.live;
  (void)bytes0;
  for (i = 0; i < n; i++) {
    done = 0;
    yhc_http_request(http, &req, on_one, NULL);
    yhc_loop_run(loop, &done);
    if (one_err || one_status != 200) return 1;
  }
  printf("RESULT allocs_per_req=%.3f reallocs_per_req=%.3f heap_growth=%ld live_heap=%zu "
         "peak_over_live=%zu\n",
         (double)(bench_h.allocs - a0) / n, (double)(bench_h.reallocs - r0) / n,
         (long)bench_h.live - (long)live0, bench_h.live, bench_h.peak - live0);
  (void)peak0;
  yhc_http_destroy(http);
  return 0;
}

static int left;
static void on_q(const yhc_response *r, void *user) {
  (void)user;
  if (r->err || r->status != 200) {
    errors++;
    snprintf(last_err, sizeof last_err, "%s (status %d)", r->error, r->status);
  }
  if (--left == 0) done = 1;
}

static int mode_queue(const char *url, int n) {
  long rss0, rss1;
  size_t heap0;
  int i;
  double t0;
  http = yhc_http_create(loop, NULL);
  req.url = url;
  rss0 = bench_proc_kb("VmRSS");
  heap0 = bench_h.live;
  left = n;
  t0 = bench_now();
  for (i = 0; i < n; i++) yhc_http_request(http, &req, on_q, NULL);
  rss1 = bench_proc_kb("VmRSS");
  {
    size_t heap1 = bench_h.live;
    yhc_loop_run(loop, &done);
    printf("RESULT queued=%d rss_growth_kb=%ld heap_queued=%zu bytes_per_queued=%.0f "
           "drain_s=%.2f errors=%llu\n",
           n, rss1 - rss0, heap1 - heap0, (double)(heap1 - heap0) / n, bench_now() - t0,
           (unsigned long long)errors);
  }
  if (errors) fprintf(stderr, "http_yhc: last error: %s\n", last_err);
  yhc_http_destroy(http);
  return errors ? 1 : 0;
}

int main(int argc, char **argv) {
  int rc;
  if (argc < 3) {
    fprintf(stderr, "usage: http_yhc rate|get|allocs|queue URL [args]\n");
    return 2;
  }
  loop = yhc_loop_create(NULL);
  if (!strcmp(argv[1], "rate") && argc == 5) rc = mode_rate(argv[2], atoi(argv[3]), atof(argv[4]));
  else if (!strcmp(argv[1], "get")) rc = mode_get(argv[2]);
  else if (!strcmp(argv[1], "allocs") && argc == 4) rc = mode_allocs(argv[2], atoi(argv[3]));
  else if (!strcmp(argv[1], "queue") && argc == 4) rc = mode_queue(argv[2], atoi(argv[3]));
  else {
    fprintf(stderr, "http_yhc: bad arguments\n");
    rc = 2;
  }
  yhc_loop_destroy(loop);
  return rc;
}
