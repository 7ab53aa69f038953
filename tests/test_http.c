/* test_http.c -- HTTP/1.1 client interop and hostile-peer tests, through the public API only.

   Servers (started as child processes, see tests/yt_proc.h):
     tests/servers/origin.py   a well-behaved HTTP/1.1 origin (also on ::1 when available)
     tests/servers/hostile.py  scripted misbehaving server
     tests/servers/nginx.sh    Debian's nginx (skipped with a notice when not installed)
   Run from the repository root. Set YHC_TEST_LOG=1 to see the library's debug log and
   YHC_SERVER_LOG=1 for the servers' request logs. */
#define _POSIX_C_SOURCE 200809L
#define YHC_IMPLEMENTATION
#include <stddef.h>
#include <stdlib.h>

/* Every library allocation goes through these, so tests can bound memory precisely (the
   endless-body cases) and check that everything is freed at the end. */
static void *yt_malloc(size_t n);
static void *yt_realloc(void *p, size_t n);
static void yt_free(void *p);
#define YHC_MALLOC(sz) yt_malloc(sz)
#define YHC_REALLOC(p, sz) yt_realloc(p, sz)
#define YHC_FREE(p) yt_free(p)

#include "yhc.h"
#include "tests/yt.h"
#include "tests/yt_proc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

/* ---------------------------------------------------------------- tracked allocator */
typedef union yt_hdr {
  size_t n;
  void *p;
  long double ld;
  long long ll;
} yt_hdr;
static size_t yt_mem_cur, yt_mem_peak;

static void *yt_malloc(size_t n) {
  yt_hdr *h = (yt_hdr *)malloc(sizeof(yt_hdr) + n);
  if (!h) return NULL;
  h->n = n;
  yt_mem_cur += n;
  if (yt_mem_cur > yt_mem_peak) yt_mem_peak = yt_mem_cur;
  return h + 1;
}
static void *yt_realloc(void *p, size_t n) {
  yt_hdr *h, *nh;
  size_t old;
  if (!p) return yt_malloc(n);
  h = (yt_hdr *)p - 1;
  old = h->n;
  nh = (yt_hdr *)realloc(h, sizeof(yt_hdr) + n);
  if (!nh) return NULL;
  nh->n = n;
  yt_mem_cur = yt_mem_cur - old + n;
  if (yt_mem_cur > yt_mem_peak) yt_mem_peak = yt_mem_cur;
  return nh + 1;
}
static void yt_free(void *p) {
  yt_hdr *h;
  if (!p) return;
  h = (yt_hdr *)p - 1;
  yt_mem_cur -= h->n;
  free(h);
}
/* Starts a peak measurement; returns the base to subtract. */
static size_t mem_mark(void) {
  yt_mem_peak = yt_mem_cur;
  return yt_mem_cur;
}

/* ---------------------------------------------------------------- servers and URLs */
static yhc_loop *L;
static yt_proc origin, hostile, origin6, nginx;
static int have_v6, have_nginx;

static const char *url_at(const char *host, int port, const char *path) {
  static char ring[16][1024];
  static int next;
  char *u = ring[next++ % 16];
  snprintf(u, sizeof ring[0], "http://%s:%d%s", host, port, path);
  return u;
}
#define O(path) url_at("127.0.0.1", origin.port, (path))
#define H(path) url_at("127.0.0.1", hostile.port, (path))
#define N(path) url_at("127.0.0.1", nginx.port, (path))

/* ---------------------------------------------------------------- small helpers */
static int ci_contains(const char *hay, const char *needle) {
  size_t n = strlen(needle), i, j;
  if (!hay) return 0;
  for (i = 0; hay[i]; i++) {
    for (j = 0; j < n; j++) {
      int a = (unsigned char)hay[i + j], b = (unsigned char)needle[j];
      if (!a) return 0;
      if (a >= 'A' && a <= 'Z') a += 32;
      if (b >= 'A' && b <= 'Z') b += 32;
      if (a != b) break;
    }
    if (j == n) return 1;
  }
  return n == 0;
}

static int str_is(yhc_str s, const char *c) {
  size_t n = strlen(c);
  return s.len == n && (n == 0 || (s.ptr && memcmp(s.ptr, c, n) == 0));
}

static int is_pattern(const char *p, size_t n, size_t start) {
  size_t i;
  for (i = 0; i < n; i++)
    if ((unsigned char)p[i] != (unsigned char)((start + i) % 251)) return 0;
  return 1;
}

static int hdr_int(const yhc_response *r, const char *name) {
  yhc_str v = yhc_response_header(r, name);
  char tmp[32];
  if (!v.ptr || v.len == 0 || v.len >= sizeof tmp) return -1;
  memcpy(tmp, v.ptr, v.len);
  tmp[v.len] = 0;
  return atoi(tmp);
}

static int hdr_is(const yhc_response *r, const char *name, const char *want) {
  yhc_str v = yhc_response_header(r, name);
  return v.ptr != NULL && str_is(v, want);
}

/* The request headers origin.py saw, one "Name: value" per line (values trimmed). */
static void echo_headers(const yhc_response *r, yhc_buf *out) {
  size_t it = 0;
  yhc_str v;
  out->len = 0;
  yhc_buf_appends(out, "");
  while (yhc_response_header_next(r, "x-echo-header", &it, &v)) {
    yhc_buf_append(out, v.ptr, v.len);
    yhc_buf_appends(out, "\n");
  }
}

/* Count of request headers named `name` (case-insensitive) that origin.py saw; copies the
   first one's value to val. */
static int echo_header_count(const yhc_response *r, const char *name, char *val, size_t cap) {
  size_t it = 0, n = strlen(name);
  int count = 0;
  yhc_str v;
  if (val && cap) val[0] = 0;
  while (yhc_response_header_next(r, "x-echo-header", &it, &v)) {
    size_t i;
    int same = v.len > n && v.ptr[n] == ':';
    for (i = 0; same && i < n; i++) {
      int a = (unsigned char)v.ptr[i], b = (unsigned char)name[i];
      if (a >= 'A' && a <= 'Z') a += 32;
      if (b >= 'A' && b <= 'Z') b += 32;
      if (a != b) same = 0;
    }
    if (!same) continue;
    if (count == 0 && val && cap) {
      size_t s = n + 1, l;
      while (s < v.len && v.ptr[s] == ' ') s++;
      l = v.len - s < cap - 1 ? v.len - s : cap - 1;
      memcpy(val, v.ptr + s, l);
      val[l] = 0;
    }
    count++;
  }
  return count;
}

#define CHECK_ERR(got, msg, want)                                                          \
  YT_CHECKF((got) == (want), "want %s, got %s: %s", yhc_strerror(want), yhc_strerror(got), \
            (msg) ? (msg) : "(null)")

static void desc_init(yhc_http_desc *d) {
  memset(d, 0, sizeof *d);
  d->request_timeout_ms = 5000; /* nothing in this file may hang */
}

static yhc_http *http_new(const yhc_http_desc *d) {
  yhc_http_desc dd;
  if (!d) {
    desc_init(&dd);
    d = &dd;
  }
  return yhc_http_create(L, d);
}

static void req_init(yhc_request *q, const char *method, const char *url) {
  memset(q, 0, sizeof *q);
  q->method = method;
  q->url = url;
}

static yhc_response *fetch(yhc_http *h, const char *method, const char *url) {
  yhc_request q;
  req_init(&q, method, url);
  return yhc_http_fetch(h, &q);
}

static yhc_response *fetch_body(yhc_http *h, const char *method, const char *url,
                                const void *body, size_t len) {
  yhc_request q;
  req_init(&q, method, url);
  q.body = body;
  q.body_len = len;
  return yhc_http_fetch(h, &q);
}

/* Turns the loop until *counter >= want or timeout_ms passed; 1 when reached. */
static int turn_until(const int *counter, int want, int timeout_ms) {
  long long end = yt_now_ms() + timeout_ms;
  while (*counter < want) {
    long long left = end - yt_now_ms();
    if (left <= 0) return 0;
    yhc_loop_poll(L, left > 20 ? 20 : (int)left);
  }
  return 1;
}

static void turn_for(int ms) {
  long long end = yt_now_ms() + ms;
  for (;;) {
    long long left = end - yt_now_ms();
    if (left <= 0) break;
    yhc_loop_poll(L, left > 20 ? 20 : (int)left);
  }
}

/* ---------------------------------------------------------------- callback requests */
typedef struct rq {
  int calls;
  int *done_counter;        /* incremented on each callback, when set */
  int cb_inside_submit;     /* the callback ran from inside yhc_http_request */
  uint64_t id, cb_id;
  yhc_err err;
  char error[YHC_ERROR_MSG_MAX];
  int status, http_minor, conn_id;
  size_t header_count, trailer_count;
  yhc_buf body;             /* copy of resp->body */
  yhc_str resp_body_view;   /* resp->body as seen (for the streaming check: len only) */
  size_t streamed, pieces;
  int stream_bad;           /* streamed bytes did not follow the /bytes pattern */
  int check_pattern;
  size_t abort_after;       /* on_body returns 1 once this many bytes arrived (0 = never) */
  long long t_start, t_end;
  /* chaining: the callback submits `chain` on `chain_http` */
  yhc_http *chain_http;
  struct rq *chain;
  const char *chain_url;
  int cancel_self_rc;       /* yhc_http_cancel(own id) from inside the callback */
  int try_cancel_self;
  struct rq *cancel_other;  /* cancelled from inside this one's callback */
  int cancel_other_rc;
  int other_calls_after;    /* cancel_other->calls right after yhc_http_cancel returned */
} rq;

static int g_in_submit;

static void rq_init(rq *r) { memset(r, 0, sizeof *r); }
static void rq_free(rq *r) { yhc_buf_free(&r->body); }

static uint64_t submit_req(yhc_http *h, rq *r, const yhc_request *q);

static void rq_cb(const yhc_response *resp, void *user) {
  rq *r = (rq *)user;
  r->calls++;
  if (g_in_submit) r->cb_inside_submit = 1;
  r->cb_id = resp->id;
  r->err = resp->err;
  snprintf(r->error, sizeof r->error, "%s", resp->error ? resp->error : "(null)");
  r->status = resp->status;
  r->http_minor = resp->http_minor;
  r->header_count = resp->header_count;
  r->trailer_count = resp->trailer_count;
  r->conn_id = hdr_int(resp, "X-Conn-Id");
  r->resp_body_view.len = resp->body.len;
  r->body.len = 0;
  if (resp->body.len) yhc_buf_append(&r->body, resp->body.ptr, resp->body.len);
  r->t_end = yt_now_ms();
  if (r->done_counter) (*r->done_counter)++;
  if (r->try_cancel_self) r->cancel_self_rc = yhc_http_cancel(r->chain_http, r->id);
  if (r->cancel_other) {
    r->cancel_other_rc = yhc_http_cancel(r->chain_http, r->cancel_other->id);
    r->other_calls_after = r->cancel_other->calls;
  }
  if (r->chain && r->chain_http) {
    yhc_request q;
    req_init(&q, "GET", r->chain_url);
    submit_req(r->chain_http, r->chain, &q);
  }
}

static int rq_on_body(void *user, const void *data, size_t len) {
  rq *r = (rq *)user;
  if (r->check_pattern && !is_pattern((const char *)data, len, r->streamed)) r->stream_bad = 1;
  r->streamed += len;
  r->pieces++;
  if (len == 0) r->stream_bad = 2; /* empty pieces are pointless */
  return r->abort_after && r->streamed >= r->abort_after;
}

static uint64_t submit_req(yhc_http *h, rq *r, const yhc_request *q) {
  r->t_start = yt_now_ms();
  g_in_submit = 1;
  r->id = yhc_http_request(h, q, rq_cb, r);
  g_in_submit = 0;
  return r->id;
}

static uint64_t submit(yhc_http *h, rq *r, const char *method, const char *url) {
  yhc_request q;
  req_init(&q, method, url);
  return submit_req(h, r, &q);
}

/* ================================================================= tests */

static void test_url_parse(void) {
  yhc_url u;
  yhc_error e;
  const char *s;
  YT_GROUP("url parse");
  s = "http://[::1]:8080/p/a?q=1&r#frag";
  YT_EQ_INT(yhc_url_parse(s, strlen(s), &u, &e), 0);
  YT_CHECK(str_is(u.scheme, "http"));
  YT_CHECK(str_is(u.host, "::1"));
  YT_EQ_INT(u.port, 8080);
  YT_CHECK(str_is(u.target, "/p/a?q=1&r"));
  YT_CHECK(str_is(u.fragment, "frag"));
  s = "http://example.com";
  YT_EQ_INT(yhc_url_parse(s, strlen(s), &u, &e), 0);
  YT_CHECK(str_is(u.host, "example.com"));
  YT_EQ_INT(u.port, 80);
  YT_CHECK(str_is(u.target, "/"));
  s = "https://user:pw@example.com?x=1";
  YT_EQ_INT(yhc_url_parse(s, strlen(s), &u, &e), 0);
  YT_EQ_INT(u.port, 443);
  YT_CHECK(str_is(u.userinfo, "user:pw"));
  YT_CHECK(str_is(u.target, "/?x=1") || str_is(u.target, "?x=1"));
  /* len is honoured: the string need not be NUL-terminated there */
  s = "http://a.b:81/xyzTRAILING";
  YT_EQ_INT(yhc_url_parse(s, strlen("http://a.b:81/xyz"), &u, &e), 0);
  YT_CHECK(str_is(u.target, "/xyz"));
  {
    static const char *const bad[] = {"", "http://", "http://:80/", "http://h:99999/",
                                      "http://h:abc/", "http://[::1/", "http://h h/",
                                      "no scheme", "http://h/a b", "http://h/\r\nX: y"};
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      memset(&e, 0, sizeof e);
      YT_CHECKF(yhc_url_parse(bad[i], strlen(bad[i]), &u, &e) == -1 && e.code == YHC_ERR_URL &&
                    e.msg[0],
                "bad URL accepted: \"%s\"", bad[i]);
    }
  }
}

static void test_bad_requests(void) {
  yhc_http *h = http_new(NULL);
  yhc_response *r;
  int lfd, port;
  struct sockaddr_in sa;
  socklen_t sl = sizeof sa;
  int one = 1;
  YT_GROUP("invalid requests are reported through the callback, nothing sent");

  /* A listening socket of our own: afterwards, nobody may have connected to it. */
  lfd = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(lfd, (struct sockaddr *)&sa, sizeof sa);
  listen(lfd, 16);
  getsockname(lfd, (struct sockaddr *)&sa, &sl);
  port = ntohs(sa.sin_port);
  fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL, 0) | O_NONBLOCK);
  {
    static const yhc_header bad[][1] = {
        {{"X-Bad\r\nInjected", "v"}}, {{"X-Bad", "v\r\nInjected: yes"}}, {{"X-Bad", "v\rw"}},
        {{"X-Bad", "v\nw"}},          {{"X-Bad\n", "v"}},                 {{"", "v"}},
        {{"X:Bad", "v"}},             {{"X Bad", "v"}}};
    static const char *const badm[] = {"GET /x", "GET\r\n", "", "G\nET"};
    rq rs[12];
    int done = 0, i, nreq = 0;
    const char *u = url_at("127.0.0.1", port, "/x");
    for (i = 0; i < 8; i++) {
      yhc_request q;
      rq_init(&rs[nreq]);
      rs[nreq].done_counter = &done;
      req_init(&q, "GET", u);
      q.headers = bad[i];
      q.header_count = 1;
      YT_CHECK(submit_req(h, &rs[nreq], &q) != 0);
      YT_EQ_INT(rs[nreq].calls, 0); /* never from inside yhc_http_request */
      nreq++;
    }
    for (i = 0; i < 4; i++) {
      rq_init(&rs[nreq]);
      rs[nreq].done_counter = &done;
      YT_CHECK(submit(h, &rs[nreq], badm[i], u) != 0);
      YT_EQ_INT(rs[nreq].calls, 0);
      nreq++;
    }
    YT_CHECK(turn_until(&done, nreq, 2000));
    turn_for(50);
    for (i = 0; i < nreq; i++) {
      YT_CHECKF(rs[i].calls == 1, "request %d: %d callbacks", i, rs[i].calls);
      YT_CHECKF(rs[i].err == YHC_ERR_INVALID, "request %d: %s: %s", i, yhc_strerror(rs[i].err),
                rs[i].error);
      YT_CHECK(rs[i].error[0] != 0);
      YT_CHECK(!rs[i].cb_inside_submit);
      YT_CHECK(rs[i].cb_id == rs[i].id);
      rq_free(&rs[i]);
    }
  }
  {
    int c = accept(lfd, NULL, NULL);
    YT_CHECKF(c < 0, "the client connected although every request was invalid");
    if (c >= 0) {
      char buf[256];
      ssize_t n = recv(c, buf, sizeof buf, MSG_DONTWAIT);
      YT_CHECKF(n <= 0, "bytes were sent for an invalid request: %.*s", (int)n, buf);
      close(c);
    }
  }
  close(lfd);

  /* bad URLs */
  {
    static const char *const bad[] = {"", "127.0.0.1/x", "http://", "http://h:0x1/",
                                      "ftp://127.0.0.1/", "http://127.0.0.1:70000/",
                                      "http://127.0.0.1/a b", "http://[::1/"};
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      r = fetch(h, "GET", bad[i]);
      YT_CHECK(r != NULL);
      if (!r) continue;
      YT_CHECKF(r->err == YHC_ERR_URL, "\"%s\": %s: %s", bad[i], yhc_strerror(r->err), r->error);
      YT_CHECK(r->error && r->error[0]);
      yhc_response_free(r);
    }
    {
      yhc_request q;
      req_init(&q, "GET", NULL);
      r = yhc_http_fetch(h, &q);
      YT_CHECK(r && r->err == YHC_ERR_URL);
      if (r) yhc_response_free(r);
    }
  }
#ifndef YHC_MBEDTLS
  r = fetch(h, "GET", "https://127.0.0.1:1/");
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_NO_TLS);
    yhc_response_free(r);
  }
#endif
  yhc_http_destroy(h);
}

static void test_basic(void) {
  yhc_http *h = http_new(NULL);
  yhc_response *r;
  YT_GROUP("basic GET");
  r = fetch(h, NULL, O("/hello"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_OK);
    YT_EQ_STR(r->error, "");
    YT_EQ_INT(r->status, 200);
    YT_EQ_INT(r->http_minor, 1);
    YT_CHECK(str_is(r->reason, "OK"));
    YT_EQ_MEM(r->body.ptr, r->body.len, "Hello, world!\n");
    YT_CHECK(hdr_is(r, "content-length", "14"));
    YT_CHECK(hdr_is(r, "CONTENT-LENGTH", "14"));
    YT_CHECK(hdr_is(r, "Content-Type", "text/plain"));
    YT_CHECK(yhc_response_header(r, "X-Not-There").ptr == NULL);
    YT_EQ_INT(yhc_response_header(r, "X-Not-There").len, 0);
    YT_CHECK(r->header_count >= 4);
    YT_EQ_INT(r->trailer_count, 0);
    YT_CHECK(r->id != 0);
    yhc_response_free(r);
  }
  /* "localhost" resolves (maybe to ::1 first, where nobody listens: the next address wins) */
  r = fetch(h, "GET", url_at("localhost", origin.port, "/hello"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200);
  if (r) yhc_response_free(r);
  /* 404 is a response, not an error */
  r = fetch(h, "GET", O("/status/404"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 404);
  if (r) {
    YT_EQ_MEM(r->body.ptr, r->body.len, "status 404\n");
    YT_CHECK(str_is(r->reason, "Not Found"));
    yhc_response_free(r);
  }
  r = fetch(h, "GET", O("/status/500"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 500);
  if (r) yhc_response_free(r);
  yhc_http_destroy(h);
}

static void test_methods(void) {
  static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
  yhc_http *h = http_new(NULL);
  yhc_response *r;
  size_t i;
  char val[256];
  YT_GROUP("methods");
  for (i = 0; i < sizeof methods / sizeof methods[0]; i++) {
    r = fetch_body(h, methods[i], O("/echo"), "data", 4);
    YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200);
    if (!r) continue;
    YT_CHECKF(hdr_is(r, "X-Echo-Method", methods[i]), "method %s", methods[i]);
    YT_CHECKF(str_is(r->body, "data"), "%s body", methods[i]);
    YT_EQ_INT(echo_header_count(r, "Content-Length", val, sizeof val), 1);
    YT_EQ_STR(val, "4");
    yhc_response_free(r);
  }
  /* GET without a body sends no Content-Length / Transfer-Encoding */
  r = fetch(h, "GET", O("/echo"));
  YT_CHECK(r && r->err == YHC_ERR_OK);
  if (r) {
    YT_EQ_INT(echo_header_count(r, "Transfer-Encoding", NULL, 0), 0);
    YT_EQ_INT(echo_header_count(r, "Content-Length", val, sizeof val) == 0 ||
                  strcmp(val, "0") == 0,
              1);
    YT_EQ_INT(r->body.len, 0);
    yhc_response_free(r);
  }
  /* POST with an empty body still says how long it is */
  r = fetch_body(h, "POST", O("/echo"), NULL, 0);
  YT_CHECK(r && r->err == YHC_ERR_OK);
  if (r) {
    YT_EQ_INT(echo_header_count(r, "Content-Length", val, sizeof val), 1);
    YT_EQ_STR(val, "0");
    yhc_response_free(r);
  }
  /* HEAD: headers, no body, even though Content-Length says 1000 */
  r = fetch(h, "HEAD", O("/head"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200);
  if (r) {
    YT_CHECK(hdr_is(r, "Content-Length", "1000"));
    YT_EQ_INT(r->body.len, 0);
    yhc_response_free(r);
  }
  r = fetch(h, "GET", O("/head"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->body.len == 1000);
  if (r) yhc_response_free(r);
  r = fetch(h, "HEAD", O("/echo"));
  YT_CHECK(r && r->err == YHC_ERR_OK && hdr_is(r, "X-Echo-Method", "HEAD") && r->body.len == 0);
  if (r) yhc_response_free(r);
  /* HEAD of a chunked resource: no chunked body follows either */
  r = fetch(h, "HEAD", O("/chunked?n=3&size=10"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->body.len == 0);
  if (r) yhc_response_free(r);
  yhc_http_destroy(h);
}

static void test_request_headers(void) {
  yhc_http *h = http_new(NULL);
  yhc_response *r;
  yhc_buf seen;
  char val[5000], host[64];
  char longval[4001];
  yhc_header hs[8];
  yhc_request q;
  YT_GROUP("request headers");
  memset(&seen, 0, sizeof seen);
  memset(longval, 'v', 4000);
  longval[4000] = 0;
  hs[0].name = "X-Rep";
  hs[0].value = "1";
  hs[1].name = "x-mixed-CASE";
  hs[1].value = "Mixed";
  hs[2].name = "X-Rep";
  hs[2].value = "2";
  hs[3].name = "X-Tchar!#$%&'*+.^_`|~";
  hs[3].value = "a\tb  c";
  hs[4].name = "X-Empty";
  hs[4].value = "";
  hs[5].name = "X-Long";
  hs[5].value = longval;
  hs[6].name = "X-Utf8";
  hs[6].value = "\xc3\xa9t\xc3\xa9";
  hs[7].name = "X-Rep";
  hs[7].value = "3";
  req_init(&q, "GET", O("/echo"));
  q.headers = hs;
  q.header_count = 8;
  r = yhc_http_fetch(h, &q);
  YT_CHECK(r && r->err == YHC_ERR_OK);
  if (r) {
    echo_headers(r, &seen);
    YT_CHECKF(strstr(seen.ptr, "X-Rep: 1\nx-mixed-CASE: Mixed\nX-Rep: 2\n"), "%s", seen.ptr);
    YT_CHECKF(strstr(seen.ptr, "X-Tchar!#$%&'*+.^_`|~: a\tb  c\n"), "%s", seen.ptr);
    YT_EQ_INT(echo_header_count(r, "X-Rep", val, sizeof val), 3);
    YT_EQ_STR(val, "1");
    YT_EQ_INT(echo_header_count(r, "x-empty", val, sizeof val), 1);
    YT_EQ_STR(val, "");
    YT_EQ_INT(echo_header_count(r, "X-Long", val, sizeof val), 1);
    YT_EQ_INT(strlen(val), 4000);
    YT_EQ_INT(echo_header_count(r, "X-Utf8", val, sizeof val), 1);
    YT_EQ_STR(val, "\xc3\xa9t\xc3\xa9");
    snprintf(host, sizeof host, "127.0.0.1:%d", origin.port);
    YT_EQ_INT(echo_header_count(r, "Host", val, sizeof val), 1);
    YT_EQ_STR(val, host);
    YT_EQ_INT(echo_header_count(r, "User-Agent", val, sizeof val), 1);
    YT_CHECKF(strncmp(val, "yhc/", 4) == 0, "default User-Agent \"%s\"", val);
    yhc_response_free(r);
  }
  yhc_http_destroy(h);
  {
    yhc_http_desc d;
    desc_init(&d);
    d.user_agent = "";
    h = http_new(&d);
    r = fetch(h, "GET", O("/echo"));
    YT_CHECK(r && r->err == YHC_ERR_OK && echo_header_count(r, "User-Agent", NULL, 0) == 0);
    if (r) yhc_response_free(r);
    yhc_http_destroy(h);
    d.user_agent = "tester/1.0 (x)";
    h = http_new(&d);
    r = fetch(h, "GET", O("/echo"));
    YT_CHECK(r && r->err == YHC_ERR_OK);
    if (r) {
      YT_EQ_INT(echo_header_count(r, "User-Agent", val, sizeof val), 1);
      YT_EQ_STR(val, "tester/1.0 (x)");
      yhc_response_free(r);
    }
    yhc_http_destroy(h);
  }
  /* Expect: 100-continue from the caller: the server's interim 100 is skipped */
  h = http_new(NULL);
  hs[0].name = "Expect";
  hs[0].value = "100-continue";
  req_init(&q, "POST", O("/echo"));
  q.headers = hs;
  q.header_count = 1;
  q.body = "expect body";
  q.body_len = 11;
  r = yhc_http_fetch(h, &q);
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200);
  if (r) {
    YT_CHECK(str_is(r->body, "expect body"));
    yhc_response_free(r);
  }
  yhc_buf_free(&seen);
  yhc_http_destroy(h);
}

static void test_bodies(void) {
  yhc_http *h = http_new(NULL);
  yhc_response *r;
  char *big;
  size_t i, n = 1024 * 1024 + 7;
  YT_GROUP("binary bodies");
  big = (char *)malloc(n);
  for (i = 0; i < n; i++) big[i] = (char)(i % 251);
  r = fetch_body(h, "POST", O("/echo"), big, 1000);
  YT_CHECK(r && r->err == YHC_ERR_OK);
  if (r) {
    YT_EQ_INT(r->body.len, 1000);
    YT_CHECK(r->body.len == 1000 && memcmp(r->body.ptr, big, 1000) == 0);
    YT_CHECK(hdr_is(r, "X-Echo-Body-Len", "1000"));
    yhc_response_free(r);
  }
  r = fetch_body(h, "PUT", O("/echo"), big, n);
  YT_CHECK(r && r->err == YHC_ERR_OK);
  if (r) {
    YT_EQ_INT(r->body.len, n);
    YT_CHECK(r->body.len == n && memcmp(r->body.ptr, big, n) == 0);
    yhc_response_free(r);
  }
  /* the caller may free its body right after submitting */
  {
    rq a;
    int done = 0;
    yhc_request q;
    char *tmp = (char *)malloc(5000);
    memcpy(tmp, big, 5000);
    rq_init(&a);
    a.done_counter = &done;
    req_init(&q, "POST", O("/echo"));
    q.body = tmp;
    q.body_len = 5000;
    submit_req(h, &a, &q);
    memset(tmp, 'X', 5000);
    free(tmp);
    YT_CHECK(turn_until(&done, 1, 5000));
    YT_CHECK(a.err == YHC_ERR_OK && a.body.len == 5000 && memcmp(a.body.ptr, big, 5000) == 0);
    rq_free(&a);
  }
  r = fetch(h, "GET", O("/bytes/1048576"));
  YT_CHECK(r && r->err == YHC_ERR_OK);
  if (r) {
    YT_EQ_INT(r->body.len, 1048576);
    YT_CHECK(is_pattern(r->body.ptr, r->body.len, 0));
    yhc_response_free(r);
  }
  r = fetch(h, "GET", O("/bytes/0"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200 && r->body.len == 0);
  if (r) yhc_response_free(r);
  free(big);
  yhc_http_destroy(h);
}

static void test_targets(void) {
  static const char *const targets[] = {
      "/echo?a=1&b=%20x&c=%2F&empty=&=x&&utf=%C3%A9",
      "/echo?q=it's+(ok)*!$,;:@/?x",
      "/echo?",
      "/echo/../echo?x",
      "/echo;matrix=1?y=%00",
  };
  yhc_http *h = http_new(NULL);
  yhc_response *r;
  size_t i;
  YT_GROUP("request targets verbatim");
  for (i = 0; i < sizeof targets / sizeof targets[0]; i++) {
    r = fetch(h, "GET", O(targets[i]));
    YT_CHECK(r && r->err == YHC_ERR_OK);
    if (!r) continue;
    YT_CHECKF(hdr_is(r, "X-Echo-Target", targets[i]), "sent %s", targets[i]);
    yhc_response_free(r);
  }
  r = fetch(h, "GET", O("/echo?frag=no#fragment"));
  YT_CHECK(r && r->err == YHC_ERR_OK && hdr_is(r, "X-Echo-Target", "/echo?frag=no"));
  if (r) yhc_response_free(r);
  r = fetch(h, "GET", O(""));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 404 && hdr_is(r, "X-Echo-Target", "/"));
  if (r) yhc_response_free(r);
  r = fetch(h, "GET", O("?x=1"));
  YT_CHECK(r && r->err == YHC_ERR_OK && hdr_is(r, "X-Echo-Target", "/?x=1"));
  if (r) yhc_response_free(r);
  yhc_http_destroy(h);
}

static void test_response_headers(void) {
  yhc_http *h = http_new(NULL);
  yhc_response *r;
  YT_GROUP("response headers");
  r = fetch(h, "GET", O("/cookies"));
  YT_CHECK(r && r->err == YHC_ERR_OK);
  if (r) {
    size_t it = 0, i, ia = 9999, ib = 9999, ic = 9999;
    yhc_str v;
    int n = 0;
    const char *want[] = {"a=1; Path=/", "b=2", "c=3; HttpOnly"};
    while (yhc_response_header_next(r, "SET-COOKIE", &it, &v)) {
      if (n < 3) YT_CHECKF(str_is(v, want[n]), "cookie %d: %.*s", n, (int)v.len, v.ptr);
      n++;
    }
    YT_EQ_INT(n, 3);
    YT_CHECK(!yhc_response_header_next(r, "set-cookie", &it, &v)); /* stays exhausted */
    YT_CHECK(hdr_is(r, "Set-Cookie", "a=1; Path=/"));               /* the first match */
    YT_CHECK(hdr_is(r, "x-mixed-case", "mixed"));
    YT_CHECK(hdr_is(r, "X-LOWER-CASE", "lower"));
    YT_CHECK(hdr_is(r, "X-Padded", "padded value")); /* surrounding whitespace trimmed */
    for (i = 0; i < r->header_count; i++) {
      if (str_is(r->headers[i].name, "Set-Cookie") && str_is(r->headers[i].value, "a=1; Path=/"))
        ia = i;
      if (str_is(r->headers[i].name, "Set-Cookie") && str_is(r->headers[i].value, "b=2")) ib = i;
      if (str_is(r->headers[i].name, "set-cookie")) ic = i; /* names as received */
    }
    YT_CHECK(ia < ib && ib < ic && ic < r->header_count);
    it = 0;
    YT_CHECK(!yhc_response_header_next(r, "cookie", &it, &v));
    yhc_response_free(r);
  }
  yhc_http_destroy(h);
}

static void test_keepalive(void) {
  yhc_http *h = http_new(NULL);
  yhc_response *r;
  int first = -1, i, id;
  YT_GROUP("keep-alive reuse");
  for (i = 0; i < 5; i++) {
    r = fetch(h, "GET", O("/conn-id"));
    YT_CHECK(r && r->err == YHC_ERR_OK);
    if (!r) continue;
    id = hdr_int(r, "X-Conn-Id");
    if (i == 0) first = id;
    YT_CHECKF(id == first && id > 0, "request %d on connection %d, first on %d", i, id, first);
    yhc_response_free(r);
  }
  /* every kind of message framing leaves the connection in sync for the next request */
  {
    static const char *const m[][2] = {
        {"GET", "/hello"},        {"POST", "/echo"},         {"GET", "/chunked?n=4&size=33"},
        {"GET", "/status/204"},   {"GET", "/status/304"},    {"HEAD", "/head"},
        {"GET", "/continue?kind=both"}, {"HEAD", "/chunked"}, {"GET", "/status/404"},
        {"GET", "/chunked?n=0"},  {"DELETE", "/echo"}};
    size_t k;
    for (k = 0; k < sizeof m / sizeof m[0]; k++) {
      r = fetch_body(h, m[k][0], O(m[k][1]), strcmp(m[k][0], "POST") == 0 ? "xyz" : NULL,
                     strcmp(m[k][0], "POST") == 0 ? 3 : 0);
      YT_CHECKF(r && r->err == YHC_ERR_OK, "%s %s: %s", m[k][0], m[k][1],
                r ? r->error : "NULL");
      if (!r) continue;
      id = hdr_int(r, "X-Conn-Id");
      YT_CHECKF(id == first, "%s %s on connection %d, expected %d", m[k][0], m[k][1], id, first);
      yhc_response_free(r);
      r = fetch(h, "GET", O("/conn-id"));
      YT_CHECKF(r && r->err == YHC_ERR_OK && hdr_int(r, "X-Conn-Id") == first,
                "after %s %s: %s", m[k][0], m[k][1], r ? r->error : "NULL");
      if (r) yhc_response_free(r);
    }
  }
  /* a close-delimited response ends the connection */
  r = fetch(h, "GET", O("/close?size=10"));
  YT_CHECK(r && r->err == YHC_ERR_OK && hdr_int(r, "X-Conn-Id") == first);
  if (r) yhc_response_free(r);
  r = fetch(h, "GET", O("/conn-id"));
  YT_CHECK(r && r->err == YHC_ERR_OK);
  if (r) {
    id = hdr_int(r, "X-Conn-Id");
    YT_CHECKF(id != first && id > 0, "reused connection %d after Connection: close", id);
    first = id;
    yhc_response_free(r);
  }
  /* Connection: close from the caller */
  {
    yhc_header c;
    yhc_request q;
    c.name = "Connection";
    c.value = "close";
    req_init(&q, "GET", O("/conn-id"));
    q.headers = &c;
    q.header_count = 1;
    r = yhc_http_fetch(h, &q);
    YT_CHECK(r && r->err == YHC_ERR_OK && hdr_int(r, "X-Conn-Id") == first);
    if (r) yhc_response_free(r);
    /* RFC 9112 9.6: no further request on a connection after one that said "close" (the
       server closes it after answering, without saying so). A POST is not retried, so it
       fails if the client reuses that connection. */
    r = fetch_body(h, "POST", O("/echo"), "after close", 11);
    YT_CHECK(r != NULL);
    if (r) {
      CHECK_ERR(r->err, r->error, YHC_ERR_OK);
      YT_CHECKF(hdr_int(r, "X-Conn-Id") != first, "reused a connection the request closed");
      yhc_response_free(r);
    }
  }
  yhc_http_destroy(h);

  /* keepalive_ms: an idle connection is dropped after it */
  {
    yhc_http_desc d;
    desc_init(&d);
    d.keepalive_ms = 100;
    h = http_new(&d);
    r = fetch(h, "GET", O("/conn-id"));
    first = r ? hdr_int(r, "X-Conn-Id") : -1;
    if (r) yhc_response_free(r);
    r = fetch(h, "GET", O("/conn-id"));
    YT_CHECK(r && hdr_int(r, "X-Conn-Id") == first);
    if (r) yhc_response_free(r);
    turn_for(300);
    r = fetch(h, "GET", O("/conn-id"));
    YT_CHECK(r && r->err == YHC_ERR_OK);
    if (r) {
      YT_CHECKF(hdr_int(r, "X-Conn-Id") != first, "idle connection kept past keepalive_ms");
      yhc_response_free(r);
    }
    yhc_http_destroy(h);
  }
}

static void test_conn_cap(void) {
  enum { NREQ = 24 };
  rq rs[NREQ];
  int done = 0, i, j, ids[NREQ], nids = 0;
  long long t0;
  yhc_http_desc d;
  yhc_http *h;
  YT_GROUP("max_conns_per_host");
  desc_init(&d);
  d.max_conns_per_host = 3;
  h = http_new(&d);
  t0 = yt_now_ms();
  for (i = 0; i < NREQ; i++) {
    rq_init(&rs[i]);
    rs[i].done_counter = &done;
    YT_CHECK(submit(h, &rs[i], "GET", O(i % 2 ? "/slow?ms=30" : "/conn-id")) != 0);
  }
  YT_CHECK(turn_until(&done, NREQ, 10000));
  for (i = 0; i < NREQ; i++) {
    YT_CHECKF(rs[i].calls == 1 && rs[i].err == YHC_ERR_OK && rs[i].status == 200,
              "request %d: calls %d %s %s", i, rs[i].calls, yhc_strerror(rs[i].err), rs[i].error);
    for (j = 0; j < nids && ids[j] != rs[i].conn_id; j++) {
    }
    if (j == nids) ids[nids++] = rs[i].conn_id;
    rq_free(&rs[i]);
  }
  YT_CHECKF(nids <= 3, "%d connections used with max_conns_per_host = 3", nids);
  YT_CHECKF(nids >= 2, "only %d connection(s) used for %d concurrent requests", nids, NREQ);
  yhc_http_destroy(h);

  /* the default allows parallelism: 8 x 200 ms finish well before 8 x 200 ms */
  h = http_new(NULL);
  done = 0;
  t0 = yt_now_ms();
  for (i = 0; i < 8; i++) {
    rq_init(&rs[i]);
    rs[i].done_counter = &done;
    submit(h, &rs[i], "GET", O("/slow?ms=200"));
  }
  YT_CHECK(turn_until(&done, 8, 10000));
  YT_CHECKF(yt_now_ms() - t0 < 1200, "8 parallel 200 ms requests took %lld ms",
            yt_now_ms() - t0);
  for (i = 0; i < 8; i++) {
    YT_CHECK(rs[i].err == YHC_ERR_OK);
    rq_free(&rs[i]);
  }
  yhc_http_destroy(h);
}

static void test_chunked(void) {
  yhc_http *h = http_new(NULL);
  yhc_response *r;
  YT_GROUP("chunked");
  r = fetch(h, "GET", O("/chunked?n=5&size=1000"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200);
  if (r) {
    size_t i;
    int one = 0, two = 0;
    YT_EQ_INT(r->body.len, 5000);
    YT_CHECK(is_pattern(r->body.ptr, r->body.len, 0));
    YT_EQ_INT(r->trailer_count, 2);
    for (i = 0; i < r->trailer_count; i++) {
      if (str_is(r->trailers[i].name, "X-Trailer-One") && str_is(r->trailers[i].value, "1"))
        one++;
      if (str_is(r->trailers[i].name, "X-Trailer-Two") && str_is(r->trailers[i].value, "two"))
        two++;
    }
    YT_CHECK(one == 1 && two == 1);
    YT_CHECK(ci_contains(yhc_response_header(r, "Transfer-Encoding").ptr, "chunked"));
    yhc_response_free(r);
  }
  r = fetch(h, "GET", O("/chunked?n=300&size=1"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->body.len == 300 && is_pattern(r->body.ptr, 300, 0));
  if (r) yhc_response_free(r);
  r = fetch(h, "GET", O("/chunked?n=3&size=26&trailers=0"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->body.len == 78 && r->trailer_count == 0);
  if (r) yhc_response_free(r);
  r = fetch(h, "GET", O("/chunked?n=0"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->body.len == 0 && r->trailer_count == 2);
  if (r) yhc_response_free(r);
  r = fetch(h, "GET", O("/chunked?n=2&size=100000"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->body.len == 200000 &&
           is_pattern(r->body.ptr, 200000, 0));
  if (r) yhc_response_free(r);
  /* one byte per TCP segment */
  r = fetch(h, "GET", H("/byte-at-a-time"));
  YT_CHECK(r && r->err == YHC_ERR_OK);
  if (r) {
    YT_EQ_INT(r->status, 200);
    YT_EQ_MEM(r->body.ptr, r->body.len, "hello, world");
    YT_CHECK(r->trailer_count == 1 && str_is(r->trailers[0].name, "X-Trailer") &&
             str_is(r->trailers[0].value, "done"));
    yhc_response_free(r);
  }
  yhc_http_destroy(h);
}

static void test_close_delimited(void) {
  yhc_http *h = http_new(NULL);
  yhc_response *r;
  YT_GROUP("close-delimited bodies");
  r = fetch(h, "GET", O("/close?size=5000"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200);
  if (r) {
    YT_EQ_INT(r->body.len, 5000);
    YT_CHECK(is_pattern(r->body.ptr, r->body.len, 0));
    YT_EQ_INT(r->http_minor, 1);
    yhc_response_free(r);
  }
  r = fetch(h, "GET", O("/close?size=0"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->body.len == 0);
  if (r) yhc_response_free(r);
  r = fetch(h, "GET", O("/close?size=300000&v=0"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->body.len == 300000 && r->http_minor == 0);
  if (r) yhc_response_free(r);
  r = fetch(h, "GET", H("/http10"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->http_minor == 0);
  if (r) {
    YT_EQ_MEM(r->body.ptr, r->body.len, "old style");
    yhc_response_free(r);
  }
  r = fetch(h, "GET", H("/no-length"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->http_minor == 1);
  if (r) {
    YT_EQ_MEM(r->body.ptr, r->body.len, "until the end");
    yhc_response_free(r);
  }
  yhc_http_destroy(h);
}

static void test_no_body(void) {
  yhc_http *h = http_new(NULL);
  yhc_response *r;
  YT_GROUP("HEAD/204/304 and 1xx");
  r = fetch(h, "GET", O("/status/204"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 204 && r->body.len == 0);
  if (r) yhc_response_free(r);
  r = fetch(h, "GET", O("/status/304"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 304 && r->body.len == 0);
  if (r) {
    YT_CHECK(hdr_is(r, "Content-Length", "1234"));
    yhc_response_free(r);
  }
  {
    static const char *const kinds[] = {"100", "103", "both"};
    size_t i;
    for (i = 0; i < 3; i++) {
      char path[64];
      snprintf(path, sizeof path, "/continue?kind=%s", kinds[i]);
      r = fetch(h, "GET", O(path));
      YT_CHECKF(r && r->err == YHC_ERR_OK && r->status == 200, "%s", path);
      if (!r) continue;
      YT_EQ_MEM(r->body.ptr, r->body.len, "final");
      YT_CHECK(hdr_is(r, "X-Final", "yes"));
      YT_CHECKF(yhc_response_header(r, "Link").ptr == NULL, "103's headers leaked into the final");
      yhc_response_free(r);
    }
  }
  yhc_http_destroy(h);
}

static void test_stale_retry(void) {
  yhc_http *h;
  yhc_response *r;
  yhc_request q;
  char first[64];
  YT_GROUP("stale keep-alive connection");
  /* GET: the server closes the reused connection after reading the request -> retried once */
  h = http_new(NULL);
  r = fetch(h, "GET", H("/keepalive-then-close"));
  YT_CHECK(r && r->err == YHC_ERR_OK);
  first[0] = 0;
  if (r) {
    snprintf(first, sizeof first, "%.*s", (int)r->body.len, r->body.ptr);
    YT_CHECKF(strstr(first, " req 1") != NULL, "%s", first);
    yhc_response_free(r);
  }
  r = fetch(h, "GET", H("/keepalive-then-close"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_OK);
    YT_CHECKF(r->body.len > 6 && memcmp(r->body.ptr + r->body.len - 6, " req 1", 6) == 0 &&
                  !str_is(r->body, first),
              "GET on a stale connection: %.*s", (int)r->body.len, r->body.ptr);
    yhc_response_free(r);
  }
  yhc_http_destroy(h);

  /* POST: not resent */
  h = http_new(NULL);
  r = fetch(h, "GET", H("/keepalive-then-close"));
  YT_CHECK(r && r->err == YHC_ERR_OK);
  if (r) yhc_response_free(r);
  r = fetch_body(h, "POST", H("/keepalive-then-close"), "once", 4);
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_CLOSED);
    YT_CHECK(r->error && r->error[0]);
    yhc_response_free(r);
  }
  /* ... unless retry_unsafe */
  r = fetch(h, "GET", H("/keepalive-then-close"));
  YT_CHECK(r && r->err == YHC_ERR_OK);
  if (r) yhc_response_free(r);
  req_init(&q, "POST", H("/keepalive-then-close"));
  q.body = "twice";
  q.body_len = 5;
  q.retry_unsafe = 1;
  r = yhc_http_fetch(h, &q);
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_OK);
    YT_CHECK(r->body.len > 6 && memcmp(r->body.ptr + r->body.len - 6, " req 1", 6) == 0);
    yhc_response_free(r);
  }
  yhc_http_destroy(h);

  /* the server closes an idle connection while the loop turns: noticed, next request fine */
  h = http_new(NULL);
  r = fetch(h, "GET", H("/keepalive-then-close?mode=idle&ms=30"));
  YT_CHECK(r && r->err == YHC_ERR_OK);
  if (r) yhc_response_free(r);
  turn_for(200);
  r = fetch_body(h, "POST", H("/keepalive-then-close?mode=idle&ms=30"), "p", 1);
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_OK);
    yhc_response_free(r);
  }
  /* ... or while nobody turns the loop: a GET still succeeds */
  yt_sleep_ms(200);
  r = fetch(h, "GET", H("/keepalive-then-close?mode=idle&ms=30"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_OK);
    yhc_response_free(r);
  }
  /* ... and so does a POST: the server's FIN was already there when the request was about to
     be written, so the connection is known dead before anything is sent on it (a check such as
     recv(MSG_PEEK | MSG_DONTWAIT) == 0 before reusing an idle connection, as curl does) */
  yt_sleep_ms(200);
  r = fetch_body(h, "POST", H("/keepalive-then-close?mode=idle&ms=30"), "p", 1);
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_OK);
    yhc_response_free(r);
  }
  yhc_http_destroy(h);
}

static void test_limits(void) {
  yhc_http_desc d;
  yhc_http *h;
  yhc_response *r;
  size_t base;
  YT_GROUP("limits");
  /* header bytes */
  desc_init(&d);
  d.limits.max_header_bytes = 4000;
  h = http_new(&d);
  base = mem_mark();
  r = fetch(h, "GET", H("/oversize-headers"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_LIMIT);
    YT_CHECKF(ci_contains(r->error, "header") && ci_contains(r->error, "4000"), "%s", r->error);
    yhc_response_free(r);
  }
  YT_CHECKF(yt_mem_peak - base < 512 * 1024, "peak %zu bytes", yt_mem_peak - base);
  r = fetch(h, "GET", O("/hello")); /* 4000 is plenty for a normal response */
  YT_CHECK(r && r->err == YHC_ERR_OK);
  if (r) yhc_response_free(r);
  yhc_http_destroy(h);
  h = http_new(NULL);
  base = mem_mark();
  r = fetch(h, "GET", H("/oversize-headers?mode=line"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_LIMIT);
    YT_CHECKF(ci_contains(r->error, "header") && ci_contains(r->error, "16384"), "%s", r->error);
    yhc_response_free(r);
  }
  YT_CHECKF(yt_mem_peak - base < 512 * 1024, "peak %zu bytes", yt_mem_peak - base);

  /* header count: default 100 (10,000 headers also break the byte limit: LIMIT either way) */
  r = fetch(h, "GET", H("/many-headers"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_LIMIT);
    yhc_response_free(r);
  }
  base = mem_mark();
  r = fetch(h, "GET", H("/many-headers?n=500"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_LIMIT);
    YT_CHECKF(ci_contains(r->error, "header") && ci_contains(r->error, "100"), "%s", r->error);
    yhc_response_free(r);
  }
  YT_CHECKF(yt_mem_peak - base < 512 * 1024, "peak %zu bytes", yt_mem_peak - base);
  /* exactly 100 (X-Conn-Id + 98 + Content-Length) pass, 101 do not */
  r = fetch(h, "GET", H("/many-headers?n=98"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_OK);
    YT_EQ_INT(r->header_count, 100);
    yhc_response_free(r);
  }
  r = fetch(h, "GET", H("/many-headers?n=99"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_LIMIT);
    yhc_response_free(r);
  }
  /* trailers count and size too */
  r = fetch(h, "GET", H("/trailer-flood?mode=count"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_LIMIT);
    yhc_response_free(r);
  }
  r = fetch(h, "GET", H("/trailer-flood?mode=bytes"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_LIMIT);
    YT_CHECKF(ci_contains(r->error, "16384"), "%s", r->error);
    yhc_response_free(r);
  }
  /* chunk digits: default 16 */
  r = fetch(h, "GET", H("/bad-chunk?kind=big"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_LIMIT);
    YT_CHECKF(ci_contains(r->error, "chunk") && ci_contains(r->error, "16"), "%s", r->error);
    yhc_response_free(r);
  }
  r = fetch(h, "GET", H("/bad-chunk?kind=long"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_LIMIT);
    yhc_response_free(r);
  }
  yhc_http_destroy(h);

  /* raised limits are honoured */
  desc_init(&d);
  d.limits.max_header_count = 20000;
  d.limits.max_header_bytes = 1024 * 1024;
  d.limits.max_chunk_digits = 24;
  h = http_new(&d);
  r = fetch(h, "GET", H("/many-headers?n=10000"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_OK);
    YT_EQ_INT(r->header_count, 10002);
    YT_CHECK(hdr_is(r, "X-H-9999", "v"));
    yhc_response_free(r);
  }
  r = fetch(h, "GET", H("/bad-chunk?kind=long")); /* 20 digits, value 5 */
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_OK);
    YT_EQ_MEM(r->body.ptr, r->body.len, "hellohello");
    yhc_response_free(r);
  }
  r = fetch(h, "GET", H("/bad-chunk?kind=big")); /* 2^65 - 1 overflows 64 bits */
  YT_CHECK(r != NULL);
  if (r) {
    YT_CHECKF(r->err == YHC_ERR_PROTOCOL || r->err == YHC_ERR_LIMIT, "%s: %s",
              yhc_strerror(r->err), r->error);
    yhc_response_free(r);
  }
  yhc_http_destroy(h);

  /* body bytes */
  desc_init(&d);
  d.limits.max_body_bytes = 100000;
  h = http_new(&d);
  r = fetch(h, "GET", O("/bytes/100000"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->body.len == 100000);
  if (r) yhc_response_free(r);
  {
    static const char *const over[] = {"/bytes/100001", "/chunked?n=3&size=40000",
                                       "/close?size=100001"};
    size_t i;
    for (i = 0; i < 3; i++) {
      r = fetch(h, "GET", O(over[i]));
      YT_CHECK(r != NULL);
      if (!r) continue;
      YT_CHECKF(r->err == YHC_ERR_LIMIT, "%s: %s: %s", over[i], yhc_strerror(r->err), r->error);
      YT_CHECKF(ci_contains(r->error, "body") && ci_contains(r->error, "100000"), "%s: %s",
                over[i], r->error);
      yhc_response_free(r);
    }
  }
  /* endless bodies end with LIMIT without memory growing past it */
  base = mem_mark();
  r = fetch(h, "GET", H("/endless-body"));
  YT_CHECK(r && r->err == YHC_ERR_LIMIT);
  if (r) yhc_response_free(r);
  r = fetch(h, "GET", H("/endless-body?mode=chunked"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_LIMIT);
    yhc_response_free(r);
  }
  YT_CHECKF(yt_mem_peak - base < 1024 * 1024, "peak %zu bytes", yt_mem_peak - base);
  /* streaming bodies are not limited */
  {
    rq a;
    yhc_request q;
    int done = 0;
    rq_init(&a);
    a.done_counter = &done;
    a.check_pattern = 1;
    req_init(&q, "GET", O("/bytes/300000"));
    q.on_body = rq_on_body;
    submit_req(h, &a, &q);
    YT_CHECK(turn_until(&done, 1, 5000));
    CHECK_ERR(a.err, a.error, YHC_ERR_OK);
    YT_EQ_INT(a.streamed, 300000);
    YT_CHECK(!a.stream_bad);
    rq_free(&a);
  }
  yhc_http_destroy(h);
}

/* on_head: the final head arrives once, before any body byte, with the headers in it; a
   non-zero return aborts with CANCELLED. */
typedef struct head_probe {
  int calls, status, body_before_head, abort, st;
  size_t header_count, body_seen;
  char ctype[64];
} head_probe;

static int hp_on_head(void *user, const yhc_response *head) {
  head_probe *hp = (head_probe *)user;
  yhc_str v = yhc_response_header(head, "content-type");
  hp->calls++;
  hp->status = head->status;
  hp->header_count = head->header_count;
  if (hp->body_seen) hp->body_before_head = 1;
  snprintf(hp->ctype, sizeof hp->ctype, "%.*s", (int)v.len, v.ptr ? v.ptr : "");
  return hp->abort;
}

static int hp_on_body(void *user, const void *data, size_t len) {
  head_probe *hp = (head_probe *)user;
  (void)data;
  hp->body_seen += len;
  return 0;
}

static void hp_done(const yhc_response *r, void *user) {
  head_probe *hp = (head_probe *)user;
  hp->st = r->err ? -(int)r->err : 1;
}

static void test_on_head(void) {
  yhc_http *h = http_new(NULL);
  head_probe hp;
  yhc_request q;
  YT_GROUP("on_head streaming");
  memset(&hp, 0, sizeof hp);
  req_init(&q, "GET", O("/chunked?n=5&size=1000"));
  q.on_head = hp_on_head;
  q.on_body = hp_on_body;
  yhc_http_request(h, &q, hp_done, &hp); /* on_head/on_body get the same user pointer */
  while (!hp.st) yhc_loop_poll(L, 100);
  YT_EQ_INT(hp.st, 1);
  YT_EQ_INT(hp.calls, 1);
  YT_EQ_INT(hp.status, 200);
  YT_CHECK(hp.header_count > 0);
  YT_CHECK(!hp.body_before_head);
  YT_EQ_INT(hp.body_seen, 5000);
  memset(&hp, 0, sizeof hp);
  hp.abort = 1;
  req_init(&q, "GET", O("/bytes/100000"));
  q.on_head = hp_on_head;
  q.on_body = hp_on_body;
  yhc_http_request(h, &q, hp_done, &hp);
  while (!hp.st) yhc_loop_poll(L, 100);
  YT_EQ_INT(hp.st, -(int)YHC_ERR_CANCELLED);
  YT_EQ_INT(hp.calls, 1);
  YT_EQ_INT(hp.body_seen, 0);
  yhc_http_destroy(h);
}

static void test_endless_streaming(void) {
  yhc_http *h = http_new(NULL);
  rq a, b, c;
  yhc_request q;
  int done = 0;
  size_t base;
  YT_GROUP("endless bodies, streamed: memory stays bounded");
  base = mem_mark();
  rq_init(&a);
  a.done_counter = &done;
  req_init(&q, "GET", H("/endless-body"));
  q.on_body = rq_on_body;
  q.timeout_ms = 700;
  submit_req(h, &a, &q);
  rq_init(&b);
  b.done_counter = &done;
  req_init(&q, "GET", H("/endless-body?mode=chunked"));
  q.on_body = rq_on_body;
  q.timeout_ms = 700;
  submit_req(h, &b, &q);
  /* on_body returning non-zero aborts with CANCELLED */
  rq_init(&c);
  c.done_counter = &done;
  c.abort_after = 1000000;
  req_init(&q, "GET", H("/endless-body"));
  q.on_body = rq_on_body;
  submit_req(h, &c, &q);
  YT_CHECK(turn_until(&done, 3, 5000));
  YT_CHECKF(a.err == YHC_ERR_TIMEOUT || a.err == YHC_ERR_CLOSED, "%s: %s", yhc_strerror(a.err),
            a.error);
  YT_CHECKF(b.err == YHC_ERR_TIMEOUT || b.err == YHC_ERR_CLOSED, "%s: %s", yhc_strerror(b.err),
            b.error);
  YT_CHECKF(a.streamed > 2 * 1024 * 1024, "only %zu bytes streamed", a.streamed);
  YT_CHECKF(b.streamed > 2 * 1024 * 1024, "only %zu bytes streamed", b.streamed);
  YT_CHECK(a.pieces > 10 && b.pieces > 10);
  YT_EQ_INT(a.resp_body_view.len, 0);
  CHECK_ERR(c.err, c.error, YHC_ERR_CANCELLED);
  YT_CHECK(c.streamed >= 1000000 && c.streamed < 1000000 + 1024 * 1024);
  YT_CHECKF(yt_mem_peak - base < 1024 * 1024, "peak %zu bytes while streaming %zu bytes",
            yt_mem_peak - base, a.streamed + b.streamed);
  turn_for(30);
  YT_CHECK(a.calls == 1 && b.calls == 1 && c.calls == 1);
  rq_free(&a);
  rq_free(&b);
  rq_free(&c);

  /* streaming a normal body: pieces, not collected */
  done = 0;
  base = mem_mark();
  rq_init(&a);
  a.done_counter = &done;
  a.check_pattern = 1;
  req_init(&q, "GET", O("/bytes/1048576"));
  q.on_body = rq_on_body;
  submit_req(h, &a, &q);
  rq_init(&b);
  b.done_counter = &done;
  req_init(&q, "GET", O("/chunked?n=50&size=1000"));
  q.on_body = rq_on_body;
  b.check_pattern = 1;
  submit_req(h, &b, &q);
  rq_init(&c);
  c.done_counter = &done;
  req_init(&q, "GET", H("/byte-at-a-time"));
  q.on_body = rq_on_body;
  submit_req(h, &c, &q);
  YT_CHECK(turn_until(&done, 3, 5000));
  CHECK_ERR(a.err, a.error, YHC_ERR_OK);
  YT_EQ_INT(a.streamed, 1048576);
  YT_CHECK(a.pieces > 1 && !a.stream_bad);
  YT_EQ_INT(a.body.len, 0);
  CHECK_ERR(b.err, b.error, YHC_ERR_OK);
  YT_EQ_INT(b.streamed, 50000);
  YT_CHECK(b.pieces > 1 && !b.stream_bad);
  YT_EQ_INT(b.trailer_count, 2);
  CHECK_ERR(c.err, c.error, YHC_ERR_OK);
  YT_EQ_INT(c.streamed, 12);
  YT_CHECK(c.pieces > 1);
  YT_CHECKF(yt_mem_peak - base < 256 * 1024, "peak %zu bytes", yt_mem_peak - base);
  rq_free(&a);
  rq_free(&b);
  rq_free(&c);

  /* a flood of 100 Continue interim responses ends, memory bounded */
  base = mem_mark();
  req_init(&q, "GET", H("/interim-flood"));
  q.timeout_ms = 2000;
  {
    yhc_response *r = yhc_http_fetch(h, &q);
    YT_CHECK(r != NULL);
    if (r) {
      YT_CHECKF(r->err != YHC_ERR_OK, "a flood of 100 Continue yielded a response");
      yhc_response_free(r);
    }
  }
  YT_CHECKF(yt_mem_peak - base < 512 * 1024, "peak %zu bytes", yt_mem_peak - base);
  yhc_http_destroy(h);
}

/* RFC 9112 framing that smuggling and desync attacks rely on, and the limits that bound what
   a server can make the client hold (tests/servers/hostile.py). */
static void test_strict_framing(void) {
  static const char *const bad[] = {"/empty-length?kind=empty", "/empty-length?kind=comma",
                                    "/te-and-cl", "/cl-and-te"};
  static const size_t counts[] = {3, 32, 33};
  yhc_http_desc d;
  yhc_http *h = http_new(NULL);
  yhc_response *r;
  size_t i;
  YT_GROUP("strict framing (RFC 9112) and limits");
  for (i = 0; i < sizeof bad / sizeof *bad; i++) {
    r = fetch(h, "GET", H(bad[i]));
    YT_CHECKF(r && r->err == YHC_ERR_PROTOCOL, "%s: %s", bad[i], r ? r->error : "NULL");
    yhc_response_free(r);
  }
  /* chunked from an HTTP/1.0 server: read whole, then the connection is not used again (the
     server would close it under the next request, which a POST cannot survive) */
  r = fetch(h, "GET", H("/http10-chunked"));
  YT_CHECKF(r && r->err == YHC_ERR_OK && str_is(r->body, "hello"), "%s", r ? r->error : "NULL");
  yhc_response_free(r);
  r = fetch_body(h, "POST", H("/http10"), "p", 1);
  YT_CHECKF(r && r->err == YHC_ERR_OK && str_is(r->body, "old style"), "POST after: %s",
            r ? r->error : "NULL");
  yhc_response_free(r);
  /* obsolete line folding becomes SP */
  r = fetch(h, "GET", H("/obs-fold"));
  YT_CHECKF(r && r->err == YHC_ERR_OK && hdr_is(r, "X-Folded", "a b") && str_is(r->body, "ok"),
            "%s", r ? r->error : "NULL");
  yhc_response_free(r);
  /* at most 16 interim responses by default */
  r = fetch(h, "GET", H("/interim?n=16"));
  YT_CHECKF(r && r->err == YHC_ERR_OK && str_is(r->body, "final"), "%s", r ? r->error : "NULL");
  yhc_response_free(r);
  r = fetch(h, "GET", H("/interim?n=17"));
  YT_CHECKF(r && r->err == YHC_ERR_LIMIT, "%s", r ? r->error : "NULL");
  yhc_response_free(r);
  yhc_http_destroy(h);
  desc_init(&d);
  d.limits.max_interim = 2;
  h = http_new(&d);
  r = fetch(h, "GET", H("/interim?n=2"));
  YT_CHECKF(r && r->err == YHC_ERR_OK, "%s", r ? r->error : "NULL");
  yhc_response_free(r);
  r = fetch(h, "GET", H("/interim?n=3"));
  YT_CHECKF(r && r->err == YHC_ERR_LIMIT, "%s", r ? r->error : "NULL");
  yhc_response_free(r);
  yhc_http_destroy(h);
  /* a chunk that cannot fit in the body limit fails when announced, not at a timeout */
  desc_init(&d);
  d.limits.max_body_bytes = 1 << 20;
  h = http_new(&d);
  r = fetch(h, "GET", H("/huge-chunk"));
  YT_CHECKF(r && r->err == YHC_ERR_LIMIT, "%s", r ? r->error : "NULL");
  yhc_response_free(r);
  yhc_http_destroy(h);
  /* max_header_count is exact, below and above the first allocation of 32 views */
  for (i = 0; i < sizeof counts / sizeof *counts; i++) {
    char path[64];
    desc_init(&d);
    d.limits.max_header_count = counts[i];
    h = http_new(&d);
    snprintf(path, sizeof path, "/headers?n=%zu", counts[i]);
    r = fetch(h, "GET", H(path));
    YT_CHECKF(r && r->err == YHC_ERR_OK && r->header_count == counts[i], "%zu headers: %s",
              counts[i], r ? r->error : "NULL");
    yhc_response_free(r);
    snprintf(path, sizeof path, "/headers?n=%zu", counts[i] + 1);
    r = fetch(h, "GET", H(path));
    YT_CHECKF(r && r->err == YHC_ERR_LIMIT, "%zu + 1 headers: %s", counts[i], r ? r->error : "NULL");
    yhc_response_free(r);
    yhc_http_destroy(h);
  }
  /* user_agent is checked like any header value: no header injection */
  desc_init(&d);
  d.user_agent = "yhc\r\nX-Injected: 1";
  h = http_new(&d);
  r = fetch(h, "GET", O("/echo"));
  YT_CHECKF(r && r->err == YHC_ERR_INVALID, "%s", r ? r->error : "NULL");
  yhc_response_free(r);
  yhc_http_destroy(h);
}

/* max_idle_per_host: connections beyond it close when their request is done. */
static void test_max_idle(void) {
  yhc_loop *loop = yhc_loop_create(NULL);
  yhc_http_desc d;
  yhc_http *h;
  rq rs[4];
  int done = 0, k, timeout, base;
  long long end;
  YT_GROUP("max_idle_per_host");
  desc_init(&d);
  d.max_conns_per_host = 4;
  d.max_idle_per_host = 1;
  h = yhc_http_create(loop, &d);
  base = yhc_loop_fds(loop, NULL, 0, &timeout); /* the loop's own (its wakeup fd) */
  for (k = 0; k < 4; k++) {
    rq_init(&rs[k]);
    rs[k].done_counter = &done;
    submit(h, &rs[k], "GET", O("/slow?ms=200"));
  }
  end = yt_now_ms() + 5000;
  while (done < 4 && yt_now_ms() < end) yhc_loop_poll(loop, 20);
  YT_EQ_INT(done, 4);
  for (k = 0; k < 4; k++) CHECK_ERR(rs[k].err, rs[k].error, YHC_ERR_OK);
  YT_EQ_INT(yhc_loop_fds(loop, NULL, 0, &timeout), base + 1); /* one idle socket kept */
  for (k = 0; k < 4; k++) rq_free(&rs[k]);
  yhc_http_destroy(h);
  yhc_loop_destroy(loop);
}

static void test_peer_errors(void) {
  yhc_http *h = http_new(NULL);
  yhc_response *r;
  size_t i;
  YT_GROUP("peer closes or sends garbage");
  {
    static const char *const closing[] = {"/close-mid-body", "/close-mid-body?mode=chunked",
                                          "/close-mid-headers", "/close-immediately", "/reset"};
    for (i = 0; i < sizeof closing / sizeof closing[0]; i++) {
      r = fetch(h, "GET", H(closing[i]));
      YT_CHECK(r != NULL);
      if (!r) continue;
      YT_CHECKF(r->err == YHC_ERR_CLOSED || (r->err == YHC_ERR_PROTOCOL && i == 2), "%s: %s: %s",
                closing[i], yhc_strerror(r->err), r->error);
      YT_CHECKF(r->error && strlen(r->error) > 10, "%s: unclear message \"%s\"", closing[i],
                r->error ? r->error : "");
      yhc_response_free(r);
    }
  }
  {
    static const char *const protocol[] = {
        "/bad-status-line?kind=garbage", "/bad-status-line?kind=code",
        "/bad-status-line?kind=version", "/bad-status-line?kind=empty",
        "/bad-status-line?kind=short",   "/bad-chunk?kind=zz",
        "/bad-chunk?kind=neg",           "/bad-chunk?kind=nocrlf",
        "/conflicting-length",           "/bad-length?kind=neg",
        "/bad-length?kind=alpha",        "/bad-length?kind=list",
        "/bad-header?kind=nocolon",      "/bad-header?kind=nul",
        "/bad-header?kind=space-name"};
    for (i = 0; i < sizeof protocol / sizeof protocol[0]; i++) {
      r = fetch(h, "GET", H(protocol[i]));
      YT_CHECK(r != NULL);
      if (!r) continue;
      YT_CHECKF(r->err == YHC_ERR_PROTOCOL, "%s: %s: %s", protocol[i], yhc_strerror(r->err),
                r->error);
      YT_CHECK(r->error && r->error[0]);
      yhc_response_free(r);
      /* that connection must not be reused: the server holds it and would close it on the
         next request, which a POST cannot survive */
      r = fetch_body(h, "POST", H("/http10"), "p", 1);
      YT_CHECKF(r && r->err == YHC_ERR_OK && str_is(r->body, "old style"),
                "POST after %s: %s", protocol[i], r ? r->error : "NULL");
      if (r) yhc_response_free(r);
    }
  }
  r = fetch(h, "GET", H("/bad-length?kind=huge"));
  YT_CHECK(r && (r->err == YHC_ERR_PROTOCOL || r->err == YHC_ERR_LIMIT));
  if (r) yhc_response_free(r);
  /* Transfer-Encoding wins over Content-Length (or the message is refused); never framed by
     the Content-Length (which would wait for 100 bytes, then see the close) */
  r = fetch(h, "GET", H("/te-and-cl"));
  YT_CHECK(r != NULL);
  if (r) {
    YT_CHECKF((r->err == YHC_ERR_OK && str_is(r->body, "hello")) || r->err == YHC_ERR_PROTOCOL,
              "%s: %s", yhc_strerror(r->err), r->error);
    yhc_response_free(r);
  }
  /* bare LF line endings: RFC 9112 allows accepting them; refusing is also fine */
  r = fetch(h, "GET", H("/lf-only"));
  YT_CHECK(r != NULL);
  if (r) {
    if (r->err == YHC_ERR_OK) {
      YT_CHECK(r->status == 200 && str_is(r->body, "hello") && hdr_is(r, "X-Lf", "yes"));
      fprintf(stderr, "   (bare-LF response accepted)\n");
    } else {
      CHECK_ERR(r->err, r->error, YHC_ERR_PROTOCOL);
      fprintf(stderr, "   (bare-LF response refused: %s)\n", r->error);
    }
    yhc_response_free(r);
  }
  /* obsolete line folding: replaced by a space, or refused */
  r = fetch(h, "GET", H("/obs-fold"));
  YT_CHECK(r != NULL);
  if (r) {
    YT_CHECKF((r->err == YHC_ERR_OK && hdr_is(r, "X-Folded", "a b")) ||
                  r->err == YHC_ERR_PROTOCOL,
              "%s: %s", yhc_strerror(r->err), r->error);
    yhc_response_free(r);
  }
  /* control characters in a value: refused, or passed on intact */
  r = fetch(h, "GET", H("/bad-header?kind=ctl"));
  YT_CHECK(r != NULL);
  if (r) {
    YT_CHECKF((r->err == YHC_ERR_OK && hdr_is(r, "X-Ctl", "a\x01\x7f" "b")) ||
                  r->err == YHC_ERR_PROTOCOL,
              "%s: %s", yhc_strerror(r->err), r->error);
    yhc_response_free(r);
  }
  /* after all that, the client still works */
  r = fetch(h, "GET", O("/hello"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200);
  if (r) yhc_response_free(r);
  yhc_http_destroy(h);
}

static void test_timeouts(void) {
  yhc_http_desc d;
  yhc_http *h;
  rq rs[6];
  int done = 0, i;
  yhc_request q;
  YT_GROUP("timeouts");
  desc_init(&d);
  d.idle_timeout_ms = 300;
  h = http_new(&d);
  {
    static const char *const silent[] = {"/silence", "/silence-mid-body", "/silence-mid-headers"};
    for (i = 0; i < 3; i++) {
      rq_init(&rs[i]);
      rs[i].done_counter = &done;
      submit(h, &rs[i], "GET", H(silent[i]));
    }
    rq_init(&rs[3]);
    rs[3].done_counter = &done;
    submit(h, &rs[3], "GET", O("/slow?ms=1500"));
    YT_CHECK(turn_until(&done, 4, 3000));
    for (i = 0; i < 4; i++) {
      long long el = rs[i].t_end - rs[i].t_start;
      YT_CHECKF(rs[i].err == YHC_ERR_TIMEOUT, "request %d: %s: %s", i, yhc_strerror(rs[i].err),
                rs[i].error);
      YT_CHECKF(el >= 250 && el < 1500, "request %d timed out after %lld ms (idle 300)", i, el);
      YT_CHECK(rs[i].error[0] != 0);
    }
  }
  yhc_http_destroy(h);
  for (i = 0; i < 4; i++) rq_free(&rs[i]);

  /* the per-request timeout; and queueing counts */
  desc_init(&d);
  d.max_conns_per_host = 1;
  h = http_new(&d);
  done = 0;
  rq_init(&rs[0]);
  rs[0].done_counter = &done;
  req_init(&q, "GET", H("/silence"));
  q.timeout_ms = 500;
  submit_req(h, &rs[0], &q);
  rq_init(&rs[1]);
  rs[1].done_counter = &done;
  req_init(&q, "GET", H("/hello-never-sent"));
  q.timeout_ms = 200; /* still queued behind the silent one when this runs out */
  submit_req(h, &rs[1], &q);
  YT_CHECK(turn_until(&done, 2, 3000));
  CHECK_ERR(rs[0].err, rs[0].error, YHC_ERR_TIMEOUT);
  CHECK_ERR(rs[1].err, rs[1].error, YHC_ERR_TIMEOUT);
  {
    long long e0 = rs[0].t_end - rs[0].t_start, e1 = rs[1].t_end - rs[1].t_start;
    YT_CHECKF(e0 >= 450 && e0 < 1500, "500 ms request timeout took %lld ms", e0);
    YT_CHECKF(e1 >= 150 && e1 < 480, "200 ms request timeout (queued) took %lld ms", e1);
  }
  rq_free(&rs[0]);
  rq_free(&rs[1]);
  yhc_http_destroy(h);

  /* request_timeout_ms from the client's desc */
  desc_init(&d);
  d.request_timeout_ms = 300;
  h = http_new(&d);
  {
    long long t0 = yt_now_ms();
    yhc_response *r = fetch(h, "GET", H("/silence"));
    long long el = yt_now_ms() - t0;
    YT_CHECK(r && r->err == YHC_ERR_TIMEOUT);
    YT_CHECKF(el >= 250 && el < 1500, "took %lld ms", el);
    if (r) yhc_response_free(r);
  }
  yhc_http_destroy(h);
}

static void test_connect_errors(void) {
  yhc_http_desc d;
  yhc_http *h;
  yhc_response *r;
  int fd, port, one = 1;
  struct sockaddr_in sa;
  socklen_t sl = sizeof sa;
  long long t0;
  YT_GROUP("connect and DNS errors");
  /* a port nobody listens on: bind, learn the port, close */
  fd = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, (struct sockaddr *)&sa, sizeof sa);
  getsockname(fd, (struct sockaddr *)&sa, &sl);
  port = ntohs(sa.sin_port);
  close(fd);
  h = http_new(NULL);
  r = fetch(h, "GET", url_at("127.0.0.1", port, "/"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_CONNECT);
    YT_CHECK(r->error && r->error[0]);
    yhc_response_free(r);
  }
  t0 = yt_now_ms();
  r = fetch(h, "GET", "http://nonexistent.invalid/");
  if (yt_now_ms() - t0 > 2000)
    fprintf(stderr, "   (resolving nonexistent.invalid took %lld ms)\n", yt_now_ms() - t0);
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_DNS);
    YT_CHECKF(ci_contains(r->error, "nonexistent.invalid"), "%s", r->error);
    yhc_response_free(r);
  }
  yhc_http_destroy(h);
  /* an address that never answers: connect timeout (or unreachable, without a network) */
  desc_init(&d);
  d.connect_timeout_ms = 300;
  h = http_new(&d);
  t0 = yt_now_ms();
  r = fetch(h, "GET", "http://192.0.2.1:81/");
  YT_CHECK(r != NULL);
  if (r) {
    YT_CHECKF(r->err == YHC_ERR_CONNECT || r->err == YHC_ERR_TIMEOUT, "%s: %s",
              yhc_strerror(r->err), r->error);
    yhc_response_free(r);
  }
  YT_CHECKF(yt_now_ms() - t0 < 1500, "took %lld ms", yt_now_ms() - t0);
  yhc_http_destroy(h);
}

static void test_ipv6(void) {
  yhc_http *h;
  yhc_response *r;
  char want[64], val[64];
  YT_GROUP("IPv6");
  if (!have_v6) {
    fprintf(stderr, "   IPv6 loopback not available: IPv6 tests skipped\n");
    return;
  }
  h = http_new(NULL);
  r = fetch(h, "GET", url_at("[::1]", origin6.port, "/echo?v6=1"));
  YT_CHECK(r != NULL);
  if (r) {
    CHECK_ERR(r->err, r->error, YHC_ERR_OK);
    YT_EQ_INT(r->status, 200);
    snprintf(want, sizeof want, "[::1]:%d", origin6.port);
    YT_EQ_INT(echo_header_count(r, "Host", val, sizeof val), 1);
    YT_EQ_STR(val, want);
    YT_CHECK(hdr_is(r, "X-Echo-Target", "/echo?v6=1"));
    yhc_response_free(r);
  }
  yhc_http_destroy(h);
}

static void test_cancel(void) {
  yhc_http_desc d;
  yhc_http *h = http_new(NULL);
  rq a, b, c;
  int done = 0;
  yhc_response *r;
  YT_GROUP("cancellation");
  /* in flight */
  rq_init(&a);
  a.done_counter = &done;
  submit(h, &a, "GET", O("/slow?ms=400"));
  turn_for(50);
  YT_EQ_INT(a.calls, 0);
  YT_EQ_INT(yhc_http_cancel(h, a.id), 0);
  YT_EQ_INT(a.calls, 0); /* the callback runs from the loop, never inside yhc_http_cancel */
  YT_EQ_INT(yhc_http_cancel(h, a.id), -1);
  turn_for(20);
  YT_EQ_INT(a.calls, 1);
  CHECK_ERR(a.err, a.error, YHC_ERR_CANCELLED);
  /* before the loop ever turned */
  rq_init(&b);
  b.done_counter = &done;
  submit(h, &b, "GET", O("/hello"));
  YT_EQ_INT(yhc_http_cancel(h, b.id), 0);
  YT_EQ_INT(b.calls, 0);
  YT_EQ_INT(yhc_http_cancel(h, 987654321u), -1);
  turn_for(20);
  YT_EQ_INT(b.calls, 1);
  CHECK_ERR(b.err, b.error, YHC_ERR_CANCELLED);
  turn_for(600);
  YT_EQ_INT(a.calls, 1);
  YT_EQ_INT(b.calls, 1);
  /* finished requests cannot be cancelled, not even from their own callback */
  rq_init(&c);
  c.done_counter = &done;
  c.try_cancel_self = 1;
  c.chain_http = h;
  done = 0;
  submit(h, &c, "GET", O("/hello"));
  YT_CHECK(turn_until(&done, 1, 5000));
  CHECK_ERR(c.err, c.error, YHC_ERR_OK);
  YT_EQ_INT(c.cancel_self_rc, -1);
  YT_EQ_INT(yhc_http_cancel(h, c.id), -1);
  YT_EQ_INT(c.calls, 1);
  /* the client still works after cancellations */
  r = fetch(h, "GET", O("/hello"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200);
  if (r) yhc_response_free(r);
  rq_free(&a);
  rq_free(&b);
  rq_free(&c);
  yhc_http_destroy(h);

  /* queued behind a busy connection */
  desc_init(&d);
  d.max_conns_per_host = 1;
  h = http_new(&d);
  rq_init(&a);
  rq_init(&b);
  done = 0;
  a.done_counter = &done;
  b.done_counter = &done;
  submit(h, &a, "GET", O("/slow?ms=200"));
  submit(h, &b, "GET", O("/hello"));
  turn_for(30);
  YT_EQ_INT(yhc_http_cancel(h, b.id), 0);
  YT_EQ_INT(b.calls, 0);
  YT_CHECK(turn_until(&done, 2, 5000));
  CHECK_ERR(b.err, b.error, YHC_ERR_CANCELLED);
  CHECK_ERR(a.err, a.error, YHC_ERR_OK);
  turn_for(30);
  YT_CHECK(a.calls == 1 && b.calls == 1);
  rq_free(&a);
  rq_free(&b);
  yhc_http_destroy(h);
}

static void test_destroy_in_flight(void) {
  enum { NR = 7 };
  yhc_http_desc d;
  yhc_http *h;
  rq rs[NR];
  int i;
  size_t before;
  YT_GROUP("destroy with requests in flight");
  before = yt_mem_cur;
  desc_init(&d);
  d.max_conns_per_host = 2;
  h = http_new(&d);
  for (i = 0; i < NR; i++) rq_init(&rs[i]);
  submit(h, &rs[0], "GET", O("/slow?ms=2000"));
  submit(h, &rs[1], "GET", O("/slow?ms=2000"));
  submit(h, &rs[2], "GET", O("/slow?ms=2000")); /* queued */
  submit(h, &rs[3], "GET", H("/silence"));
  submit(h, &rs[4], "GET", H("/silence-mid-body"));
  submit(h, &rs[5], "GET", H("/endless-body"));
  turn_for(100);
  submit(h, &rs[6], "GET", O("/hello")); /* submitted, loop never turned for it */
  for (i = 0; i < NR; i++) YT_EQ_INT(rs[i].calls, 0);
  yhc_http_destroy(h);
  for (i = 0; i < NR; i++) {
    YT_CHECKF(rs[i].calls == 1, "request %d: %d callbacks", i, rs[i].calls);
    CHECK_ERR(rs[i].err, rs[i].error, YHC_ERR_CANCELLED);
  }
  turn_for(50);
  for (i = 0; i < NR; i++) {
    YT_EQ_INT(rs[i].calls, 1);
    rq_free(&rs[i]);
  }
  YT_CHECKF(yt_mem_cur == before, "%zu bytes still allocated after destroy",
            yt_mem_cur - before);
}

static void test_chaining(void) {
  yhc_http *h = http_new(NULL);
  rq a, b, c;
  int done = 0;
  YT_GROUP("requests submitted from callbacks; yhc_loop_run");
  /* tier 1 with yhc_loop_run: turns until the flag is set */
  rq_init(&a);
  a.done_counter = &done;
  submit(h, &a, "GET", O("/slow?ms=50"));
  YT_EQ_INT(yhc_loop_run(L, &done), 0);
  YT_EQ_INT(done, 1);
  CHECK_ERR(a.err, a.error, YHC_ERR_OK);
  rq_free(&a);
  done = 0;
  {
    /* a loop with nothing to wait for runs dry at once */
    yhc_loop *l2 = yhc_loop_create(NULL);
    int never = 0;
    long long t0 = yt_now_ms();
    YT_CHECK(l2 != NULL);
    if (l2) {
      YT_EQ_INT(yhc_loop_run(l2, &never), -1);
      YT_CHECK(yt_now_ms() - t0 < 1000);
      yhc_loop_destroy(l2);
    }
  }
  rq_init(&a);
  rq_init(&b);
  rq_init(&c);
  a.done_counter = b.done_counter = c.done_counter = &done;
  a.chain_http = b.chain_http = h;
  a.chain = &b;
  a.chain_url = O("/conn-id");
  b.chain = &c;
  b.chain_url = O("/bytes/10");
  submit(h, &a, "GET", O("/conn-id"));
  YT_CHECK(turn_until(&done, 3, 5000));
  YT_CHECK(a.err == YHC_ERR_OK && b.err == YHC_ERR_OK && c.err == YHC_ERR_OK);
  YT_CHECKF(a.conn_id == b.conn_id, "chained request used connection %d, not %d", b.conn_id,
            a.conn_id);
  YT_CHECK(c.body.len == 10 && is_pattern(c.body.ptr, 10, 0));
  YT_CHECK(a.calls == 1 && b.calls == 1 && c.calls == 1);
  rq_free(&a);
  rq_free(&b);
  rq_free(&c);

  /* a blocking fetch completes while callback requests are in flight; one request's callback
     cancels another (whose callback then runs from the loop, not nested, exactly once) */
  rq_init(&a);
  rq_init(&b);
  done = 0;
  a.done_counter = b.done_counter = &done;
  a.chain_http = h;
  a.cancel_other = &b;
  /* a must still be under way when the fetch ends: on a loaded machine the fetch of /hello
     took more than 150 ms and a's callback rightly ran from the fetch's loop */
  submit(h, &a, "GET", O("/slow?ms=1000"));
  submit(h, &b, "GET", O("/slow?ms=5000"));
  {
    yhc_response *r = fetch(h, "GET", O("/hello"));
    YT_CHECK(r && r->err == YHC_ERR_OK);
    if (r) yhc_response_free(r);
  }
  YT_EQ_INT(done, 0);
  YT_CHECK(turn_until(&done, 2, 5000));
  CHECK_ERR(a.err, a.error, YHC_ERR_OK);
  YT_EQ_INT(a.cancel_other_rc, 0);
  YT_EQ_INT(a.other_calls_after, 0);
  CHECK_ERR(b.err, b.error, YHC_ERR_CANCELLED);
  turn_for(30);
  YT_CHECK(a.calls == 1 && b.calls == 1);
  rq_free(&a);
  rq_free(&b);
  yhc_http_destroy(h);
}

/* ================================================================= the callback rule
   yhc.h: a user callback runs only from the top of the loop's dispatch (or from inside
   yhc_http_destroy), and from inside any callback every public call is allowed. Every
   trigger below is paired with every action; each pair runs on a fresh loop (so the tier-1
   pollfd array is as small as it can be and a nested poll must grow it) and must end with
   every request answered exactly once, the right errors, nothing leaked and, under ASan,
   nothing touched after it was freed. */
enum {
  T_DONE_OK, T_DONE_CANNOT_START, T_DONE_INVALID, T_DONE_TIMEOUT, T_HEAD, T_BODY_LENGTH,
  T_BODY_CHUNKED, T_BODY_CLOSE, T_TIMER, T_IN_DESTROY, T__COUNT
};
enum { A_NONE, A_CANCEL_SELF, A_CANCEL_OTHER, A_DESTROY, A_SUBMIT, A_FETCH, A__COUNT };
static const char *const trigger_name[T__COUNT] = {
    "completion", "completion (connection cannot start)", "completion (invalid request)",
    "completion (deadline)", "on_head", "on_body (Content-Length)", "on_body (chunked)",
    "on_body (close-delimited)", "timer", "completion run by yhc_http_destroy"};
static const char *const action_name[A__COUNT] = {
    "nothing", "cancel itself", "cancel another request", "destroy the client",
    "submit a request", "nested blocking fetch"};

typedef struct cbx {
  yhc_loop *loop;
  yhc_http *h;
  int trigger, action;
  int acted, destroyed, in_destroy;
  int in_call;      /* inside a public call (not fetch/destroy) made from a callback */
  int in_submit;    /* inside the test's own yhc_http_request */
  int bad_nesting, cb_in_submit, depth, max_depth;
  uint64_t victim_id, other_id, extra_id;
  int victim_calls, other_calls, extra_calls;
  yhc_err victim_err, other_err, extra_err;
  int cancel_rc, fetch_ran, fetch_ok, fetch_null;
  int retries_left; /* T_DONE_CANNOT_START: resubmit from the callback this many times */
} cbx;

static void cbx_enter(cbx *x) {
  if (x->in_call) x->bad_nesting++;
  if (x->in_submit) x->cb_in_submit++;
  if (++x->depth > x->max_depth) x->max_depth = x->depth;
}

static void cbx_extra_done(const yhc_response *resp, void *user) {
  cbx *x = (cbx *)user;
  cbx_enter(x);
  x->extra_calls++;
  x->extra_err = resp->err;
  x->depth--;
}

static void cbx_act(cbx *x) {
  yhc_request q;
  if (x->acted) return;
  x->acted = 1;
  switch (x->action) {
  case A_CANCEL_SELF:
  case A_CANCEL_OTHER:
    x->in_call++;
    x->cancel_rc = yhc_http_cancel(x->h, x->action == A_CANCEL_SELF ? x->victim_id : x->other_id);
    x->in_call--;
    break;
  case A_DESTROY:
    x->destroyed = 1;
    x->in_destroy++;
    yhc_http_destroy(x->h);
    x->in_destroy--;
    break;
  case A_SUBMIT:
    req_init(&q, "GET", O("/hello"));
    x->in_call++;
    x->extra_id = yhc_http_request(x->h, &q, cbx_extra_done, x);
    x->in_call--;
    break;
  case A_FETCH: {
    yhc_response *r;
    req_init(&q, "GET", O("/hello"));
    r = yhc_http_fetch(x->h, &q);
    x->fetch_ran = 1;
    x->fetch_null = r == NULL;
    x->fetch_ok = r && r->err == YHC_ERR_OK && r->status == 200;
    yhc_response_free(r);
    break;
  }
  default:
    break;
  }
}

static void cbx_victim_done(const yhc_response *resp, void *user);

static uint64_t cbx_submit_victim(cbx *x, const char *url) {
  yhc_request q;
  uint64_t id;
  req_init(&q, "GET", url);
  if (x->trigger == T_DONE_TIMEOUT) q.timeout_ms = 30;
  x->in_submit++;
  id = yhc_http_request(x->h, &q, cbx_victim_done, x);
  x->in_submit--;
  return id;
}

static void cbx_victim_done(const yhc_response *resp, void *user) {
  cbx *x = (cbx *)user;
  cbx_enter(x);
  x->victim_calls++;
  x->victim_err = resp->err;
  if (x->retries_left > 0) {
    x->retries_left--;
    x->victim_calls--;
    x->in_call++;
    x->victim_id = cbx_submit_victim(x, O("/hello"));
    x->in_call--;
  } else if (x->trigger <= T_DONE_TIMEOUT || x->trigger == T_IN_DESTROY) {
    cbx_act(x);
  }
  x->depth--;
}

static int cbx_on_head(void *user, const yhc_response *head) {
  cbx *x = (cbx *)user;
  (void)head;
  cbx_enter(x);
  if (x->trigger == T_HEAD) cbx_act(x);
  x->depth--;
  return 0;
}

static int cbx_on_body(void *user, const void *data, size_t len) {
  cbx *x = (cbx *)user;
  (void)data;
  (void)len;
  cbx_enter(x);
  cbx_act(x);
  x->depth--;
  return 0;
}

static void cbx_timer(void *user) {
  cbx *x = (cbx *)user;
  cbx_enter(x);
  cbx_act(x);
  x->depth--;
}

static void cbx_other_done(const yhc_response *resp, void *user) {
  cbx *x = (cbx *)user;
  cbx_enter(x);
  x->other_calls++;
  x->other_err = resp->err;
  x->depth--;
}

/* The lowest free descriptor becomes the limit, so the next socket() fails with EMFILE.
   -1 when that cannot be arranged here (valgrind keeps the limit to itself). */
static int cbx_block_fds(struct rlimit *saved) {
  struct rlimit lim;
  int fd = dup(0);
  if (fd < 0 || getrlimit(RLIMIT_NOFILE, saved) != 0) return -1;
  close(fd);
  lim = *saved;
  lim.rlim_cur = (rlim_t)fd;
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0) return -1;
  fd = dup(0);
  if (fd >= 0) {
    close(fd);
    setrlimit(RLIMIT_NOFILE, saved);
    fprintf(stderr, "   (RLIMIT_NOFILE is not enforced here: \"cannot start\" runs as a plain completion)\n");
    return -1;
  }
  return 0;
}

/* The silent requests (the other one, the timer's victim) end only when cancelled, so the
   first wait is for the rest and the second, after the cancels, for everything. */
static int cbx_finished(const cbx *x, int all) {
  int silent_victim = x->trigger == T_TIMER || x->trigger == T_IN_DESTROY;
  return (!x->victim_id || x->victim_calls || (silent_victim && !all)) &&
         (x->other_calls || !all) && (!x->extra_id || x->extra_calls) && x->acted;
}

static void cbx_turn(cbx *x, int all) {
  long long end = yt_now_ms() + 5000;
  while (!cbx_finished(x, all) && yt_now_ms() < end) yhc_loop_poll(x->loop, 20);
}

static void cbx_run(int trigger, int action) {
  cbx x;
  yhc_http_desc d;
  yhc_request q;
  struct rlimit saved;
  size_t before = yt_mem_cur;
  const char *url = O("/hello");
  memset(&x, 0, sizeof x);
  x.trigger = trigger;
  x.action = action;
  x.cancel_rc = 99;
  x.loop = yhc_loop_create(NULL);
  desc_init(&d);
  x.h = yhc_http_create(x.loop, &d);
  if (!x.loop || !x.h) {
    YT_CHECK(0);
    return;
  }
  switch (trigger) {
  case T_DONE_INVALID: url = "nope://x/"; break;
  case T_DONE_TIMEOUT: case T_TIMER: case T_IN_DESTROY: url = H("/silence"); break;
  case T_HEAD: url = O("/bytes/20000"); break;
  case T_BODY_LENGTH: url = O("/bytes/300000"); break;
  case T_BODY_CHUNKED: url = O("/chunked?n=6&size=3000"); break;
  case T_BODY_CLOSE: url = O("/close?size=300000"); break;
  default: break;
  }
  req_init(&q, "GET", url);
  if (trigger == T_DONE_TIMEOUT) q.timeout_ms = 30;
  if (trigger == T_HEAD) q.on_head = cbx_on_head;
  if (trigger >= T_BODY_LENGTH && trigger <= T_BODY_CLOSE) q.on_body = cbx_on_body;
  if (trigger == T_DONE_CANNOT_START && cbx_block_fds(&saved) != 0) trigger = x.trigger = T_DONE_OK;
  x.in_submit++;
  x.victim_id = yhc_http_request(x.h, &q, cbx_victim_done, &x);
  x.in_submit--;
  if (trigger == T_DONE_CANNOT_START) setrlimit(RLIMIT_NOFILE, &saved);
  /* another request in flight, on a socket that comes after the victim's in the pollfds */
  req_init(&q, "GET", H("/silence"));
  x.other_id = yhc_http_request(x.h, &q, cbx_other_done, &x);
  if (trigger == T_TIMER) yhc_timer_add(x.loop, 30, cbx_timer, &x);
  if (trigger == T_IN_DESTROY) {
    long long end = yt_now_ms() + 60;
    while (yt_now_ms() < end) yhc_loop_poll(x.loop, 10);
    x.in_destroy++;
    x.destroyed = 1;
    yhc_http_destroy(x.h);
    x.in_destroy--;
  }
  cbx_turn(&x, 0);
  /* what is still waiting (the silent requests) is cancelled from the top level */
  if (!x.destroyed && !x.other_calls) yhc_http_cancel(x.h, x.other_id);
  if (!x.destroyed && x.victim_id && !x.victim_calls) yhc_http_cancel(x.h, x.victim_id);
  cbx_turn(&x, 1);
  if (!x.destroyed) yhc_http_destroy(x.h);
  yhc_loop_destroy(x.loop);

  YT_CHECKF(x.victim_id != 0 && x.victim_calls == 1 && x.other_calls == 1,
            "%s / %s: victim %d, other %d callbacks", trigger_name[trigger], action_name[action],
            x.victim_calls, x.other_calls);
  YT_CHECKF(!x.extra_id || x.extra_calls == 1, "%s / %s: the new request got %d callbacks",
            trigger_name[trigger], action_name[action], x.extra_calls);
  YT_CHECKF(x.acted, "%s / %s: the callback never ran", trigger_name[trigger], action_name[action]);
  YT_CHECKF(!x.bad_nesting && !x.cb_in_submit,
            "%s / %s: %d callbacks ran inside a public call, %d inside yhc_http_request",
            trigger_name[trigger], action_name[action], x.bad_nesting, x.cb_in_submit);
  YT_CHECKF(x.max_depth == 1 || action == A_FETCH || action == A_DESTROY ||
                trigger == T_IN_DESTROY,
            "%s / %s: callbacks nested %d deep", trigger_name[trigger], action_name[action],
            x.max_depth);
  YT_CHECKF(yt_mem_cur == before, "%s / %s: %zu bytes leaked", trigger_name[trigger],
            action_name[action], yt_mem_cur - before);
  if (trigger == T_IN_DESTROY) {
    /* the client is going away: new requests are refused, cancels and destroys do nothing */
    if (action == A_SUBMIT) YT_EQ_INT(x.extra_id, 0);
    if (action == A_CANCEL_SELF || action == A_CANCEL_OTHER) YT_EQ_INT(x.cancel_rc, -1);
    if (action == A_FETCH) YT_CHECK(x.fetch_null);
    CHECK_ERR(x.victim_err, "", YHC_ERR_CANCELLED);
    CHECK_ERR(x.other_err, "", YHC_ERR_CANCELLED);
    return;
  }
  CHECK_ERR(x.other_err, action_name[action], YHC_ERR_CANCELLED);
  if (action == A_FETCH) YT_CHECKF(x.fetch_ok, "%s: nested fetch failed", trigger_name[trigger]);
  if (action == A_SUBMIT) CHECK_ERR(x.extra_err, trigger_name[trigger], YHC_ERR_OK);
  if (action == A_CANCEL_OTHER) YT_EQ_INT(x.cancel_rc, 0);
  if (action == A_CANCEL_SELF) {
    int finished = trigger <= T_DONE_TIMEOUT;
    YT_EQ_INT(x.cancel_rc, finished ? -1 : 0);
    if (!finished) CHECK_ERR(x.victim_err, trigger_name[trigger], YHC_ERR_CANCELLED);
  }
  if (action == A_DESTROY && (trigger == T_HEAD || trigger >= T_BODY_LENGTH))
    CHECK_ERR(x.victim_err, trigger_name[trigger], YHC_ERR_CANCELLED);
  if (action == A_NONE || action == A_SUBMIT || action == A_FETCH) {
    yhc_err want = trigger == T_DONE_CANNOT_START ? YHC_ERR_CONNECT
                   : trigger == T_DONE_INVALID    ? YHC_ERR_URL
                   : trigger == T_DONE_TIMEOUT    ? YHC_ERR_TIMEOUT
                   : trigger == T_TIMER           ? YHC_ERR_CANCELLED
                                                  : YHC_ERR_OK;
    CHECK_ERR(x.victim_err, trigger_name[trigger], want);
  }
}

/* YHC_TEST_CALLBACK="t,a" runs one pair (to show a single defect on an old build). */
static void test_callback_rule(void) {
  int t, a, only_t = -1, only_a = -1;
  const char *only = getenv("YHC_TEST_CALLBACK");
  YT_GROUP("every public call from every callback");
  if (only && sscanf(only, "%d,%d", &only_t, &only_a) != 2) only_t = only_a = -1;
  for (t = 0; t < T__COUNT; t++)
    for (a = 0; a < A__COUNT; a++)
      if ((only_t < 0 || t == only_t) && (only_a < 0 || a == only_a)) cbx_run(t, a);
}

/* Retrying from the callback of a request whose connection cannot start used to recurse once
   per retry inside yhc_http_request; now each retry is answered from the loop. */
static void test_retry_cannot_start(void) {
  cbx x;
  struct rlimit saved;
  size_t before = yt_mem_cur;
  yhc_http_desc d;
  long long end;
  YT_GROUP("retrying a connection that cannot start, from its own callback");
  memset(&x, 0, sizeof x);
  x.trigger = T_DONE_CANNOT_START;
  x.loop = yhc_loop_create(NULL);
  desc_init(&d);
  x.h = yhc_http_create(x.loop, &d);
  x.retries_left = 3000;
  x.other_calls = 1; /* no second request here */
  if (cbx_block_fds(&saved) != 0) {
    yhc_http_destroy(x.h);
    yhc_loop_destroy(x.loop);
    return;
  }
  x.victim_id = cbx_submit_victim(&x, O("/hello"));
  end = yt_now_ms() + 20000;
  while ((x.retries_left > 0 || !x.victim_calls) && yt_now_ms() < end) yhc_loop_poll(x.loop, 10);
  setrlimit(RLIMIT_NOFILE, &saved);
  YT_EQ_INT(x.retries_left, 0);
  YT_EQ_INT(x.victim_calls, 1);
  CHECK_ERR(x.victim_err, "", YHC_ERR_CONNECT);
  YT_EQ_INT(x.max_depth, 1);
  YT_EQ_INT(x.cb_in_submit, 0);
  yhc_http_destroy(x.h);
  yhc_loop_destroy(x.loop);
  YT_CHECKF(yt_mem_cur == before, "%zu bytes leaked", yt_mem_cur - before);
}

/* Tier 2: the test's own poll() with one fd of its own next to the library's. */
typedef struct tick {
  int fired;
  int wfd;
} tick;
static void tick_fn(void *user) {
  tick *t = (tick *)user;
  t->fired++;
  if (t->wfd >= 0 && write(t->wfd, "x", 1) != 1) t->fired = -100;
}

static void test_own_poll(void) {
  yhc_http *h = http_new(NULL);
  rq rs[4];
  int done = 0, i, p[2], saw_pipe = 0;
  struct pollfd fds[64];
  tick t1, t2;
  uint64_t id2;
  long long end;
  YT_GROUP("embedded in the caller's poll() loop");
  if (pipe(p) != 0) {
    YT_CHECK(0);
    return;
  }
  t1.fired = t2.fired = 0;
  t1.wfd = p[1];
  t2.wfd = -1;
  YT_CHECK(yhc_timer_add(L, 50, tick_fn, &t1) != 0);
  id2 = yhc_timer_add(L, 60, tick_fn, &t2);
  YT_CHECK(yhc_timer_cancel(L, id2) >= 0);
  YT_EQ_INT(yhc_timer_cancel(L, id2), 0); /* already cancelled: a no-op */
  for (i = 0; i < 4; i++) {
    rq_init(&rs[i]);
    rs[i].done_counter = &done;
  }
  submit(h, &rs[0], "GET", O("/slow?ms=100"));
  submit(h, &rs[1], "GET", O("/chunked?n=10&size=1000"));
  submit(h, &rs[2], "GET", H("/byte-at-a-time"));
  submit(h, &rs[3], "POST", O("/echo"));
  end = yt_now_ms() + 5000;
  while ((done < 4 || !saw_pipe) && yt_now_ms() < end) {
    int timeout = -1, n, k;
    n = yhc_loop_fds(L, fds, 63, &timeout);
    YT_CHECK(n >= 0 && n <= 63);
    if (n < 0 || n > 63) break;
    fds[n].fd = p[0];
    fds[n].events = POLLIN;
    fds[n].revents = 0;
    if (timeout < 0 || timeout > 100) timeout = 100;
    k = poll(fds, (nfds_t)(n + 1), timeout);
    if (k < 0) continue;
    if (fds[n].revents & POLLIN) {
      char c;
      if (read(p[0], &c, 1) == 1) saw_pipe++;
    }
    yhc_loop_dispatch(L, fds, n + 1); /* our own fd is in there too: ignored */
  }
  YT_EQ_INT(done, 4);
  YT_EQ_INT(saw_pipe, 1);
  YT_EQ_INT(t1.fired, 1);
  YT_EQ_INT(t2.fired, 0);
  YT_EQ_INT(yhc_timer_cancel(L, id2 - 1), 0); /* t1, which fired: a no-op */
  for (i = 0; i < 4; i++) {
    CHECK_ERR(rs[i].err, rs[i].error, YHC_ERR_OK);
    YT_EQ_INT(rs[i].calls, 1);
    rq_free(&rs[i]);
  }
  close(p[0]);
  close(p[1]);
  yhc_http_destroy(h);
}

/* Tier 2: results polled for a socket that was closed before yhc_loop_dispatch must not
   reach a new socket that reused its fd in between. */
static void test_own_poll_fd_reuse(void) {
  yhc_http *h = http_new(NULL);
  rq a, b;
  int done = 0, n, i, timeout;
  struct pollfd fds[64];
  YT_GROUP("own poll(): stale results for a reused fd");
  rq_init(&a);
  rq_init(&b);
  a.done_counter = b.done_counter = &done;
  submit(h, &a, "GET", H("/silence"));
  turn_for(100); /* connected, request sent, waiting */
  n = yhc_loop_fds(L, fds, 64, &timeout);
  YT_CHECK(n >= 1 && n <= 64);
  /* a's socket goes (its fd is freed) and b's connect most likely takes the same number */
  YT_EQ_INT(yhc_http_cancel(h, a.id), 0);
  submit(h, &b, "GET", O("/hello"));
  /* what poll() could have said about a's socket: hung up */
  for (i = 0; i < n && i < 64; i++) fds[i].revents = POLLIN | POLLHUP | POLLERR;
  yhc_loop_dispatch(L, fds, n < 64 ? n : 64);
  YT_CHECK(turn_until(&done, 2, 5000));
  CHECK_ERR(a.err, a.error, YHC_ERR_CANCELLED);
  CHECK_ERR(b.err, b.error, YHC_ERR_OK);
  YT_EQ_INT(b.status, 200);
  rq_free(&a);
  rq_free(&b);
  yhc_http_destroy(h);
}

static void never_fn(void *user) { (*(int *)user)++; }

/* A delay of UINT64_MAX means never, not a sum that wraps into the past. */
static void test_timer_saturates(void) {
  int fired = 0, timeout = 0;
  uint64_t id;
  YT_GROUP("timers: a huge delay saturates");
  id = yhc_timer_add(L, UINT64_MAX, never_fn, &fired);
  YT_CHECK(id != 0);
  yhc_timer_add(L, UINT64_MAX - 5, never_fn, &fired);
  turn_for(30);
  YT_EQ_INT(fired, 0);
  yhc_loop_fds(L, NULL, 0, &timeout);
  YT_CHECKF(timeout == -1 || timeout > 1000000, "next timeout %d ms", timeout);
  YT_EQ_INT(yhc_timer_cancel(L, id), 1);
  YT_EQ_INT(yhc_timer_cancel(L, id + 1), 1);
}

static void test_nginx(void) {
  yhc_http *h;
  yhc_response *r;
  int i, first = -1, ok = 0, same = 0;
  YT_GROUP("nginx interop");
  if (!have_nginx) return;
  h = http_new(NULL);
  for (i = 0; i < 100; i++) {
    r = fetch(h, "GET", N("/small.txt"));
    if (!r) continue;
    if (r->err == YHC_ERR_OK && r->status == 200 && str_is(r->body, "Hello from nginx\n")) ok++;
    if (i == 0) first = hdr_int(r, "X-Conn-Id");
    if (hdr_int(r, "X-Conn-Id") == first) same++;
    yhc_response_free(r);
  }
  YT_EQ_INT(ok, 100);
  YT_CHECKF(same == 100 && first > 0, "%d of 100 requests on the first connection", same);
  r = fetch(h, "GET", N("/big.bin"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200);
  if (r) {
    YT_EQ_INT(r->body.len, 1048576);
    YT_CHECK(is_pattern(r->body.ptr, r->body.len, 0));
    YT_CHECK(hdr_int(r, "X-Conn-Id") == first);
    yhc_response_free(r);
  }
  r = fetch(h, "HEAD", N("/big.bin"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200 && r->body.len == 0 &&
           hdr_is(r, "Content-Length", "1048576"));
  if (r) yhc_response_free(r);
  r = fetch(h, "GET", N("/chunked/"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 200);
  if (r) {
    YT_CHECKF(ci_contains(yhc_response_header(r, "Transfer-Encoding").ptr, "chunked"),
              "nginx did not send chunked: the test lost its point");
    YT_EQ_INT(r->body.len, 200 * 15 + 15);
    YT_CHECK(r->body.len >= 15 &&
             memcmp(r->body.ptr + r->body.len - 15, "<p>ssi=yes</p>\n", 15) == 0);
    YT_CHECK(r->body.len >= 15 && memcmp(r->body.ptr, "<p>chunked</p>\n", 15) == 0);
    YT_CHECK(hdr_int(r, "X-Conn-Id") == first);
    yhc_response_free(r);
  }
  r = fetch(h, "GET", N("/missing"));
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 404 && r->body.len > 0);
  if (r) yhc_response_free(r);
  r = fetch_body(h, "POST", N("/small.txt"), "x", 1);
  YT_CHECK(r && r->err == YHC_ERR_OK && r->status == 405);
  if (r) yhc_response_free(r);
  /* concurrent big downloads */
  {
    rq rs[6];
    int done = 0;
    for (i = 0; i < 6; i++) {
      rq_init(&rs[i]);
      rs[i].done_counter = &done;
      submit(h, &rs[i], "GET", N(i % 2 ? "/big.bin" : "/chunked/"));
    }
    YT_CHECK(turn_until(&done, 6, 10000));
    for (i = 0; i < 6; i++) {
      CHECK_ERR(rs[i].err, rs[i].error, YHC_ERR_OK);
      YT_CHECK(rs[i].body.len == (i % 2 ? 1048576u : 200u * 15 + 15));
      rq_free(&rs[i]);
    }
  }
  yhc_http_destroy(h);
}

/* ================================================================= main */
static void log_fn(void *user, yhc_log_level level, const char *msg) {
  (void)user;
  fprintf(stderr, "   log[%d] %s\n", (int)level, msg);
}

int main(void) {
  yhc_loop_desc ld;
  long long t0 = yt_now_ms();
  const char *nginx_argv[3];
  signal(SIGPIPE, SIG_IGN);
  if (yt_proc_start_py(&origin, "tests/servers/origin.py", NULL, 10000) != 0 ||
      yt_proc_start_py(&hostile, "tests/servers/hostile.py", NULL, 10000) != 0) {
    fprintf(stderr, "FAIL cannot start the test servers (run from the repository root)\n");
    YT_CHECK(0);
    yt_proc_stop(&origin);
    yt_proc_stop(&hostile);
    return yt_done();
  }
  have_v6 = yt_proc_start_py(&origin6, "tests/servers/origin.py", "--ipv6", 10000) == 0;
  if (yt_have_exe("nginx")) {
    nginx_argv[0] = "bash";
    nginx_argv[1] = "tests/servers/nginx.sh";
    nginx_argv[2] = NULL;
    have_nginx = yt_proc_start(&nginx, nginx_argv, 15000) == 0;
    YT_CHECKF(have_nginx, "nginx is installed but tests/servers/nginx.sh did not start");
  } else {
    printf("nginx not installed: nginx interop tests skipped\n");
  }

  memset(&ld, 0, sizeof ld);
  if (getenv("YHC_TEST_LOG")) {
    ld.log = log_fn;
    ld.log_level = YHC_LOG_DEBUG;
  }
  L = yhc_loop_create(&ld);
  YT_CHECK(L != NULL);
  if (L && getenv("YHC_TEST_CALLBACK")) {
    test_callback_rule();
    test_retry_cannot_start();
    yhc_loop_destroy(L);
  } else if (L) {
    test_url_parse();
    test_bad_requests();
    test_basic();
    test_on_head();
    test_methods();
    test_request_headers();
    test_bodies();
    test_targets();
    test_response_headers();
    test_keepalive();
    test_conn_cap();
    test_chunked();
    test_close_delimited();
    test_no_body();
    test_stale_retry();
    test_limits();
    test_endless_streaming();
    test_peer_errors();
    test_strict_framing();
    test_max_idle();
    test_timeouts();
    test_connect_errors();
    test_ipv6();
    test_cancel();
    test_destroy_in_flight();
    test_chaining();
    test_callback_rule();
    test_retry_cannot_start();
    test_own_poll();
    test_own_poll_fd_reuse();
    test_timer_saturates();
    test_nginx();
    yhc_loop_destroy(L);
  }
  YT_GROUP("teardown");
  YT_CHECKF(yt_mem_cur == 0, "%zu bytes allocated through YHC_MALLOC never freed", yt_mem_cur);
  yt_proc_stop(&origin);
  yt_proc_stop(&hostile);
  if (have_v6) yt_proc_stop(&origin6);
  if (have_nginx) yt_proc_stop(&nginx);
  fprintf(stderr, "test_http: %lld ms\n", yt_now_ms() - t0);
  return yt_done();
}
