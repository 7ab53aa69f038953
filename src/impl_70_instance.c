/* ==== Service instance lifecycle ================================================== */
/* Owns: one provider running one copy of a service, from a signed draft to a terminated,
   paid agreement: agreement create/confirm/wait, activity, VPN node, deploy/start and the
   startup commands (results read until each batch finishes), then the tunnel origin that
   requests use, health checks, and the stop sequence. It reports to its cluster through two
   hooks (ready, ended) and knows nothing of queues or sizes.

   One daemon call is outstanding per instance at a time (`call`), plus the periodic state
   check (`poll_call`); both are cancelled before the instance is freed, so no callback ever
   sees a freed instance. */

typedef struct yhc__instance yhc__instance;

enum {
  YHC__I_AGREEING, YHC__I_ACTIVATING, YHC__I_JOINING, YHC__I_DEPLOYING, YHC__I_STARTING,
  YHC__I_PROBING, YHC__I_READY, YHC__I_STOPPING, YHC__I_STOPPED
};

struct yhc_ctx {
  yhc_buf cmds; /* JSON array text being built: "[{...},{...}" */
  int count;
  int failed;
};

typedef struct yhc__instance_hooks {
  void (*ready)(yhc__instance *i);
  void (*ended)(yhc__instance *i); /* stopped or failed; the cluster frees it */
} yhc__instance_hooks;

struct yhc__instance {
  yhc__golem *g;
  void *cluster;
  const yhc__instance_hooks *hooks;
  const char *service;          /* the cluster's URL, for events */
  int state;
  int failed;                   /* ended by a failure (not a requested stop) */
  int draining;                 /* no new requests; stops when in_flight reaches 0 */
  int expiring;                 /* agreement near its end: replace before it stops */
  int cut_by_close;             /* stopped by the session's close: requests end with SHUTDOWN */
  int port;
  int ip_host;                  /* x in 192.168.0.x */
  char ip[32];
  char proposal_id[YHC__ID_MAX];
  char agreement_id[YHC__ID_MAX];
  char activity_id[YHC__ID_MAX];
  char batch_id[YHC__ID_MAX];
  char provider_id[64];
  char provider_name[64];
  double coeff_duration, coeff_cpu, coeff_start;
  int threads;
  yhc__agreement *agreement;
  uint64_t call, poll_call;
  size_t results_seen;
  int batch_no;                 /* 0 = deploy+start, 1 = startup commands */
  char *startup_cmds;           /* JSON array text, owned */
  yhc__timer poll_timer;
  yhc__timer drain_timer;
  yhc__timer expiry_timer;
  uint64_t valid_to_ms;
  int lifetime_s;
  int renew_s;                  /* marked expiring this long before valid_to */
  int state_poll_ms;
  int drain_ms;
  int tunnel_dead_ms;
  int concurrency;
  double *spent_sink;           /* the cluster's spent counter, handed to the agreement */
  int in_flight;
  int conn_failures;            /* tunnels that failed to open in a row */
  int tunnel_broken;            /* failing: no new requests; ends from fail_timer */
  char tunnel_why[200];
  yhc__timer fail_timer;
  yhc__host *origin;            /* tunnel connections for requests */
  yhc__stream *probe;           /* a tunnel opened only to see the server listen */
  yhc__timer probe_timer;
  uint64_t probe_since;
  int probe_tries;
  char why[300];                /* why it ended, when it failed */
  yhc__instance *next;
};

static void yhc__instance_stop(yhc__instance *i);

/* Every instance event carries the same identification; only the kind and text differ. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 4, 5)))
#endif
static void yhc__instance_emit(yhc__instance *i, yhc_event_kind kind, double price_hour, const char *fmt, ...) {
  yhc_event ev;
  char msg[480];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  memset(&ev, 0, sizeof ev);
  ev.kind = kind;
  ev.service = i->service;
  ev.provider_id = i->provider_id[0] ? i->provider_id : NULL;
  ev.provider_name = i->provider_name[0] ? i->provider_name : NULL;
  ev.agreement_id = i->agreement_id[0] ? i->agreement_id : NULL;
  ev.activity_id = i->activity_id[0] ? i->activity_id : NULL;
  ev.price_hour = price_hour;
  ev.err = kind == YHC_EV_SERVICE_FAILED ? YHC_ERR_SERVICE_FAILED : YHC_ERR_OK;
  ev.message = msg;
  yhc__emit(i->g, &ev);
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static void yhc__instance_fail(yhc__instance *i, const char *fmt, ...) {
  va_list ap;
  if (i->state >= YHC__I_STOPPING) return;
  va_start(ap, fmt);
  vsnprintf(i->why, sizeof i->why, fmt, ap);
  va_end(ap);
  i->failed = 1;
  yhc__instance_emit(i, YHC_EV_SERVICE_FAILED, 0, "%s on %s failed: %s", i->service,
                     i->provider_name[0] ? i->provider_name : "(provider)", i->why);
  yhc__instance_stop(i);
}

static void yhc__instance_fail_reply(yhc__instance *i, const yhc__reply *r) {
  if (r->err == YHC_ERR_CANCELLED) return;
  yhc__instance_fail(i, "%s", r->error);
}

/* ---- tunnel origin */

static yhc__stream *yhc__instance_tunnel(yhc__host *h, void *ctx, yhc_error *err) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  yhc__golem *g = i->g;
  char url[600];
  yhc_header hd[1];
  yhc__ws_conf conf;
  const char *rest = g->base;
  (void)h;
  /* the daemon's http(s) base becomes ws(s) */
  if (!strncmp(rest, "https://", 8)) snprintf(url, sizeof url, "wss://%s", rest + 8);
  else if (!strncmp(rest, "http://", 7)) snprintf(url, sizeof url, "ws://%s", rest + 7);
  else snprintf(url, sizeof url, "%s", rest);
  snprintf(url + strlen(url), sizeof url - strlen(url), "/net-api/v1/net/%s/tcp/%s/%d", g->network_id,
           i->ip, i->port);
  hd[0].name = "Authorization";
  hd[0].value = g->auth;
  memset(&conf, 0, sizeof conf);
  conf.dead_ms = i->tunnel_dead_ms;
  return yhc__ws_open(g->loop, &g->api->tls, &g->api->tls_conf, url, hd, 1, &conf, err);
}

static void yhc__instance_tunnel_fail(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  yhc__instance_fail(i, "cannot open a tunnel to the service: %s", i->tunnel_why);
}

/* A tunnel that cannot be opened means the service or the VM is gone. The HTTP layer calls
   this in the middle of handling the failed connection and uses the origin afterwards, so
   the instance (which frees the origin when it stops) fails from the loop instead; until
   then the cluster sends it nothing new. */
static void yhc__instance_conn_error(yhc__host *h, const yhc_error *err) {
  yhc__instance *i = YHC__CAST(yhc__instance *, h->open_ctx);
  if (i->tunnel_broken || !(++i->conn_failures >= 2 || err->code == YHC_ERR_HTTP_STATUS)) return;
  i->tunnel_broken = 1;
  snprintf(i->tunnel_why, sizeof i->tunnel_why, "%.199s", err->msg);
  yhc__timer_start(i->g->loop, &i->fail_timer, 0, yhc__instance_tunnel_fail, i);
}

/* ---- health */

static void yhc__instance_poll_state(void *ctx);

static void yhc__instance_state_done(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  const yhc_json *st;
  yhc_str cur;
  i->poll_call = 0;
  if (r->err == YHC_ERR_CANCELLED || i->state >= YHC__I_STOPPING) return;
  if (r->err) {
    /* 404 (spec) and 500 (yagna: "not found", "GSB error ... endpoint address not found")
       mean the activity is gone; anything else may be a passing daemon problem */
    if (r->status == 404 || r->status == 403 ||
        (r->status == 500 && (strstr(r->error, "ot found") || strstr(r->error, "GSB error")))) {
      yhc__instance_fail(i, "activity is gone: %s", r->error);
      return;
    }
  } else {
    st = yhc_json_at(yhc_json_get(r->json, "state"), 0);
    cur.ptr = NULL;
    cur.len = 0;
    cur = yhc_json_str(st, cur);
    if (yhc__str_eq(cur, "Terminated") || yhc__str_eq(cur, "Unresponsive")) {
      yhc_str reason;
      reason.ptr = NULL;
      reason.len = 0;
      reason = yhc_json_str(yhc_json_get(r->json, "reason"), reason);
      yhc__instance_fail(i, "activity state is %.*s%s%.*s", (int)cur.len, cur.ptr, reason.len ? ": " : "",
                         (int)YHC__MIN(reason.len, 150), reason.ptr);
      return;
    }
  }
  yhc__timer_start(i->g->loop, &i->poll_timer, (uint64_t)i->state_poll_ms, yhc__instance_poll_state, i);
}

static void yhc__instance_poll_state(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  char path[256];
  if (i->poll_call || i->state >= YHC__I_STOPPING || !i->activity_id[0]) return;
  snprintf(path, sizeof path, "/activity-api/v1/activity/%s/state", i->activity_id);
  i->poll_call = yhc__api(i->g, "GET", path, NULL, 15000, yhc__instance_state_done, i);
}

/* Something suggests trouble (a request failed): check now instead of at the next tick. */
static void yhc__instance_check_soon(yhc__instance *i) {
  if (i->state == YHC__I_READY && !i->poll_call)
    yhc__timer_start(i->g->loop, &i->poll_timer, 0, yhc__instance_poll_state, i);
}

static void yhc__instance_expiry(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  i->expiring = 1;
  if (i->hooks->ready) i->hooks->ready(i); /* lets the cluster start the replacement */
}

/* ---- readiness probe: a server started in the background may need a moment to listen,
   and the daemon answers a tunnel only once its TCP connect inside the VPN succeeded, so a
   tunnel that opens is the proof that requests can flow. */

#ifndef YHC_STARTUP_PROBE_MS
#  define YHC_STARTUP_PROBE_MS 60000
#endif

static void yhc__instance_became_ready(yhc__instance *i);
static void yhc__instance_probe(void *ctx);

static void yhc__instance_probe_close(yhc__instance *i) {
  if (i->probe) {
    yhc__stream *p = i->probe;
    i->probe = NULL;
    p->vt->close(p);
  }
  yhc__timer_stop(i->g->loop, &i->probe_timer);
}

static void yhc__instance_probe_event(void *ctx, int ev) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  yhc_error e;
  if (!(ev & (YHC__EV_CONNECT | YHC__EV_ERROR))) return;
  e = i->probe->err;
  yhc__instance_probe_close(i);
  if (ev & YHC__EV_CONNECT) {
    yhc__instance_became_ready(i);
    return;
  }
  if (yhc_loop_now(i->g->loop) - i->probe_since >= YHC_STARTUP_PROBE_MS) {
    yhc__instance_fail(i, "the service did not start listening on port %d within %d ms: %s", i->port,
                       YHC_STARTUP_PROBE_MS, e.msg);
    return;
  }
  /* back off gently: 100 ms, 200 ms, ... up to a second */
  i->probe_tries++;
  yhc__timer_start(i->g->loop, &i->probe_timer, (uint64_t)YHC__MIN(100 * i->probe_tries, 1000),
                   yhc__instance_probe, i);
}

static void yhc__instance_probe(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  yhc_error e;
  yhc__error_clear(&e);
  if (i->state != YHC__I_PROBING) return;
  i->probe = yhc__instance_tunnel(NULL, i, &e);
  if (!i->probe) {
    yhc__instance_fail(i, "cannot open a tunnel to the service: %s", e.msg);
    return;
  }
  i->probe->owner = i;
  i->probe->on_event = yhc__instance_probe_event;
}

static void yhc__instance_start_probe(yhc__instance *i) {
  i->state = YHC__I_PROBING;
  i->probe_since = yhc_loop_now(i->g->loop);
  i->probe_tries = 0;
  yhc__instance_probe(i);
}

/* ---- exec batches */

static void yhc__instance_batch_poll(yhc__instance *i);
static void yhc__instance_exec(yhc__instance *i, const char *commands_json);

static void yhc__instance_became_ready(yhc__instance *i) {
  yhc__golem *g = i->g;
  if (i->state != YHC__I_PROBING) return;
  char key[200];
  snprintf(key, sizeof key, "tunnel:%s", i->activity_id);
  i->origin = yhc__host_new(g->api, key, i->ip, i->port, 0, i->concurrency);
  if (!i->origin) {
    yhc__instance_fail(i, "out of memory creating the tunnel origin");
    return;
  }
  i->origin->external = 1;
  i->origin->open = yhc__instance_tunnel;
  i->origin->open_ctx = i;
  i->origin->on_conn_error = yhc__instance_conn_error;
  i->state = YHC__I_READY;
  yhc__instance_emit(i, YHC_EV_SERVICE_READY, 0, "%s is ready on %s (%s, VPN %s)", i->service,
                     i->provider_name, i->provider_id, i->ip);
  yhc__timer_start(g->loop, &i->poll_timer, (uint64_t)i->state_poll_ms, yhc__instance_poll_state, i);
  if (i->valid_to_ms) {
    uint64_t now = yhc__wall_ms(), margin = (uint64_t)i->renew_s * 1000u;
    uint64_t at = i->valid_to_ms > now + margin ? i->valid_to_ms - margin - now : 0;
    yhc__timer_start(g->loop, &i->expiry_timer, at, yhc__instance_expiry, i);
  }
  i->hooks->ready(i);
}

static void yhc__instance_batch_results(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  const yhc_json *res;
  size_t n, k;
  int finished = 0;
  i->call = 0;
  if (r->err) {
    if (r->err == YHC_ERR_CANCELLED) return;
    if (r->status == 408) { /* commandIndex wait ran out: ask again */
      yhc__instance_batch_poll(i);
      return;
    }
    yhc__instance_fail_reply(i, r);
    return;
  }
  if (yhc_json_typeof(r->json) != YHC_JSON_ARRAY) {
    yhc__instance_fail(i, "GET /activity-api/v1/activity/{id}/exec/{batch}: answer is not an array");
    return;
  }
  n = yhc_json_len(r->json);
  for (k = i->results_seen; k < n; k++) {
    yhc_str result, msg, err_text;
    res = yhc_json_at(r->json, k);
    result.ptr = msg.ptr = err_text.ptr = NULL;
    result.len = msg.len = err_text.len = 0;
    result = yhc_json_str(yhc_json_get(res, "result"), result);
    msg = yhc_json_str(yhc_json_get(res, "message"), msg);
    err_text = yhc_json_str(yhc_json_get(res, "stderr"), err_text);
    if (yhc__str_eq(result, "Error")) {
      yhc__instance_fail(i, "%s command %zu failed: %.*s%s%.*s", i->batch_no ? "startup" : "deploy/start",
                         k, (int)YHC__MIN(msg.len, 120), msg.ptr, err_text.len ? " / stderr: " : "",
                         (int)YHC__MIN(err_text.len, 120), err_text.ptr);
      return;
    }
    if (yhc_json_bool(yhc_json_get(res, "isBatchFinished"), 0)) finished = 1;
  }
  i->results_seen = n;
  if (!finished) {
    yhc__instance_batch_poll(i);
    return;
  }
  if (i->batch_no == 0) {
    yhc__instance_emit(i, YHC_EV_ACTIVITY_STARTED, 0, "activity %s started on %s", i->activity_id,
                       i->provider_name);
    i->batch_no = 1;
    if (i->startup_cmds && strcmp(i->startup_cmds, "[]") != 0) {
      i->state = YHC__I_STARTING;
      yhc__instance_exec(i, i->startup_cmds);
      return;
    }
  }
  yhc__instance_start_probe(i);
}

static void yhc__instance_batch_poll(yhc__instance *i) {
  char path[400];
  snprintf(path, sizeof path, "/activity-api/v1/activity/%s/exec/%s?timeout=5", i->activity_id, i->batch_id);
  i->call = yhc__api(i->g, "GET", path, NULL, 20000, yhc__instance_batch_results, i);
}

static void yhc__instance_exec_started(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  yhc_str id;
  i->call = 0;
  if (r->err) {
    yhc__instance_fail_reply(i, r);
    return;
  }
  id.ptr = NULL;
  id.len = 0;
  id = yhc_json_str(r->json, id);
  if (!yhc__id_ok(id)) {
    yhc__instance_fail(i, "POST /activity-api/v1/activity/{id}/exec: answer is not a batch id");
    return;
  }
  yhc__copy_id(i->batch_id, sizeof i->batch_id, id);
  i->results_seen = 0;
  yhc__instance_batch_poll(i);
}

static void yhc__instance_exec(yhc__instance *i, const char *commands_json) {
  yhc_buf body;
  yhc_jw w;
  char path[256];
  memset(&body, 0, sizeof body);
  yhc_jw_init(&w, &body);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "text");
  yhc_jw_str(&w, commands_json);
  yhc_jw_obj_end(&w);
  snprintf(path, sizeof path, "/activity-api/v1/activity/%s/exec", i->activity_id);
  if (yhc_jw_finish(&w)) yhc__instance_fail(i, "out of memory building an exec batch");
  else i->call = yhc__api(i->g, "POST", path, body.ptr, 30000, yhc__instance_exec_started, i);
  yhc_buf_free(&body);
}

static void yhc__instance_deploy(yhc__instance *i) {
  yhc__golem *g = i->g;
  yhc_buf cmds;
  yhc_jw w;
  memset(&cmds, 0, sizeof cmds);
  yhc_jw_init(&w, &cmds);
  yhc_jw_arr_begin(&w);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "deploy");
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "net");
  yhc_jw_arr_begin(&w);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "id");
  yhc_jw_str(&w, g->network_id);
  yhc_jw_key(&w, "ip");
  yhc_jw_str(&w, g->network_ip);
  yhc_jw_key(&w, "mask");
  yhc_jw_str(&w, "255.255.255.0");
  yhc_jw_key(&w, "nodeIp");
  yhc_jw_str(&w, i->ip);
  yhc_jw_key(&w, "nodes");
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "192.168.0.1");
  yhc_jw_str(&w, g->identity);
  yhc_jw_key(&w, i->ip);
  yhc_jw_str(&w, i->provider_id);
  yhc_jw_obj_end(&w);
  yhc_jw_obj_end(&w);
  yhc_jw_arr_end(&w);
  yhc_jw_obj_end(&w);
  yhc_jw_obj_end(&w);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "start");
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "args");
  yhc_jw_arr_begin(&w);
  yhc_jw_arr_end(&w);
  yhc_jw_obj_end(&w);
  yhc_jw_obj_end(&w);
  yhc_jw_arr_end(&w);
  i->state = YHC__I_DEPLOYING;
  i->batch_no = 0;
  if (yhc_jw_finish(&w)) yhc__instance_fail(i, "out of memory building the deploy batch");
  else yhc__instance_exec(i, cmds.ptr);
  yhc_buf_free(&cmds);
}

/* ---- agreement, activity, VPN node */

static void yhc__instance_node_added(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  i->call = 0;
  if (r->err && r->status != 409) {
    yhc__instance_fail_reply(i, r);
    return;
  }
  yhc__instance_deploy(i);
}

static void yhc__instance_activity_created(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  yhc_str id;
  yhc_buf body;
  yhc_jw w;
  char path[256];
  i->call = 0;
  if (r->err) {
    yhc__instance_fail_reply(i, r);
    return;
  }
  id.ptr = NULL;
  id.len = 0;
  /* the answer mirrors the request: {"activityId"} for the object form, a string otherwise */
  id = yhc_json_str(yhc_json_typeof(r->json) == YHC_JSON_OBJECT ? yhc_json_get(r->json, "activityId") : r->json, id);
  if (!yhc__id_ok(id)) {
    yhc__instance_fail(i, "POST /activity-api/v1/activity: answer has no valid activity id");
    return;
  }
  yhc__copy_id(i->activity_id, sizeof i->activity_id, id);
  i->state = YHC__I_JOINING;
  memset(&body, 0, sizeof body);
  yhc_jw_init(&w, &body);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "id");
  yhc_jw_str(&w, i->provider_id);
  yhc_jw_key(&w, "ip");
  yhc_jw_str(&w, i->ip);
  yhc_jw_obj_end(&w);
  snprintf(path, sizeof path, "/net-api/v1/net/%s/nodes", i->g->network_id);
  if (yhc_jw_finish(&w)) yhc__instance_fail(i, "out of memory adding the VPN node");
  else i->call = yhc__api(i->g, "POST", path, body.ptr, 30000, yhc__instance_node_added, i);
  yhc_buf_free(&body);
}

static void yhc__instance_create_activity(yhc__instance *i) {
  char body[YHC__ID_MAX + 32];
  i->state = YHC__I_ACTIVATING;
  snprintf(body, sizeof body, "{\"agreementId\":\"%s\"}", i->agreement_id);
  i->call = yhc__api(i->g, "POST", "/activity-api/v1/activity", body, 60000, yhc__instance_activity_created, i);
}

static void yhc__instance_register_agreement(yhc__instance *i) {
  yhc__golem *g = i->g;
  yhc__agreement *a = YHC__NEW(yhc__agreement);
  double hour;
  if (a) {
    snprintf(a->id, sizeof a->id, "%s", i->agreement_id);
    snprintf(a->provider_id, sizeof a->provider_id, "%s", i->provider_id);
    snprintf(a->provider_name, sizeof a->provider_name, "%s", i->provider_name);
    snprintf(a->service, sizeof a->service, "%s", i->service);
    a->coeff_duration = i->coeff_duration;
    a->coeff_cpu = i->coeff_cpu;
    a->coeff_start = i->coeff_start;
    a->threads = i->threads;
    a->approved_ms = yhc__wall_ms();
    a->spent_sink = i->spent_sink;
    a->owner = i;
    a->next = g->agreements;
    g->agreements = a;
  }
  i->agreement = a;
  hour = i->coeff_start + 3600.0 * (i->coeff_duration + i->coeff_cpu * (i->threads > 0 ? i->threads : 1));
  yhc__instance_emit(i, YHC_EV_AGREEMENT_SIGNED, hour,
                     "agreement with %s (%s) for %s: %.6f GLM/h expected (start %.6f)",
                     i->provider_name, i->provider_id, i->service, hour, i->coeff_start);
}

static void yhc__instance_wait(yhc__instance *i);

static void yhc__instance_waited(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  i->call = 0;
  if (r->err) {
    if (r->status == 408) { /* not yet: wait again */
      yhc__instance_wait(i);
      return;
    }
    yhc__instance_fail_reply(i, r);
    return;
  }
  yhc__instance_register_agreement(i);
  yhc__instance_create_activity(i);
}

static void yhc__instance_wait(yhc__instance *i) {
  char path[256];
  snprintf(path, sizeof path, "/market-api/v1/agreements/%s/wait?timeout=15", i->agreement_id);
  i->call = yhc__api(i->g, "POST", path, NULL, 30000, yhc__instance_waited, i);
}

static void yhc__instance_confirmed(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  i->call = 0;
  if (r->err) {
    yhc__instance_fail_reply(i, r);
    return;
  }
  yhc__instance_wait(i);
}

static void yhc__instance_agreement_created(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  yhc_str id;
  char path[256];
  i->call = 0;
  if (r->err) {
    yhc__instance_fail_reply(i, r);
    return;
  }
  id.ptr = NULL;
  id.len = 0;
  id = yhc_json_str(r->json, id);
  if (!yhc__id_ok(id)) {
    yhc__instance_fail(i, "POST /market-api/v1/agreements: answer is not an agreement id");
    return;
  }
  yhc__copy_id(i->agreement_id, sizeof i->agreement_id, id);
  snprintf(path, sizeof path, "/market-api/v1/agreements/%s/confirm", i->agreement_id);
  i->call = yhc__api(i->g, "POST", path, NULL, 30000, yhc__instance_confirmed, i);
}

/* Starts an instance from a provider's draft proposal. */
static void yhc__instance_begin(yhc__instance *i) {
  char body[YHC__ID_MAX + 96], valid_to[40];
  i->valid_to_ms = yhc__wall_ms() + (uint64_t)i->lifetime_s * 1000u;
  yhc__rfc3339(i->valid_to_ms, valid_to);
  i->ip_host = yhc__golem_take_ip(i->g);
  if (i->ip_host < 0) {
    yhc__instance_fail(i, "no free address left in the VPN");
    return;
  }
  snprintf(i->ip, sizeof i->ip, "192.168.0.%d", i->ip_host);
  i->state = YHC__I_AGREEING;
  snprintf(body, sizeof body, "{\"proposalId\":\"%s\",\"validTo\":\"%s\"}", i->proposal_id, valid_to);
  i->call = yhc__api(i->g, "POST", "/market-api/v1/agreements", body, 30000, yhc__instance_agreement_created, i);
}

/* ---- stop: tunnels first, then activity, node, agreement (PROTOCOL.md §7) */

static void yhc__instance_stop_step(yhc__instance *i);

static void yhc__instance_stop_reply(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  i->call = 0;
  if (r->err == YHC_ERR_CANCELLED) return;
  if (r->err) yhc__log(i->g->loop, YHC_LOG_DEBUG, "stopping %s: %s", i->service, r->error);
  yhc__instance_stop_step(i);
}

static void yhc__instance_stop_step(yhc__instance *i) {
  yhc__golem *g = i->g;
  char path[300];
  if (i->activity_id[0]) {
    snprintf(path, sizeof path, "/activity-api/v1/activity/%s?timeout=10", i->activity_id);
    i->activity_id[0] = 0;
    i->call = yhc__api(g, "DELETE", path, NULL, 20000, yhc__instance_stop_reply, i);
    return;
  }
  if (i->ip_host > 0 && g->network_id[0] && i->provider_id[0]) {
    snprintf(path, sizeof path, "/net-api/v1/net/%s/nodes/%s", g->network_id, i->provider_id);
    yhc__golem_release_ip(g, i->ip_host);
    i->ip_host = 0;
    i->call = yhc__api(g, "DELETE", path, NULL, 20000, yhc__instance_stop_reply, i);
    return;
  }
  if (i->agreement_id[0] && i->agreement && !i->agreement->terminated) {
    char body[200];
    i->agreement->terminated = 1;
    snprintf(path, sizeof path, "/market-api/v1/agreements/%s/terminate", i->agreement_id);
    snprintf(body, sizeof body, "{\"message\":\"%s\",\"golem.requestor.code\":\"%s\"}",
             i->failed ? "Service failed" : "Work cancelled", i->failed ? "ServiceFailed" : "Cancelled");
    i->call = yhc__api(g, "POST", path, body, 20000, yhc__instance_stop_reply, i);
    return;
  }
  if (i->agreement) {
    if (!i->agreement->ended_ms) i->agreement->ended_ms = yhc__wall_ms();
    i->agreement->owner = NULL;
  } else if (i->agreement_id[0] && i->state == YHC__I_STOPPING && !i->failed) {
    /* an agreement created but never approved needs no invoice */
  }
  if (i->ip_host > 0) {
    yhc__golem_release_ip(g, i->ip_host);
    i->ip_host = 0;
  }
  i->state = YHC__I_STOPPED;
  if (!i->failed)
    yhc__instance_emit(i, YHC_EV_SERVICE_STOPPED, 0, "%s on %s stopped", i->service,
                       i->provider_name[0] ? i->provider_name : "(provider)");
  i->hooks->ended(i);
}

/* Ends the instance: requests still on its tunnels were already moved (by the cluster, which
   drains first) or are failed here and retried elsewhere by their completion hook. */
static void yhc__instance_stop(yhc__instance *i) {
  yhc__golem *g = i->g;
  if (i->state >= YHC__I_STOPPING) return;
  i->state = YHC__I_STOPPING;
  yhc__api_cancel(g, &i->call);
  yhc__api_cancel(g, &i->poll_call);
  yhc__timer_stop(g->loop, &i->poll_timer);
  yhc__timer_stop(g->loop, &i->drain_timer);
  yhc__timer_stop(g->loop, &i->expiry_timer);
  yhc__timer_stop(g->loop, &i->fail_timer);
  yhc__instance_probe_close(i);
  if (i->origin) {
    yhc__host *h = i->origin;
    i->origin = NULL;
    if (i->cut_by_close)
      yhc__host_abort(h, YHC_ERR_SHUTDOWN, "the session closed before the request finished (close_timeout_ms)");
    else
      yhc__host_abort(h, YHC_ERR_SERVICE_FAILED, i->failed ? i->why : "the service instance was stopped");
    yhc__host_free(h);
  }
  if (i->agreement && i->agreement_id[0] && i->agreement->terminated && !i->agreement->ended_ms)
    i->agreement->ended_ms = yhc__wall_ms();
  yhc__instance_stop_step(i);
}

static void yhc__instance_free(yhc__instance *i) {
  yhc__instance_probe_close(i);
  yhc__api_cancel(i->g, &i->call);
  yhc__api_cancel(i->g, &i->poll_call);
  yhc__timer_stop(i->g->loop, &i->poll_timer);
  yhc__timer_stop(i->g->loop, &i->drain_timer);
  yhc__timer_stop(i->g->loop, &i->expiry_timer);
  yhc__timer_stop(i->g->loop, &i->fail_timer);
  if (i->agreement) i->agreement->owner = NULL;
  YHC_FREE(i->startup_cmds);
  YHC_FREE(i);
}

/* ---- the startup context the user's callback fills */

static int yhc__ctx_append(yhc_ctx *ctx, const char *json, size_t len) {
  if (ctx->failed) return -1;
  if (yhc_buf_append(&ctx->cmds, ctx->count ? "," : "[", 1) || yhc_buf_append(&ctx->cmds, json, len)) {
    ctx->failed = 1;
    return -1;
  }
  ctx->count++;
  return 0;
}

YHCDEF int yhc_ctx_command(yhc_ctx *ctx, const char *command_json) {
  yhc_json_doc *d;
  yhc_error e;
  int rc;
  if (!ctx || !command_json) return -1;
  d = yhc_json_parse(command_json, strlen(command_json), NULL, &e);
  if (!d || yhc_json_typeof(yhc_json_root(d)) != YHC_JSON_OBJECT) {
    yhc_json_free(d);
    return -1;
  }
  yhc_json_free(d);
  rc = yhc__ctx_append(ctx, command_json, strlen(command_json));
  return rc;
}

YHCDEF int yhc_ctx_run(yhc_ctx *ctx, const char *const *argv) {
  yhc_buf b;
  yhc_jw w;
  int rc, k;
  if (!ctx || !argv || !argv[0]) return -1;
  memset(&b, 0, sizeof b);
  yhc_jw_init(&w, &b);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "run");
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "entry_point");
  yhc_jw_str(&w, argv[0]);
  yhc_jw_key(&w, "args");
  yhc_jw_arr_begin(&w);
  for (k = 1; argv[k]; k++) yhc_jw_str(&w, argv[k]);
  yhc_jw_arr_end(&w);
  yhc_jw_key(&w, "capture");
  {
    static const char capture[] = "{\"stdout\":{\"atEnd\":{}},\"stderr\":{\"atEnd\":{}}}";
    yhc_jw_raw(&w, capture, sizeof capture - 1);
  }
  yhc_jw_obj_end(&w);
  yhc_jw_obj_end(&w);
  rc = yhc_jw_finish(&w) ? -1 : yhc__ctx_append(ctx, b.ptr, b.len);
  yhc_buf_free(&b);
  return rc;
}

