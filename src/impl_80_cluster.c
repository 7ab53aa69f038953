/* ==== Cluster scheduler =========================================================== */
/* Owns: everything behind one service URL -- its demand and negotiation (offers scored,
   countered, drafts pooled, the cheapest chosen), its instances, its bounded FIFO of
   requests, dispatch to the ready instance with the least in flight, the size (a number, a
   function, or the auto-balancer), scale up/down without cutting requests, and failover:
   a failed instance's requests go back to the front of the queue and its provider is
   avoided. Every request ends exactly once.

   Dispatch runs on events (a request queued, an instance ready, a request done), never on a
   tick; the one-second timer only re-evaluates size functions and the balancer. */

typedef struct yhc__offer {
  char provider_id[64];
  char provider_name[64];
  char offer_id[YHC__ID_MAX];   /* the provider's Initial proposal */
  char counter_id[YHC__ID_MAX]; /* ours */
  char draft_id[YHC__ID_MAX];   /* the provider's answer: what an agreement is made from */
  double coeff_duration, coeff_cpu, coeff_start;
  int threads;
  double score;                 /* expected GLM for an hour */
  int state;                    /* 0 countering, 1 countered, 2 draft */
  uint64_t at_ms;
  struct yhc__offer *next;
} yhc__offer;

enum { YHC__SIZE_INT, YHC__SIZE_FN, YHC__SIZE_AUTO };

#define YHC__LAT_N 1024

struct yhc_cluster {
  yhc__golem *g;
  yhc_http *plain;              /* for the image registry */
  char url[128];
  char host[128];
  int port;
  yhc_service_desc d;           /* strings below are our copies */
  char *image_hash, *image_url, *extra_props, *extra_cons;
  char task_package[600];
  int image_state;              /* 0 none, 1 resolving, 2 ok, 3 failed */
  uint64_t image_call;
  /* session settings */
  int lifetime_s, renew_s, offer_window_ms, drain_ms, state_poll_ms, tunnel_dead_ms, concurrency;
  int max_retries, idempotent_only, timeout_ms;
  size_t max_queue;
  double max_cpu_hour, max_env_hour, max_start;
  /* market */
  char sub_id[YHC__ID_MAX];
  int demand_state;             /* 0 none, 1 subscribing, 2 active, 3 unsubscribing */
  uint64_t demand_call, collect_call;
  uint64_t subscribed_ms, last_progress_ms;
  yhc__offer *offers;
  char **avoid;
  size_t navoid;
  /* instances */
  yhc__instance *instances;
  yhc__instance_hooks hooks;
  int lost;                     /* instances not replaced (on_stop = ignore) */
  int failed_cluster;
  char fail_msg[300];
  /* size */
  int size_mode, size_int;
  yhc_size_fn size_fn;
  void *size_user;
  yhc_autoscale_desc auto_d;
  int auto_size;
  uint64_t auto_changed_ms, auto_idle_since_ms;
  yhc__timer tick;
  yhc__timer collect_retry;
  /* requests */
  yhc__req *qhead, *qtail;
  size_t qlen;
  size_t in_flight;
  uint64_t completed, failed_n, retried;
  double lat[YHC__LAT_N];
  size_t nlat, lat_pos;
  double spent;
  int instances_failed;
  int closing;
  void (*on_idle)(yhc_cluster *c);   /* the session's close watcher */
  yhc_cluster *next;
};

static void yhc__cluster_dispatch(yhc_cluster *c);
static void yhc__cluster_reconcile(yhc_cluster *c);
static void yhc__demand_subscribe(yhc_cluster *c);

/* ---- request queue */

static void yhc__cluster_unpark(yhc__req *r) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, r->owner);
  if (r->q_prev) r->q_prev->q_next = r->q_next; else c->qhead = r->q_next;
  if (r->q_next) r->q_next->q_prev = r->q_prev; else c->qtail = r->q_prev;
  r->q_prev = r->q_next = NULL;
  c->qlen--;
}

static void yhc__cluster_park(yhc_cluster *c, yhc__req *r, int front) {
  r->where = YHC__REQ_PARKED;
  r->owner = c;
  r->unpark = yhc__cluster_unpark;
  if (front) {
    r->q_prev = NULL;
    r->q_next = c->qhead;
    if (c->qhead) c->qhead->q_prev = r; else c->qtail = r;
    c->qhead = r;
  } else {
    r->q_next = NULL;
    r->q_prev = c->qtail;
    if (c->qtail) c->qtail->q_next = r; else c->qhead = r;
    c->qtail = r;
  }
  c->qlen++;
}

static int yhc__cluster_target(yhc_cluster *c);

static void yhc__cluster_record_latency(yhc_cluster *c, double ms) {
  c->lat[c->lat_pos] = ms;
  c->lat_pos = (c->lat_pos + 1) % YHC__LAT_N;
  if (c->nlat < YHC__LAT_N) c->nlat++;
}

/* Errors that say "this provider could not serve it", as opposed to the request's own
   deadline or a cancellation: those move the request elsewhere. */
static int yhc__retryable_error(const yhc__req *r) {
  if (r->deadline_hit || r->streamed) return 0; /* a streamed answer cannot be taken back */
  switch (r->error.code) {
  case YHC_ERR_CLOSED: case YHC_ERR_IO: case YHC_ERR_CONNECT: case YHC_ERR_TIMEOUT:
  case YHC_ERR_WEBSOCKET: case YHC_ERR_HTTP_STATUS: case YHC_ERR_PROTOCOL:
  case YHC_ERR_SERVICE_FAILED: case YHC_ERR_TLS:
    return 1;
  default:
    return 0;
  }
}

static int yhc__method_of_wire_idempotent(const yhc__req *r) {
  static const char *const safe[] = {"GET ", "HEAD ", "OPTIONS ", "TRACE ", "PUT ", "DELETE "};
  size_t k;
  for (k = 0; k < sizeof safe / sizeof *safe; k++)
    if (r->wire.len > strlen(safe[k]) && !memcmp(r->wire.ptr, safe[k], strlen(safe[k]))) return 1;
  return 0;
}

/* Completion hook of every request a cluster owns. */
static void yhc__cluster_req_done(yhc__req *r) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, r->owner);
  yhc__instance *i = YHC__CAST(yhc__instance *, r->slot);
  if (i) {
    i->in_flight--;
    c->in_flight--;
    r->slot = NULL;
    if (!r->error.code) i->conn_failures = 0;
  }
  if (r->error.code && i && yhc__retryable_error(r) && !c->failed_cluster && !c->closing) {
    int may = r->attempts < c->max_retries && (!c->idempotent_only || !r->sent || yhc__method_of_wire_idempotent(r));
    size_t fl = strlen(r->failed_on);
    if (fl + strlen(i->provider_name) + 3 < sizeof r->failed_on)
      snprintf(r->failed_on + fl, sizeof r->failed_on - fl, "%s%s", fl ? ", " : "", i->provider_name);
    if (r->error.code != YHC_ERR_SERVICE_FAILED) yhc__instance_check_soon(i);
    if (may) {
      /* back to the FRONT: it has waited longest */
      r->attempts++;
      c->retried++;
      yhc__emitf(c->g, YHC_EV_REQUEST_RETRIED, c->url, "request %llu moved off %s (%s), attempt %d",
                 (unsigned long long)r->id, i->provider_name, r->error.msg, r->attempts + 1);
      yhc__req_reset_response(r);
      r->sent = 0;
      yhc__cluster_park(c, r, 1);
      yhc__cluster_reconcile(c);
      yhc__cluster_dispatch(c);
      return;
    }
    {
      char msg[YHC_ERROR_MSG_MAX + 200];
      snprintf(msg, sizeof msg, "request failed on %d provider%s (%.150s): %.200s", r->attempts + 1,
               r->attempts ? "s" : "", r->failed_on, r->error.msg);
      yhc__error_set(&r->error, r->attempts >= c->max_retries ? YHC_ERR_RETRIES : r->error.code, 0, "%s", msg);
    }
  }
  if (r->error.code) c->failed_n++;
  else {
    c->completed++;
    yhc__cluster_record_latency(c, (double)(yhc_loop_now(c->g->loop) - r->submitted_ms));
  }
  r->owner = NULL;
  r->unpark = NULL;
  yhc__req_deliver_user(r);
  if (i && i->draining && !i->in_flight && i->state == YHC__I_READY) yhc__instance_stop(i);
  yhc__cluster_dispatch(c);
  if (c->closing && c->on_idle) c->on_idle(c);
}

static yhc__instance *yhc__cluster_pick(yhc_cluster *c) {
  yhc__instance *i, *best = NULL;
  for (i = c->instances; i; i = i->next) {
    if (i->state != YHC__I_READY || i->draining || i->tunnel_broken || i->in_flight >= i->concurrency) continue;
    if (!best || i->in_flight < best->in_flight) best = i;
  }
  return best;
}

static void yhc__cluster_dispatch(yhc_cluster *c) {
  while (c->qhead) {
    yhc__instance *i = yhc__cluster_pick(c);
    yhc__req *r = c->qhead;
    if (!i) return;
    yhc__cluster_unpark(r);
    r->where = YHC__REQ_NEW;
    r->slot = i;
    i->in_flight++;
    c->in_flight++;
    if (c->g->log_events > 1 || c->g->on_event)
      yhc__emitf(c->g, YHC_EV_REQUEST_FORWARDED, c->url, "request %llu forwarded to %s",
                 (unsigned long long)r->id, i->provider_name);
    yhc__host_submit(i->origin, r, 0);
  }
}

/* ---- offers, negotiation, demand */

static double yhc__num_at(const yhc_json *arr, size_t k) { return yhc_json_num(yhc_json_at(arr, k), -1); }

static void yhc__cluster_reject(yhc_cluster *c, yhc_str proposal_id, const char *provider, const char *why) {
  char path[400], body[300];
  yhc_buf b;
  yhc_jw w;
  (void)body;
  if (!yhc__id_ok(proposal_id)) return;
  memset(&b, 0, sizeof b);
  yhc_jw_init(&w, &b);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "message");
  yhc_jw_str(&w, why);
  yhc_jw_obj_end(&w);
  snprintf(path, sizeof path, "/market-api/v1/demands/%s/proposals/%.*s/reject", c->sub_id,
           (int)proposal_id.len, proposal_id.ptr);
  if (!yhc_jw_finish(&w)) yhc__api(c->g, "POST", path, b.ptr, 15000, NULL, NULL);
  yhc_buf_free(&b);
  yhc__emitf(c->g, YHC_EV_OFFER_REJECTED, c->url, "offer from %s rejected: %s", provider, why);
}

static int yhc__cluster_avoids(const yhc_cluster *c, const char *provider_id) {
  size_t k;
  yhc__instance *i;
  for (k = 0; k < c->navoid; k++)
    if (!strcmp(c->avoid[k], provider_id)) return 1;
  for (i = c->instances; i; i = i->next)
    if (i->state < YHC__I_STOPPING && !strcmp(i->provider_id, provider_id)) return 1;
  return 0;
}

static void yhc__cluster_avoid(yhc_cluster *c, const char *provider_id) {
  char **n;
  if (yhc__cluster_avoids(c, provider_id) && c->navoid) {
    size_t k;
    for (k = 0; k < c->navoid; k++)
      if (!strcmp(c->avoid[k], provider_id)) return;
  }
  n = YHC__CAST(char **, YHC_REALLOC(c->avoid, (c->navoid + 1) * sizeof *n));
  if (!n) return;
  c->avoid = n;
  c->avoid[c->navoid] = yhc__strdup(provider_id);
  if (c->avoid[c->navoid]) c->navoid++;
}

/* Demand properties: ours + the payment decorations + the service's extras. */
static int yhc__cluster_write_props(yhc_cluster *c, yhc_jw *w, const yhc__offer *counter_for,
                                    const yhc_json *offer_props) {
  yhc__golem *g = c->g;
  const yhc_json *p;
  yhc_jw_obj_begin(w);
  yhc_jw_key(w, "golem.srv.comp.expiration");
  yhc_jw_int(w, (int64_t)(yhc__wall_ms() + (uint64_t)c->lifetime_s * 1000u));
  yhc_jw_key(w, "golem.srv.caps.multi-activity");
  yhc_jw_bool(w, 1);
  yhc_jw_key(w, "golem.node.debug.subnet");
  yhc_jw_str(w, g->subnet);
  for (p = yhc_json_first(yhc_json_get(yhc_json_root(g->decorations), "properties")); p; p = yhc_json_next(p)) {
    yhc_str k;
    const yhc_json *v = yhc_json_get(p, "value");
    k.ptr = NULL;
    k.len = 0;
    k = yhc_json_str(yhc_json_get(p, "key"), k);
    if (!k.len || !v) continue;
    yhc_jw_keyn(w, k.ptr, k.len);
    yhc_jw_value(w, v);
  }
  yhc_jw_key(w, "golem.srv.comp.task_package");
  yhc_jw_str(w, c->task_package);
  yhc_jw_key(w, "golem.srv.comp.vm.package_format");
  yhc_jw_str(w, "gvmkit-squash");
  yhc_jw_key(w, "golem.com.payment.debit-notes.accept-timeout?");
  {
    int64_t t = 240;
    if (counter_for) {
      int64_t offered = yhc_json_int(yhc_json_get(offer_props, "golem.com.payment.debit-notes.accept-timeout?"), 240);
      t = offered < 30 ? 30 : offered;
    }
    yhc_jw_int(w, t);
  }
  if (counter_for) {
    yhc_jw_key(w, "golem.com.payment.chosen-platform");
    yhc_jw_str(w, g->platform);
  }
  if (c->extra_props) {
    yhc_error e;
    yhc_json_doc *x = yhc_json_parse(c->extra_props, strlen(c->extra_props), NULL, &e);
    for (p = yhc_json_first(yhc_json_root(x)); p; p = yhc_json_next(p)) {
      yhc_str k = yhc_json_key(p);
      yhc_jw_keyn(w, k.ptr, k.len);
      yhc_jw_value(w, p);
    }
    yhc_json_free(x);
  }
  yhc_jw_obj_end(w);
  return 0;
}

static void yhc__cluster_write_constraints(yhc_cluster *c, yhc_buf *b) {
  yhc__golem *g = c->g;
  const yhc_json *k;
  yhc_buf_printf(b, "(&(golem.node.debug.subnet=%s)", g->subnet);
  for (k = yhc_json_first(yhc_json_get(yhc_json_root(g->decorations), "constraints")); k; k = yhc_json_next(k)) {
    yhc_str s;
    s.ptr = NULL;
    s.len = 0;
    s = yhc_json_str(k, s);
    if (!s.len) continue;
    yhc_buf_appends(b, "\n\t");
    yhc_buf_append(b, s.ptr, s.len);
  }
  yhc_buf_printf(b, "\n\t(golem.com.pricing.model=linear)\n\t(golem.inf.mem.gib>=%g)\n\t(golem.inf.storage.gib>=%g)"
                    "\n\t(golem.inf.cpu.threads>=%d)\n\t(golem.runtime.capabilities=vpn)\n\t(golem.runtime.name=vm)",
                 c->d.min_mem_gib, c->d.min_storage_gib, c->d.min_threads);
  if (c->extra_cons && *c->extra_cons) {
    yhc_buf_appends(b, "\n\t");
    yhc_buf_appends(b, c->extra_cons);
  }
  yhc_buf_appends(b, ")");
}

static int yhc__cluster_demand_body(yhc_cluster *c, yhc_buf *out, const yhc__offer *counter_for,
                                    const yhc_json *offer_props) {
  yhc_jw w;
  yhc_buf cons;
  int rc;
  memset(&cons, 0, sizeof cons);
  yhc__cluster_write_constraints(c, &cons);
  yhc_jw_init(&w, out);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "properties");
  yhc__cluster_write_props(c, &w, counter_for, offer_props);
  yhc_jw_key(&w, "constraints");
  yhc_jw_strn(&w, cons.ptr ? cons.ptr : "", cons.len);
  yhc_jw_obj_end(&w);
  rc = yhc_jw_finish(&w);
  yhc_buf_free(&cons);
  return rc;
}

static void yhc__offer_unlink(yhc_cluster *c, yhc__offer *o) {
  yhc__offer **pp;
  for (pp = &c->offers; *pp; pp = &(*pp)->next) {
    if (*pp == o) {
      *pp = o->next;
      YHC_FREE(o);
      return;
    }
  }
}

typedef struct yhc__counter_ctx {
  yhc_cluster *c;
  yhc__offer *o;
} yhc__counter_ctx;

static void yhc__cluster_countered(void *ctx, const yhc__reply *r) {
  yhc__counter_ctx *cc = YHC__CAST(yhc__counter_ctx *, ctx);
  yhc_cluster *c = cc->c;
  yhc__offer *o = cc->o, *it;
  YHC_FREE(cc);
  for (it = c->offers; it && it != o; it = it->next) {}
  if (!it) return; /* dropped meanwhile */
  if (r->err) {
    if (r->err != YHC_ERR_CANCELLED) yhc__log(c->g->loop, YHC_LOG_INFO, "%s", r->error);
    yhc__offer_unlink(c, o);
    return;
  }
  {
    yhc_str id;
    id.ptr = NULL;
    id.len = 0;
    id = yhc_json_str(r->json, id);
    if (!yhc__id_ok(id)) {
      yhc__offer_unlink(c, o);
      return;
    }
    yhc__copy_id(o->counter_id, sizeof o->counter_id, id);
    o->state = 1;
  }
}

/* Scores and answers an Initial offer: reject it with a reason, or counter it. */
static void yhc__cluster_offer(yhc_cluster *c, const yhc_json *proposal) {
  const yhc_json *props = yhc_json_get(proposal, "properties");
  const yhc_json *coeffs = yhc_json_get(props, "golem.com.pricing.model.linear.coeffs");
  const yhc_json *usage = yhc_json_get(props, "golem.com.usage.vector");
  yhc_str pid, issuer, name, scheme;
  char provider[64], pname[64], key[160], why[200];
  double dur = 0, cpu = 0, start, mem, storage;
  int threads;
  size_t k, nc;
  yhc__offer *o;
  yhc_buf body;
  pid.ptr = issuer.ptr = name.ptr = scheme.ptr = NULL;
  pid.len = issuer.len = name.len = scheme.len = 0;
  pid = yhc_json_str(yhc_json_get(proposal, "proposalId"), pid);
  issuer = yhc_json_str(yhc_json_get(proposal, "issuerId"), issuer);
  name = yhc_json_str(yhc_json_get(props, "golem.node.id.name"), name);
  if (!yhc__id_ok(pid) || !yhc__id_ok(issuer) || issuer.len >= sizeof provider) return;
  yhc__copy_id(provider, sizeof provider, issuer);
  snprintf(pname, sizeof pname, "%.*s", (int)YHC__MIN(name.len, 60), name.len ? name.ptr : provider);
  yhc__emitf(c->g, YHC_EV_OFFER_RECEIVED, c->url, "offer from %s (%s)", pname, provider);
  /* the checks yapapi's strategy makes, plus our price limits */
  scheme = yhc_json_str(yhc_json_get(props, "golem.com.scheme"), scheme);
  snprintf(key, sizeof key, "golem.com.payment.platform.%s.address", c->g->platform);
  nc = yhc_json_len(coeffs);
  why[0] = 0;
  if (c->failed_cluster || c->closing) snprintf(why, sizeof why, "no longer needed");
  else if (yhc__cluster_avoids(c, provider)) snprintf(why, sizeof why, "provider already used or failed in this session");
  else if (yhc_json_typeof(yhc_json_get(props, key)) != YHC_JSON_STRING) snprintf(why, sizeof why, "No common payment platform");
  else if (scheme.len && !yhc__str_eq(scheme, "payu")) snprintf(why, sizeof why, "payment scheme is not payu");
  else if (yhc_json_typeof(coeffs) != YHC_JSON_ARRAY || yhc_json_typeof(usage) != YHC_JSON_ARRAY ||
           nc != yhc_json_len(usage) + 1)
    snprintf(why, sizeof why, "no linear price over a usage vector");
  if (!why[0]) {
    for (k = 0; k + 1 < nc; k++) {
      double v = yhc__num_at(coeffs, k);
      yhc_str u;
      u.ptr = NULL;
      u.len = 0;
      u = yhc_json_str(yhc_json_at(usage, k), u);
      if (v < 0) { snprintf(why, sizeof why, "negative or non-numeric price"); break; }
      if (yhc__str_eq(u, "golem.usage.duration_sec")) dur = v;
      else if (yhc__str_eq(u, "golem.usage.cpu_sec")) cpu = v;
      else if (v > 0) { snprintf(why, sizeof why, "priced usage counter %.*s is unknown", (int)YHC__MIN(u.len, 60), u.ptr); break; }
    }
  }
  start = yhc__num_at(coeffs, nc ? nc - 1 : 0);
  mem = yhc_json_num(yhc_json_get(props, "golem.inf.mem.gib"), -1);
  storage = yhc_json_num(yhc_json_get(props, "golem.inf.storage.gib"), -1);
  threads = (int)yhc_json_int(yhc_json_get(props, "golem.inf.cpu.threads"), 1);
  if (!why[0]) {
    if (start < 0) snprintf(why, sizeof why, "negative start price");
    else if (cpu * 3600 > c->max_cpu_hour) snprintf(why, sizeof why, "CPU price %.6f GLM/h above the limit %.6f", cpu * 3600, c->max_cpu_hour);
    else if (dur * 3600 > c->max_env_hour) snprintf(why, sizeof why, "price %.6f GLM/h above the limit %.6f", dur * 3600, c->max_env_hour);
    else if (start > c->max_start) snprintf(why, sizeof why, "start price %.6f GLM above the limit %.6f", start, c->max_start);
    else if ((mem >= 0 && mem + 1e-9 < c->d.min_mem_gib) || (storage >= 0 && storage + 1e-9 < c->d.min_storage_gib) ||
             threads < c->d.min_threads)
      snprintf(why, sizeof why, "not enough memory, storage or threads");
  }
  if (why[0]) {
    yhc__cluster_reject(c, pid, pname, why);
    return;
  }
  o = YHC__NEW(yhc__offer);
  if (!o) return;
  snprintf(o->provider_id, sizeof o->provider_id, "%s", provider);
  snprintf(o->provider_name, sizeof o->provider_name, "%s", pname);
  yhc__copy_id(o->offer_id, sizeof o->offer_id, pid);
  o->coeff_duration = dur;
  o->coeff_cpu = cpu;
  o->coeff_start = start;
  o->threads = threads > 0 ? threads : 1;
  o->score = start + 3600 * (dur + cpu * o->threads);
  o->at_ms = yhc_loop_now(c->g->loop);
  /* one negotiation per provider: a newer offer replaces an older one */
  {
    yhc__offer *it = c->offers, *nx;
    for (; it; it = nx) {
      nx = it->next;
      if (!strcmp(it->provider_id, provider)) yhc__offer_unlink(c, it);
    }
  }
  o->next = c->offers;
  c->offers = o;
  memset(&body, 0, sizeof body);
  if (yhc__cluster_demand_body(c, &body, o, props) == 0) {
    yhc__counter_ctx *cc = YHC__NEW(yhc__counter_ctx);
    char path[400];
    snprintf(path, sizeof path, "/market-api/v1/demands/%s/proposals/%s", c->sub_id, o->offer_id);
    if (cc) {
      cc->c = c;
      cc->o = o;
      if (!yhc__api(c->g, "POST", path, body.ptr, 30000, yhc__cluster_countered, cc)) YHC_FREE(cc);
    }
  }
  yhc_buf_free(&body);
}

static void yhc__cluster_draft(yhc_cluster *c, const yhc_json *proposal) {
  yhc_str prev, id;
  yhc__offer *o;
  prev.ptr = id.ptr = NULL;
  prev.len = id.len = 0;
  prev = yhc_json_str(yhc_json_get(proposal, "prevProposalId"), prev);
  id = yhc_json_str(yhc_json_get(proposal, "proposalId"), id);
  if (!yhc__id_ok(id)) return;
  for (o = c->offers; o; o = o->next) {
    if (o->state == 1 && yhc__str_eq(prev, o->counter_id)) {
      yhc__copy_id(o->draft_id, sizeof o->draft_id, id);
      o->state = 2;
      o->at_ms = yhc_loop_now(c->g->loop);
      c->last_progress_ms = o->at_ms;
      yhc__cluster_reconcile(c);
      return;
    }
  }
}

static void yhc__cluster_rejected(yhc_cluster *c, const yhc_json *ev) {
  yhc_str id, msg;
  yhc__offer *o;
  id.ptr = msg.ptr = NULL;
  id.len = msg.len = 0;
  id = yhc_json_str(yhc_json_get(ev, "proposalId"), id);
  msg = yhc_json_str(yhc_json_get(yhc_json_get(ev, "reason"), "message"), msg);
  for (o = c->offers; o; o = o->next) {
    if (yhc__str_eq(id, o->counter_id) || yhc__str_eq(id, o->offer_id) || yhc__str_eq(id, o->draft_id)) {
      yhc__emitf(c->g, YHC_EV_PROPOSAL_REJECTED, c->url, "%s rejected our proposal%s%.*s", o->provider_name,
                 msg.len ? ": " : "", (int)YHC__MIN(msg.len, 120), msg.ptr);
      yhc__offer_unlink(c, o);
      return;
    }
  }
}

static void yhc__collect(yhc_cluster *c);
static void yhc__collect_again(void *ctx) { yhc__collect(YHC__CAST(yhc_cluster *, ctx)); }

static void yhc__collected(void *ctx, const yhc__reply *r) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, ctx);
  const yhc_json *ev;
  c->collect_call = 0;
  if (r->err == YHC_ERR_CANCELLED) return;
  if (r->err) {
    if (r->status == 404 || r->status == 410) {
      /* the subscription expired or vanished: subscribe again (yapapi does the same) */
      c->demand_state = 0;
      c->sub_id[0] = 0;
      yhc__cluster_reconcile(c);
      return;
    }
    /* a daemon hiccup: ask again in a second rather than spinning */
    yhc__log(c->g->loop, YHC_LOG_WARN, "%s", r->error);
    yhc__timer_start(c->g->loop, &c->collect_retry, 1000, yhc__collect_again, c);
    return;
  } else {
    for (ev = yhc_json_first(r->json); ev; ev = yhc_json_next(ev)) {
      yhc_str type, state;
      const yhc_json *p = yhc_json_get(ev, "proposal");
      type.ptr = state.ptr = NULL;
      type.len = state.len = 0;
      type = yhc_json_str(yhc_json_get(ev, "eventType"), type);
      if (yhc__str_eq(type, "ProposalEvent")) {
        state = yhc_json_str(yhc_json_get(p, "state"), state);
        if (yhc__str_eq(state, "Initial")) yhc__cluster_offer(c, p);
        else if (yhc__str_eq(state, "Draft")) yhc__cluster_draft(c, p);
      } else if (yhc__str_eq(type, "ProposalRejectedEvent")) {
        yhc__cluster_rejected(c, ev);
      }
    }
  }
  yhc__collect(c);
}

static void yhc__collect(yhc_cluster *c) {
  char path[300];
  if (c->collect_call || c->demand_state != 2) return;
  snprintf(path, sizeof path, "/market-api/v1/demands/%s/events?timeout=5&maxEvents=20", c->sub_id);
  c->collect_call = yhc__api(c->g, "GET", path, NULL, 20000, yhc__collected, c);
}

static void yhc__demand_subscribed(void *ctx, const yhc__reply *r) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, ctx);
  yhc_str id;
  c->demand_call = 0;
  if (r->err) {
    if (r->err == YHC_ERR_CANCELLED) return;
    c->demand_state = 0;
    yhc__emitf(c->g, YHC_EV_ERROR, c->url, "publishing the demand failed: %s", r->error);
    c->subscribed_ms = yhc_loop_now(c->g->loop); /* retried by the tick, not at once */
    return;
  }
  id.ptr = NULL;
  id.len = 0;
  id = yhc_json_str(r->json, id);
  if (!yhc__id_ok(id)) {
    c->demand_state = 0;
    yhc__emitf(c->g, YHC_EV_ERROR, c->url, "POST /market-api/v1/demands: answer is not a subscription id");
    return;
  }
  yhc__copy_id(c->sub_id, sizeof c->sub_id, id);
  c->demand_state = 2;
  c->subscribed_ms = c->last_progress_ms = yhc_loop_now(c->g->loop);
  yhc__emitf(c->g, YHC_EV_DEMAND_PUBLISHED, c->url, "demand %s published for %s", c->sub_id, c->url);
  yhc__collect(c);
}

static void yhc__demand_subscribe(yhc_cluster *c) {
  yhc_buf body;
  if (c->demand_state != 0 || c->g->state != YHC__G_READY || c->image_state != 2) return;
  memset(&body, 0, sizeof body);
  if (yhc__cluster_demand_body(c, &body, NULL, NULL) == 0) {
    c->demand_state = 1;
    c->demand_call = yhc__api(c->g, "POST", "/market-api/v1/demands", body.ptr, 30000, yhc__demand_subscribed, c);
  }
  yhc_buf_free(&body);
}

static void yhc__demand_unsubscribe(yhc_cluster *c) {
  char path[300];
  yhc__offer *o;
  yhc__api_cancel(c->g, &c->collect_call);
  yhc__api_cancel(c->g, &c->demand_call);
  while ((o = c->offers) != NULL) yhc__offer_unlink(c, o);
  if (c->demand_state == 2 && c->sub_id[0]) {
    snprintf(path, sizeof path, "/market-api/v1/demands/%s", c->sub_id);
    yhc__api(c->g, "DELETE", path, NULL, 15000, NULL, NULL);
  }
  c->demand_state = 0;
  c->sub_id[0] = 0;
}

/* ---- image */

static void yhc__image_resolved(const yhc_response *resp, void *user) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, user);
  yhc_json_doc *d;
  yhc_error e;
  yhc_str url;
  c->image_call = 0;
  if (resp->err == YHC_ERR_CANCELLED) return;
  url.ptr = NULL;
  url.len = 0;
  if (resp->err || resp->status != 200) {
    c->image_state = 3;
    snprintf(c->fail_msg, sizeof c->fail_msg, "image %s not found at the repository: %s%s HTTP %d",
             c->image_hash, resp->error, resp->err ? "" : "", resp->status);
  } else if (!(d = yhc_json_parse(resp->body.ptr, resp->body.len, NULL, &e))) {
    c->image_state = 3;
    snprintf(c->fail_msg, sizeof c->fail_msg, "image repository answer is not JSON: %s", e.msg);
  } else {
    url = yhc_json_str(yhc_json_get(yhc_json_root(d), "http"), url);
    if (!url.len || url.len > 400 || memchr(url.ptr, '\n', url.len)) {
      c->image_state = 3;
      snprintf(c->fail_msg, sizeof c->fail_msg, "image repository answer for %s has no \"http\" URL", c->image_hash);
    } else {
      snprintf(c->task_package, sizeof c->task_package, "hash:sha3:%s:%.*s", c->image_hash, (int)url.len, url.ptr);
      c->image_state = 2;
    }
    yhc_json_free(d);
  }
  if (c->image_state == 3) {
    yhc__emitf(c->g, YHC_EV_ERROR, c->url, "%s", c->fail_msg);
    c->failed_cluster = 1;
    while (c->qhead) yhc__req_fail(c->qhead, YHC_ERR_SERVICE_FAILED, "%s", c->fail_msg);
    return;
  }
  yhc__cluster_reconcile(c);
}

static void yhc__image_resolve(yhc_cluster *c, const char *repo) {
  yhc_request rq;
  char url[600];
  if (c->image_state) return;
  if (c->image_url) {
    snprintf(c->task_package, sizeof c->task_package, "hash:sha3:%s:%s", c->image_hash, c->image_url);
    c->image_state = 2;
    return;
  }
  snprintf(url, sizeof url, "%s/v1/image/info?hash=%s&count=true", repo, c->image_hash);
  memset(&rq, 0, sizeof rq);
  rq.url = url;
  rq.timeout_ms = 30000;
  c->image_state = 1;
  c->image_call = yhc_http_request(c->plain, &rq, yhc__image_resolved, c);
}

/* ---- instances */

static void yhc__cluster_instance_ready(yhc__instance *i) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, i->cluster);
  yhc__cluster_reconcile(c);
  yhc__cluster_dispatch(c);
}

static void yhc__cluster_fail(yhc_cluster *c, const char *why) {
  yhc__instance *i;
  if (c->failed_cluster) return;
  c->failed_cluster = 1;
  snprintf(c->fail_msg, sizeof c->fail_msg, "%.299s", why);
  yhc__emitf(c->g, YHC_EV_CLUSTER_FAILED, c->url, "cluster %s failed: %s", c->url, why);
  while (c->qhead) yhc__req_fail(c->qhead, YHC_ERR_SERVICE_FAILED, "cluster %s failed: %s", c->url, why);
  /* a stop can end (and free) instances at once, this one or others through the cluster's
     hooks, so walk again from the head after each */
  for (;;) {
    for (i = c->instances; i && i->state >= YHC__I_STOPPING; i = i->next) {
    }
    if (!i) break;
    yhc__instance_stop(i);
  }
  yhc__demand_unsubscribe(c);
}

static void yhc__cluster_instance_ended(yhc__instance *i) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, i->cluster);
  yhc__instance **pp;
  for (pp = &c->instances; *pp; pp = &(*pp)->next) {
    if (*pp == i) {
      *pp = i->next;
      break;
    }
  }
  if (i->failed) {
    c->instances_failed++;
    if (i->provider_id[0]) yhc__cluster_avoid(c, i->provider_id);
    if (!c->closing) {
      if (c->d.on_stop == YHC_ON_STOP_RAISE) {
        char why[600];
        snprintf(why, sizeof why, "%.120s on %.60s: %.300s", c->url, i->provider_name, i->why);
        yhc__instance_free(i);
        yhc__cluster_fail(c, why);
        if (c->on_idle) c->on_idle(c);
        return;
      }
      if (c->d.on_stop == YHC_ON_STOP_IGNORE && i->state >= YHC__I_STOPPED && i->origin == NULL &&
          i->activity_id[0] == 0)
        c->lost++;
    }
  }
  yhc__instance_free(i);
  if (!c->closing) yhc__cluster_reconcile(c);
  yhc__cluster_dispatch(c);
  if (c->on_idle) c->on_idle(c);
}

static void yhc__cluster_start_instance(yhc_cluster *c, yhc__offer *o) {
  yhc__instance *i = YHC__NEW(yhc__instance);
  yhc_ctx ctx;
  if (!i) return;
  i->g = c->g;
  i->cluster = c;
  i->hooks = &c->hooks;
  i->service = c->url;
  i->port = c->d.port;
  i->lifetime_s = c->lifetime_s;
  i->renew_s = c->renew_s;
  i->state_poll_ms = c->state_poll_ms;
  i->drain_ms = c->drain_ms;
  i->tunnel_dead_ms = c->tunnel_dead_ms;
  i->concurrency = c->concurrency;
  i->spent_sink = &c->spent; /* payments for its agreement count towards the cluster's stats */
  snprintf(i->proposal_id, sizeof i->proposal_id, "%s", o->draft_id);
  snprintf(i->provider_id, sizeof i->provider_id, "%s", o->provider_id);
  snprintf(i->provider_name, sizeof i->provider_name, "%s", o->provider_name);
  i->coeff_duration = o->coeff_duration;
  i->coeff_cpu = o->coeff_cpu;
  i->coeff_start = o->coeff_start;
  i->threads = o->threads;
  yhc__offer_unlink(c, o);
  /* the startup commands, gathered once per instance from the user's callback */
  memset(&ctx, 0, sizeof ctx);
  if (c->d.startup) {
    char listen[32];
    snprintf(listen, sizeof listen, "0.0.0.0:%d", c->d.port);
    c->d.startup(&ctx, listen, c->d.startup_user);
  }
  if (ctx.failed) {
    yhc_buf_free(&ctx.cmds);
    YHC_FREE(i);
    yhc__emitf(c->g, YHC_EV_ERROR, c->url, "out of memory gathering startup commands");
    return;
  }
  if (!ctx.count) yhc_buf_appends(&ctx.cmds, "[");
  yhc_buf_appends(&ctx.cmds, "]");
  i->startup_cmds = ctx.cmds.ptr;
  i->next = c->instances;
  c->instances = i;
  yhc__instance_begin(i);
}

static yhc__offer *yhc__cluster_best_draft(yhc_cluster *c) {
  yhc__offer *o, *best = NULL;
  for (o = c->offers; o; o = o->next) {
    if (o->state != 2 || yhc__cluster_avoids(c, o->provider_id)) continue;
    if (!best || o->score < best->score) best = o;
  }
  return best;
}

/* ---- size */

static int yhc__autoscale_eval(yhc_cluster *c) {
  const yhc_autoscale_desc *a = &c->auto_d;
  uint64_t now = yhc_loop_now(c->g->loop);
  int ready = 0, size = c->auto_size;
  yhc__instance *i;
  for (i = c->instances; i; i = i->next)
    if (i->state == YHC__I_READY && !i->draining) ready++;
  if (c->qlen == 0 && c->in_flight <= (size_t)(ready > 1 ? ready - 1 : 0)) {
    if (!c->auto_idle_since_ms) c->auto_idle_since_ms = now;
  } else {
    c->auto_idle_since_ms = 0;
  }
  if (now - c->auto_changed_ms >= (uint64_t)a->cooldown_ms || !c->auto_changed_ms) {
    /* grow when the queue outruns what the instances we have (or are starting) absorb */
    double per = (double)c->qlen / (double)(size > 0 ? size : 1);
    if (size < a->max_size && c->qlen > 0 && (size == 0 || per > a->queue_per_instance)) {
      size++;
      c->auto_changed_ms = now;
    } else if (size > a->min_size && c->auto_idle_since_ms && now - c->auto_idle_since_ms >= (uint64_t)a->idle_ms) {
      size--;
      c->auto_changed_ms = now;
      c->auto_idle_since_ms = now; /* hysteresis: a full idle period before the next step */
    }
  }
  if (size < a->min_size) size = a->min_size;
  if (size > a->max_size) size = a->max_size;
  c->auto_size = size;
  return size;
}

static int yhc__cluster_target(yhc_cluster *c) {
  int t;
  if (c->closing || c->failed_cluster) return 0;
  switch (c->size_mode) {
  case YHC__SIZE_FN: t = c->size_fn(c, c->size_user); break;
  case YHC__SIZE_AUTO: t = yhc__autoscale_eval(c); break;
  default: t = c->size_int; break;
  }
  t -= c->lost;
  if (t < 0) t = 0;
  if (t > 250) t = 250; /* the VPN has room for 253 providers */
  return t;
}

static void yhc__instance_drain_timeout(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  yhc_cluster *c = YHC__CAST(yhc_cluster *, i->cluster);
  if (c->closing) i->cut_by_close = 1; /* what is still in flight ends with SHUTDOWN */
  yhc__instance_stop(i); /* what is still in flight moves to other instances */
}

static void yhc__cluster_drain(yhc_cluster *c, yhc__instance *i) {
  (void)c;
  i->draining = 1;
  if (i->state != YHC__I_READY || !i->in_flight) {
    yhc__instance_stop(i);
    return;
  }
  yhc__timer_start(i->g->loop, &i->drain_timer, (uint64_t)i->drain_ms, yhc__instance_drain_timeout, i);
}

/* Brings the number of instances towards the target: starts instances from the best drafts,
   keeps the demand alive while more are needed, and drains the least busy when fewer are.
   An instance whose agreement is expiring is replaced first and drained once the
   replacement is ready (make before break). */
static void yhc__cluster_reconcile(yhc_cluster *c) {
  int target, active = 0, ready = 0;
  yhc__instance *i;
  uint64_t now;
  if (c->g->state == YHC__G_FAILED) {
    while (c->qhead) yhc__req_fail(c->qhead, c->g->error.code ? c->g->error.code : YHC_ERR_YAGNA, "%s", c->g->error.msg);
    return;
  }
  if (c->g->state != YHC__G_READY) return;
  target = yhc__cluster_target(c);
  for (i = c->instances; i; i = i->next) {
    if (i->state >= YHC__I_STOPPING || i->draining) continue;
    if (!i->expiring) active++;
    if (i->state == YHC__I_READY && !i->expiring) ready++;
  }
  /* scale down: unready ones first (nothing to finish), then the least busy */
  while (active > target) {
    yhc__instance *pick = NULL;
    for (i = c->instances; i; i = i->next) {
      if (i->state >= YHC__I_STOPPING || i->draining || i->expiring) continue;
      if (!pick || (pick->state == YHC__I_READY && i->state != YHC__I_READY) ||
          (pick->state == i->state && i->in_flight < pick->in_flight))
        pick = i;
    }
    if (!pick) break;
    yhc__cluster_drain(c, pick);
    active--;
  }
  /* make before break: an expiring instance goes once enough others are ready */
  for (i = c->instances; i; i = i->next)
    if (i->expiring && !i->draining && i->state == YHC__I_READY && ready >= target) yhc__cluster_drain(c, i);
  if (active >= target) return;
  if (c->image_state == 0) return;
  if (c->demand_state == 0) {
    yhc__demand_subscribe(c);
    return;
  }
  if (c->demand_state != 2) return;
  now = yhc_loop_now(c->g->loop);
  if (now - c->subscribed_ms < (uint64_t)c->offer_window_ms) return; /* let offers come in */
  while (active < target) {
    yhc__offer *o = yhc__cluster_best_draft(c);
    if (!o) break;
    yhc__cluster_start_instance(c, o);
    active++;
  }
  /* still short, nothing in negotiation and no progress for a while: fresh offers are only
     announced to a new subscription, so subscribe again */
  if (active < target) {
    int negotiating = 0;
    yhc__offer *o;
    for (o = c->offers; o; o = o->next) negotiating++;
    if (!negotiating && now - c->last_progress_ms > 10000) {
      yhc__demand_unsubscribe(c);
      yhc__demand_subscribe(c);
    }
  }
}

static void yhc__cluster_tick(void *ctx) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, ctx);
  if (c->demand_state == 0 && !c->closing && !c->failed_cluster) c->subscribed_ms = 0;
  yhc__cluster_reconcile(c);
  yhc__cluster_dispatch(c);
  if (!c->closing) yhc__timer_start(c->g->loop, &c->tick, 1000, yhc__cluster_tick, c);
}

