/* test_api.c -- what users reach for (issue 14): JSON in and out, session state, the instance
   inventory, stats split into queue wait and service time, OpenMetrics text checked by the
   reference parser, event fields and names, service URL validation, and calls after close.

   The parts that need no daemon always run; the rest run against the yagna stand-in
   (tests/yagna-sim, 4 providers) and print a skip line when node or its modules are missing
   (make sim-deps). The metrics text is parsed by tests/servers/check_metrics.py with Debian's
   python3-prometheus-client; without it that check prints a skip line. Run from the
   repository root. */
#define _POSIX_C_SOURCE 200809L
#define YHC_IMPLEMENTATION
#include "yhc.h"
#include "tests/yt.h"
#include "tests/yt_proc.h"
#include "tests/yt_sim.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

static yt_sim g_sim;
static yhc_loop *g_admin_loop;
static yhc_http *g_admin;

/* ---------------------------------------------------------------- events */
typedef struct ev_rec {
  yhc_event_kind kind;
  char provider_id[64], provider_name[64];
  uint64_t request_id;
  int newline; /* the message had a line break */
} ev_rec;
#define MAX_EV 4096
static ev_rec g_ev[MAX_EV];
static int g_nev;

static void on_event(const yhc_event *ev, void *user) {
  ev_rec *e;
  (void)user;
  if (getenv("YHC_TEST_EVENTS")) fprintf(stderr, "  [%s] %s\n", yhc_event_name(ev->kind), ev->message);
  if (g_nev >= MAX_EV) return;
  e = &g_ev[g_nev++];
  memset(e, 0, sizeof *e);
  e->kind = ev->kind;
  snprintf(e->provider_id, sizeof e->provider_id, "%s", ev->provider_id ? ev->provider_id : "");
  snprintf(e->provider_name, sizeof e->provider_name, "%s", ev->provider_name ? ev->provider_name : "");
  e->request_id = ev->request_id;
  e->newline = ev->message && strpbrk(ev->message, "\r\n") != NULL;
}

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

static void service_defaults(yhc_service_desc *d, const char *url) {
  memset(d, 0, sizeof *d);
  d->url = url;
  d->image_hash = g_sim.hash[0] ? g_sim.hash : "abcdef";
  d->startup = start_server;
  d->initial_size = 1;
}

#define PUMP_UNTIL(s, cond, ms)                                                             \
  do {                                                                                      \
    long long pump_deadline_ = yt_now_ms() + (ms);                                          \
    while (!(cond) && yt_now_ms() < pump_deadline_) yhc_loop_poll(yhc_session_loop(s), 50); \
  } while (0)

/* ---------------------------------------------------------------- no daemon needed */

static void test_event_names(void) {
  int k;
  YT_GROUP("yhc_event_name: every kind has its own stable name");
  YT_EQ_STR(yhc_event_name(YHC_EV_SESSION_READY), "session_ready");
  YT_EQ_STR(yhc_event_name(YHC_EV_REQUEST_RETRIED), "request_retried");
  YT_EQ_STR(yhc_event_name(YHC_EV_ERROR), "error");
  YT_EQ_STR(yhc_event_name((yhc_event_kind)0), "unknown");
  YT_EQ_STR(yhc_event_name((yhc_event_kind)999), "unknown");
  for (k = 1; k < (int)YHC_EV__COUNT; k++) {
    int j;
    const char *n = yhc_event_name((yhc_event_kind)k);
    YT_CHECKF(strcmp(n, "unknown") != 0, "kind %d has no name", k);
    for (j = 1; j < k; j++) YT_CHECKF(strcmp(n, yhc_event_name((yhc_event_kind)j)) != 0, "%s twice", n);
  }
  YT_EQ_STR(yhc_state_name(YHC_STATE_DEGRADED), "degraded");
  YT_EQ_STR(yhc_state_name((yhc_state)0), "unknown");
}

static void test_service_urls(void) {
  static const char *const bad[] = {"http://svc:8080", "http://svc:80",        "http://user@svc",
                                    "http://u:p@svc",  "http://svc#frag",      "http://10.0.0.1",
                                    "http://[::1]",    "http://localhost",     "http://LOCALHOST",
                                    "http://a.localhost", "http://svc/path",   "http://svc?q=1",
                                    "https://svc",     "http://sv_c",          "ftp://svc"};
  yhc_session_desc d;
  yhc_service_desc sv;
  yhc_session *s;
  yhc_error err;
  size_t k;
  YT_GROUP("service URLs: only http://name, with a clear YHC_ERR_CONFIG");
  memset(&d, 0, sizeof d);
  d.yagna_url = "http://127.0.0.1:1"; /* nothing listens: add_service needs no daemon */
  d.app_key = "k";
  d.budget = 1;
  s = yhc_session_create(&d, &err);
  YT_CHECKF(s != NULL, "%s", err.msg);
  if (!s) return;
  for (k = 0; k < sizeof bad / sizeof *bad; k++) {
    service_defaults(&sv, bad[k]);
    YT_CHECKF(yhc_session_add_service(s, &sv, &err) == -1 && err.code == YHC_ERR_CONFIG, "%s accepted", bad[k]);
    YT_CHECKF(strstr(err.msg, "service URL must be http://name") != NULL, "%s: %s", bad[k], err.msg);
  }
  service_defaults(&sv, "http://svc:8080");
  yhc_session_add_service(s, &sv, &err);
  YT_CHECKF(strstr(err.msg, "port") != NULL, "the message names the port: %s", err.msg);
  service_defaults(&sv, "http://calc");
  YT_CHECKF(yhc_session_add_service(s, &sv, &err) == 0, "%s", err.msg);
  service_defaults(&sv, "http://my-svc.internal/");
  YT_CHECKF(yhc_session_add_service(s, &sv, &err) == 0, "%s", err.msg);
  YT_CHECK(yhc_session_cluster(s, "http://calc") != NULL);
  YT_CHECK(yhc_session_cluster(s, "http://calc/any/path") != NULL);
  YT_CHECK(yhc_session_cluster(s, "http://other") == NULL);

  YT_GROUP("size calls: unknown URL and bad arguments say why");
  YT_EQ_INT(yhc_session_set_size(s, "http://nope", 2), -1);
  YT_EQ_INT(yhc_session_call_error(s)->code, YHC_ERR_NO_SERVICE);
  YT_EQ_INT(yhc_session_set_size(s, "http://calc", -3), -1);
  YT_EQ_INT(yhc_session_call_error(s)->code, YHC_ERR_INVALID);
  YT_EQ_INT(yhc_session_set_size_fn(s, "http://calc", NULL, NULL), -1);
  YT_EQ_INT(yhc_session_call_error(s)->code, YHC_ERR_INVALID);
  YT_EQ_INT(yhc_session_set_size(s, "http://calc", 0), 0);
  YT_EQ_INT(yhc_session_call_error(s)->code, YHC_ERR_OK);
  YT_EQ_INT((int)yhc_session_state(s, NULL), (int)YHC_STATE_STARTING);
  yhc_session_destroy(s);
}

static void test_json_request(void) {
  yhc_json_req jr;
  yhc_request base;
  yhc_header h[YHC_JSON_REQ_MAX_HEADERS + 1];
  yhc_response resp;
  yhc_json_doc *doc;
  yhc_error err;
  size_t k;
  YT_GROUP("yhc_json_request: body, Content-Type and Accept");
  YT_EQ_INT(yhc_json_request(&jr, NULL, "{\"a\":1}", 7, &err), 0);
  YT_EQ_STR(jr.req.method, "POST");
  YT_EQ_INT(jr.req.header_count, 2);
  YT_EQ_STR(jr.req.headers[0].name, "Content-Type");
  YT_EQ_STR(jr.req.headers[0].value, "application/json");
  YT_EQ_STR(jr.req.headers[1].name, "Accept");
  YT_EQ_MEM(jr.req.body, jr.req.body_len, "{\"a\":1}");
  memset(&base, 0, sizeof base);
  base.method = "PUT";
  base.url = "http://x/y";
  h[0].name = "content-type";
  h[0].value = "application/merge-patch+json";
  h[1].name = "X-Trace";
  h[1].value = "7";
  base.headers = h;
  base.header_count = 2;
  YT_EQ_INT(yhc_json_request(&jr, &base, "[]", 2, &err), 0);
  YT_EQ_STR(jr.req.method, "PUT");
  YT_EQ_STR(jr.req.url, "http://x/y");
  YT_EQ_INT(jr.req.header_count, 3); /* the caller's Content-Type kept, Accept added */
  YT_EQ_STR(jr.req.headers[0].value, "application/merge-patch+json");
  YT_EQ_STR(jr.req.headers[2].name, "Accept");
  for (k = 0; k < YHC_JSON_REQ_MAX_HEADERS + 1; k++) {
    h[k].name = "X";
    h[k].value = "y";
  }
  base.header_count = YHC_JSON_REQ_MAX_HEADERS + 1;
  YT_EQ_INT(yhc_json_request(&jr, &base, "[]", 2, &err), -1);
  YT_EQ_INT(err.code, YHC_ERR_INVALID);

  YT_GROUP("yhc_response_json: parses, or says why not");
  memset(&resp, 0, sizeof resp);
  resp.err = YHC_ERR_TIMEOUT;
  resp.error = "timed out after 5 ms";
  YT_CHECK(yhc_response_json(&resp, &err) == NULL);
  YT_EQ_INT(err.code, YHC_ERR_TIMEOUT);
  YT_EQ_STR(err.msg, "timed out after 5 ms");
  resp.err = YHC_ERR_OK;
  resp.error = "";
  resp.status = 200;
  resp.body.ptr = "{\"x\": [1, 2,]}";
  resp.body.len = strlen(resp.body.ptr);
  YT_CHECK(yhc_response_json(&resp, &err) == NULL);
  YT_EQ_INT(err.code, YHC_ERR_JSON);
  YT_CHECKF(err.offset > 0, "offset %zu", err.offset);
  resp.body.ptr = "";
  resp.body.len = 0;
  YT_CHECK(yhc_response_json(&resp, &err) == NULL);
  YT_EQ_INT(err.code, YHC_ERR_JSON);
  resp.status = 404;
  resp.body.ptr = "{\"message\":\"gone\"}";
  resp.body.len = strlen(resp.body.ptr);
  doc = yhc_response_json(&resp, &err);
  YT_CHECK(doc != NULL);
  YT_EQ_STR(yhc_json_cstr(yhc_json_get(yhc_json_root(doc), "message"), NULL), "gone");
  yhc_json_free(doc);
}

/* ---------------------------------------------------------------- against the stand-in */

static int metrics_sample(const char *parsed, const char *line) { return strstr(parsed, line) != NULL; }

/* Writes the metrics text to a file and has the reference parser read it back; fills
   `parsed` with its sorted sample lines. Returns 0 parsed, 1 invalid, 77 no parser. */
static int parse_metrics(const char *text, char *parsed, size_t cap) {
  char path[] = "/tmp/yhc-metrics-XXXXXX", cmd[200];
  int fd = mkstemp(path), rc;
  FILE *p;
  size_t n;
  if (fd < 0) return 1;
  if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
    close(fd);
    return 1;
  }
  close(fd);
  snprintf(cmd, sizeof cmd, "python3 tests/servers/check_metrics.py %s", path);
  p = popen(cmd, "r");
  n = p ? fread(parsed, 1, cap - 1, p) : 0;
  parsed[n] = 0;
  rc = p ? pclose(p) : -1;
  unlink(path);
  if (rc < 0 || !WIFEXITED(rc)) return 1;
  return WEXITSTATUS(rc);
}

static void check_metrics(yhc_session *s, uint64_t served) {
  yhc_buf b;
  static char parsed[1 << 17];
  char want[300];
  int rc;
  YT_GROUP("metrics: OpenMetrics text the reference parser accepts");
  memset(&b, 0, sizeof b);
  YT_EQ_INT(yhc_session_metrics(s, &b), 0);
  YT_CHECK(b.len > 200 && strstr(b.ptr, "# EOF\n") == b.ptr + b.len - 6);
  YT_CHECK(strstr(b.ptr, "yhc_request_duration_seconds_bucket{service=\"http://calc\",le=\"+Inf\"}") != NULL);
  rc = b.ptr ? parse_metrics(b.ptr, parsed, sizeof parsed) : 1;
  if (rc == 77) {
    printf("SKIP: metrics parser check (apt-get install python3-prometheus-client)\n");
  } else {
    YT_CHECKF(rc == 0, "parser said: %.300s", parsed);
    snprintf(want, sizeof want, "yhc_requests_total{result=response,service=http://calc} %llu.0",
             (unsigned long long)served);
    YT_CHECKF(metrics_sample(parsed, want), "no \"%s\" in\n%.2000s", want, parsed);
    snprintf(want, sizeof want, "yhc_request_duration_seconds_count{service=http://calc} %llu.0",
             (unsigned long long)served);
    YT_CHECKF(metrics_sample(parsed, want), "no \"%s\"", want);
    YT_CHECK(metrics_sample(parsed, "# family yhc_request_queue_seconds histogram"));
    YT_CHECK(metrics_sample(parsed, "# family yhc_provider_service_seconds histogram"));
    YT_CHECK(metrics_sample(parsed, "# family yhc_session_state stateset"));
    YT_CHECK(metrics_sample(parsed, "yhc_session_state{yhc_session_state=ready} 1.0"));
    YT_CHECK(metrics_sample(parsed, "yhc_instances{service=http://calc,state=ready} 2.0"));
    YT_CHECK(metrics_sample(parsed, "yhc_request_duration_seconds_bucket{le=+Inf,service=http://calc}"));
  }
  yhc_buf_free(&b);
}

static void idle_done(const yhc_response *r, void *user) { *(int *)user = r->err ? -(int)r->err : r->status; }

static void test_session_api(void) {
  yhc_session_desc d;
  yhc_service_desc sv;
  yhc_session *s;
  yhc_error err, last;
  yhc_response *r;
  yhc_json_doc *doc;
  yhc_cluster *c;
  yhc_cluster_stats st;
  yhc_instance_info info[4];
  uint64_t served = 0, ids[6];
  size_t n, k;
  int e, found, id_seen = 0, offers_named = 0, offers = 0;

  YT_GROUP("session state: starting, then ready");
  g_nev = 0;
  session_defaults(&d);
  s = yhc_session_create(&d, &err);
  YT_CHECKF(s != NULL, "%s", err.msg);
  if (!s) return;
  YT_EQ_INT((int)yhc_session_state(s, &last), (int)YHC_STATE_STARTING);
  YT_EQ_INT(last.code, YHC_ERR_OK);
  service_defaults(&sv, "http://calc");
  sv.initial_size = 2;
  YT_EQ_INT(yhc_session_add_service(s, &sv, &err), 0);
  c = yhc_session_cluster(s, "http://calc");
  YT_CHECK(c != NULL);
  if (!c) {
    yhc_session_destroy(s);
    return;
  }
  PUMP_UNTIL(s, yhc_session_state(s, NULL) == YHC_STATE_READY, 60000);
  YT_EQ_STR(yhc_state_name(yhc_session_state(s, NULL)), "ready");

  YT_GROUP("JSON in and out through a service");
  r = yhc_session_fetch_json(s, NULL, "http://calc/calc", "{\"expr\": \"2**10\"}");
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200);
  doc = yhc_response_json(r, &err);
  YT_CHECKF(doc && yhc_json_int(yhc_json_root(doc), -1) == 1024, "%s", err.msg);
  served += r && r->status == 200;
  yhc_json_free(doc);
  yhc_response_free(r);
  r = yhc_session_fetch_json(s, "PUT", "http://calc/echo/j", "{\"k\":[true,null]}");
  doc = yhc_response_json(r, &err);
  YT_CHECKF(doc != NULL, "%s", err.msg);
  if (doc) {
    const yhc_json *root = yhc_json_root(doc), *hs = yhc_json_get(root, "headers"), *hdr;
    int ct = 0;
    YT_EQ_STR(yhc_json_cstr(yhc_json_get(root, "method"), ""), "PUT");
    YT_EQ_STR(yhc_json_cstr(yhc_json_get(root, "body"), ""), "{\"k\":[true,null]}");
    for (hdr = yhc_json_first(hs); hdr; hdr = yhc_json_next(hdr))
      ct += !strcmp(yhc_json_cstr(yhc_json_at(hdr, 0), ""), "Content-Type") &&
            !strcmp(yhc_json_cstr(yhc_json_at(hdr, 1), ""), "application/json");
    YT_EQ_INT(ct, 1);
    served++;
  }
  yhc_json_free(doc);
  yhc_response_free(r);

  YT_GROUP("forwarded events carry the request id");
  for (k = 0; k < 6; k++) {
    yhc_request rq;
    memset(&rq, 0, sizeof rq);
    rq.url = "http://calc/add/1/2";
    r = yhc_session_fetch(s, &rq);
    YT_CHECK(r && r->status == 200);
    served += r && r->status == 200;
    ids[k] = r ? r->id : 0;
    yhc_response_free(r);
  }
  for (k = 0; k < 6; k++) {
    found = 0;
    for (e = 0; e < g_nev; e++)
      found += g_ev[e].kind == YHC_EV_REQUEST_FORWARDED && g_ev[e].request_id == ids[k] && g_ev[e].provider_id[0];
    id_seen += found == 1;
  }
  YT_EQ_INT(id_seen, 6);
  for (e = 0; e < g_nev; e++) {
    if (g_ev[e].kind != YHC_EV_OFFER_RECEIVED) continue;
    offers++;
    offers_named += g_ev[e].provider_id[0] && g_ev[e].provider_name[0];
  }
  YT_CHECK(offers > 0);
  YT_EQ_INT(offers_named, offers);

  YT_GROUP("inventory: each instance with its provider, agreement and counts");
  n = yhc_cluster_instances(c, info, 4);
  YT_EQ_INT(n, 2);
  YT_EQ_INT(yhc_cluster_instances(c, NULL, 0), 2);
  YT_EQ_INT(yhc_cluster_instances(c, info, 1), 2);
  n = yhc_cluster_instances(c, info, 4);
  if (n == 2) {
    YT_CHECK(info[0].provider_id[0] && info[1].provider_id[0] && strcmp(info[0].provider_id, info[1].provider_id));
    YT_CHECK(info[0].provider_name[0] && info[0].agreement_id[0] && info[0].activity_id[0]);
    YT_EQ_INT(info[0].state, YHC_INSTANCE_READY);
    YT_EQ_INT(info[1].state, YHC_INSTANCE_READY);
    YT_EQ_INT(info[0].in_flight + info[1].in_flight, 0);
    YT_EQ_INT(info[0].served + info[1].served, served);
    YT_EQ_INT(info[0].failed + info[1].failed, 0);
    YT_CHECK(info[0].ready_ms > 0);
  }

  YT_GROUP("stats: queue wait and service time, bytes each way");
  yhc_cluster_stats_get(c, &st);
  YT_EQ_INT(st.completed, served);
  YT_CHECK(st.bytes_out > served * 30);  /* a request line and headers each */
  YT_CHECK(st.bytes_in > served * 30);
  /* every request was sent with the cluster ready: it waited for nothing, and all its time
     was the provider's */
  YT_CHECKF(st.queue_ms_avg >= 0 && st.queue_ms_avg < 50, "queue %.1f ms", st.queue_ms_avg);
  YT_CHECKF(st.service_ms_avg > 0, "service %.1f ms", st.service_ms_avg);

  check_metrics(s, served);

  YT_GROUP("initial_size 0 is taken as written: an empty cluster, its requests wait");
  {
    int status = 0;
    yhc_request rq;
    yhc_cluster *idle;
    service_defaults(&sv, "http://idle");
    sv.initial_size = 0;
    YT_EQ_INT(yhc_session_add_service(s, &sv, &err), 0);
    idle = yhc_session_cluster(s, "http://idle");
    memset(&rq, 0, sizeof rq);
    rq.url = "http://idle/add/2/2";
    YT_CHECK(yhc_session_request(s, &rq, idle_done, &status) != 0);
    PUMP_UNTIL(s, 0, 1500);
    YT_EQ_INT(status, 0);
    YT_EQ_INT(yhc_cluster_instances(idle, NULL, 0), 0);
    yhc_cluster_stats_get(idle, &st);
    YT_EQ_INT(st.size_target, 0);
    YT_EQ_INT(st.queued, 1);
    YT_EQ_INT(yhc_session_set_size(s, "http://idle", 1), 0);
    PUMP_UNTIL(s, status != 0, 60000);
    YT_EQ_INT(status, 200);
    yhc_cluster_stats_get(idle, &st);
    /* the time it waited for its instance is queue time, not service time */
    YT_CHECKF(st.queue_ms_avg >= 1400, "queue %.1f ms", st.queue_ms_avg);
    YT_CHECKF(st.service_ms_avg < st.queue_ms_avg, "service %.1f ms", st.service_ms_avg);
  }

  YT_GROUP("a provider lost: degraded, with the last error");
  {
    char json[200];
    snprintf(json, sizeof json, "{\"provider\":\"%s\",\"fault\":\"crashVm\"}", info[0].provider_id);
    YT_CHECK(yt_sim_fault(&g_sim, g_admin, json) == 0);
  }
  PUMP_UNTIL(s, yhc_session_state(s, NULL) == YHC_STATE_DEGRADED, 20000);
  YT_EQ_INT((int)yhc_session_state(s, &last), (int)YHC_STATE_DEGRADED);
  YT_CHECKF(last.code != YHC_ERR_OK && last.msg[0], "last error %d \"%s\"", (int)last.code, last.msg);
  yt_sim_fault(&g_sim, g_admin, "{\"fault\":\"clear\"}");

  YT_GROUP("messages are single lines");
  found = 0;
  for (e = 0; e < g_nev; e++) found += g_ev[e].newline;
  YT_EQ_INT(found, 0);

  YT_GROUP("after close: size calls refused with YHC_ERR_SHUTDOWN");
  yhc_session_close(s);
  YT_EQ_INT((int)yhc_session_state(s, NULL), (int)YHC_STATE_CLOSING);
  YT_EQ_INT(yhc_session_set_size(s, "http://calc", 3), -1);
  YT_EQ_INT(yhc_session_call_error(s)->code, YHC_ERR_SHUTDOWN);
  yhc_cluster_stats_get(c, &st);
  YT_CHECKF(st.size_target != 3, "target %d", st.size_target);
  YT_EQ_INT(yhc_session_autoscale(s, "http://calc", NULL), -1);
  YT_EQ_INT(yhc_session_call_error(s)->code, YHC_ERR_SHUTDOWN);
  service_defaults(&sv, "http://late");
  YT_EQ_INT(yhc_session_add_service(s, &sv, &err), -1);
  YT_EQ_INT(err.code, YHC_ERR_SHUTDOWN);
  r = yhc_session_fetch_json(s, NULL, "http://calc/calc", "1");
  YT_CHECK(r && r->err == YHC_ERR_SHUTDOWN);
  yhc_response_free(r);
  yhc_session_close_wait(s);
  YT_EQ_INT((int)yhc_session_state(s, NULL), (int)YHC_STATE_CLOSED);
  YT_EQ_INT(yhc_session_set_size(s, "http://calc", 1), -1);
  YT_EQ_INT(yhc_session_call_error(s)->code, YHC_ERR_SHUTDOWN);
  yhc_session_destroy(s);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  test_event_names();
  test_service_urls();
  test_json_request();
  if (!yt_sim_available()) {
    printf("SKIP: yagna stand-in not available (needs node and tests/yagna-sim/node_modules: make sim-deps)\n");
  } else if (yt_sim_start(&g_sim, 4, NULL) < 0) {
    YT_CHECK(!"the stand-in did not start");
  } else {
    g_admin_loop = yhc_loop_create(NULL);
    g_admin = yhc_http_create(g_admin_loop, NULL);
    test_session_api();
    YT_GROUP("spec conformance");
    YT_EQ_INT(yt_sim_violations(&g_sim, g_admin), 0);
    yhc_http_destroy(g_admin);
    yhc_loop_destroy(g_admin_loop);
    yt_sim_stop(&g_sim);
  }
  return yt_done();
}
