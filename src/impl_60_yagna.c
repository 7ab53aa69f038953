/* ==== yagna REST calls: identity, payment, market, activity, net =================== */
/* Owns: the daemon connection (base URL, app key), JSON calls with defensive answers, the
   shared Golem context (identity, allocation, VPN, agreements we pay for) and payments:
   debit notes and invoices are accepted only for our agreements and only within the budget
   and what the agreed price allows for the time elapsed.

   Call sequences follow ../shared/yagna-api/PROTOCOL.md (yapapi's behaviour): long-polls with
   server-side timeouts, never sleep loops; every id that goes back into a URL is checked
   first, since it came from the daemon or a provider. */

#define YHC__ID_MAX 160

typedef struct yhc__golem yhc__golem;

/* What an agreement allows us to pay, kept until its invoice is settled. */
typedef struct yhc__agreement {
  char id[YHC__ID_MAX];
  char provider_id[64];
  char provider_name[64];
  char service[128];
  double coeff_duration, coeff_cpu, coeff_start; /* GLM per second / per cpu-second / once */
  int threads;
  uint64_t approved_ms;   /* wall clock */
  uint64_t ended_ms;      /* 0 while running */
  double accepted;        /* through debit notes and the invoice */
  int invoice_done;
  int terminated;
  void *owner;            /* the instance, while it lives */
  double *spent_sink;     /* the cluster's counter */
  struct yhc__agreement *next;
} yhc__agreement;

typedef struct yhc__reply {
  yhc_err err;
  const char *error;     /* names the call, e.g. "POST /payment-api/v1/allocations answered 400: ..." */
  int status;
  const yhc_json *json;  /* parsed body of a 2xx answer, or NULL */
  yhc_str body;
} yhc__reply;

typedef void (*yhc__reply_fn)(void *ctx, const yhc__reply *r);

enum { YHC__G_INIT, YHC__G_STARTING, YHC__G_READY, YHC__G_FAILED, YHC__G_CLOSING, YHC__G_CLOSED };

struct yhc__golem {
  yhc_loop *loop;
  yhc_http *api;            /* the daemon client: many long-polls in parallel */
  char base[256];
  char auth[300];           /* "Bearer <key>" */
  char appkey[200];
  char subnet[64];
  char platform[96];        /* driver-network-token */
  char identity[64];
  char allocation_id[YHC__ID_MAX];
  char network_id[YHC__ID_MAX];
  char network_ip[32];      /* "192.168.0.0" */
  yhc_json_doc *decorations;/* demandDecorations answer */
  int state;
  double budget;
  double spent;
  /* payments */
  char debit_after[40], invoice_after[40], agreement_after[40];
  uint64_t debit_call, invoice_call, agreement_call;
  yhc__timer debit_retry, invoice_retry, agreement_retry;
  int payment_polls;        /* 1 while the event feeds should run */
  int accepting;            /* accept calls in flight */
  yhc__agreement *agreements;
  /* VPN addresses .2 .. .254 */
  unsigned char ip_used[256];
  /* events */
  yhc_event_fn on_event;
  void *event_user;
  int log_events;
  /* hooks the upper layers set */
  void (*on_ready)(yhc__golem *g);
  void (*on_agreement_ended)(yhc__golem *g, yhc__agreement *a, const char *why);
  void *owner;
  yhc_error error;          /* why start-up failed */
};

/* ---- small helpers */

static uint64_t yhc__wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* RFC 3339 UTC with milliseconds and Z, as the daemon expects. */
static void yhc__rfc3339(uint64_t ms, char out[40]) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  /* the modulos bound each field, so the compiler can see the text fits */
  snprintf(out, 40, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", (unsigned)(tm.tm_year + 1900) % 10000u,
           (unsigned)tm.tm_mon % 12u + 1u, (unsigned)tm.tm_mday % 32u, (unsigned)tm.tm_hour % 24u,
           (unsigned)tm.tm_min % 60u, (unsigned)tm.tm_sec % 61u, (unsigned)(ms % 1000));
}

/* Decimal money strings ("0.000869307866200000") without strtod, which follows the
   process locale. Returns -1 for anything that is not a plain non-negative decimal. */
static double yhc__parse_amount(yhc_str s) {
  double v = 0, scale = 1;
  size_t i = 0;
  int digits = 0, dot = 0;
  if (!s.ptr) return -1;
  for (; i < s.len; i++) {
    char c = s.ptr[i];
    if (c >= '0' && c <= '9') {
      digits++;
      if (dot) {
        scale /= 10;
        v += (c - '0') * scale;
      } else {
        v = v * 10 + (c - '0');
      }
    } else if (c == '.' && !dot) {
      dot = 1;
    } else {
      return -1;
    }
  }
  return digits ? v : -1;
}

/* Ids go back into URLs: allow only what yagna's ids are made of. */
static int yhc__id_ok(yhc_str s) {
  size_t i;
  if (!s.ptr || !s.len || s.len >= YHC__ID_MAX) return 0;
  for (i = 0; i < s.len; i++) {
    unsigned char c = (unsigned char)s.ptr[i];
    if (!(yhc__is_alpha(c) || yhc__is_digit(c) || c == '-' || c == '_')) return 0;
  }
  return 1;
}

static void yhc__copy_id(char *dst, size_t cap, yhc_str s) {
  size_t n = YHC__MIN(s.len, cap - 1);
  if (n) memcpy(dst, s.ptr, n);
  dst[n] = 0;
}

/* ---- events */

static void yhc__emit(yhc__golem *g, yhc_event *ev) {
  /* one line per forwarded request is too chatty for log_events = 1 */
  if (g->log_events > (ev->kind == YHC_EV_REQUEST_FORWARDED ? 1 : 0)) {
    static const char *const names[] = {"",          "session",  "demand",   "offer",    "offer",
                                        "proposal",  "agreement","activity", "ready",    "request",
                                        "retry",     "payment",  "payment",  "invoice",  "invoice",
                                        "failed",    "stopped",  "cluster",  "closed",   "error"};
    int k = (int)ev->kind;
    fprintf(stderr, "[yhc %-9s] %s\n", (k > 0 && k < (int)(sizeof names / sizeof *names)) ? names[k] : "event",
            ev->message ? ev->message : "");
  }
  if (g->on_event) g->on_event(ev, g->event_user);
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 4, 5)))
#endif
static void yhc__emitf(yhc__golem *g, yhc_event_kind kind, const char *service, const char *fmt, ...) {
  char msg[512];
  yhc_event ev;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  memset(&ev, 0, sizeof ev);
  ev.kind = kind;
  ev.service = service;
  ev.message = msg;
  yhc__emit(g, &ev);
}

/* ---- JSON calls */

typedef struct yhc__call {
  yhc__golem *g;
  yhc__reply_fn fn;
  void *ctx;
  char what[200]; /* "METHOD /path" without the query, for messages */
} yhc__call;

static void yhc__call_done(const yhc_response *resp, void *user) {
  yhc__call *call = YHC__CAST(yhc__call *, user);
  yhc__reply r;
  yhc_json_doc *doc = NULL;
  char msg[YHC_ERROR_MSG_MAX + 240];
  memset(&r, 0, sizeof r);
  r.status = resp->status;
  r.body = resp->body;
  r.error = "";
  if (resp->err) {
    r.err = resp->err;
    snprintf(msg, sizeof msg, "%s: %s", call->what, resp->error);
    r.error = msg;
  } else {
    const char *ctype = NULL;
    yhc_str ct = yhc_response_header(resp, "content-type");
    (void)ctype;
    if (resp->body.len && (ct.len == 0 || memchr(ct.ptr, 'j', ct.len) || resp->body.ptr[0] == '{' ||
                           resp->body.ptr[0] == '[' || resp->body.ptr[0] == '"')) {
      yhc_error e;
      yhc_json_opts o;
      memset(&o, 0, sizeof o);
      o.max_depth = 64;
      o.max_bytes = (size_t)16 << 20;
      doc = yhc_json_parse(resp->body.ptr, resp->body.len, &o, &e);
      if (!doc && resp->status >= 200 && resp->status < 300) {
        r.err = YHC_ERR_YAGNA;
        snprintf(msg, sizeof msg, "%s: invalid JSON in the answer: %s", call->what, e.msg);
        r.error = msg;
      }
    }
    if (!r.err && (resp->status < 200 || resp->status >= 300)) {
      /* the daemon's message, from {"message": ...} or a plain-text body */
      const char *m = doc ? yhc_json_cstr(yhc_json_get(yhc_json_root(doc), "message"), NULL) : NULL;
      r.err = YHC_ERR_YAGNA;
      if (m) snprintf(msg, sizeof msg, "%s answered %d: %.200s", call->what, resp->status, m);
      else snprintf(msg, sizeof msg, "%s answered %d%s%.*s", call->what, resp->status,
                    resp->body.len ? ": " : "", (int)YHC__MIN(resp->body.len, 200), resp->body.ptr);
      r.error = msg;
    }
    if (doc && !r.err) r.json = yhc_json_root(doc);
  }
  if (call->fn) call->fn(call->ctx, &r); /* fire-and-forget calls (rejections) have none */
  yhc_json_free(doc);
  YHC_FREE(call);
}

/* Sends one JSON call to the daemon. `path` starts with "/"; `body` is JSON text or NULL.
   The callback runs exactly once (also when cancelled, with YHC_ERR_CANCELLED). Returns the
   request id for cancelling. */
static uint64_t yhc__api(yhc__golem *g, const char *method, const char *path, const char *body,
                         int timeout_ms, yhc__reply_fn fn, void *ctx) {
  yhc__call *call = YHC__NEW(yhc__call);
  yhc_request rq;
  yhc_header hd[3];
  yhc_buf url;
  size_t nh = 0;
  uint64_t id;
  const char *q;
  if (!call) return 0;
  call->g = g;
  call->fn = fn;
  call->ctx = ctx;
  q = strchr(path, '?');
  snprintf(call->what, sizeof call->what, "%s %.*s", method, (int)(q ? (size_t)(q - path) : strlen(path)), path);
  memset(&url, 0, sizeof url);
  if (yhc_buf_appends(&url, g->base) || yhc_buf_appends(&url, path)) {
    yhc_buf_free(&url);
    YHC_FREE(call);
    return 0;
  }
  hd[nh].name = "Authorization";
  hd[nh++].value = g->auth;
  hd[nh].name = "Accept";
  hd[nh++].value = "application/json";
  if (body) {
    hd[nh].name = "Content-Type";
    hd[nh++].value = "application/json";
  }
  memset(&rq, 0, sizeof rq);
  rq.method = method;
  rq.url = url.ptr;
  rq.headers = hd;
  rq.header_count = nh;
  rq.body = body;
  rq.body_len = body ? strlen(body) : 0;
  rq.timeout_ms = timeout_ms;
  id = yhc_http_request(g->api, &rq, yhc__call_done, call);
  yhc_buf_free(&url);
  if (!id) YHC_FREE(call);
  return id;
}

static void yhc__api_cancel(yhc__golem *g, uint64_t *id) {
  if (*id) {
    uint64_t v = *id;
    *id = 0;
    yhc_http_cancel(g->api, v);
  }
}

/* A required string field of an answer; names the call and field when absent. */
static int yhc__need_str(const yhc_json *obj, const char *field, const char *call, yhc_str *out,
                         yhc_error *err) {
  const yhc_json *v = yhc_json_get(obj, field);
  if (yhc_json_typeof(v) != YHC_JSON_STRING) {
    yhc__error_set(err, YHC_ERR_YAGNA, 0, "%s: answer field \"%s\" is %s", call, field,
                   v ? "not a string" : "missing");
    return -1;
  }
  *out = yhc_json_str(v, *out);
  return 0;
}

/* ---- agreements we pay for */

static yhc__agreement *yhc__agreement_find(yhc__golem *g, yhc_str id) {
  yhc__agreement *a;
  for (a = g->agreements; a; a = a->next)
    if (yhc__str_eq(id, a->id)) return a;
  return NULL;
}

/* The most a provider may ask by now under the agreed linear price, with slack for clock
   skew and the provider's rounding: start + per-second * elapsed + per-cpu-second * elapsed
   * threads, elapsed counted from approval plus a minute. */
static double yhc__agreement_allowed(const yhc__agreement *a, uint64_t now_ms) {
  uint64_t end = a->ended_ms ? a->ended_ms : now_ms;
  double secs = (double)(end > a->approved_ms ? end - a->approved_ms : 0) / 1000.0 + 60.0;
  double v = a->coeff_start + a->coeff_duration * secs + a->coeff_cpu * secs * (a->threads > 0 ? a->threads : 1);
  return v * 1.05 + 1e-12;
}

/* ---- debit notes and invoices */

typedef struct yhc__payment {
  yhc__golem *g;
  int invoice;                 /* 0 = debit note */
  int tries;
  char id[YHC__ID_MAX];
  char amount_str[64];
  char agreement_id[YHC__ID_MAX];
  double amount;
} yhc__payment;

static void yhc__payment_poll(yhc__golem *g, int invoice);
static void yhc__debit_retry(void *ctx) { yhc__payment_poll(YHC__CAST(yhc__golem *, ctx), 0); }
static void yhc__invoice_retry(void *ctx) { yhc__payment_poll(YHC__CAST(yhc__golem *, ctx), 1); }

static int yhc__payment_send_accept(yhc__golem *g, yhc__payment *p);

static void yhc__payment_accepted(void *ctx, const yhc__reply *r) {
  yhc__payment *p = YHC__CAST(yhc__payment *, ctx);
  yhc__golem *g = p->g;
  yhc_str aid;
  yhc__agreement *a;
  yhc_event ev;
  char msg[400];
  g->accepting--;
  if (r->err == YHC_ERR_CANCELLED) {
    YHC_FREE(p);
    return;
  }
  /* delivery to the provider not confirmed in time (408/504) or a daemon hiccup: yapapi
     tries again, and so do we, a few times; the accept is idempotent */
  if (r->err && p->tries < 4 &&
      (r->status == 408 || r->status >= 500 || r->err == YHC_ERR_TIMEOUT || r->err == YHC_ERR_CLOSED ||
       r->err == YHC_ERR_IO)) {
    p->tries++;
    if (yhc__payment_send_accept(g, p) == 0) return;
  }
  aid.ptr = p->agreement_id;
  aid.len = strlen(p->agreement_id);
  a = yhc__agreement_find(g, aid);
  memset(&ev, 0, sizeof ev);
  ev.agreement_id = p->agreement_id;
  ev.amount = p->amount_str;
  if (a) {
    ev.provider_id = a->provider_id;
    ev.provider_name = a->provider_name;
    ev.service = a->service;
  }
  if (r->err) {
    ev.kind = p->invoice ? YHC_EV_INVOICE_REJECTED : YHC_EV_DEBIT_NOTE_REJECTED;
    ev.err = r->err;
    snprintf(msg, sizeof msg, "accepting %s %s failed: %s", p->invoice ? "invoice" : "debit note",
             p->id, r->error);
  } else {
    double delta = 0;
    if (a) {
      /* amounts are cumulative per agreement: spend only the growth */
      delta = p->amount > a->accepted ? p->amount - a->accepted : 0;
      a->accepted = YHC__MAX(a->accepted, p->amount);
      if (p->invoice) a->invoice_done = 1;
      if (a->spent_sink) *a->spent_sink += delta;
    }
    g->spent += delta;
    ev.kind = p->invoice ? YHC_EV_INVOICE_ACCEPTED : YHC_EV_DEBIT_NOTE_ACCEPTED;
    snprintf(msg, sizeof msg, "%s %s GLM accepted for %s (%s), total spent %.6f GLM",
             p->invoice ? "invoice of" : "debit note of", p->amount_str,
             a ? a->provider_name : "?", a ? a->service : "?", g->spent);
  }
  ev.message = msg;
  yhc__emit(g, &ev);
  YHC_FREE(p);
}

static void yhc__payment_reject(yhc__golem *g, yhc__payment *p, yhc__agreement *a, const char *why) {
  yhc_event ev;
  char msg[400];
  memset(&ev, 0, sizeof ev);
  ev.kind = p->invoice ? YHC_EV_INVOICE_REJECTED : YHC_EV_DEBIT_NOTE_REJECTED;
  ev.agreement_id = p->agreement_id;
  ev.amount = p->amount_str;
  ev.err = YHC_ERR_BUDGET;
  if (a) {
    ev.provider_id = a->provider_id;
    ev.provider_name = a->provider_name;
    ev.service = a->service;
  }
  snprintf(msg, sizeof msg, "not accepting %s %s of %s GLM: %s", p->invoice ? "invoice" : "debit note",
           p->id, p->amount_str, why);
  if (p->invoice && a) a->invoice_done = 1; /* decided: a close need not wait for it */
  ev.message = msg;
  yhc__log(g->loop, YHC_LOG_WARN, "%s", msg);
  yhc__emit(g, &ev);
}

/* Accepts the full amount from our allocation. 0 when the call is under way. */
static int yhc__payment_send_accept(yhc__golem *g, yhc__payment *p) {
  yhc_buf body, path;
  yhc_jw w;
  int rc = -1;
  memset(&body, 0, sizeof body);
  memset(&path, 0, sizeof path);
  yhc_jw_init(&w, &body);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "totalAmountAccepted");
  yhc_jw_str(&w, p->amount_str);
  yhc_jw_key(&w, "allocationId");
  yhc_jw_str(&w, g->allocation_id);
  yhc_jw_obj_end(&w);
  if (!yhc_jw_finish(&w) &&
      !yhc_buf_printf(&path, "/payment-api/v1/%s/%s/accept?timeout=15", p->invoice ? "invoices" : "debitNotes",
                      p->id) &&
      yhc__api(g, "POST", path.ptr, body.ptr, 30000, yhc__payment_accepted, p)) {
    g->accepting++;
    rc = 0;
  }
  yhc_buf_free(&body);
  yhc_buf_free(&path);
  return rc;
}

/* A debit note or invoice has been fetched: decide, then accept. */
static void yhc__payment_got(void *ctx, const yhc__reply *r) {
  yhc__payment *p = YHC__CAST(yhc__payment *, ctx);
  yhc__golem *g = p->g;
  yhc_str aid, amount, status;
  yhc__agreement *a;
  yhc_error e;
  const char *what = p->invoice ? "GET /payment-api/v1/invoices/{id}" : "GET /payment-api/v1/debitNotes/{id}";
  char why[200];
  aid.ptr = amount.ptr = status.ptr = NULL;
  aid.len = amount.len = status.len = 0;
  if (r->err) {
    if (r->err != YHC_ERR_CANCELLED) yhc__log(g->loop, YHC_LOG_WARN, "%s", r->error);
    YHC_FREE(p);
    return;
  }
  if (yhc__need_str(r->json, "agreementId", what, &aid, &e) ||
      yhc__need_str(r->json, p->invoice ? "amount" : "totalAmountDue", what, &amount, &e)) {
    yhc__log(g->loop, YHC_LOG_WARN, "%s", e.msg);
    YHC_FREE(p);
    return;
  }
  status = yhc_json_str(yhc_json_get(r->json, "status"), status);
  a = yhc__agreement_find(g, aid);
  if (!a) { /* not ours (another requestor app on this daemon): leave it alone */
    YHC_FREE(p);
    return;
  }
  yhc__copy_id(p->agreement_id, sizeof p->agreement_id, aid);
  yhc__copy_id(p->amount_str, sizeof p->amount_str, amount);
  p->amount = yhc__parse_amount(amount);
  if (yhc__str_eq(status, "ACCEPTED") || yhc__str_eq(status, "SETTLED") || yhc__str_eq(status, "CANCELLED")) {
    YHC_FREE(p);
    return;
  }
  if (p->amount < 0) {
    yhc__payment_reject(g, p, a, "the amount is not a decimal number");
    YHC_FREE(p);
    return;
  }
  if (p->amount > yhc__agreement_allowed(a, yhc__wall_ms())) {
    snprintf(why, sizeof why, "above the %.9f GLM the agreed price allows for the time elapsed",
             yhc__agreement_allowed(a, yhc__wall_ms()));
    yhc__payment_reject(g, p, a, why);
    YHC_FREE(p);
    return;
  }
  if (g->spent + (p->amount - a->accepted) > g->budget + 1e-12) {
    snprintf(why, sizeof why, "it would exceed the budget of %.6f GLM", g->budget);
    yhc__payment_reject(g, p, a, why);
    YHC_FREE(p);
    return;
  }
  if (yhc__payment_send_accept(g, p)) {
    yhc__log(g->loop, YHC_LOG_ERROR, "out of memory accepting a payment");
    YHC_FREE(p);
  }
}

static void yhc__payment_events(void *ctx, const yhc__reply *r, int invoice) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  const yhc_json *ev;
  char *after = invoice ? g->invoice_after : g->debit_after;
  if (invoice) g->invoice_call = 0; else g->debit_call = 0;
  if (r->err == YHC_ERR_CANCELLED) return;
  if (r->err) {
    yhc__log(g->loop, YHC_LOG_WARN, "%s", r->error);
  } else if (yhc_json_typeof(r->json) == YHC_JSON_ARRAY) {
    for (ev = yhc_json_first(r->json); ev; ev = yhc_json_next(ev)) {
      yhc_str type, date, id;
      type.ptr = date.ptr = id.ptr = NULL;
      type.len = date.len = id.len = 0;
      type = yhc_json_str(yhc_json_get(ev, "eventType"), type);
      date = yhc_json_str(yhc_json_get(ev, "eventDate"), date);
      id = yhc_json_str(yhc_json_get(ev, invoice ? "invoiceId" : "debitNoteId"), id);
      /* the feed is not consumed: move our window to the newest event seen */
      if (date.len && date.len < 40) yhc__copy_id(after, 40, date);
      if (!yhc__str_eq(type, invoice ? "InvoiceReceivedEvent" : "DebitNoteReceivedEvent")) continue;
      if (!yhc__id_ok(id)) {
        yhc__log(g->loop, YHC_LOG_WARN, "payment event with a malformed id ignored");
        continue;
      }
      {
        yhc__payment *p = YHC__NEW(yhc__payment);
        char path[256];
        if (!p) continue;
        p->g = g;
        p->invoice = invoice;
        yhc__copy_id(p->id, sizeof p->id, id);
        snprintf(path, sizeof path, "/payment-api/v1/%s/%s", invoice ? "invoices" : "debitNotes", p->id);
        if (!yhc__api(g, "GET", path, NULL, 30000, yhc__payment_got, p)) YHC_FREE(p);
      }
    }
  }
  if (!g->payment_polls) return;
  if (r->err && r->err != YHC_ERR_TIMEOUT) {
    /* the daemon had a problem: ask again in a second, not in a tight loop */
    yhc__timer_start(g->loop, invoice ? &g->invoice_retry : &g->debit_retry, 1000,
                     invoice ? yhc__invoice_retry : yhc__debit_retry, g);
    return;
  }
  yhc__payment_poll(g, invoice);
}

static void yhc__debit_events(void *ctx, const yhc__reply *r) { yhc__payment_events(ctx, r, 0); }
static void yhc__invoice_events(void *ctx, const yhc__reply *r) { yhc__payment_events(ctx, r, 1); }

static void yhc__payment_poll(yhc__golem *g, int invoice) {
  char path[200];
  uint64_t *slot = invoice ? &g->invoice_call : &g->debit_call;
  if (*slot || !g->payment_polls) return;
  snprintf(path, sizeof path, "/payment-api/v1/%s?afterTimestamp=%s&timeout=5&maxEvents=100",
           invoice ? "invoiceEvents" : "debitNoteEvents", invoice ? g->invoice_after : g->debit_after);
  *slot = yhc__api(g, "GET", path, NULL, 20000, invoice ? yhc__invoice_events : yhc__debit_events, g);
}

/* ---- agreement events: how a provider's termination is noticed at once */

static void yhc__agreement_poll(yhc__golem *g);
static void yhc__agreement_retry(void *ctx) { yhc__agreement_poll(YHC__CAST(yhc__golem *, ctx)); }

static void yhc__agreement_events(void *ctx, const yhc__reply *r) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  const yhc_json *ev;
  g->agreement_call = 0;
  if (r->err == YHC_ERR_CANCELLED) return;
  if (!r->err && yhc_json_typeof(r->json) == YHC_JSON_ARRAY) {
    for (ev = yhc_json_first(r->json); ev; ev = yhc_json_next(ev)) {
      yhc_str type, date, id, reason;
      yhc__agreement *a;
      type.ptr = date.ptr = id.ptr = reason.ptr = NULL;
      type.len = date.len = id.len = reason.len = 0;
      type = yhc_json_str(yhc_json_get(ev, "eventType"), type);
      date = yhc_json_str(yhc_json_get(ev, "eventDate"), date);
      id = yhc_json_str(yhc_json_get(ev, "agreementId"), id);
      if (date.len && date.len < 40) yhc__copy_id(g->agreement_after, 40, date);
      if (!yhc__str_eq(type, "AgreementTerminatedEvent")) continue;
      a = yhc__agreement_find(g, id);
      if (!a || a->terminated) continue;
      reason = yhc_json_str(yhc_json_get(yhc_json_get(ev, "reason"), "message"), reason);
      a->terminated = 1;
      if (!a->ended_ms) a->ended_ms = yhc__wall_ms();
      if (g->on_agreement_ended) {
        char why[200];
        snprintf(why, sizeof why, "agreement terminated by the %s%s%.*s",
                 yhc__str_eq(yhc_json_str(yhc_json_get(ev, "terminator"), reason), "Requestor") ? "requestor" : "provider",
                 reason.len ? ": " : "", (int)YHC__MIN(reason.len, 120), reason.ptr);
        g->on_agreement_ended(g, a, why);
      }
    }
  } else if (r->err && r->err != YHC_ERR_TIMEOUT) {
    yhc__log(g->loop, YHC_LOG_DEBUG, "%s", r->error);
    if (g->payment_polls) yhc__timer_start(g->loop, &g->agreement_retry, 1000, yhc__agreement_retry, g);
    return;
  }
  yhc__agreement_poll(g);
}

static void yhc__agreement_poll(yhc__golem *g) {
  char path[200];
  if (g->agreement_call || !g->payment_polls) return;
  snprintf(path, sizeof path, "/market-api/v1/agreementEvents?afterTimestamp=%s&timeout=5",
           g->agreement_after);
  g->agreement_call = yhc__api(g, "GET", path, NULL, 20000, yhc__agreement_events, g);
}

/* ---- start-up: identity, allocation, decorations, VPN (PROTOCOL.md §7) */

static void yhc__golem_fail(yhc__golem *g, const char *msg) {
  yhc__error_set(&g->error, YHC_ERR_YAGNA, 0, "%s", msg);
  g->state = YHC__G_FAILED;
  yhc__emitf(g, YHC_EV_ERROR, NULL, "session start failed: %s", msg);
  if (g->on_ready) g->on_ready(g);
}

static void yhc__golem_fail_reply(yhc__golem *g, const yhc__reply *r) {
  yhc__error_set(&g->error, r->err == YHC_ERR_YAGNA ? YHC_ERR_YAGNA : r->err, 0, "%s", r->error);
  g->state = YHC__G_FAILED;
  yhc__emitf(g, YHC_EV_ERROR, NULL, "session start failed: %s", r->error);
  if (g->on_ready) g->on_ready(g);
}

static void yhc__start_payment_feeds(yhc__golem *g) {
  char now[40];
  yhc__rfc3339(yhc__wall_ms() - 1000, now);
  memcpy(g->debit_after, now, sizeof now);
  memcpy(g->invoice_after, now, sizeof now);
  memcpy(g->agreement_after, now, sizeof now);
  g->payment_polls = 1;
  yhc__payment_poll(g, 0);
  yhc__payment_poll(g, 1);
  yhc__agreement_poll(g);
}

static void yhc__net_address_done(void *ctx, const yhc__reply *r) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  if (r->err && r->status != 409) { /* 409: already ours */
    if (r->err != YHC_ERR_CANCELLED) yhc__golem_fail_reply(g, r);
    return;
  }
  g->state = YHC__G_READY;
  yhc__emitf(g, YHC_EV_SESSION_READY, NULL, "session ready: identity %s, allocation %s (%.6f GLM on %s), network %s",
             g->identity, g->allocation_id, g->budget, g->platform, g->network_id);
  if (g->on_ready) g->on_ready(g);
}

static void yhc__net_created(void *ctx, const yhc__reply *r) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  yhc_str id;
  yhc_error e;
  char path[256];
  id.ptr = NULL;
  id.len = 0;
  if (r->err) {
    if (r->err != YHC_ERR_CANCELLED) yhc__golem_fail_reply(g, r);
    return;
  }
  if (yhc__need_str(r->json, "id", "POST /net-api/v1/net", &id, &e)) {
    yhc__golem_fail(g, e.msg);
    return;
  }
  if (!yhc__id_ok(id)) {
    yhc__golem_fail(g, "POST /net-api/v1/net: answer field \"id\" is not a valid id");
    return;
  }
  yhc__copy_id(g->network_id, sizeof g->network_id, id);
  snprintf(path, sizeof path, "/net-api/v1/net/%s/addresses", g->network_id);
  yhc__api(g, "POST", path, "{\"ip\":\"192.168.0.1\"}", 30000, yhc__net_address_done, g);
}

static void yhc__decorations_done(void *ctx, const yhc__reply *r) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  yhc_buf copy;
  yhc_jw w;
  yhc_error e;
  if (r->err) {
    if (r->err != YHC_ERR_CANCELLED) yhc__golem_fail_reply(g, r);
    return;
  }
  if (yhc_json_typeof(yhc_json_get(r->json, "properties")) != YHC_JSON_ARRAY ||
      yhc_json_typeof(yhc_json_get(r->json, "constraints")) != YHC_JSON_ARRAY) {
    yhc__golem_fail(g, "GET /payment-api/v1/demandDecorations: answer lacks \"properties\" or \"constraints\" arrays");
    return;
  }
  /* keep our own copy: the reply's document is freed when this callback returns */
  memset(&copy, 0, sizeof copy);
  yhc_jw_init(&w, &copy);
  yhc_jw_value(&w, r->json);
  g->decorations = yhc_jw_finish(&w) ? NULL : yhc_json_parse(copy.ptr, copy.len, NULL, &e);
  yhc_buf_free(&copy);
  if (!g->decorations) {
    yhc__golem_fail(g, "out of memory keeping the demand decorations");
    return;
  }
  yhc__start_payment_feeds(g);
  g->network_ip[0] = 0;
  snprintf(g->network_ip, sizeof g->network_ip, "192.168.0.0");
  yhc__api(g, "POST", "/net-api/v1/net", "{\"ip\":\"192.168.0.0\",\"mask\":\"255.255.255.0\"}", 30000,
           yhc__net_created, g);
}

static void yhc__allocation_done(void *ctx, const yhc__reply *r) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  yhc_str id;
  yhc_error e;
  char path[300];
  id.ptr = NULL;
  id.len = 0;
  if (r->err) {
    if (r->err != YHC_ERR_CANCELLED) yhc__golem_fail_reply(g, r);
    return;
  }
  if (yhc__need_str(r->json, "allocationId", "POST /payment-api/v1/allocations", &id, &e)) {
    yhc__golem_fail(g, e.msg);
    return;
  }
  if (!yhc__id_ok(id)) {
    yhc__golem_fail(g, "POST /payment-api/v1/allocations: \"allocationId\" is not a valid id");
    return;
  }
  yhc__copy_id(g->allocation_id, sizeof g->allocation_id, id);
  snprintf(path, sizeof path, "/payment-api/v1/demandDecorations?allocationIds=%s", g->allocation_id);
  yhc__api(g, "GET", path, NULL, 30000, yhc__decorations_done, g);
}

static void yhc__identity_done(void *ctx, const yhc__reply *r) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  yhc_str id;
  yhc_error e;
  yhc_buf body;
  yhc_jw w;
  char timeout[40];
  id.ptr = NULL;
  id.len = 0;
  if (r->err) {
    if (r->err != YHC_ERR_CANCELLED) yhc__golem_fail_reply(g, r);
    return;
  }
  if (yhc__need_str(r->json, "identity", "GET /me", &id, &e)) {
    yhc__golem_fail(g, e.msg);
    return;
  }
  if (id.len < 3 || id.len >= sizeof g->identity || !yhc__id_ok(id)) {
    yhc__golem_fail(g, "GET /me: \"identity\" is not a node id");
    return;
  }
  yhc__copy_id(g->identity, sizeof g->identity, id);
  /* yapapi asks for a 10-year allocation timeout; yagna releases it when it expires */
  yhc__rfc3339(yhc__wall_ms() + (uint64_t)10 * 365 * 24 * 3600 * 1000, timeout);
  memset(&body, 0, sizeof body);
  yhc_jw_init(&w, &body);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "address");
  yhc_jw_str(&w, g->identity);
  yhc_jw_key(&w, "paymentPlatform");
  yhc_jw_str(&w, g->platform);
  yhc_jw_key(&w, "totalAmount");
  {
    char amount[64];
    snprintf(amount, sizeof amount, "%.9f", g->budget);
    yhc_jw_str(&w, amount);
  }
  yhc_jw_key(&w, "timeout");
  yhc_jw_str(&w, timeout);
  yhc_jw_key(&w, "makeDeposit");
  yhc_jw_bool(&w, 0);
  yhc_jw_obj_end(&w);
  if (yhc_jw_finish(&w) == 0)
    yhc__api(g, "POST", "/payment-api/v1/allocations", body.ptr, 30000, yhc__allocation_done, g);
  else
    yhc__golem_fail(g, "out of memory building the allocation");
  yhc_buf_free(&body);
}

static void yhc__golem_start(yhc__golem *g) {
  if (g->state != YHC__G_INIT) return;
  g->state = YHC__G_STARTING;
  if (!yhc__api(g, "GET", "/me", NULL, 30000, yhc__identity_done, g))
    yhc__golem_fail(g, "out of memory starting the session");
}

/* VPN addresses for providers: .2 upward, reused after an instance leaves. */
static int yhc__golem_take_ip(yhc__golem *g) {
  int i;
  for (i = 2; i < 255; i++) {
    if (!g->ip_used[i]) {
      g->ip_used[i] = 1;
      return i;
    }
  }
  return -1;
}

static void yhc__golem_release_ip(yhc__golem *g, int host) {
  if (host > 1 && host < 255) g->ip_used[host] = 0;
}

/* ---- shutdown: the network goes last (after tunnels and nodes), then the allocation */

typedef struct yhc__golem_closer {
  yhc__golem *g;
  void (*done)(void *ctx);
  void *ctx;
} yhc__golem_closer;

static void yhc__golem_finish_close(yhc__golem *g) {
  g->payment_polls = 0;
  yhc__timer_stop(g->loop, &g->debit_retry);
  yhc__timer_stop(g->loop, &g->invoice_retry);
  yhc__timer_stop(g->loop, &g->agreement_retry);
  yhc__api_cancel(g, &g->debit_call);
  yhc__api_cancel(g, &g->invoice_call);
  yhc__api_cancel(g, &g->agreement_call);
  g->state = YHC__G_CLOSED;
}

static void yhc__allocation_released(void *ctx, const yhc__reply *r) {
  yhc__golem_closer *c = YHC__CAST(yhc__golem_closer *, ctx);
  if (r->err && r->err != YHC_ERR_CANCELLED)
    yhc__log(c->g->loop, YHC_LOG_WARN, "releasing the allocation: %s", r->error);
  yhc__golem_finish_close(c->g);
  c->done(c->ctx);
  YHC_FREE(c);
}

static void yhc__network_removed(void *ctx, const yhc__reply *r) {
  yhc__golem_closer *c = YHC__CAST(yhc__golem_closer *, ctx);
  yhc__golem *g = c->g;
  char path[256];
  if (r->err && r->err != YHC_ERR_CANCELLED)
    yhc__log(g->loop, YHC_LOG_WARN, "removing the network: %s", r->error);
  g->network_id[0] = 0;
  if (!g->allocation_id[0]) {
    yhc__reply none;
    memset(&none, 0, sizeof none);
    none.error = "";
    yhc__allocation_released(c, &none);
    return;
  }
  snprintf(path, sizeof path, "/payment-api/v1/allocations/%s", g->allocation_id);
  g->allocation_id[0] = 0;
  if (!yhc__api(g, "DELETE", path, NULL, 15000, yhc__allocation_released, c)) {
    yhc__reply none;
    memset(&none, 0, sizeof none);
    none.error = "";
    yhc__allocation_released(c, &none);
  }
}

/* Removes the network and releases the allocation, then calls done(ctx). Call once every
   tunnel is closed and every invoice we wait for is handled. */
static void yhc__golem_teardown(yhc__golem *g, void (*done)(void *ctx), void *ctx) {
  yhc__golem_closer *c = YHC__NEW(yhc__golem_closer);
  yhc__reply none;
  char path[256];
  if (!c) {
    yhc__golem_finish_close(g);
    done(ctx);
    return;
  }
  c->g = g;
  c->done = done;
  c->ctx = ctx;
  g->state = YHC__G_CLOSING;
  memset(&none, 0, sizeof none);
  none.error = "";
  if (!g->network_id[0]) {
    yhc__network_removed(c, &none);
    return;
  }
  snprintf(path, sizeof path, "/net-api/v1/net/%s", g->network_id);
  if (!yhc__api(g, "DELETE", path, NULL, 15000, yhc__network_removed, c)) yhc__network_removed(c, &none);
}

/* Invoices still expected: agreements that ended and were not invoiced yet. */
static int yhc__golem_invoices_pending(yhc__golem *g) {
  yhc__agreement *a;
  int n = 0;
  for (a = g->agreements; a; a = a->next)
    if (a->ended_ms && !a->invoice_done) n++;
  return n + g->accepting;
}

