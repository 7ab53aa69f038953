/* test_money.c -- issue 12: exact money, budget governance, refusals and mid-agreement
   payments, against the yagna stand-in (tests/yagna-sim), plus unit tests of the decimal code.

   Two stand-ins: A at real time (tiny budget, comma locale, over-priced debit notes, inflated
   invoice, malformed and huge amounts), B compressing time 10x (budget exhausted mid-run) and
   C 2000x (a 12-hour agreement with mid-agreement payments; debit notes too frequent). Every
   scenario compares GLM figures exactly as decimal strings: yhc's own against the daemon's.
   Run from the repository root. YHC_TEST_EVENTS=1 prints every event. */
#define _POSIX_C_SOURCE 200809L
#define YHC_IMPLEMENTATION
#include "yhc.h"
#include "tests/yt.h"
#include "tests/yt_locale.h"
#include "tests/yt_proc.h"
#include "tests/yt_sim.h"

#include <locale.h>
#include <signal.h>

/* ---------------------------------------------------------------- events */
#define MAX_EV 4096
typedef struct ev_rec {
  int kind;
  yhc_err err;
  char amount[64];
  char agreement[80];
  char message[400];
} ev_rec;
static ev_rec g_ev[MAX_EV];
static int g_nev;

static void on_event(const yhc_event *ev, void *user) {
  ev_rec *e;
  (void)user;
  if (getenv("YHC_TEST_EVENTS")) fprintf(stderr, "  [event %d] %s\n", (int)ev->kind, ev->message ? ev->message : "");
  if (g_nev >= MAX_EV) return;
  e = &g_ev[g_nev++];
  e->kind = (int)ev->kind;
  e->err = ev->err;
  snprintf(e->amount, sizeof e->amount, "%s", ev->amount ? ev->amount : "");
  snprintf(e->agreement, sizeof e->agreement, "%s", ev->agreement_id ? ev->agreement_id : "");
  snprintf(e->message, sizeof e->message, "%s", ev->message ? ev->message : "");
}

static const ev_rec *ev_with(int kind, const char *text) {
  int k;
  for (k = 0; k < g_nev; k++)
    if (g_ev[k].kind == kind && (!text || strstr(g_ev[k].message, text))) return &g_ev[k];
  return NULL;
}

static int ev_count(int kind) {
  int k, n = 0;
  for (k = 0; k < g_nev; k++) n += g_ev[k].kind == kind;
  return n;
}

/* ---------------------------------------------------------------- helpers */
static yhc_loop *g_admin_loop;
static yhc_http *g_admin;

static void start_server(yhc_ctx *ctx, const char *listen_on, void *user) {
  const char *argv[] = {"/bin/sh", "-c", "python3 /golem/run/calculator_server.py --port 80 >/dev/null 2>&1 &", NULL};
  (void)listen_on;
  (void)user;
  yhc_ctx_run(ctx, argv);
}

/* exact price limits for the next open_session (NULL: the defaults) */
static const char *g_env_limit, *g_cpu_limit;

static yhc_session *open_session(yt_sim *sim, const char *budget, int time_scale, int lifetime_s, int cover_min) {
  yhc_session_desc d;
  yhc_service_desc sd;
  yhc_error err;
  yhc_session *s;
  memset(&d, 0, sizeof d);
  d.yagna_url = sim->url;
  d.app_key = YT_SIM_APPKEY;
  d.image_repo = sim->url;
  d.budget_glm = budget;
  d.budget_cover_min = cover_min;
  d.max_price_env_hour_glm = g_env_limit;
  d.max_price_cpu_hour_glm = g_cpu_limit;
  d.time_scale = time_scale;
  d.agreement_lifetime_s = lifetime_s;
  d.offer_window_ms = 300;
  d.state_poll_ms = 1000;
  d.close_timeout_ms = 8000;
  d.request_timeout_ms = 20000;
  d.on_event = on_event;
  g_nev = 0;
  s = yhc_session_create(&d, &err);
  if (!s) {
    fprintf(stderr, "  session: %s\n", err.msg);
    return NULL;
  }
  memset(&sd, 0, sizeof sd);
  sd.url = "http://calc";
  sd.image_hash = sim->hash;
  sd.startup = start_server;
  sd.initial_size = 1;
  if (yhc_session_add_service(s, &sd, &err)) fprintf(stderr, "  add_service: %s\n", err.msg);
  return s;
}

static yhc_err get(yhc_session *s, const char *url, int *status) {
  yhc_request rq;
  yhc_response *r;
  yhc_err e;
  memset(&rq, 0, sizeof rq);
  rq.url = url;
  rq.timeout_ms = 20000;
  r = yhc_session_fetch(s, &rq);
  e = r ? r->err : YHC_ERR_NOMEM;
  if (status) *status = r ? r->status : 0;
  if (r) yhc_response_free(r);
  return e;
}

static void pump(yhc_session *s, int ms) {
  long long end = yt_now_ms() + ms;
  while (yt_now_ms() < end) yhc_loop_poll(yhc_session_loop(s), 20);
}

/* "0.001200000000000000" -> "0.0012", as yhc writes amounts */
static void trim(const char *in, char *out, size_t cap) {
  size_t n;
  snprintf(out, cap, "%s", in);
  if (!strchr(out, '.')) return;
  n = strlen(out);
  while (n && out[n - 1] == '0') out[--n] = 0;
  if (n && out[n - 1] == '.') out[--n] = 0;
}

/* the daemon's spentAmount of the (one) allocation of this session, trimmed */
static void sim_spent(yt_sim *sim, const char *field, char *out, size_t cap) {
  yhc_json_doc *st = yt_sim_state(sim, g_admin);
  const yhc_json *a, *last = NULL;
  for (a = yhc_json_first(yhc_json_get(yhc_json_root(st), "allocations")); a; a = yhc_json_next(a)) last = a;
  trim(yhc_json_cstr(yhc_json_get(last, field), "?"), out, cap);
  yhc_json_free(st);
}

/* does any agreement carry this termination code? */
static int sim_has_termination(yt_sim *sim, const char *code) {
  yhc_json_doc *st = yt_sim_state(sim, g_admin);
  const yhc_json *a;
  int found = 0;
  for (a = yhc_json_first(yhc_json_get(yhc_json_root(st), "agreements")); a; a = yhc_json_next(a))
    found |= !strcmp(yhc_json_cstr(yhc_json_get(yhc_json_get(a, "terminationReason"), "golem.requestor.code"), ""), code);
  yhc_json_free(st);
  return found;
}

static void close_session(yhc_session *s, yhc_money *m) {
  yhc_session_close(s);
  yhc_session_close_wait(s);
  yhc_session_money(s, m);
  yhc_session_destroy(s);
}

/* ---------------------------------------------------------------- unit: the decimal code */
static const char *fmt(const char *text, int strict, int full, char out[YHC__GLM_TEXT]) {
  yhc__glm v;
  int rc = yhc__glm_parse(text, strlen(text), strict, &v);
  if (rc == YHC__GLM_MALFORMED) return "malformed";
  if (rc == YHC__GLM_OVERFLOW) return "overflow";
  return yhc__glm_format(&v, full, out);
}

static void test_decimal(void) {
  char t[YHC__GLM_TEXT];
  yhc__glm a, b, c;
  YT_GROUP("decimal fixed point");
  YT_CHECK(!strcmp(fmt("0.000869307866200000", 1, 0, t), "0.0008693078662"));
  YT_CHECK(!strcmp(fmt("0.000869307866200000", 1, 1, t), "0.000869307866200000"));
  YT_CHECK(!strcmp(fmt("10", 1, 0, t), "10"));
  YT_CHECK(!strcmp(fmt("0", 1, 1, t), "0.000000000000000000"));
  YT_CHECK(!strcmp(fmt("999999999999999999.999999999999999999", 1, 0, t), "999999999999999999.999999999999999999"));
  YT_CHECK(!strcmp(fmt("1000000000000000000", 1, 0, t), "overflow"));
  YT_CHECK(!strcmp(fmt("0.0000000000000000001", 1, 0, t), "malformed")); /* 19th decimal */
  YT_CHECK(!strcmp(fmt("0.1000000000000000000", 1, 0, t), "0.1"));        /* zeros beyond are fine */
  YT_CHECK(!strcmp(fmt("1e5", 1, 0, t), "malformed"));
  YT_CHECK(!strcmp(fmt("-1", 1, 0, t), "malformed"));
  YT_CHECK(!strcmp(fmt("1,5", 1, 0, t), "malformed"));
  YT_CHECK(!strcmp(fmt("", 1, 0, t), "malformed"));
  YT_CHECK(!strcmp(fmt(".", 1, 0, t), "malformed"));
  YT_CHECK(!strcmp(fmt("5e-05", 0, 0, t), "0.00005"));
  YT_CHECK(!strcmp(fmt("0.00005500000000000001", 0, 0, t), "0.000055")); /* past 18 decimals dropped */
  YT_CHECK(!strcmp(fmt("1.5E2", 0, 0, t), "150"));
  YT_CHECK(!strcmp(fmt("1e18", 0, 0, t), "overflow"));
  yhc__glm_parse("0.1", 3, 1, &a);
  yhc__glm_parse("0.2", 3, 1, &b);
  yhc__glm_add(&a, &b);
  yhc__glm_parse("0.3", 3, 1, &c);
  YT_CHECKF(yhc__glm_cmp(&a, &c) == 0, "0.1 + 0.2 = %s", yhc__glm_format(&a, 0, t));
  YT_CHECK(yhc__glm_sub(&b, &c) == -1 && yhc__glm_is_zero(&b)); /* floors at zero */
  yhc__glm_parse("0.00005", 7, 1, &a);
  yhc__glm_times_ms(&a, 43200000u); /* 12 h at 0.00005 GLM/s */
  YT_CHECK(!strcmp(yhc__glm_format(&a, 0, t), "2.16"));
  yhc__glm_parse("999999999999999999", 18, 1, &a);
  yhc__glm_parse("1", 1, 1, &b);
  YT_CHECK(yhc__glm_add(&a, &b) == YHC__GLM_OVERFLOW);
  YT_CHECK(yhc__glm_from_config_double(0.0005, &a) == 0 && !strcmp(yhc__glm_format(&a, 0, t), "0.0005"));
  YT_CHECK(yhc__glm_from_config_double(-1, &a) == -1);
}

/* ---------------------------------------------------------------- scenarios */
static void test_tiny_budget(yt_sim *sim) {
  yhc_session *s;
  yhc_money m;
  char spent[64];
  YT_GROUP("tiny budget: nothing signed, requests end with YHC_ERR_BUDGET");
  s = open_session(sim, "0.000001", 1, 0, 0);
  if (!s) { YT_CHECK(!"session"); return; }
  YT_CHECK(get(s, "http://calc/add/1/2", NULL) == YHC_ERR_BUDGET);
  YT_CHECK(ev_count(YHC_EV_AGREEMENT_SIGNED) == 0);
  YT_CHECKF(ev_with(YHC_EV_OFFER_REJECTED, "does not cover") != NULL, "the cluster says why");
  close_session(s, &m);
  sim_spent(sim, "spentAmount", spent, sizeof spent);
  YT_CHECKF(!strcmp(m.spent, "0") && !strcmp(spent, "0") && !strcmp(m.budget, "0.000001") && !strcmp(m.remaining, "0.000001"),
            "spent %s (daemon %s), budget %s, remaining %s", m.spent, spent, m.budget, m.remaining);
}

/* The whole session under a decimal-comma locale: every number in every body must still
   read as JSON and LDAP expect. */

static void test_comma_locale(yt_sim *sim) {
  yhc_session *s;
  yhc_money m;
  char total[64], spent[64];
  int status = 0;
  YT_GROUP("comma locale: a whole session under de_DE.UTF-8");
  if (!yt_comma_locale()) {
    printf("SKIP comma locale: no de_DE.UTF-8 (localedef failed or locales missing; make builds build/locale)\n");
    return;
  }
  s = open_session(sim, "0.5", 1, 0, 0);
  if (!s) { YT_CHECK(!"session"); setlocale(LC_ALL, "C"); return; }
  YT_CHECKF(get(s, "http://calc/add/1/2", &status) == YHC_ERR_OK && status == 200, "served under %s", setlocale(LC_NUMERIC, NULL));
  sim_spent(sim, "totalAmount", total, sizeof total);
  YT_CHECKF(!strcmp(total, "0.5"), "allocation totalAmount %s", total);
  close_session(s, &m);
  setlocale(LC_ALL, "C");
  sim_spent(sim, "spentAmount", spent, sizeof spent);
  YT_CHECKF(!strcmp(m.spent, spent) && strcmp(spent, "0"), "yhc spent %s, daemon %s", m.spent, spent);
  YT_CHECKF(m.invoices_unpaid == 0 && m.agreements_unterminated == 0, "unpaid %d, unterminated %d", m.invoices_unpaid, m.agreements_unterminated);
  YT_CHECK(yt_sim_violations(sim, g_admin) == 0);
}

/* The stand-in's first provider asks exactly 0.00005 GLM per second of duration and 0.0001 per
   CPU second: 0.18 and 0.36 GLM per hour, which a limit of exactly 0.18 must accept (in doubles
   0.00005 * 3600 > 0.18). The second asks 0.000055: 0.198 per hour, refused with that figure,
   and 0.000105 per CPU second, 0.378 per hour, at its limit. */
static void test_exact_limits(yt_sim *sim) {
  yhc_session *s;
  yhc_money m;
  const ev_rec *rej, *signed_ev;
  int status = 0;
  YT_GROUP("price limits are exact: an offer at the limit is taken, one above is not");
  g_env_limit = "0.18";
  g_cpu_limit = "0.378"; /* the second provider's CPU price exactly: the duration price decides */
  s = open_session(sim, "0.5", 1, 0, 0);
  g_env_limit = g_cpu_limit = NULL;
  if (!s) { YT_CHECK(!"session"); return; }
  YT_CHECKF(get(s, "http://calc/add/1/2", &status) == YHC_ERR_OK && status == 200, "served at the limit (%d)", status);
  rej = ev_with(YHC_EV_OFFER_REJECTED, "above the limit");
  YT_CHECKF(rej && strstr(rej->message, "price 0.198 GLM/h above the limit 0.18"), "%s",
            rej ? rej->message : "no rejection");
  signed_ev = ev_with(YHC_EV_AGREEMENT_SIGNED, NULL);
  YT_CHECKF(signed_ev && strstr(signed_ev->message, "golem2004"), "%s", signed_ev ? signed_ev->message : "nothing signed");
  YT_CHECK(ev_with(YHC_EV_OFFER_REJECTED, "0.18 GLM/h") == NULL);
  close_session(s, &m);
}

static void test_over_priced(yt_sim *sim) {
  yhc_session *s;
  yhc_money m;
  const ev_rec *e;
  char spent[64];
  YT_GROUP("over-priced debit notes: the agreement is terminated with a reason");
  yt_sim_fault(sim, g_admin, "{\"fault\":\"inflateDebitNotes\",\"provider\":\"*\",\"factor\":200}");
  s = open_session(sim, "0.5", 1, 0, 0);
  if (!s) { YT_CHECK(!"session"); return; }
  get(s, "http://calc/add/1/2", NULL);
  {
    long long end = yt_now_ms() + 15000;
    while (!ev_with(YHC_EV_DEBIT_NOTE_REJECTED, "above the") && yt_now_ms() < end) pump(s, 100);
  }
  e = ev_with(YHC_EV_DEBIT_NOTE_REJECTED, "above the");
  YT_CHECKF(e && e->err == YHC_ERR_BUDGET && e->amount[0], "refusal event with the amount: %s", e ? e->message : "none");
  pump(s, 500);
  YT_CHECKF(sim_has_termination(sim, "DebitNoteAboveAgreedPrice"), "an agreement terminated with DebitNoteAboveAgreedPrice");
  yt_sim_fault(sim, g_admin, "{\"fault\":\"clear\"}");
  close_session(s, &m);
  sim_spent(sim, "spentAmount", spent, sizeof spent);
  YT_CHECKF(!strcmp(m.spent, spent), "yhc spent %s, daemon %s", m.spent, spent);
  YT_CHECK(m.refused >= 1);
}

static void test_inflated_invoice(yt_sim *sim) {
  yhc_session *s;
  yhc_money m;
  yhc_json_doc *st;
  const yhc_json *inv;
  char spent[64];
  const ev_rec *signed_ev;
  YT_GROUP("inflated invoice: rejected with a reason and the amount accepted");
  /* yhc allows the agreed prices for the time so far plus a minute, every thread busy, and 5%:
     for a session of a few seconds that is some 50 times what the stand-in bills (its CPU
     runs at a tenth), so the inflation must be far beyond (50 passed unnoticed on a fast
     machine) */
  yt_sim_fault(sim, g_admin, "{\"fault\":\"inflateInvoices\",\"provider\":\"*\",\"factor\":1000}");
  s = open_session(sim, "0.5", 1, 0, 0);
  if (!s) { YT_CHECK(!"session"); return; }
  YT_CHECK(get(s, "http://calc/add/1/2", NULL) == YHC_ERR_OK);
  pump(s, 2500);
  close_session(s, &m);
  yt_sim_fault(sim, g_admin, "{\"fault\":\"clear\"}");
  st = yt_sim_state(sim, g_admin);
  /* this session's invoice: an earlier session's may arrive later (providers resend on their
     own schedule) */
  signed_ev = ev_with(YHC_EV_AGREEMENT_SIGNED, NULL);
  YT_CHECKF(signed_ev && signed_ev->agreement[0], "the session signed an agreement");
  {
    const yhc_json *it;
    inv = NULL;
    for (it = yhc_json_first(yhc_json_get(yhc_json_get(yhc_json_root(st), "payments"), "invoices")); it; it = yhc_json_next(it))
      if (signed_ev && !strcmp(yhc_json_cstr(yhc_json_get(it, "agreementId"), ""), signed_ev->agreement)) inv = it;
  }
  YT_CHECKF(inv && !strcmp(yhc_json_cstr(yhc_json_get(inv, "status"), ""), "REJECTED"), "invoice %s",
            inv ? yhc_json_cstr(yhc_json_get(inv, "status"), "") : "none");
  {
    const yhc_json *rj = yhc_json_get(inv, "rejection");
    char acc[64], ours[64];
    trim(yhc_json_cstr(yhc_json_get(rj, "totalAmountAccepted"), "?"), acc, sizeof acc);
    sim_spent(sim, "spentAmount", spent, sizeof spent);
    snprintf(ours, sizeof ours, "%s", m.spent);
    YT_CHECKF(!strcmp(yhc_json_cstr(yhc_json_get(rj, "rejectionReason"), ""), "INCORRECT_AMOUNT"), "reason");
    YT_CHECKF(strlen(acc) > 1 && !strcmp(m.spent, spent), "accepted %s, yhc spent %s, daemon %s", acc, ours, spent);
  }
  YT_CHECK(ev_with(YHC_EV_INVOICE_REJECTED, "above the") != NULL);
  YT_CHECK(m.invoices_rejected == 1);
  yhc_json_free(st);
}

static void test_bad_amounts(yt_sim *sim) {
  yhc_session *s;
  yhc_money m;
  yhc_json_doc *st;
  char body[600], fault[900], spent[64];
  const char *ag;
  static const char *const bad[] = {"12,5", "99999999999999999999.5", "0.0000000000000000001", "1e3"};
  size_t k;
  YT_GROUP("malformed and huge amounts from the daemon accept nothing");
  s = open_session(sim, "0.5", 1, 0, 0);
  if (!s) { YT_CHECK(!"session"); return; }
  YT_CHECK(get(s, "http://calc/add/1/2", NULL) == YHC_ERR_OK);
  st = yt_sim_state(sim, g_admin);
  {
    const yhc_json *it, *last = NULL;
    for (it = yhc_json_first(yhc_json_get(yhc_json_root(st), "agreements")); it; it = yhc_json_next(it)) last = it;
    ag = yhc_json_cstr(yhc_json_get(last, "agreementId"), "");
  }
  for (k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    snprintf(body, sizeof body, "{\"debitNoteId\":\"x\",\"agreementId\":\"%s\",\"activityId\":\"a\",\"totalAmountDue\":\"%s\",\"status\":\"RECEIVED\"}", ag, bad[k]);
    snprintf(fault, sizeof fault, "{\"fault\":\"route\",\"method\":\"GET\",\"path\":\"^/payment-api/v1/debitNotes/[0-9a-f-]+$\",\"status\":200,\"count\":1,\"body\":%s}", body);
    yt_sim_fault(sim, g_admin, fault);
    {
      long long end = yt_now_ms() + 8000;
      int before = ev_count(YHC_EV_DEBIT_NOTE_REJECTED);
      while (ev_count(YHC_EV_DEBIT_NOTE_REJECTED) == before && yt_now_ms() < end) pump(s, 50);
      YT_CHECKF(g_nev && ev_count(YHC_EV_DEBIT_NOTE_REJECTED) > before, "refused %s", bad[k]);
    }
  }
  yhc_json_free(st);
  YT_CHECK(ev_with(YHC_EV_DEBIT_NOTE_REJECTED, "not a decimal") != NULL);
  YT_CHECK(ev_with(YHC_EV_DEBIT_NOTE_REJECTED, "out of range") != NULL);
  {
    const ev_rec *e = ev_with(YHC_EV_DEBIT_NOTE_REJECTED, "12,5");
    YT_CHECKF(e && e->err == YHC_ERR_YAGNA, "a clear error: %s", e ? e->message : "none");
  }
  close_session(s, &m);
  sim_spent(sim, "spentAmount", spent, sizeof spent);
  YT_CHECKF(!strcmp(m.spent, spent), "nothing accepted for them: yhc %s, daemon %s", m.spent, spent);
}

static void test_budget_exhausted(yt_sim *sim) {
  yhc_session *s;
  yhc_money m;
  char spent[64];
  yhc_err last = YHC_ERR_OK;
  long long end;
  yhc__glm sp, bu;
  YT_GROUP("budget exhausted mid-run: terminated in time, the invoice fits, requests end with YHC_ERR_BUDGET");
  s = open_session(sim, "0.012", 10, 0, 1);
  if (!s) { YT_CHECK(!"session"); return; }
  end = yt_now_ms() + 40000;
  while (yt_now_ms() < end && last != YHC_ERR_BUDGET) {
    last = get(s, "http://calc/add/1/2", NULL);
    pump(s, 100);
  }
  YT_CHECKF(last == YHC_ERR_BUDGET, "last request ended with %s", yhc_strerror(last));
  YT_CHECK(ev_with(YHC_EV_DEBIT_NOTE_ACCEPTED, NULL) != NULL);
  close_session(s, &m);
  YT_CHECKF(sim_has_termination(sim, "BudgetExhausted") || sim_has_termination(sim, "BudgetExceeded"),
            "the agreement ended with a budget reason");
  sim_spent(sim, "spentAmount", spent, sizeof spent);
  yhc__glm_parse(m.spent, strlen(m.spent), 1, &sp);
  yhc__glm_parse(m.budget, strlen(m.budget), 1, &bu);
  YT_CHECKF(!strcmp(m.spent, spent) && yhc__glm_cmp(&sp, &bu) <= 0, "yhc spent %s, daemon %s, budget %s", m.spent, spent, m.budget);
  YT_CHECKF(m.invoices_unpaid == 0 && m.invoices_accepted >= 1, "nothing owed the budget allowed: unpaid %d, accepted %d",
            m.invoices_unpaid, m.invoices_accepted);
}

static void test_twelve_hours(yt_sim *sim) {
  yhc_session *s;
  yhc_money m;
  yhc_json_doc *st;
  const yhc_json *n;
  char spent[64], code[64];
  int payable = 0, payable_paid = 0, by_invoice = 0, status;
  long long end;
  YT_GROUP("12 h agreement, time compressed 2000x: payable notes paid in time, nothing owed at close");
  s = open_session(sim, "5", 2000, 43200, 0);
  if (!s) { YT_CHECK(!"session"); return; }
  YT_CHECK(get(s, "http://calc/add/1/2", &status) == YHC_ERR_OK);
  end = yt_now_ms() + 30000;
  for (;;) {
    yhc_json_doc *d = yt_sim_state(sim, g_admin);
    const yhc_json *a = yhc_json_at(yhc_json_get(yhc_json_root(d), "agreements"), 0);
    int done = !strcmp(yhc_json_cstr(yhc_json_get(a, "state"), ""), "Terminated");
    snprintf(code, sizeof code, "%s", yhc_json_cstr(yhc_json_get(yhc_json_get(a, "terminationReason"), "golem.provider.code"), ""));
    yhc_json_free(d);
    if (done || yt_now_ms() > end) break;
    pump(s, 200);
  }
  YT_CHECKF(!strcmp(code, "Expired"), "the first agreement ran its 12 h: %s", code);
  pump(s, 500);
  close_session(s, &m);
  st = yt_sim_state(sim, g_admin);
  for (n = yhc_json_first(yhc_json_get(yhc_json_get(yhc_json_root(st), "payments"), "debitNotes")); n; n = yhc_json_next(n)) {
    const char *nst = yhc_json_cstr(yhc_json_get(n, "status"), "");
    const yhc_json *inv;
    if (yhc_json_typeof(yhc_json_get(n, "paymentDueDate")) != YHC_JSON_STRING) continue;
    payable++;
    if (!strcmp(nst, "SETTLED") || !strcmp(nst, "ACCEPTED")) {
      payable_paid++;
      continue;
    }
    /* the final note of an activity that ended with its agreement is paid by the invoice */
    for (inv = yhc_json_first(yhc_json_get(yhc_json_get(yhc_json_root(st), "payments"), "invoices")); inv; inv = yhc_json_next(inv))
      if (!strcmp(yhc_json_cstr(yhc_json_get(inv, "agreementId"), "a"), yhc_json_cstr(yhc_json_get(n, "agreementId"), "b")) &&
          (!strcmp(yhc_json_cstr(yhc_json_get(inv, "status"), ""), "SETTLED") || !strcmp(yhc_json_cstr(yhc_json_get(inv, "status"), ""), "ACCEPTED")))
        by_invoice++;
  }
  yhc_json_free(st);
  YT_CHECKF(payable_paid >= 2 && payable_paid + by_invoice == payable, "payable notes %d, paid %d, covered by the invoice %d",
            payable, payable_paid, by_invoice);
  sim_spent(sim, "spentAmount", spent, sizeof spent);
  YT_CHECKF(!strcmp(m.spent, spent), "yhc spent %s, daemon %s", m.spent, spent);
  YT_CHECKF(m.invoices_unpaid == 0 && m.agreements_unterminated == 0, "unpaid %d, unterminated %d", m.invoices_unpaid,
            m.agreements_unterminated);
  YT_CHECK(!ev_with(YHC_EV_SERVICE_FAILED, "DebitNoteNotPaid"));
}

static void test_too_frequent(yt_sim *sim) {
  yhc_session *s;
  yhc_money m;
  const ev_rec *e;
  long long end;
  YT_GROUP("debit notes faster than the agreed interval: terminated (yapapi's rule and grace)");
  yt_sim_fault(sim, g_admin, "{\"fault\":\"debitNoteRate\",\"provider\":\"*\",\"rate\":20}");
  s = open_session(sim, "5", 2000, 43200, 0);
  if (!s) { YT_CHECK(!"session"); return; }
  get(s, "http://calc/add/1/2", NULL);
  end = yt_now_ms() + 10000;
  while (!ev_with(YHC_EV_DEBIT_NOTE_REJECTED, "too many") && yt_now_ms() < end) pump(s, 50);
  e = ev_with(YHC_EV_DEBIT_NOTE_REJECTED, "too many");
  YT_CHECKF(e != NULL, "refused: %s", e ? e->message : "none");
  yt_sim_fault(sim, g_admin, "{\"fault\":\"clear\"}");
  close_session(s, &m);
  YT_CHECK(m.refused >= 1);
}

static void test_config(void) {
  yhc_session_desc d;
  yhc_error err;
  YT_GROUP("config: exact budget strings, the 10 h cap without mid-agreement payments");
  memset(&d, 0, sizeof d);
  d.app_key = "k";
  d.yagna_url = "http://127.0.0.1:1";
  d.budget_glm = "1,5";
  YT_CHECK(yhc_session_create(&d, &err) == NULL && err.code == YHC_ERR_CONFIG);
  d.budget_glm = "1.5";
  d.max_price_start_glm = "0.1.2";
  YT_CHECKF(yhc_session_create(&d, &err) == NULL && err.code == YHC_ERR_CONFIG && strstr(err.msg, "max_price_start_glm"), "%s", err.msg);
  d.max_price_start_glm = "1000000000000000000";
  YT_CHECKF(yhc_session_create(&d, &err) == NULL && err.code == YHC_ERR_CONFIG && strstr(err.msg, "too large"), "%s", err.msg);
  d.max_price_start_glm = NULL;
  d.agreement_lifetime_s = 12 * 3600;
  d.mid_agreement_payments = -1;
  YT_CHECKF(yhc_session_create(&d, &err) == NULL && err.code == YHC_ERR_CONFIG && strstr(err.msg, "10 h"), "%s", err.msg);
}

int main(void) {
  yt_sim a, b, c;
  static const char *const fa[] = {"--debit-note-interval", "1", NULL};
  static const char *const fb[] = {"--debit-note-interval", "2", "--time-scale", "10", NULL};
  static const char *const fc[] = {"--debit-note-interval", "1800", "--payment-timeout", "18000", "--accept-timeout", "3600",
                                   "--time-scale", "2000", "--settle-delay", "60", NULL};
  signal(SIGPIPE, SIG_IGN);
  test_decimal();
  test_config();
  if (!yt_sim_available()) {
    printf("SKIP: yagna stand-in not available (make sim-deps)\n");
    return yt_done();
  }
  g_admin_loop = yhc_loop_create(NULL);
  g_admin = yhc_http_create(g_admin_loop, NULL);
  /* YT_MONEY_ONLY=A|B|C runs one stand-in's scenarios (while debugging) */
  if (getenv("YT_MONEY_ONLY") && !strchr(getenv("YT_MONEY_ONLY"), 'A')) {
  } else if (yt_sim_start(&a, 2, fa) == 0) {
    test_tiny_budget(&a);
    test_comma_locale(&a);
    test_exact_limits(&a);
    test_over_priced(&a);
    test_inflated_invoice(&a);
    test_bad_amounts(&a);
    yt_sim_stop(&a);
  } else YT_CHECK(!"stand-in A");
  if (getenv("YT_MONEY_ONLY") && !strchr(getenv("YT_MONEY_ONLY"), 'B')) {
  } else if (yt_sim_start(&b, 1, fb) == 0) {
    test_budget_exhausted(&b);
    yt_sim_stop(&b);
  } else YT_CHECK(!"stand-in B");
  if (getenv("YT_MONEY_ONLY") && !strchr(getenv("YT_MONEY_ONLY"), 'C')) {
  } else if (yt_sim_start(&c, 2, fc) == 0) {
    test_twelve_hours(&c);
    test_too_frequent(&c);
    yt_sim_stop(&c);
  } else YT_CHECK(!"stand-in C");
  yhc_http_destroy(g_admin);
  yhc_loop_destroy(g_admin_loop);
  return yt_done();
}
