/* loop_demo.h -- what examples/loop_epoll.c, loop_libuv.c and loop_libevent.c have in common:
   the work they drive, so each of them shows only the glue between yhc's tier-3 callbacks and
   one event loop.

   The work, all asynchronous: a Golem session (rents a provider, starts the calculator
   service of examples/calc-image in its VM), four calculations sent to http://calc/..., and
   plain HTTP requests to PLAIN_URL (any server answering GET /hello with "Hello, world!\n",
   e.g. tests/servers/origin.py); each answer is checked, then the session is closed
   (agreements terminated, invoices paid). The example's loop turns until loop_demo_done().

   Environment: YAGNA_API_URL, YAGNA_APPKEY, YHC_IMAGE_HASH and YHC_IMAGE_REPO (as for
   examples/calculator.c). tests/loop_examples.sh runs the examples against the stand-in.
   Include after yhc.h (with YHC_IMPLEMENTATION). */
#ifndef LOOP_DEMO_H
#define LOOP_DEMO_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOOP_DEMO_PLAIN 6

typedef struct loop_demo {
  yhc_session *s;
  int expected, answered, passed, failed, closing;
  char plain_url[LOOP_DEMO_PLAIN][256];
} loop_demo;

typedef struct loop_demo_req {
  loop_demo *d;
  const char *want; /* the body expected */
  char what[64];
} loop_demo_req;

static const char *const loop_demo_calc[][2] = {
    {"/add/3/4", "7"}, {"/mul/6/7", "42"}, {"/sub/10/2.5", "7.5"}, {"/div/1/4", "0.25"}};
static loop_demo_req loop_demo_reqs[4 + LOOP_DEMO_PLAIN];

static void loop_demo_check(loop_demo *d, int ok, const char *what, const char *detail) {
  if (ok) d->passed++; else d->failed++;
  printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, detail ? ": " : "", detail ? detail : "");
}

static void loop_demo_answer(const yhc_response *r, void *user) {
  loop_demo_req *q = (loop_demo_req *)user;
  loop_demo *d = q->d;
  char got[128];
  size_t n = r->body.len;
  while (n && (r->body.ptr[n - 1] == '\n' || r->body.ptr[n - 1] == '\r')) n--;
  if (r->err) snprintf(got, sizeof got, "error %s", r->error);
  else snprintf(got, sizeof got, "%d %.*s", r->status, (int)(n < 100 ? n : 100), r->body.ptr);
  loop_demo_check(d, !r->err && r->status == 200 && n == strlen(q->want) && !memcmp(r->body.ptr, q->want, n),
                  q->what, got);
  /* every request answered: close the session (yhc_session_closed() says when it is done) */
  if (++d->answered == d->expected) {
    d->closing = 1;
    yhc_session_close(d->s);
  }
}

static void loop_demo_start_server(yhc_ctx *ctx, const char *listen_on, void *user) {
  const char *argv[] = {"/bin/sh", "-c",
                        "python3 /golem/run/calculator_server.py --port 80 >/dev/null 2>&1 &", NULL};
  (void)listen_on;
  (void)user;
  yhc_ctx_run(ctx, argv);
}

static void loop_demo_send(loop_demo *d, loop_demo_req *q, const char *url, const char *want) {
  yhc_request rq = YHC_ZERO;
  q->d = d;
  q->want = want;
  snprintf(q->what, sizeof q->what, "%.63s", url);
  rq.url = url;
  rq.timeout_ms = 120000; /* the first calculation waits for a provider to be rented */
  d->expected++;
  if (!yhc_session_request(d->s, &rq, loop_demo_answer, q)) {
    d->expected--;
    loop_demo_check(d, 0, url, "not submitted");
  }
}

/* Creates the session and submits every request; returns 0, or -1 (printed) on a bad setup. */
static int loop_demo_start(loop_demo *d, const char *plain_base) {
  yhc_session_desc sd = YHC_ZERO;
  yhc_service_desc svc = YHC_ZERO;
  yhc_error err;
  const char *hash = getenv("YHC_IMAGE_HASH");
  int i;
  memset(d, 0, sizeof *d);
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (!hash || !plain_base) {
    fprintf(stderr, "usage: YHC_IMAGE_HASH=... YAGNA_APPKEY=... example PLAIN_URL\n");
    return -1;
  }
  sd.budget = 1.0;
  sd.image_repo = getenv("YHC_IMAGE_REPO");
  d->s = yhc_session_create(&sd, &err);
  if (!d->s) {
    fprintf(stderr, "session: %s\n", err.msg);
    return -1;
  }
  svc.url = "http://calc";
  svc.image_hash = hash;
  svc.startup = loop_demo_start_server;
  svc.initial_size = 1;
  if (yhc_session_add_service(d->s, &svc, &err) < 0) {
    fprintf(stderr, "service: %s\n", err.msg);
    return -1;
  }
  for (i = 0; i < 4; i++) {
    static char urls[4][64];
    snprintf(urls[i], sizeof urls[i], "http://calc%s", loop_demo_calc[i][0]);
    loop_demo_send(d, &loop_demo_reqs[i], urls[i], loop_demo_calc[i][1]);
  }
  for (i = 0; i < LOOP_DEMO_PLAIN; i++) {
    snprintf(d->plain_url[i], sizeof d->plain_url[i], "%s/hello", plain_base);
    loop_demo_send(d, &loop_demo_reqs[4 + i], d->plain_url[i], "Hello, world!");
  }
  return 0;
}

static yhc_loop *loop_demo_loop(loop_demo *d) { return yhc_session_loop(d->s); }

/* 1 when every answer is in and the session has closed. */
static int loop_demo_done(loop_demo *d) { return d->closing && yhc_session_closed(d->s); }

/* Checks the close, frees the session, prints "N passed, N failed"; returns the exit code. */
static int loop_demo_finish(loop_demo *d, const char *loop_name) {
  if (d->s) {
    int closed = loop_demo_done(d);
    loop_demo_check(d, d->answered == d->expected && d->expected == 4 + LOOP_DEMO_PLAIN,
                    "every request answered", NULL);
    loop_demo_check(d, closed, "session closed (agreements terminated, invoices paid)", NULL);
    if (closed) printf("spent: %.9f GLM\n", yhc_session_spent(d->s));
    yhc_session_destroy(d->s);
  } else {
    d->failed++;
  }
  printf("%s: %d passed, %d failed\n", loop_name, d->passed, d->failed);
  return d->failed ? 1 : 0;
}
#endif
