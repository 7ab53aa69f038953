/* calculator.c -- the yhc quickstart: one HTTP service on a Golem provider.

   Rents a provider through yagna, starts examples/calc-image/calculator_server.py in its VM,
   sends a few requests to http://calc/... over the yagna VPN, prints the answers and what
   was spent, and closes the session (agreements terminated, invoices paid).

     YAGNA_APPKEY=... ./calculator [IMAGE_HASH]

   Environment: YAGNA_API_URL (default http://127.0.0.1:7465), YAGNA_APPKEY, YAGNA_SUBNET,
   YHC_IMAGE_HASH / YHC_IMAGE_REPO (the image and the registry that knows it). */
#define YHC_IMPLEMENTATION
#include "yhc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void start_server(yhc_ctx *ctx, const char *listen_on, void *user) {
  /* the server daemonises itself, so the run command returns once it is up */
  const char *argv[] = {"/bin/sh", "-c",
                        "python3 /golem/run/calculator_server.py --port 80 >/dev/null 2>&1 &", NULL};
  (void)listen_on;
  (void)user;
  yhc_ctx_run(ctx, argv);
}

int main(int argc, char **argv) {
  const char *hash = argc > 1 ? argv[1] : getenv("YHC_IMAGE_HASH");
  const char *paths[] = {"/add/3/4", "/mul/6/7", "/sub/10/2.5", "/div/1/3"};
  yhc_session_desc sd;
  yhc_service_desc svc;
  yhc_session *s;
  yhc_error err;
  int i, failures = 0;
  if (!hash) {
    fprintf(stderr, "usage: %s IMAGE_HASH (or set YHC_IMAGE_HASH)\n", argv[0]);
    return 2;
  }
  memset(&sd, 0, sizeof sd);
  sd.budget = 1.0;
  sd.image_repo = getenv("YHC_IMAGE_REPO"); /* NULL = the public Golem registry */
  sd.log_events = 1;                        /* progress on stderr */
  setvbuf(stdout, NULL, _IOLBF, 0);         /* results interleave with the progress lines */
  s = yhc_session_create(&sd, &err);
  if (!s) {
    fprintf(stderr, "calculator: %s\n", err.msg);
    return 1;
  }
  memset(&svc, 0, sizeof svc);
  svc.url = "http://calc";
  svc.image_hash = hash;
  svc.startup = start_server;
  svc.initial_size = 1;
  if (yhc_session_add_service(s, &svc, &err) < 0) {
    fprintf(stderr, "calculator: %s\n", err.msg);
    yhc_session_destroy(s);
    return 1;
  }
  for (i = 0; i < (int)(sizeof paths / sizeof *paths); i++) {
    char url[64];
    yhc_request rq;
    yhc_response *r;
    snprintf(url, sizeof url, "http://calc%s", paths[i]);
    memset(&rq, 0, sizeof rq);
    rq.url = url;
    rq.timeout_ms = 120000; /* the first one waits for a provider to be rented */
    r = yhc_session_fetch(s, &rq);
    if (!r) {
      fprintf(stderr, "calculator: out of memory\n");
      failures++;
      continue;
    }
    if (r->err) {
      printf("%-12s -> error: %s\n", paths[i], r->error);
      failures++;
    } else {
      printf("%-12s -> %d %.*s\n", paths[i], r->status, (int)r->body.len, r->body.ptr);
      if (r->status != 200) failures++;
    }
    yhc_response_free(r);
  }
  {
    yhc_cluster_stats st;
    if (yhc_session_stats(s, "http://calc", &st) == 0)
      printf("requests: %llu completed, %llu failed, p50 %.1f ms\n", (unsigned long long)st.completed,
             (unsigned long long)st.failed, st.p50_ms);
  }
  yhc_session_close_wait(s);
  printf("spent: %.9f GLM\n", yhc_session_spent(s));
  yhc_session_destroy(s);
  return failures ? 1 : 0;
}
