/* WebSocket client (yhc__ws_open) against a real peer: tests/servers/ws_peer.js, Node's `ws`
   server with one scripted behaviour per path. A small owner drives the stream the way the
   HTTP client does over a tunnel -- reads on READ, writes until AGAIN and resumes on WRITE --
   and the checks look at the bytes, the errors and their messages, the timing, and what the
   peer saw (GET /stats on the peer: pongs, client pings, the close code the client answered).
   Needs node and tests/yagna-sim/node_modules (make sim-deps); without them it says so and
   runs only the checks that need no peer. wss:// cases run in the YHC_MBEDTLS build. Run
   from the repository root (tests/run-all.sh does). */
#define YHC_IMPLEMENTATION
#include "yhc.h"
#include "tests/yt.h"
#include "tests/yt_proc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

static int contains(const char *hay, const char *needle) {
  return hay && needle && strstr(hay, needle) != NULL;
}

/* ---- the owner: a stream user as the HTTP layer is one */

typedef struct owner {
  yhc_loop *loop;
  yhc__stream *s;
  int connected, failed, eof;
  int reading;             /* 0 = leave the bytes in the stream (a busy reader) */
  int lazy;                /* one read() per READ event and no want() after it, as the HTTP
                              layer does when it stops after 8 rounds */
  int read_events, write_events;
  long long t_open, t_connect, t_fail;
  yhc_err code;            /* of the failure */
  char msg[YHC_ERROR_MSG_MAX];
  yhc_buf in;              /* everything read */
  const unsigned char *out; /* what to send, and how far it went */
  size_t out_len, out_pos;
  long partial_writes, again_writes;
} owner;

static void owner_failed(owner *o) {
  if (o->failed) return;
  o->failed = 1;
  o->t_fail = yt_now_ms();
  o->code = o->s->err.code;
  snprintf(o->msg, sizeof o->msg, "%s", o->s->err.msg);
}

static void owner_want(owner *o) {
  if (o->s && !o->failed) o->s->vt->want(o->s, o->reading && !o->eof, o->out_pos < o->out_len);
}

/* An odd buffer size, so frames end at every offset within a read. */
static void owner_pull(owner *o) {
  char buf[7001];
  for (;;) {
    long n = o->s->vt->read(o->s, buf, sizeof buf);
    if (n > 0) {
      if (yhc_buf_append(&o->in, buf, (size_t)n)) {
        fprintf(stderr, "out of memory\n");
        exit(2);
      }
      if (o->lazy) break;
      continue;
    }
    if (n == 0) o->eof = 1;
    else if (n == YHC__FAIL) owner_failed(o);
    break;
  }
}

static void owner_push(owner *o) {
  while (o->out_pos < o->out_len && !o->failed) {
    long n = o->s->vt->write(o->s, o->out + o->out_pos, o->out_len - o->out_pos);
    if (n == YHC__AGAIN) {
      o->again_writes++;
      break;
    }
    if (n < 0) {
      owner_failed(o);
      break;
    }
    if ((size_t)n < o->out_len - o->out_pos) o->partial_writes++;
    o->out_pos += (size_t)n;
  }
}

static void owner_event(void *ctx, int ev) {
  owner *o = (owner *)ctx;
  if (ev & YHC__EV_ERROR) {
    owner_failed(o);
    return;
  }
  if (ev & YHC__EV_CONNECT) {
    o->connected = 1;
    o->t_connect = yt_now_ms();
  }
  if (ev & YHC__EV_READ) {
    o->read_events++;
    if (o->reading) owner_pull(o);
  }
  if (ev & YHC__EV_WRITE) o->write_events++;
  if (ev & (YHC__EV_WRITE | YHC__EV_CONNECT)) owner_push(o);
  if (!o->lazy) owner_want(o);
}

static yhc__tls_ctx *tls_ctx;  /* shared by every wss:// stream, as a client shares it */
static yhc__tls_conf tls_conf;

/* Opens `url` (the port is put in with %d). 0, or -1 when yhc__ws_open failed at once (the
   owner then holds that error). */
static int owner_open(owner *o, const char *fmt, int port, const yhc__ws_conf *conf,
                      const yhc_header *h, size_t nh) {
  char url[256];
  yhc_error err;
  memset(o, 0, sizeof *o);
  o->reading = 1;
  o->loop = yhc_loop_create(NULL);
  snprintf(url, sizeof url, fmt, port);
  yhc__error_clear(&err);
  o->t_open = yt_now_ms();
  o->s = yhc__ws_open(o->loop, &tls_ctx, &tls_conf, url, h, nh, conf, &err);
  if (!o->s) {
    o->failed = 1;
    o->code = err.code;
    snprintf(o->msg, sizeof o->msg, "%s", err.msg);
    return -1;
  }
  o->s->owner = o;
  o->s->on_event = owner_event;
  return 0;
}

static void owner_close(owner *o) {
  if (o->s) o->s->vt->close(o->s);
  o->s = NULL;
  yhc_buf_free(&o->in);
  yhc_loop_destroy(o->loop);
  o->loop = NULL;
}

typedef int (*cond_fn)(const owner *o, size_t n);
static int c_ready(const owner *o, size_t n) { return (void)n, o->connected || o->failed; }
static int c_failed(const owner *o, size_t n) { return (void)n, o->failed; }
static int c_eof(const owner *o, size_t n) { return (void)n, o->eof || o->failed; }
static int c_never(const owner *o, size_t n) { return (void)o, (void)n, 0; }
static int c_got(const owner *o, size_t n) { return o->in.len >= n || o->eof || o->failed; }

/* Turns the owner's loop until `c` holds or `ms` pass. Returns whether `c` held. */
static int pump(owner *o, int ms, cond_fn c, size_t n) {
  long long end = yt_now_ms() + ms;
  while (!c(o, n)) {
    long long left = end - yt_now_ms();
    if (left <= 0) return 0;
    yhc_loop_poll(o->loop, left < 20 ? (int)left : 20);
  }
  return 1;
}

/* Opens and waits for the 101; the failure is reported as a failed check. */
static int open_ok(owner *o, const char *fmt, int port, const yhc__ws_conf *conf,
                   const yhc_header *h, size_t nh) {
  if (owner_open(o, fmt, port, conf, h, nh) == 0) pump(o, 5000, c_ready, 0);
  YT_CHECKF(o->connected && !o->failed, "%s: %s", fmt, o->failed ? o->msg : "no CONNECT in 5 s");
  return o->connected && !o->failed;
}

/* Expects the open to fail with `code` and a message holding n1 and n2 (NULL = any). */
static void expect_open_error(const char *fmt, int port, const yhc__ws_conf *conf,
                              const yhc_header *h, size_t nh, yhc_err code, const char *n1,
                              const char *n2, int max_ms) {
  owner o;
  if (owner_open(&o, fmt, port, conf, h, nh) == 0) pump(&o, 5000, c_failed, 0);
  YT_CHECKF(o.failed && o.code == code, "%s: %s (%s), want %s", fmt,
            o.failed ? yhc_strerror(o.code) : "no error", o.msg, yhc_strerror(code));
  if (n1) YT_CHECKF(contains(o.msg, n1), "\"%s\" lacks \"%s\"", o.msg, n1);
  if (n2) YT_CHECKF(contains(o.msg, n2), "\"%s\" lacks \"%s\"", o.msg, n2);
  if (max_ms) YT_CHECKF(o.t_fail - o.t_open < max_ms, "took %lld ms", o.t_fail - o.t_open);
  YT_CHECK(o.in.len == 0);
  fprintf(stderr, "   error: %s\n", o.msg);
  owner_close(&o);
}

static void fill_pattern(unsigned char *p, size_t n, unsigned seed) {
  size_t i;
  for (i = 0; i < n; i++) p[i] = (unsigned char)((i * 7 + seed + (i >> 8)) % 251);
}

/* Sends `n` bytes and expects them back, byte-exact and nothing more. */
static void echo_round(owner *o, size_t n, unsigned seed) {
  unsigned char *data = (unsigned char *)malloc(n);
  if (!data) exit(2);
  fill_pattern(data, n, seed);
  o->in.len = 0;
  o->out = data;
  o->out_len = n;
  o->out_pos = 0;
  owner_push(o);
  owner_want(o);
  pump(o, 10000, c_got, n);
  pump(o, 30, c_never, 0); /* anything extra would show now */
  YT_CHECKF(!o->failed && !o->eof, "%lu bytes: %s", (unsigned long)n, o->failed ? o->msg : "EOF");
  YT_CHECKF(o->out_pos == n, "sent %lu of %lu", (unsigned long)o->out_pos, (unsigned long)n);
  YT_CHECKF(o->in.len == n && memcmp(o->in.ptr, data, n) == 0, "%lu bytes sent, %lu back%s",
            (unsigned long)n, (unsigned long)o->in.len,
            o->in.len == n ? " but different" : "");
  o->out = NULL;
  o->out_len = o->out_pos = 0;
  free(data);
}

/* ---- what the peer saw */

/* A number from the peer's /stats for connection `id`: -1 for null, -2 when unreadable. */
static long peer_stat(int port, const char *id, const char *key) {
  yhc_loop *l = yhc_loop_create(NULL);
  yhc_http *h = yhc_http_create(l, NULL);
  yhc_request req;
  yhc_response *r;
  char url[128], body[512], pat[64];
  const char *p;
  long v = -2;
  snprintf(url, sizeof url, "http://127.0.0.1:%d/stats?id=%s", port, id);
  memset(&req, 0, sizeof req);
  req.url = url;
  req.timeout_ms = 3000;
  r = yhc_http_fetch(h, &req);
  if (r && r->err == YHC_ERR_OK && r->body.len < sizeof body) {
    memcpy(body, r->body.ptr, r->body.len);
    body[r->body.len] = 0;
    snprintf(pat, sizeof pat, "\"%s\":", key);
    p = strstr(body, pat);
    if (p) v = strncmp(p + strlen(pat), "null", 4) == 0 ? -1 : strtol(p + strlen(pat), NULL, 10);
  }
  if (r) yhc_response_free(r);
  yhc_http_destroy(h);
  yhc_loop_destroy(l);
  return v;
}

/* ---- the cases */

static void test_echo(int port) {
  static const size_t sizes[] = {1, 64, 1024, 65536, (size_t)1 << 20, 3, 200000};
  owner o;
  size_t i;
  long partial = 0;
  YT_GROUP("handshake, echo byte-exact at 1 B .. 1 MiB");
  if (open_ok(&o, "ws://127.0.0.1:%d/echo", port, NULL, NULL, 0)) {
    YT_CHECK(o.s->vt->alive(o.s));
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      echo_round(&o, sizes[i], (unsigned)i);
      partial += o.partial_writes + o.again_writes;
    }
    /* a 1 MiB write cannot go in at once (64 KiB frames, bounded queue) */
    YT_CHECKF(partial > 0, "no partial or refused write in %d rounds", (int)i);
    YT_CHECK(o.s->vt->alive(o.s));
  }
  owner_close(&o);
}

static void test_chunks_and_fragments(int port) {
  owner o;
  YT_GROUP("/chunks: one write echoed as many messages reads back whole");
  if (open_ok(&o, "ws://127.0.0.1:%d/chunks", port, NULL, NULL, 0)) {
    echo_round(&o, 100000, 7);
    echo_round(&o, 2, 8); /* split as 0 + 1 + 1: an empty message is no EOF */
  }
  owner_close(&o);

  YT_GROUP("/fragmented: fragments (with a ping between) read as their concatenation");
  if (open_ok(&o, "ws://127.0.0.1:%d/fragmented?id=f1", port, NULL, NULL, 0)) {
    pump(&o, 3000, c_got, 16);
    pump(&o, 50, c_never, 0);
    YT_CHECKF(!o.failed, "%s", o.msg);
    YT_EQ_MEM(o.in.ptr, o.in.len, "alpha-beta-gamma");
    YT_EQ_INT(peer_stat(port, "f1", "pongs"), 1); /* the ping between fragments was answered */
  }
  owner_close(&o);
}

static void test_pings(int port) {
  owner o;
  yhc__ws_conf conf;
  long pings, pongs, matched, cp;
  YT_GROUP("/ping: the peer's pings are answered while the owner is not reading");
  memset(&conf, 0, sizeof conf);
  conf.dead_ms = 300; /* the peer's pings alone keep the tunnel alive */
  if (open_ok(&o, "ws://127.0.0.1:%d/ping?id=p1", port, &conf, NULL, 0)) {
    o.reading = 0;
    owner_want(&o);
    pump(&o, 600, c_never, 0);
    YT_CHECKF(!o.failed, "%s", o.msg);
    pings = peer_stat(port, "p1", "pings");
    pongs = peer_stat(port, "p1", "pongs");
    matched = peer_stat(port, "p1", "pongsMatched");
    YT_CHECKF(pings >= 6, "peer sent %ld pings", pings);
    /* the /stats request may overtake the last ping's pong */
    YT_CHECKF(pongs >= pings - 1 && pongs <= pings, "%ld pings, %ld pongs", pings, pongs);
    YT_CHECKF(matched == pongs, "%ld of %ld pongs echo their ping's payload", matched, pongs);
    YT_EQ_INT(o.in.len, 0);
  }
  owner_close(&o);

  YT_GROUP("keepalive: the client pings an idle tunnel every ping_ms");
  memset(&conf, 0, sizeof conf);
  conf.ping_ms = 100;
  if (open_ok(&o, "ws://127.0.0.1:%d/echo?id=k1", port, &conf, NULL, 0)) {
    pump(&o, 550, c_never, 0);
    YT_CHECKF(!o.failed, "%s", o.msg);
    cp = peer_stat(port, "k1", "clientPings");
    YT_CHECKF(cp >= 3 && cp <= 6, "%ld pings in 550 ms", cp);
    echo_round(&o, 5000, 3); /* pongs in the stream are not data */
  }
  owner_close(&o);
}

static long wait_close_code(int port, const char *id) {
  long long end = yt_now_ms() + 3000;
  long code;
  while ((code = peer_stat(port, id, "closeCode")) == -1 && yt_now_ms() < end) yt_sleep_ms(20);
  return code;
}

static void test_close(int port) {
  owner o;
  static const unsigned char x[1] = {'x'};
  long n;
  YT_GROUP("/close: the peer's close frame is EOF, and is answered");
  if (open_ok(&o, "ws://127.0.0.1:%d/close?id=c1", port, NULL, NULL, 0)) {
    o.out = x;
    o.out_len = 1;
    owner_push(&o);
    owner_want(&o);
    pump(&o, 3000, c_eof, 0);
    YT_CHECKF(o.eof && !o.failed, "%s", o.failed ? o.msg : "no EOF in 3 s");
    YT_EQ_INT(o.in.len, 0);
    YT_EQ_INT(o.s->vt->read(o.s, o.msg, 1), 0); /* EOF stays EOF */
    YT_CHECK(!o.s->vt->alive(o.s));
    n = o.s->vt->write(o.s, x, 1);
    YT_EQ_INT(n, YHC__FAIL);
    YT_EQ_INT(o.s->err.code, YHC_ERR_CLOSED);
  }
  owner_close(&o);
  /* 1000 = our close frame reached the peer; 1006 would mean it never came */
  YT_EQ_INT(wait_close_code(port, "c1"), 1000);

  YT_GROUP("/close without a status code: answered without one (the peer sees 1005)");
  if (open_ok(&o, "ws://127.0.0.1:%d/close?id=c3&code=none", port, NULL, NULL, 0)) {
    o.out = x;
    o.out_len = 1;
    owner_push(&o);
    owner_want(&o);
    pump(&o, 3000, c_eof, 0);
    YT_CHECKF(o.eof && !o.failed, "%s", o.failed ? o.msg : "no EOF in 3 s");
  }
  owner_close(&o);
  YT_EQ_INT(wait_close_code(port, "c3"), 1005);

  YT_GROUP("closing an open stream sends a close frame");
  if (open_ok(&o, "ws://127.0.0.1:%d/echo?id=c2", port, NULL, NULL, 0)) echo_round(&o, 10, 1);
  owner_close(&o);
  YT_EQ_INT(wait_close_code(port, "c2"), 1000);

  YT_GROUP("/burst-fin: frames, a close frame and FIN in one go: every byte, then EOF");
  if (open_ok(&o, "ws://127.0.0.1:%d/burst-fin", port, NULL, NULL, 0)) {
    pump(&o, 3000, c_eof, 0);
    YT_CHECKF(o.eof && !o.failed, "%s", o.failed ? o.msg : "no EOF in 3 s");
    YT_EQ_MEM(o.in.ptr, o.in.len, "one,two,three");
  }
  owner_close(&o);
  /* the same with a reader that is busy when the FIN arrives: frames already received are
     still data, however early the TCP EOF is seen */
  if (open_ok(&o, "ws://127.0.0.1:%d/burst-fin", port, NULL, NULL, 0)) {
    o.reading = 0;
    owner_want(&o);
    pump(&o, 150, c_never, 0);
    o.reading = 1;
    owner_want(&o);
    pump(&o, 3000, c_eof, 0);
    YT_CHECKF(o.eof && !o.failed, "%s", o.failed ? o.msg : "no EOF in 3 s");
    YT_EQ_MEM(o.in.ptr, o.in.len, "one,two,three");
  }
  owner_close(&o);
}

/* Text messages are UTF-8 (RFC 6455 8.1), checked as their bytes come, so a character may
   straddle fragments and reads. A fault fails the connection with Close 1007 (1002 for a
   malformed close payload), told to the owner once the server has ended the connection. */
static void expect_text_fault(int port, const char *name, const char *fault, long want_close) {
  owner o;
  yhc__ws_conf conf;
  char fmt[160], id[64];
  snprintf(id, sizeof id, "u-%s", name);
  snprintf(fmt, sizeof fmt, "ws://127.0.0.1:%%d/utf8?case=%s&id=%s", name, id);
  memset(&conf, 0, sizeof conf);
  conf.close_ms = 8000; /* the server's end of the close must stop the wait, not this timer */
  if (owner_open(&o, fmt, port, &conf, NULL, 0) == 0) {
    pump(&o, 6000, c_failed, 0);
    YT_CHECKF(o.failed && o.code == YHC_ERR_WEBSOCKET, "%s: %s (%s)", name,
              o.failed ? yhc_strerror(o.code) : "no error", o.msg);
    YT_CHECKF(contains(o.msg, fault), "%s: \"%s\" lacks \"%s\"", name, o.msg, fault);
    YT_CHECKF(!o.s->vt->alive(o.s), "%s: still alive", name);
    fprintf(stderr, "   error: %s\n", o.msg);
  }
  owner_close(&o);
  YT_CHECKF(wait_close_code(port, id) == want_close, "%s: the peer got close code %ld, want %ld", name,
            peer_stat(port, id, "closeCode"), want_close);
}

static void test_text(int port) {
  static const char whole[] = "A\xE2\x82\xAC" "B\xF0\x9F\x98\x80" "C\xC3\xA9";
  owner o;
  yhc__ws_conf conf;
  YT_GROUP("/utf8: characters cut across fragments (a ping between) arrive intact");
  if (open_ok(&o, "ws://127.0.0.1:%d/utf8?case=split&id=u-split", port, NULL, NULL, 0)) {
    pump(&o, 3000, c_got, sizeof whole - 1);
    pump(&o, 100, c_never, 0);
    YT_CHECKF(!o.failed && !o.eof, "%s", o.failed ? o.msg : "EOF");
    YT_EQ_MEM(o.in.ptr, o.in.len, whole);
    YT_CHECK(o.s->vt->alive(o.s));
    YT_EQ_INT(peer_stat(port, "u-split", "pongs"), 1);
  }
  owner_close(&o);
  YT_EQ_INT(wait_close_code(port, "u-split"), 1000);

  YT_GROUP("/utf8: a valid text message is delivered whole, the bad one after it fails");
  memset(&conf, 0, sizeof conf);
  conf.close_ms = 8000;
  if (open_ok(&o, "ws://127.0.0.1:%d/utf8?case=split-then-overlong&id=u-sto", port, &conf, NULL, 0)) {
    pump(&o, 6000, c_failed, 0);
    YT_CHECKF(o.failed && contains(o.msg, "overlong encoding at byte 1 of the message"), "%s", o.msg);
    YT_EQ_MEM(o.in.ptr, o.in.len, "A\xE2\x82\xAC"); /* nothing of the bad message */
  }
  owner_close(&o);
  YT_EQ_INT(wait_close_code(port, "u-sto"), 1007);

  YT_GROUP("/utf8: invalid text fails with close 1007, naming the fault");
  expect_text_fault(port, "overlong", "text message is not valid UTF-8: an overlong encoding at byte 1", 1007);
  expect_text_fault(port, "surrogate", "a UTF-16 surrogate (U+D800..U+DFFF) at byte 1", 1007);
  expect_text_fault(port, "above-max", "a code point above U+10FFFF at byte 1", 1007);
  expect_text_fault(port, "truncated-final", "cut short by the end of the text at byte 2", 1007);
  expect_text_fault(port, "bad-continuation", "a byte that is not a continuation at byte 1", 1007);
  YT_GROUP("/utf8: a close reason that is not UTF-8 is 1007, a 1-byte close payload 1002");
  expect_text_fault(port, "bad-reason", "close reason is not valid UTF-8", 1007);
  expect_text_fault(port, "close-1-byte", "close frame payload of 1 byte", 1002);

  /* a peer that neither answers the Close nor ends the connection: the wait is bounded */
  YT_GROUP("/utf8 from a peer that never ends the connection: the error comes after close_ms");
  memset(&conf, 0, sizeof conf);
  conf.close_ms = 300;
  if (open_ok(&o, "ws://127.0.0.1:%d/utf8?case=surrogate&raw=1", port, &conf, NULL, 0)) {
    pump(&o, 5000, c_failed, 0);
    YT_CHECKF(o.failed && contains(o.msg, "surrogate"), "%s", o.failed ? o.msg : "no failure in 5 s");
    YT_CHECKF(o.t_fail - o.t_connect >= 290 && o.t_fail - o.t_connect < 3000, "after %lld ms",
              o.t_fail - o.t_connect);
  }
  owner_close(&o);
}

static void test_limits(int port) {
  owner o;
  yhc__ws_conf conf;
  size_t i;
  int all_a = 1;
  YT_GROUP("/bigframe: one 300000-byte frame streams through 7001-byte reads");
  if (open_ok(&o, "ws://127.0.0.1:%d/bigframe?n=300000", port, NULL, NULL, 0)) {
    pump(&o, 5000, c_got, 300000);
    pump(&o, 30, c_never, 0);
    YT_CHECKF(!o.failed, "%s", o.msg);
    YT_EQ_INT(o.in.len, 300000);
    for (i = 0; i < o.in.len; i++) all_a &= o.in.ptr[i] == 'a';
    YT_CHECK(all_a);
  }
  owner_close(&o);

  /* a reader that stops with bytes left gets READ again, as TCP's level-triggered poll and the
     TLS stream's pending timer give it, even when nothing more comes from the socket */
  YT_GROUP("/bigframe: a lazy reader (one read per READ event) still gets every byte");
  if (open_ok(&o, "ws://127.0.0.1:%d/bigframe?n=300000", port, NULL, NULL, 0)) {
    o.lazy = 1;
    pump(&o, 3000, c_got, 300000);
    YT_CHECKF(!o.failed && o.in.len == 300000, "%lu bytes, %s", (unsigned long)o.in.len, o.msg);
  }
  owner_close(&o);

  YT_GROUP("max_frame: a frame of exactly the limit passes, one byte more fails");
  memset(&conf, 0, sizeof conf);
  conf.max_frame = 1000;
  if (open_ok(&o, "ws://127.0.0.1:%d/bigframe?n=1000", port, &conf, NULL, 0)) {
    pump(&o, 3000, c_got, 1000);
    YT_CHECKF(!o.failed && o.in.len == 1000, "%lu bytes, %s", (unsigned long)o.in.len, o.msg);
  }
  owner_close(&o);
  expect_open_error("ws://127.0.0.1:%d/bigframe?n=1001", port, &conf, NULL, 0, YHC_ERR_LIMIT,
                    "1001", "1000", 2000);
  /* the default limit is 1 MiB */
  expect_open_error("ws://127.0.0.1:%d/bigframe?n=2000000", port, NULL, NULL, 0, YHC_ERR_LIMIT,
                    "2000000", "1048576", 2000);
}

/* A peer that floods pings and never reads: pongs answer the latest ping only and wait for
   room, so the send buffer stays within max_wbuf however long the flood lasts. */
static void test_ping_flood(int port) {
  owner o;
  yhc__ws_conf conf;
  yhc__ws *w;
  size_t most = 0, most_cap = 0;
  long long until;
  YT_GROUP("/pingflood: a peer that pings without reading cannot grow the send buffer");
  memset(&conf, 0, sizeof conf);
  conf.max_wbuf = 65536;
  conf.dead_ms = 60000;
  if (open_ok(&o, "ws://127.0.0.1:%d/pingflood", port, &conf, NULL, 0)) {
    w = (yhc__ws *)(void *)o.s;
    until = yt_now_ms() + 3000;
    while (yt_now_ms() < until && !o.failed) {
      pump(&o, 50, c_never, 0);
      if (w->wbuf.len - w->wpos > most) most = w->wbuf.len - w->wpos;
      if (w->wbuf.cap > most_cap) most_cap = w->wbuf.cap;
    }
    YT_CHECKF(!o.failed, "%s", o.msg);
    /* answering each ping (10 MB/s of pongs) fills the kernel's buffers within a second and
       then the send buffer; one pong per batch of pings stays far below */
    YT_CHECKF(most <= conf.max_wbuf + 131, "queued %lu bytes, bound %lu", (unsigned long)most,
              (unsigned long)conf.max_wbuf);
    YT_CHECKF(most_cap <= 4 * conf.max_wbuf, "send buffer capacity %lu", (unsigned long)most_cap);
    fprintf(stderr, "   most queued %lu bytes (capacity %lu) under the flood\n", (unsigned long)most,
            (unsigned long)most_cap);
  }
  owner_close(&o);
}

static void test_silent(int port) {
  owner o;
  yhc__ws_conf conf;
  static unsigned char chunk[65536];
  size_t total = 0, queued;
  long n = 0;
  int rounds;
  yhc__ws *w;
  YT_GROUP("/silent with dead_ms 300: YHC_ERR_TIMEOUT in about 300 ms");
  memset(&conf, 0, sizeof conf);
  conf.dead_ms = 300;
  if (open_ok(&o, "ws://127.0.0.1:%d/silent", port, &conf, NULL, 0)) {
    pump(&o, 3000, c_failed, 0);
    YT_CHECKF(o.failed && o.code == YHC_ERR_TIMEOUT, "%s (%s)", yhc_strerror(o.code), o.msg);
    YT_CHECKF(o.t_fail - o.t_connect >= 290 && o.t_fail - o.t_connect < 1000, "after %lld ms",
              o.t_fail - o.t_connect);
    YT_CHECKF(contains(o.msg, "300 ms"), "%s", o.msg);
    YT_EQ_INT(o.s->vt->read(o.s, chunk, 1), YHC__FAIL);
    fprintf(stderr, "   error: %s\n", o.msg);
  }
  owner_close(&o);

  /* bytes the owner has not taken yet are a live tunnel, however long it takes to read them */
  YT_GROUP("dead_ms counts silence, not a reader that is behind");
  memset(&conf, 0, sizeof conf);
  conf.dead_ms = 300;
  if (owner_open(&o, "ws://127.0.0.1:%d/bigframe?n=500000", port, &conf, NULL, 0) == 0) {
    o.reading = 0; /* from the start: the frame may come with the 101 */
    pump(&o, 700, c_failed, 0);
    YT_CHECKF(o.connected && !o.failed, "%s", o.msg);
    YT_EQ_INT(o.in.len, 0);
    o.reading = 1;
    owner_want(&o);
    pump(&o, 3000, c_got, 500000);
    YT_CHECKF(o.in.len == 500000, "%lu bytes, %s", (unsigned long)o.in.len, o.msg);
    pump(&o, 1000, c_failed, 0); /* and once all is read, silence is silence again */
    YT_CHECKF(o.failed && o.code == YHC_ERR_TIMEOUT, "%s", o.failed ? o.msg : "no failure");
  }
  owner_close(&o);

  /* the same when the frame came in one segment with the 101 */
  if (owner_open(&o, "ws://127.0.0.1:%d/early", port, &conf, NULL, 0) == 0) {
    o.reading = 0;
    pump(&o, 700, c_failed, 0);
    YT_CHECKF(o.connected && !o.failed, "%s", o.msg);
    o.reading = 1;
    owner_want(&o);
    pump(&o, 3000, c_got, 2000);
    YT_CHECKF(o.in.len == 2000 && o.in.ptr[0] == 'e' && o.in.ptr[1999] == 'e', "%lu bytes, %s",
              (unsigned long)o.in.len, o.msg);
    pump(&o, 1000, c_failed, 0);
    YT_CHECKF(o.failed && o.code == YHC_ERR_TIMEOUT, "%s", o.failed ? o.msg : "no failure");
  }
  owner_close(&o);

  YT_GROUP("max_wbuf: write says AGAIN once max_wbuf is queued and the peer does not read");
  memset(&conf, 0, sizeof conf);
  conf.max_wbuf = 65536;
  if (open_ok(&o, "ws://127.0.0.1:%d/silent", port, &conf, NULL, 0)) {
    w = (yhc__ws *)(void *)o.s;
    fill_pattern(chunk, sizeof chunk, 5);
    /* the kernel's buffers take some megabytes first; 256 MiB means no push-back at all */
    for (rounds = 0; rounds < 4096; rounds++) {
      n = o.s->vt->write(o.s, chunk, sizeof chunk);
      if (n < 0) break;
      total += (size_t)n;
    }
    queued = w->wbuf.len - w->wpos;
    YT_CHECKF(n == YHC__AGAIN, "write returned %ld after %lu bytes", n, (unsigned long)total);
    YT_CHECKF(queued > 0 && queued <= conf.max_wbuf + YHC__WS_MAX_HEADER, "%lu bytes queued",
              (unsigned long)queued);
    fprintf(stderr, "   %lu bytes accepted before AGAIN, %lu queued\n", (unsigned long)total,
            (unsigned long)queued);
    o.write_events = 0;
    o.s->vt->want(o.s, 0, 1);
    pump(&o, 300, c_failed, 0);
    YT_CHECKF(!o.failed, "%s", o.msg);
    YT_EQ_INT(o.write_events, 0); /* no WRITE for a queue that is still full */
    YT_EQ_INT(o.s->vt->write(o.s, chunk, 1), YHC__AGAIN);
    YT_EQ_INT(w->wbuf.len - w->wpos, queued);
  }
  owner_close(&o);

  /* the other half: once the peer reads again, WRITE comes and every byte gets through */
  YT_GROUP("max_wbuf: writes refused while the peer stalls resume on WRITE, byte-exact");
  memset(&conf, 0, sizeof conf);
  conf.max_wbuf = 65536;
  if (open_ok(&o, "ws://127.0.0.1:%d/stall?ms=300", port, &conf, NULL, 0)) {
    echo_round(&o, (size_t)12 << 20, 9); /* more than loopback's socket buffers hold */
    YT_CHECKF(o.again_writes > 0, "no write was refused (%ld)", o.again_writes);
    YT_CHECKF(o.write_events > 0, "no WRITE event (%d)", o.write_events);
  }
  owner_close(&o);
}

static void test_handshake_errors(int port) {
  yhc_header auth[1];
  owner o;
  yhc__ws *w;
  yhc__ws_conf conf;
  YT_GROUP("handshake refused: 404 with the daemon's JSON message");
  if (owner_open(&o, "ws://127.0.0.1:%d/reject?status=404&authToken=secret", port, NULL, NULL,
                 0) == 0)
    pump(&o, 5000, c_failed, 0);
  YT_CHECKF(o.failed && o.code == YHC_ERR_HTTP_STATUS, "%s (%s)", yhc_strerror(o.code), o.msg);
  YT_CHECKF(contains(o.msg, "tunnel /reject refused: HTTP 404 Not Found"), "%s", o.msg);
  YT_CHECKF(contains(o.msg, "{\"message\":\"no such network\"}"), "%s", o.msg);
  YT_CHECKF(!contains(o.msg, "secret"), "the app key is printed: %s", o.msg);
  YT_CHECK(!o.connected);
  w = (yhc__ws *)(void *)o.s;
  YT_EQ_INT(w ? w->http_status : 0, 404);
  fprintf(stderr, "   error: %s\n", o.msg);
  owner_close(&o);
  expect_open_error("ws://127.0.0.1:%d/reject?status=503", port, NULL, NULL, 0,
                    YHC_ERR_HTTP_STATUS, "HTTP 503 Service Unavailable", "no such network", 2000);

  YT_GROUP("handshake: wrong Sec-WebSocket-Accept, no upgrade, masked server frame");
  memset(&conf, 0, sizeof conf);
  conf.handshake_ms = 5000; /* the failures must come from the answer, not the timer */
  expect_open_error("ws://127.0.0.1:%d/bad-accept", port, &conf, NULL, 0, YHC_ERR_WEBSOCKET,
                    "Sec-WebSocket-Accept", NULL, 1000);
  expect_open_error("ws://127.0.0.1:%d/no-upgrade", port, &conf, NULL, 0, YHC_ERR_HTTP_STATUS,
                    "HTTP 200", NULL, 1000);
  /* the masked frame is a protocol error: Close 1002 goes out and, as this peer never ends
     the connection, the error comes after close_ms */
  conf.close_ms = 200;
  expect_open_error("ws://127.0.0.1:%d/masked", port, &conf, NULL, 0, YHC_ERR_WEBSOCKET,
                    "masked", NULL, 1000);
  conf.close_ms = 0;
  expect_open_error("ws://127.0.0.1:%d/ext", port, &conf, NULL, 0, YHC_ERR_WEBSOCKET,
                    "an extension \"permessage-deflate\" that was not offered", NULL, 1000);
  expect_open_error("ws://127.0.0.1:%d/proto", port, &conf, NULL, 0, YHC_ERR_WEBSOCKET,
                    "a subprotocol \"chat\" that was not offered", NULL, 1000);

  YT_GROUP("/auth: the Authorization header goes into the handshake");
  auth[0].name = "Authorization";
  auth[0].value = "Bearer k";
  if (open_ok(&o, "ws://127.0.0.1:%d/auth", port, NULL, auth, 1)) echo_round(&o, 1000, 2);
  owner_close(&o);
  expect_open_error("ws://127.0.0.1:%d/auth", port, NULL, NULL, 0, YHC_ERR_HTTP_STATUS,
                    "HTTP 401 Unauthorized", "missing or wrong app key", 2000);
  auth[0].value = "Bearer wrong";
  expect_open_error("ws://127.0.0.1:%d/auth", port, NULL, auth, 1, YHC_ERR_HTTP_STATUS, "401",
                    NULL, 2000);
}

/* Needs no peer: a listener that never accepts completes TCP handshakes all the same. */
static void test_no_peer(void) {
  struct sockaddr_in a;
  socklen_t alen = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  yhc__ws_conf conf;
  yhc_header bad[1];
  owner o;
  YT_GROUP("handshake timeout: a TCP listener that never answers");
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 8) < 0 ||
      getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
    YT_CHECKF(0, "listener: %s", strerror(errno));
  } else {
    memset(&conf, 0, sizeof conf);
    conf.handshake_ms = 300;
    expect_open_error("ws://127.0.0.1:%d/echo", ntohs(a.sin_port), &conf, NULL, 0,
                      YHC_ERR_TIMEOUT, "handshake", "300 ms", 1000);
    /* and the timer is exact enough: not before handshake_ms */
    if (owner_open(&o, "ws://127.0.0.1:%d/echo", ntohs(a.sin_port), &conf, NULL, 0) == 0)
      pump(&o, 3000, c_failed, 0);
    YT_CHECKF(o.failed && o.t_fail - o.t_open >= 290, "failed after %lld ms",
              o.t_fail - o.t_open);
    owner_close(&o);
  }
  if (fd >= 0) close(fd);

  YT_GROUP("URLs and headers refused at once");
  YT_CHECK(owner_open(&o, "ftp://127.0.0.1:%d/x", 1, NULL, NULL, 0) < 0);
  YT_EQ_INT(o.code, YHC_ERR_URL);
  owner_close(&o);
  bad[0].name = "X-Evil";
  bad[0].value = "a\r\nX-Injected: 1";
  YT_CHECK(owner_open(&o, "ws://127.0.0.1:%d/x", 1, NULL, bad, 1) < 0);
  YT_EQ_INT(o.code, YHC_ERR_INVALID);
  owner_close(&o);
}

/* ---- wss:// */

#ifdef YHC_MBEDTLS
static int start_peer(yt_proc *p, const char *cert, const char *key) {
  const char *argv[6];
  argv[0] = "node";
  argv[1] = "tests/servers/ws_peer.js";
  argv[2] = cert ? "--tls" : NULL;
  argv[3] = cert;
  argv[4] = key;
  argv[5] = NULL;
  return yt_proc_start(p, argv, 10000);
}

static void test_wss(void) {
  char tmpl[] = "/tmp/yhc-ws-XXXXXX";
  char cmd[512], crt[3][320], key[2][320];
  yt_proc good, wrong;
  owner o;
  YT_GROUP("wss:// with a test CA");
  if (!mkdtemp(tmpl)) {
    YT_CHECKF(0, "mkdtemp: %s", strerror(errno));
    return;
  }
  snprintf(cmd, sizeof cmd, "sh tests/servers/mkcerts.sh '%s'", tmpl);
  if (!yt_have_exe("openssl") || system(cmd) != 0) {
    YT_CHECKF(0, "tests/servers/mkcerts.sh failed (needs openssl)");
    return;
  }
  snprintf(crt[0], sizeof crt[0], "%s/good.crt", tmpl);
  snprintf(key[0], sizeof key[0], "%s/good.key", tmpl);
  snprintf(crt[1], sizeof crt[1], "%s/wronghost.crt", tmpl);
  snprintf(key[1], sizeof key[1], "%s/wronghost.key", tmpl);
  snprintf(crt[2], sizeof crt[2], "%s/ca.crt", tmpl);
  if (start_peer(&good, crt[0], key[0]) < 0 || start_peer(&wrong, crt[1], key[1]) < 0) {
    YT_CHECKF(0, "ws_peer.js --tls did not start");
  } else {
    tls_conf.ca_file = crt[2];
    if (open_ok(&o, "wss://localhost:%d/echo", good.port, NULL, NULL, 0)) {
      echo_round(&o, 1, 1);
      echo_round(&o, 65536, 2);
      echo_round(&o, (size_t)1 << 20, 3);
    }
    owner_close(&o);
    /* TLS EOF (close_notify or FIN) right behind the frames: every byte, then EOF */
    if (open_ok(&o, "wss://localhost:%d/burst-fin", good.port, NULL, NULL, 0)) {
      o.reading = 0;
      pump(&o, 150, c_never, 0);
      o.reading = 1;
      owner_want(&o);
      pump(&o, 3000, c_eof, 0);
      YT_CHECKF(o.eof && !o.failed, "%s", o.failed ? o.msg : "no EOF in 3 s");
      YT_EQ_MEM(o.in.ptr, o.in.len, "one,two,three");
    }
    owner_close(&o);
    expect_open_error("wss://localhost:%d/echo", wrong.port, NULL, NULL, 0, YHC_ERR_TLS, NULL,
                      NULL, 3000);
    memset(&tls_conf, 0, sizeof tls_conf);
  }
  yt_proc_stop(&good);
  yt_proc_stop(&wrong);
  yhc__tls_ctx_free(tls_ctx);
  tls_ctx = NULL;
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpl);
}
#else
static void test_wss(void) {
  owner o;
  YT_GROUP("wss:// without TLS compiled in");
  fprintf(stderr, "   skip: wss:// echo and certificate checks need the YHC_MBEDTLS build\n");
  YT_CHECK(owner_open(&o, "wss://localhost:%d/echo", 1, NULL, NULL, 0) < 0);
  YT_EQ_INT(o.code, YHC_ERR_NO_TLS);
  owner_close(&o);
}
#endif

int main(void) {
  yt_proc peer;
  long long t0 = yt_now_ms();
  const char *argv[3];
  signal(SIGPIPE, SIG_IGN);
  test_no_peer();
  if (!yt_have_exe("node") || access("tests/yagna-sim/node_modules/ws/package.json", R_OK) != 0) {
    fprintf(stderr, "   skip: node or tests/yagna-sim/node_modules/ws missing (make sim-deps): "
                    "the checks against a WebSocket peer did not run\n");
    return yt_done();
  }
  YT_GROUP("peer");
  argv[0] = "node";
  argv[1] = "tests/servers/ws_peer.js";
  argv[2] = NULL;
  if (yt_proc_start(&peer, argv, 10000) < 0) {
    YT_CHECKF(0, "tests/servers/ws_peer.js did not start");
    return yt_done();
  }
  test_echo(peer.port);
  test_chunks_and_fragments(peer.port);
  test_pings(peer.port);
  test_close(peer.port);
  test_text(peer.port);
  test_limits(peer.port);
  test_silent(peer.port);
  test_ping_flood(peer.port);
  test_handshake_errors(peer.port);
  yt_proc_stop(&peer);
  test_wss();
  fprintf(stderr, "   (%lld ms)\n", yt_now_ms() - t0);
  return yt_done();
}
