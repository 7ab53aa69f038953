/* ==== Session and the public client API =========================================== */
/* Owns: the session object the user holds -- config with environment defaults and
   validation, the loop (its own or the user's), the plain HTTP client, the daemon client and
   Golem context, the clusters by URL, request routing, and graceful close: requests end,
   instances stop, agreements are terminated, invoices accepted, then the VPN goes and the
   allocation is released. */

enum { YHC__S_OPEN, YHC__S_DRAINING, YHC__S_INVOICES, YHC__S_TEARDOWN, YHC__S_CLOSED };

struct yhc_session {
  yhc_loop *loop;
  int own_loop;
  yhc_http *plain;
  yhc__golem g;
  yhc_session_desc d;
  char *yagna_url, *app_key, *subnet, *image_repo;
  yhc_cluster *clusters;
  int close_state;
  int closing;
  uint64_t close_started_ms, invoices_since_ms;
  yhc__timer close_timer;
  int destroying;
};

static const char *yhc__env_or(const char *v, const char *env, const char *def) {
  const char *e;
  if (v && *v) return v;
  e = env ? getenv(env) : NULL;
  return (e && *e) ? e : def;
}

static double yhc__dbl_or(double v, double def) { return v > 0 ? v : def; }
static int yhc__int_or(int v, int def) { return v > 0 ? v : def; }

static int yhc__token_ok(const char *s, size_t max) {
  size_t n = 0;
  for (; *s; s++, n++) {
    unsigned char c = (unsigned char)*s;
    if (!(yhc__is_alpha(c) || yhc__is_digit(c) || c == '-' || c == '_' || c == '.')) return 0;
  }
  return n > 0 && n <= max;
}

static void yhc__session_golem_ready(yhc__golem *g) {
  yhc_session *s = YHC__CAST(yhc_session *, g->owner);
  yhc_cluster *c;
  for (c = s->clusters; c; c = c->next) {
    yhc__cluster_reconcile(c);
    yhc__cluster_dispatch(c);
  }
}

static void yhc__session_agreement_ended(yhc__golem *g, yhc__agreement *a, const char *why) {
  (void)g;
  if (a->owner) yhc__instance_fail(YHC__CAST(yhc__instance *, a->owner), "%s", why);
}

YHCDEF yhc_session *yhc_session_create(const yhc_session_desc *desc, yhc_error *err) {
  yhc_session *s;
  yhc_session_desc d;
  const char *url, *key, *subnet, *driver, *network, *repo;
  char token[16];
  yhc_url u;
  yhc_http_desc api_desc;
  yhc__error_clear(err);
  if (desc) d = *desc;
  else memset(&d, 0, sizeof d);
  url = yhc__env_or(d.yagna_url, "YAGNA_API_URL", "http://127.0.0.1:7465");
  key = yhc__env_or(d.app_key, "YAGNA_APPKEY", NULL);
  subnet = yhc__env_or(d.subnet, "YAGNA_SUBNET", "public");
  driver = yhc__env_or(d.payment_driver, "YAGNA_PAYMENT_DRIVER", "erc20");
  network = yhc__env_or(d.payment_network, "YAGNA_PAYMENT_NETWORK", "holesky");
  repo = yhc__env_or(d.image_repo, NULL, "https://registry.golem.network");
  if (!key) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "no yagna app key: set app_key or YAGNA_APPKEY");
    return NULL;
  }
  if (strlen(key) > 180 || !yhc__header_ok(key, 0)) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "the yagna app key is too long or has control characters");
    return NULL;
  }
  if (yhc_url_parse(url, strlen(url), &u, err) < 0 || strlen(url) > 200 ||
      !(yhc__str_ieq(u.scheme, "http") || yhc__str_ieq(u.scheme, "https"))) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "invalid yagna URL \"%.100s\": must be http(s)://host[:port]", url);
    return NULL;
  }
  if (!yhc__token_ok(subnet, 60) || !yhc__token_ok(driver, 30) || !yhc__token_ok(network, 30)) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "subnet, payment driver and network must be short names");
    return NULL;
  }
  if (d.budget < 0 || d.max_price_cpu_hour < 0 || d.max_price_env_hour < 0 || d.max_price_start < 0 ||
      d.agreement_lifetime_s < 0 || d.max_retries < 0 || d.instance_concurrency < 0 ||
      d.budget != d.budget) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "budget, prices, lifetime, retries and concurrency must not be negative");
    return NULL;
  }
  if (d.agreement_lifetime_s && d.agreement_lifetime_s < 360) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "agreement_lifetime_s must be at least 360 (providers refuse shorter demands)");
    return NULL;
  }
  if (d.agreement_renew_s < 0 || d.agreement_renew_s >= (d.agreement_lifetime_s ? d.agreement_lifetime_s : 3600)) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "agreement_renew_s must be below agreement_lifetime_s");
    return NULL;
  }
  s = YHC__NEW(yhc_session);
  if (!s) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory creating the session");
    return NULL;
  }
  d.budget = yhc__dbl_or(d.budget, 1.0);
  d.max_price_cpu_hour = yhc__dbl_or(d.max_price_cpu_hour, 0.5);
  d.max_price_env_hour = yhc__dbl_or(d.max_price_env_hour, 0.5);
  d.max_price_start = yhc__dbl_or(d.max_price_start, 0.5);
  d.agreement_lifetime_s = yhc__int_or(d.agreement_lifetime_s, 3600);
  d.agreement_renew_s = yhc__int_or(d.agreement_renew_s, YHC__MIN(120, d.agreement_lifetime_s / 2));
  d.request_timeout_ms = d.request_timeout_ms ? d.request_timeout_ms : 60000;
  if (!d.max_queue) d.max_queue = 10000;
  d.max_retries = d.max_retries ? d.max_retries : 3;
  d.instance_concurrency = yhc__int_or(d.instance_concurrency, 8);
  d.offer_window_ms = yhc__int_or(d.offer_window_ms, 1500);
  d.close_timeout_ms = yhc__int_or(d.close_timeout_ms, 20000);
  d.drain_timeout_ms = yhc__int_or(d.drain_timeout_ms, 10000);
  d.tunnel_dead_ms = yhc__int_or(d.tunnel_dead_ms, 15000);
  d.state_poll_ms = yhc__int_or(d.state_poll_ms, 3000);
  s->yagna_url = yhc__strdup(url);
  s->app_key = yhc__strdup(key);
  s->subnet = yhc__strdup(subnet);
  s->image_repo = yhc__strdup(repo);
  d.yagna_url = s->yagna_url;
  d.app_key = NULL; /* kept only inside the Golem context */
  d.subnet = s->subnet;
  d.image_repo = s->image_repo;
  d.payment_driver = d.payment_network = NULL;
  s->d = d;
  if (d.loop) {
    s->loop = d.loop;
  } else {
    yhc_loop_desc ld;
    memset(&ld, 0, sizeof ld);
    ld.log = d.log;
    ld.log_user = d.log_user;
    ld.log_level = d.log_level;
    s->loop = yhc_loop_create(&ld);
    s->own_loop = 1;
  }
  s->plain = s->loop ? yhc_http_create(s->loop, &d.http) : NULL;
  api_desc = d.http;
  api_desc.max_conns_per_host = 64; /* long-polls each hold a connection */
  api_desc.request_timeout_ms = -1; /* every call states its own */
  api_desc.idle_timeout_ms = 30000;
  s->g.api = s->loop ? yhc_http_create(s->loop, &api_desc) : NULL;
  if (!s->yagna_url || !s->app_key || !s->subnet || !s->image_repo || !s->loop || !s->plain || !s->g.api) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory creating the session");
    yhc_session_destroy(s);
    return NULL;
  }
  /* ids of the two clients never collide, so yhc_session_cancel knows where to look */
  s->g.api->next_id = (uint64_t)1 << 62;
  s->g.loop = s->loop;
  snprintf(s->g.base, sizeof s->g.base, "%s", url);
  while (strlen(s->g.base) && s->g.base[strlen(s->g.base) - 1] == '/') s->g.base[strlen(s->g.base) - 1] = 0;
  snprintf(s->g.auth, sizeof s->g.auth, "Bearer %s", key);
  snprintf(s->g.subnet, sizeof s->g.subnet, "%s", subnet);
  snprintf(token, sizeof token, "%s", (!strcmp(network, "mainnet") || !strcmp(network, "polygon")) ? "glm" : "tglm");
  snprintf(s->g.platform, sizeof s->g.platform, "%s-%s-%s", driver, network, token);
  s->g.budget = d.budget;
  s->g.on_event = d.on_event;
  s->g.event_user = d.event_user;
  s->g.log_events = d.log_events;
  s->g.owner = s;
  s->g.on_ready = yhc__session_golem_ready;
  s->g.on_agreement_ended = yhc__session_agreement_ended;
  yhc__golem_start(&s->g);
  return s;
}

static yhc_cluster *yhc__session_cluster(yhc_session *s, const char *url) {
  yhc_cluster *c;
  yhc_url u;
  yhc_error e;
  if (!url || yhc_url_parse(url, strlen(url), &u, &e) < 0) return NULL;
  for (c = s->clusters; c; c = c->next)
    if (yhc__str_ieq(u.host, c->host) && u.port == c->port) return c;
  return NULL;
}

static int yhc__json_object_ok(const char *text) {
  yhc_error e;
  yhc_json_doc *d = yhc_json_parse(text, strlen(text), NULL, &e);
  int ok = d && yhc_json_typeof(yhc_json_root(d)) == YHC_JSON_OBJECT;
  yhc_json_free(d);
  return ok;
}

static void yhc__cluster_free(yhc_cluster *c) {
  size_t k;
  yhc__offer *o;
  yhc__timer_stop(c->g->loop, &c->tick);
  yhc__timer_stop(c->g->loop, &c->collect_retry);
  while ((o = c->offers) != NULL) yhc__offer_unlink(c, o);
  for (k = 0; k < c->navoid; k++) YHC_FREE(c->avoid[k]);
  YHC_FREE(c->avoid);
  YHC_FREE(c->image_hash);
  YHC_FREE(c->image_url);
  YHC_FREE(c->extra_props);
  YHC_FREE(c->extra_cons);
  YHC_FREE(c);
}

YHCDEF int yhc_session_add_service(yhc_session *s, const yhc_service_desc *desc, yhc_error *err) {
  yhc_url u;
  yhc_cluster *c;
  size_t k;
  yhc__error_clear(err);
  if (!s || !desc || !desc->url) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "service needs a URL");
    return -1;
  }
  if (s->closing) {
    yhc__error_set(err, YHC_ERR_SHUTDOWN, 0, "the session is closing");
    return -1;
  }
  if (yhc_url_parse(desc->url, strlen(desc->url), &u, err) < 0) {
    char why[YHC_ERROR_MSG_MAX];
    snprintf(why, sizeof why, "%s", err ? err->msg : "");
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "service URL must be http://name (got \"%.100s\"): %.120s", desc->url, why);
    return -1;
  }
  if (!yhc__str_ieq(u.scheme, "http") || u.host.len >= 100 || (u.target.len > 1) || strlen(desc->url) >= 128) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "service URL must be http://name (got \"%.100s\")", desc->url);
    return -1;
  }
  if (yhc__session_cluster(s, desc->url)) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "a service is already registered for %s", desc->url);
    return -1;
  }
  if (!desc->image_hash || !*desc->image_hash) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "service %s needs an image hash", desc->url);
    return -1;
  }
  for (k = 0; desc->image_hash[k]; k++) {
    if (yhc__hexval((unsigned char)desc->image_hash[k]) < 0 || k > 128) {
      yhc__error_set(err, YHC_ERR_CONFIG, 0, "image hash of %s must be hex", desc->url);
      return -1;
    }
  }
  if (desc->image_url && (strlen(desc->image_url) > 400 || !yhc__header_ok(desc->image_url, 0))) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "image URL of %s is invalid", desc->url);
    return -1;
  }
  if (desc->extra_properties && !yhc__json_object_ok(desc->extra_properties)) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "extra_properties of %s must be a JSON object", desc->url);
    return -1;
  }
  if (desc->initial_size < 0 || desc->port < 0 || desc->port > 65535 || desc->min_mem_gib < 0 ||
      desc->min_storage_gib < 0 || desc->min_threads < 0 ||
      (int)desc->on_stop < 0 || (int)desc->on_stop > (int)YHC_ON_STOP_IGNORE) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "service %s: negative size, resource or bad port/policy", desc->url);
    return -1;
  }
  c = YHC__NEW(yhc_cluster);
  if (!c) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory adding a service");
    return -1;
  }
  c->g = &s->g;
  c->plain = s->plain;
  c->d = *desc;
  snprintf(c->url, sizeof c->url, "%s", desc->url);
  while (strlen(c->url) && c->url[strlen(c->url) - 1] == '/') c->url[strlen(c->url) - 1] = 0;
  snprintf(c->host, sizeof c->host, "%.*s", (int)u.host.len, u.host.ptr);
  c->port = u.port;
  c->d.url = c->url;
  c->d.port = desc->port ? desc->port : 80;
  c->d.min_mem_gib = yhc__dbl_or(desc->min_mem_gib, 0.5);
  c->d.min_storage_gib = yhc__dbl_or(desc->min_storage_gib, 2.0);
  c->d.min_threads = yhc__int_or(desc->min_threads, 1);
  c->image_hash = yhc__strdup(desc->image_hash);
  c->image_url = desc->image_url ? yhc__strdup(desc->image_url) : NULL;
  c->extra_props = desc->extra_properties ? yhc__strdup(desc->extra_properties) : NULL;
  c->extra_cons = desc->extra_constraints ? yhc__strdup(desc->extra_constraints) : NULL;
  c->d.image_hash = c->d.image_url = c->d.extra_properties = c->d.extra_constraints = NULL;
  c->lifetime_s = s->d.agreement_lifetime_s;
  c->renew_s = s->d.agreement_renew_s;
  c->offer_window_ms = s->d.offer_window_ms;
  c->drain_ms = s->d.drain_timeout_ms;
  c->state_poll_ms = s->d.state_poll_ms;
  c->tunnel_dead_ms = s->d.tunnel_dead_ms;
  c->concurrency = s->d.instance_concurrency;
  c->max_retries = s->d.max_retries;
  c->idempotent_only = s->d.retry_idempotent_only;
  c->timeout_ms = s->d.request_timeout_ms;
  c->max_queue = s->d.max_queue;
  c->max_cpu_hour = s->d.max_price_cpu_hour;
  c->max_env_hour = s->d.max_price_env_hour;
  c->max_start = s->d.max_price_start;
  c->size_mode = YHC__SIZE_INT;
  c->size_int = desc->initial_size ? desc->initial_size : 1;
  c->hooks.ready = yhc__cluster_instance_ready;
  c->hooks.ended = yhc__cluster_instance_ended;
  if (!c->image_hash || (desc->image_url && !c->image_url) || (desc->extra_properties && !c->extra_props) ||
      (desc->extra_constraints && !c->extra_cons)) {
    yhc__cluster_free(c);
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory adding a service");
    return -1;
  }
  c->next = s->clusters;
  s->clusters = c;
  yhc__image_resolve(c, s->image_repo);
  yhc__timer_start(s->loop, &c->tick, 1000, yhc__cluster_tick, c);
  yhc__cluster_reconcile(c);
  return 0;
}

/* ---- requests */

static uint64_t yhc__session_defer_error(yhc_session *s, yhc_response_fn cb, void *user, yhc_err code,
                                         const char *msg) {
  yhc__req *r = yhc__req_new(s->g.api);
  if (!r) return 0;
  r->cb = cb;
  r->user = user;
  yhc__error_set(&r->error, code, 0, "%s", msg);
  yhc__req_defer(r);
  return r->id;
}

YHCDEF uint64_t yhc_session_request(yhc_session *s, const yhc_request *req, yhc_response_fn cb, void *user) {
  yhc_cluster *c;
  yhc__req *r;
  yhc_url u;
  int tls, timeout;
  char msg[300];
  if (!req || !req->url) return s->plain ? yhc_http_request(s->plain, req, cb, user) : 0;
  c = yhc__session_cluster(s, req->url);
  if (!c) {
    if (s->closing) return yhc__session_defer_error(s, cb, user, YHC_ERR_SHUTDOWN, "the session is closed");
    return yhc_http_request(s->plain, req, cb, user);
  }
  if (s->closing) return yhc__session_defer_error(s, cb, user, YHC_ERR_SHUTDOWN, "the session is closing: request not sent");
  if (c->failed_cluster) {
    snprintf(msg, sizeof msg, "service %.100s failed: %.180s", c->url, c->fail_msg);
    return yhc__session_defer_error(s, cb, user, YHC_ERR_SERVICE_FAILED, msg);
  }
  if (s->g.state == YHC__G_FAILED) return yhc__session_defer_error(s, cb, user, s->g.error.code, s->g.error.msg);
  if (c->qlen >= c->max_queue) {
    snprintf(msg, sizeof msg, "the queue of %s is full (%zu requests waiting)", c->url, c->qlen);
    return yhc__session_defer_error(s, cb, user, YHC_ERR_QUEUE_FULL, msg);
  }
  r = yhc__req_new(s->g.api);
  if (!r) return 0;
  r->cb = cb;
  r->user = user;
  yhc__req_fill(r, req, &u, &tls);
  if (r->error.code) {
    yhc__req_defer(r);
    return r->id;
  }
  timeout = req->timeout_ms ? req->timeout_ms : c->timeout_ms;
  r->timeout_ms = timeout;
  r->submitted_ms = yhc_loop_now(s->loop);
  if (timeout > 0) yhc__timer_start(s->loop, &r->deadline, (uint64_t)timeout, yhc__req_deadline, r);
  r->on_done = yhc__cluster_req_done;
  yhc__cluster_park(c, r, 0);
  if (c->size_mode != YHC__SIZE_INT) yhc__cluster_reconcile(c);
  yhc__cluster_dispatch(c);
  return r->id;
}

YHCDEF int yhc_session_cancel(yhc_session *s, uint64_t id) {
  return id >= ((uint64_t)1 << 62) ? yhc_http_cancel(s->g.api, id) : yhc_http_cancel(s->plain, id);
}

YHCDEF yhc_response *yhc_session_fetch(yhc_session *s, const yhc_request *req) {
  yhc__fetch f;
  f.out = NULL;
  f.done = 0;
  if (!yhc_session_request(s, req, yhc__fetch_done, &f)) return NULL;
  while (!f.done)
    if (yhc_loop_poll(s->loop, -1) < 0 && errno != EINTR) break;
  return f.out;
}

/* ---- size */

YHCDEF int yhc_session_set_size(yhc_session *s, const char *url, int size) {
  yhc_cluster *c = yhc__session_cluster(s, url);
  if (!c || size < 0) return -1;
  c->size_mode = YHC__SIZE_INT;
  c->size_int = size;
  c->lost = 0;
  yhc__cluster_reconcile(c);
  return 0;
}

YHCDEF int yhc_session_set_size_fn(yhc_session *s, const char *url, yhc_size_fn fn, void *user) {
  yhc_cluster *c = yhc__session_cluster(s, url);
  if (!c || !fn) return -1;
  c->size_mode = YHC__SIZE_FN;
  c->size_fn = fn;
  c->size_user = user;
  yhc__cluster_reconcile(c);
  return 0;
}

YHCDEF int yhc_session_autoscale(yhc_session *s, const char *url, const yhc_autoscale_desc *d) {
  yhc_cluster *c = yhc__session_cluster(s, url);
  yhc_autoscale_desc a;
  if (!c) return -1;
  if (d) a = *d;
  else memset(&a, 0, sizeof a);
  if (a.max_size <= 0) a.max_size = 4;
  if (a.min_size < 0) a.min_size = 0;
  if (a.min_size > a.max_size) a.min_size = a.max_size;
  if (a.queue_per_instance <= 0) a.queue_per_instance = 4;
  a.idle_ms = yhc__int_or(a.idle_ms, 30000);
  a.cooldown_ms = yhc__int_or(a.cooldown_ms, 5000);
  c->auto_d = a;
  c->auto_size = a.min_size;
  c->auto_changed_ms = 0;
  c->auto_idle_since_ms = 0;
  c->size_mode = YHC__SIZE_AUTO;
  yhc__cluster_reconcile(c);
  return 0;
}

static int yhc__dbl_cmp(const void *a, const void *b) {
  double x = *YHC__CAST(const double *, a), y = *YHC__CAST(const double *, b);
  return x < y ? -1 : x > y;
}

YHCDEF void yhc_cluster_stats_get(const yhc_cluster *c, yhc_cluster_stats *out) {
  const yhc__instance *i;
  memset(out, 0, sizeof *out);
  out->url = c->url;
  switch (c->size_mode) {
  case YHC__SIZE_AUTO: out->size_target = c->auto_size; break;
  case YHC__SIZE_INT: out->size_target = c->size_int; break;
  default: out->size_target = -1; break; /* a function: evaluated on demand */
  }
  for (i = c->instances; i; i = i->next) {
    if (i->state == YHC__I_READY && !i->draining) out->ready++;
    else if (i->state < YHC__I_READY) out->starting++;
    else out->stopping++;
  }
  out->instances_failed = c->instances_failed;
  out->queued = c->qlen;
  out->in_flight = c->in_flight;
  out->completed = c->completed;
  out->failed = c->failed_n;
  out->retried = c->retried;
  out->spent = c->spent;
  out->failed_cluster = c->failed_cluster;
  if (c->nlat) {
    double tmp[YHC__LAT_N];
    memcpy(tmp, c->lat, c->nlat * sizeof *tmp);
    qsort(tmp, c->nlat, sizeof *tmp, yhc__dbl_cmp);
    out->p50_ms = tmp[(c->nlat - 1) / 2];
    out->p99_ms = tmp[(c->nlat - 1) * 99 / 100];
  }
}

YHCDEF int yhc_session_stats(yhc_session *s, const char *url, yhc_cluster_stats *out) {
  yhc_cluster *c = yhc__session_cluster(s, url);
  if (!c) return -1;
  yhc_cluster_stats_get(c, out);
  return 0;
}

YHCDEF double yhc_session_spent(yhc_session *s) { return s->g.spent; }
YHCDEF yhc_loop *yhc_session_loop(yhc_session *s) { return s->loop; }

/* ---- close */

static void yhc__session_closed_cb(void *ctx) {
  yhc_session *s = YHC__CAST(yhc_session *, ctx);
  s->close_state = YHC__S_CLOSED;
  yhc__timer_stop(s->loop, &s->close_timer);
  yhc__emitf(&s->g, YHC_EV_SESSION_CLOSED, NULL, "session closed: %.6f GLM spent", s->g.spent);
}

static void yhc__session_close_step(void *ctx) {
  yhc_session *s = YHC__CAST(yhc_session *, ctx);
  yhc_cluster *c;
  uint64_t now = yhc_loop_now(s->loop);
  int busy = 0;
  if (s->close_state == YHC__S_DRAINING) {
    for (c = s->clusters; c; c = c->next) busy += c->instances != NULL;
    /* a start-up call in flight may still create the network or the allocation: let it
       finish so teardown can undo it (bounded by the daemon client's timeouts) */
    if (s->g.state == YHC__G_STARTING) busy++;
    if (busy && now - s->close_started_ms >= (uint64_t)s->d.close_timeout_ms) {
      /* out of patience: what is still running is cut and answered with an error */
      yhc__instance *i, *next;
      for (c = s->clusters; c; c = c->next) {
        for (i = c->instances; i; i = next) {
          next = i->next; /* a stop may end (and free) the instance at once */
          i->cut_by_close = 1;
          yhc__instance_stop(i);
        }
      }
    }
    if (busy) goto again;
    s->close_state = YHC__S_INVOICES;
    s->invoices_since_ms = now;
  }
  if (s->close_state == YHC__S_INVOICES) {
    if (yhc__golem_invoices_pending(&s->g) && now - s->invoices_since_ms < (uint64_t)s->d.close_timeout_ms)
      goto again;
    if (yhc__golem_invoices_pending(&s->g))
      yhc__emitf(&s->g, YHC_EV_ERROR, NULL, "closing without %d invoice(s) that did not arrive in time",
                 yhc__golem_invoices_pending(&s->g));
    s->close_state = YHC__S_TEARDOWN;
    yhc__golem_teardown(&s->g, yhc__session_closed_cb, s);
  }
  return;
again:
  yhc__timer_start(s->loop, &s->close_timer, 100, yhc__session_close_step, s);
}

static void yhc__session_cluster_idle(yhc_cluster *c) { (void)c; }

YHCDEF void yhc_session_close(yhc_session *s) {
  yhc_cluster *c;
  if (!s || s->closing) return;
  s->closing = 1;
  s->close_state = YHC__S_DRAINING;
  s->close_started_ms = yhc_loop_now(s->loop);
  for (c = s->clusters; c; c = c->next) {
    yhc__instance *i, *next;
    c->closing = 1;
    c->on_idle = yhc__session_cluster_idle;
    if (c->image_call) yhc_http_cancel(c->plain, c->image_call);
    while (c->qhead) yhc__req_fail(c->qhead, YHC_ERR_SHUTDOWN, "the session closed before %s could serve the request", c->url);
    yhc__demand_unsubscribe(c);
    for (i = c->instances; i; i = next) {
      next = i->next;
      i->drain_ms = s->d.close_timeout_ms;
      yhc__cluster_drain(c, i);
    }
  }
  yhc__session_close_step(s);
}

YHCDEF int yhc_session_closed(yhc_session *s) { return s->close_state == YHC__S_CLOSED; }

YHCDEF int yhc_session_run(yhc_session *s, const volatile int *done) {
  while (done ? !*done : !yhc_session_closed(s))
    if (yhc_loop_poll(s->loop, 1000) < 0 && errno != EINTR) return -1;
  return 0;
}

YHCDEF int yhc_session_close_wait(yhc_session *s) {
  yhc_session_close(s);
  return yhc_session_run(s, NULL);
}

YHCDEF void yhc_session_destroy(yhc_session *s) {
  yhc_cluster *c;
  yhc__agreement *a;
  if (!s) return;
  s->destroying = 1;
  s->closing = 1;
  yhc__timer_stop(s->loop, &s->close_timer);
  /* answer every request first, while everything it may touch still exists */
  for (c = s->clusters; c; c = c->next) {
    yhc__instance *i;
    c->closing = 1;
    /* the image lookup runs on the plain client, destroyed after the clusters are freed */
    if (c->image_call) yhc_http_cancel(c->plain, c->image_call);
    while (c->qhead) yhc__req_fail(c->qhead, YHC_ERR_SHUTDOWN, "the session was destroyed");
    for (i = c->instances; i; i = i->next) {
      /* a draining instance would stop itself (freeing its origin) inside the abort */
      i->draining = 0;
      if (i->origin) yhc__host_abort(i->origin, YHC_ERR_SHUTDOWN, "the session was destroyed");
    }
  }
  s->g.payment_polls = 0;
  yhc__timer_stop(s->loop, &s->g.debit_retry);
  yhc__timer_stop(s->loop, &s->g.invoice_retry);
  yhc__timer_stop(s->loop, &s->g.agreement_retry);
  /* daemon calls are cancelled while their owners still exist */
  if (s->g.api) yhc_http_destroy(s->g.api);
  s->g.api = NULL;
  while ((c = s->clusters) != NULL) {
    s->clusters = c->next;
    while (c->instances) {
      yhc__instance *i = c->instances;
      c->instances = i->next;
      i->call = i->poll_call = 0; /* already cancelled with the client */
      yhc__instance_free(i);
    }
    yhc__cluster_free(c);
  }
  while ((a = s->g.agreements) != NULL) {
    s->g.agreements = a->next;
    YHC_FREE(a);
  }
  yhc_json_free(s->g.decorations);
  if (s->plain) yhc_http_destroy(s->plain);
  if (s->own_loop) yhc_loop_destroy(s->loop);
  YHC_FREE(s->yagna_url);
  YHC_FREE(s->app_key);
  YHC_FREE(s->subnet);
  YHC_FREE(s->image_repo);
  YHC_FREE(s);
}

