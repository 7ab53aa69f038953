/* http_curl.c -- the same loads as http_yhc.c through libcurl's multi interface (the peer).
     http_curl rate URL CONC SECONDS   CONC easy handles in flight; a finished handle is re-added
                                       at once (its connection stays in the multi's pool)
     http_curl get URL                 one download to a discarding write callback: MB/s, VmHWM
   Output: one "RESULT k=v ..." line, as http_yhc. */
#include "common.h"
#include <curl/curl.h>

static size_t body_bytes;
static size_t on_write(char *p, size_t sz, size_t n, void *user) {
  (void)p;
  (void)user;
  body_bytes += sz * n;
  return sz * n;
}

static CURL *mk(const char *url, void *priv) {
  CURL *e = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_PRIVATE, priv);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  return e;
}

static int mode_rate(const char *url, int conc, double secs) {
  CURLM *m = curl_multi_init();
  CURL **h = (CURL **)calloc((size_t)conc, sizeof *h);
  double *sub = (double *)calloc((size_t)conc, sizeof *sub);
  size_t cap = 4000000, nlat = 0;
  double *lat = (double *)malloc(cap * sizeof *lat);
  double t_start = 0, deadline, t1, c0 = 0;
  unsigned long long completed = 0, errors = 0;
  int i, running, phase;
  curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conc);
  curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)conc);
  for (i = 0; i < conc; i++) h[i] = mk(url, (void *)(uintptr_t)i);
  for (phase = 0; phase < 2; phase++) { /* 0: 0.3 s warm-up, 1: measured */
    t_start = bench_now();
    c0 = bench_cpu();
    deadline = t_start + (phase ? secs : 0.3);
    completed = 0;
    nlat = 0;
    for (i = 0; i < conc; i++) {
      sub[i] = bench_now();
      curl_multi_add_handle(m, h[i]);
    }
    do {
      CURLMsg *msg;
      int left;
      curl_multi_perform(m, &running);
      while ((msg = curl_multi_info_read(m, &left))) {
        if (msg->msg == CURLMSG_DONE) {
          CURL *e = msg->easy_handle;
          void *pv;
          size_t slot;
          long code = 0;
          double t = bench_now();
          curl_easy_getinfo(e, CURLINFO_PRIVATE, &pv);
          slot = (size_t)(uintptr_t)pv;
          curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
          if (msg->data.result != CURLE_OK || code != 200) {
            errors++;
            fprintf(stderr, "http_curl: %s (%ld)\n", curl_easy_strerror(msg->data.result), code);
          } else {
            completed++;
            if (nlat < cap) lat[nlat++] = t - sub[slot];
          }
          curl_multi_remove_handle(m, e);
          if (t < deadline && errors < 100) {
            sub[slot] = t;
            curl_multi_add_handle(m, e);
            running++;
          }
        }
      }
      if (running) curl_multi_poll(m, NULL, 0, 1000, NULL);
    } while (running);
  }
  t1 = bench_now();
  qsort(lat, nlat, sizeof *lat, bench_cmp_double);
  printf("RESULT rps=%.0f p50_us=%.1f p99_us=%.1f cpu_us_per_req=%.2f completed=%llu errors=%llu\n",
         (double)completed / (t1 - t_start), bench_pct(lat, nlat, 0.5) * 1e6,
         bench_pct(lat, nlat, 0.99) * 1e6, (bench_cpu() - c0) * 1e6 / (double)(completed ? completed : 1),
         completed, errors);
  for (i = 0; i < conc; i++) curl_easy_cleanup(h[i]);
  curl_multi_cleanup(m);
  return errors ? 1 : 0;
}

static int mode_get(const char *url) {
  CURLM *m = curl_multi_init();
  CURL *e = mk(url, NULL);
  double t0, t1;
  int running;
  long code = 0;
  CURLMsg *msg;
  int left;
  CURLcode res = CURLE_OK;
  t0 = bench_now();
  curl_multi_add_handle(m, e);
  do {
    curl_multi_perform(m, &running);
    if (running) curl_multi_poll(m, NULL, 0, 1000, NULL);
  } while (running);
  t1 = bench_now();
  while ((msg = curl_multi_info_read(m, &left)))
    if (msg->msg == CURLMSG_DONE) res = msg->data.result;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
  if (res != CURLE_OK || code != 200) {
    fprintf(stderr, "http_curl: download failed: %s (%ld)\n", curl_easy_strerror(res), code);
    return 1;
  }
  printf("RESULT mbps=%.1f bytes=%zu vmhwm_kb=%ld\n", (double)body_bytes / (t1 - t0) / 1e6,
         body_bytes, bench_proc_kb("VmHWM"));
  curl_multi_remove_handle(m, e);
  curl_easy_cleanup(e);
  curl_multi_cleanup(m);
  return 0;
}

int main(int argc, char **argv) {
  int rc;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (argc == 5 && !strcmp(argv[1], "rate")) rc = mode_rate(argv[2], atoi(argv[3]), atof(argv[4]));
  else if (argc == 3 && !strcmp(argv[1], "get")) rc = mode_get(argv[2]);
  else {
    fprintf(stderr, "usage: http_curl rate URL CONC SECONDS | get URL\n");
    rc = 2;
  }
  curl_global_cleanup();
  return rc;
}
