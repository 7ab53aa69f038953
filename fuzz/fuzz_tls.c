/* fuzz_tls.c -- the TLS stream layer past the handshake (needs -DYHC_MBEDTLS and mbedTLS).
   Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -DYHC_MBEDTLS -I. fuzz/fuzz_tls.c \
          -o /tmp/ft -lm -lmbedtls -lmbedx509 -lmbedcrypto

   yhc's TLS client stream (yhc__tls_open, its TCP stream swapped for a memory pipe) talks to
   an mbedTLS server in this process over memory buffers, so every handshake completes and the
   input drives what follows: application data in records of chosen sizes, alerts of any level
   and description, close_notify, a HelloRequest (renegotiation, refused by yhc's default
   configuration or carried out when the input enables it), ciphertext bytes flipped and raw
   bytes injected on the wire, a TCP EOF, partial and refused writes, reads in pieces of
   chosen sizes, and the client closing in any state. The first input byte picks the cipher
   suite: PSK suites (AES-GCM, AES-CBC with its MAC and padding checks, ChaCha20-Poly1305),
   which cost no public-key work and so keep the fuzzer fast, or (one input in 32)
   ECDHE-ECDSA with the test certificate below, as a real server does; whether yhc's client
   may renegotiate (its default refuses); the size of its reads. The second byte's low bit
   makes the server send a NewSessionTicket, the next one flips a byte of the server's
   handshake (where: the rest of that byte), so the handshake parsers meet hostile bytes too.
   Then come operations of 3 bytes and more (see the switch), until the input ends.

   What must hold, besides no crash: the bytes yhc delivers are exactly a prefix of what the
   server sent (of what yhc was given to send, on the server's side), even when the wire was
   tampered with; after a close_notify on an untouched wire every byte comes and then EOF,
   which stays EOF; a failure is YHC_ERR_TLS with a message, and stays a failure; the heap
   grows by a bounded amount; every input ends within a bounded number of steps; close frees
   everything.

   Reproducible: both sides draw from one deterministic generator reset for every input, and
   time() is pinned (mbedTLS puts the time into the hello randoms). The key and certificate are
   a throw-away P-256 pair made for this target (openssl, 100 years); they protect nothing. */
#define YHC_IMPLEMENTATION
#include "yhc.h"

#include <mbedtls/pk.h>
#include <mbedtls/ssl_ticket.h>
#include <sanitizer/allocator_interface.h>
#include <stdlib.h>
#include <time.h>

#define MAX_SENT (256u << 10)   /* application bytes per side and input */
#define MAX_WIRE (512u << 10)   /* bytes waiting in either direction */
#define MAX_STEPS 20000         /* pump rounds per input: more is a hang */
#define HEAP_BOUND (8u << 20)   /* heap growth per input */

static const char test_cert[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBjjCCATOgAwIBAgIUbaziZIvZ6gEQ7Dyc2Lg6f4aF188wCgYIKoZIzj0EAwIw\n"
    "GzEZMBcGA1UEAwwQZnV6ei55aGMuaW52YWxpZDAgFw0yNjEyMDIwMTEyMTJaGA8y\n"
    "MTI2MTEwODAxMTIxMlowGzEZMBcGA1UEAwwQZnV6ei55aGMuaW52YWxpZDBZMBMG\n"
    "ByqGSM49AgEGCCqGSM49AwEHA0IABK3Lq9dfpPfDLzyAutHoPQoesdF7B6Vh08LK\n"
    "a+qMkCRdVusRkGAYj+beRlL5rDYRNBvUbIpn8bpP1XPhm8hkZUujUzBRMB0GA1Ud\n"
    "DgQWBBQ+MVWMrcD8fb/zpVMOnvGo075MQjAfBgNVHSMEGDAWgBQ+MVWMrcD8fb/z\n"
    "pVMOnvGo075MQjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQDL\n"
    "tejS2a5ui6MGqAIfl+ncX5ZsTuRm3qG41mFTMSSw7wIhAMtXX80Cn2zCD4zoBxej\n"
    "N2v8GaUxW8RyzHZ6O0c0UVR+\n"
    "-----END CERTIFICATE-----\n";
static const char test_key[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgtCOTRwIIHPO2yR7q\n"
    "FbBRWJUzV9kYn4zHgc+Pi4LmAq6hRANCAASty6vXX6T3wy88gLrR6D0KHrHRewel\n"
    "YdPCymvqjJAkXVbrEZBgGI/m3kZS+aw2ETQb1GyKZ/G6T9Vz4ZvIZGVL\n"
    "-----END PRIVATE KEY-----\n";
static const unsigned char psk[16] = "yhc-fuzz-psk-16";
static const char psk_id[] = "yhc-fuzz";

static void fail(const char *what) {
  fprintf(stderr, "fuzz_tls: %s\n", what);
  abort();
}

/* mbedTLS writes time() into ClientHello.random and ServerHello.random; a fixed clock makes
   the wire bytes, and so where a flipped byte lands, the same on every run. */
time_t time(time_t *t) {
  if (t) *t = 1700000000;
  return 1700000000;
}

/* ---- one deterministic generator for both sides, reset per input */

static uint64_t rng_state;
static int det_rng(void *ctx, unsigned char *out, size_t len) {
  size_t i;
  (void)ctx;
  for (i = 0; i < len; i++) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    out[i] = (unsigned char)(rng_state >> 24);
  }
  return 0;
}

/* ---- a byte queue, one per direction */

typedef struct queue {
  unsigned char *p;
  size_t len, pos, cap;
} queue;

static void q_put(queue *q, const void *data, size_t n) {
  if (q->pos == q->len) q->pos = q->len = 0;
  if (q->len + n > q->cap) {
    size_t cap = q->cap ? q->cap : 4096;
    unsigned char *p;
    while (cap < q->len + n) cap *= 2;
    p = (unsigned char *)realloc(q->p, cap);
    if (!p) fail("realloc");
    q->p = p;
    q->cap = cap;
  }
  memcpy(q->p + q->len, data, n);
  q->len += n;
}

static size_t q_avail(const queue *q) { return q->len - q->pos; }

static size_t q_take(queue *q, void *out, size_t cap) {
  size_t n = q_avail(q) < cap ? q_avail(q) : cap;
  memcpy(out, q->p + q->pos, n);
  q->pos += n;
  return n;
}

/* ---- the client's TCP stream: a memory pipe */

typedef struct pipe_stream {
  yhc__stream base;
  queue s2c, c2s;   /* server to client, client to server */
  size_t piece;     /* most bytes one client read gets; 0 = the server's bytes are held back */
  size_t wlimit;    /* most bytes one client write takes; 0 = AGAIN */
  int eof;          /* the server's side of the TCP connection is closed */
  int rd, wr;       /* what the TLS stream asked for */
  uint64_t out;     /* bytes the server has sent so far */
  uint64_t flip_at; /* a byte of the server's output still to come that gets flipped */
  unsigned char flip;
  int flipped;      /* the wire was changed */
} pipe_stream;

static long pipe_read(yhc__stream *s, void *buf, size_t cap) {
  pipe_stream *p = (pipe_stream *)s;
  if (!p->piece) return YHC__AGAIN;
  if (q_avail(&p->s2c)) return (long)q_take(&p->s2c, buf, cap < p->piece ? cap : p->piece);
  return p->eof ? 0 : YHC__AGAIN;
}

static long pipe_write(yhc__stream *s, const void *buf, size_t len) {
  pipe_stream *p = (pipe_stream *)s;
  if (!p->wlimit || q_avail(&p->c2s) >= MAX_WIRE) return YHC__AGAIN;
  if (len > p->wlimit) len = p->wlimit;
  q_put(&p->c2s, buf, len);
  return (long)len;
}

static void pipe_want(yhc__stream *s, int rd, int wr) {
  pipe_stream *p = (pipe_stream *)s;
  p->rd = rd;
  p->wr = wr;
}

static void pipe_close(yhc__stream *s) { (void)s; }

static const yhc__stream_vt pipe_vt = {pipe_read, pipe_write, pipe_want, pipe_close, NULL};

/* ---- the server, over the same queues */

static int srv_send(void *ctx, const unsigned char *buf, size_t len) {
  pipe_stream *p = (pipe_stream *)ctx;
  if (p->eof) return MBEDTLS_ERR_NET_CONN_RESET;
  if (q_avail(&p->s2c) >= MAX_WIRE) return MBEDTLS_ERR_SSL_WANT_WRITE;
  q_put(&p->s2c, buf, len);
  if (p->flip && p->flip_at >= p->out && p->flip_at < p->out + len) {
    p->s2c.p[p->s2c.len - len + (size_t)(p->flip_at - p->out)] ^= p->flip;
    p->flip = 0;
    p->flipped = 1;
  }
  p->out += len;
  return (int)len;
}

static int srv_recv(void *ctx, unsigned char *buf, size_t len) {
  pipe_stream *p = (pipe_stream *)ctx;
  if (!q_avail(&p->c2s)) return MBEDTLS_ERR_SSL_WANT_READ;
  return (int)q_take(&p->c2s, buf, len);
}

/* ---- state shared by the whole run: contexts and parsed keys */

static const int suites_psk_gcm[] = {MBEDTLS_TLS_PSK_WITH_AES_128_GCM_SHA256, 0};
static const int suites_psk_cbc[] = {MBEDTLS_TLS_PSK_WITH_AES_128_CBC_SHA256, 0};
static const int suites_psk_chacha[] = {MBEDTLS_TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, 0};
static const int suites_ecdsa[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, 0};

static yhc__tls_ctx *client_ctx[2]; /* yhc's configuration; [1] with renegotiation enabled */
static mbedtls_x509_crt srv_cert;
static mbedtls_pk_context srv_key;
static mbedtls_ssl_ticket_context srv_tickets;

static void setup_once(void) {
  static int done;
  yhc__tls_conf conf;
  yhc_error err;
  int i;
  if (done) return;
  done = 1;
  memset(&conf, 0, sizeof conf);
  conf.insecure = 1; /* a self-signed test certificate; verification is test_tls's part */
  for (i = 0; i < 2; i++) {
    client_ctx[i] = yhc__tls_ctx_new(&conf, &err);
    if (!client_ctx[i]) fail(err.msg);
    /* the same configuration yhc uses, plus a PSK the client may offer and a generator that
       repeats; [1] also renegotiates when the server asks, which yhc does not by default */
    mbedtls_ssl_conf_rng(&client_ctx[i]->conf, det_rng, NULL);
    if (mbedtls_ssl_conf_psk(&client_ctx[i]->conf, psk, sizeof psk, (const unsigned char *)psk_id,
                             sizeof psk_id - 1))
      fail("client psk");
  }
  mbedtls_ssl_conf_renegotiation(&client_ctx[1]->conf, MBEDTLS_SSL_RENEGOTIATION_ENABLED);
  mbedtls_x509_crt_init(&srv_cert);
  mbedtls_pk_init(&srv_key);
  if (mbedtls_x509_crt_parse(&srv_cert, (const unsigned char *)test_cert, sizeof test_cert)) fail("cert");
  if (mbedtls_pk_parse_key(&srv_key, (const unsigned char *)test_key, sizeof test_key, NULL, 0)) fail("key");
  mbedtls_ssl_ticket_init(&srv_tickets);
  if (mbedtls_ssl_ticket_setup(&srv_tickets, det_rng, NULL, MBEDTLS_CIPHER_AES_128_GCM, 86400)) fail("tickets");
}

/* ---- one run */

typedef struct run {
  yhc_loop *loop;
  yhc__stream *s;    /* yhc's TLS stream */
  pipe_stream pipe;
  mbedtls_ssl_config sconf;
  mbedtls_ssl_context srv;
  int srv_ready, srv_dead, srv_closed; /* handshake done; failed; close_notify sent */
  int connected, failed, eof;          /* what yhc said */
  int tampered;                        /* the wire was changed: data may stop, never differ */
  unsigned char *sent;                 /* server plaintext, in order */
  size_t sent_len, sent_at_close, got; /* got: bytes yhc delivered */
  unsigned char *cw;                   /* client plaintext to send */
  size_t cw_len, cw_pos, srv_got;
  size_t heap0, heap_peak;
  long steps;
} run;

static void check_failure(run *r) {
  if (r->s->err.code != YHC_ERR_TLS || !r->s->err.msg[0] || !strstr(r->s->err.msg, "TLS"))
    fail("failure without a TLS error and message");
}

static void client_read(run *r) {
  unsigned char buf[700]; /* odd-sized, so records end anywhere within a read */
  int rounds;
  for (rounds = 0; rounds < 64; rounds++) {
    long n = r->s->vt->read(r->s, buf, sizeof buf);
    if (n > 0) {
      if (r->eof || r->failed) fail("data after EOF or failure");
      if (r->got + (size_t)n > r->sent_len || memcmp(buf, r->sent + r->got, (size_t)n) != 0)
        fail("delivered bytes are not what the server sent");
      r->got += (size_t)n;
      continue;
    }
    if (n == 0) {
      if (r->failed) fail("EOF after failure");
      r->eof = 1;
      if (r->s->vt->read(r->s, buf, 1) != 0) fail("EOF did not stay EOF");
    } else if (n == YHC__FAIL) {
      r->failed = 1;
      check_failure(r);
      if (r->s->vt->read(r->s, buf, 1) != YHC__FAIL) fail("failure did not stay");
    } else if (n != YHC__AGAIN) {
      fail("read returned something else");
    }
    break;
  }
}

static void client_write(run *r) {
  while (r->cw_pos < r->cw_len && !r->failed && !r->eof) {
    long n = r->s->vt->write(r->s, r->cw + r->cw_pos, r->cw_len - r->cw_pos);
    if (n == YHC__AGAIN) break;
    if (n == YHC__FAIL) {
      r->failed = 1;
      check_failure(r);
      break;
    }
    if (n <= 0 || (size_t)n > r->cw_len - r->cw_pos) fail("write returned a bad count");
    r->cw_pos += (size_t)n;
  }
}

static void owner_event(void *ctx, int ev) {
  run *r = (run *)ctx;
  if (ev & YHC__EV_ERROR) {
    if (!r->failed) {
      r->failed = 1;
      check_failure(r);
    }
    return;
  }
  if (ev & YHC__EV_CONNECT) r->connected = 1;
  if (ev & YHC__EV_READ) client_read(r);
  if (ev & (YHC__EV_WRITE | YHC__EV_CONNECT)) client_write(r);
  if (!r->failed) r->s->vt->want(r->s, !r->eof, r->cw_pos < r->cw_len);
}

static void note_heap(run *r) {
  size_t now = __sanitizer_get_current_allocated_bytes();
  if (now > r->heap_peak) r->heap_peak = now;
  if (r->heap_peak - r->heap0 > HEAP_BOUND) fail("heap grew past the bound");
}

/* The server's turn: the handshake, or reading what the client sent. */
static int server_step(run *r) {
  unsigned char buf[1024];
  int ret;
  if (r->srv_dead) return 0;
  if (!r->srv_ready) {
    ret = mbedtls_ssl_handshake(&r->srv);
    if (ret == 0) r->srv_ready = 1;
    else if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) r->srv_dead = 1;
    return ret == 0;
  }
  ret = mbedtls_ssl_read(&r->srv, buf, sizeof buf);
  if (ret > 0) {
    /* a write that said AGAIN may have gone out all the same (the stream contract: mbedTLS
       encrypted it, and it is retried), so the bound is what the client was given */
    if (r->srv_got + (size_t)ret > r->cw_len || memcmp(buf, r->cw + r->srv_got, (size_t)ret) != 0)
      fail("the server got bytes the client was not given, or got them twice");
    r->srv_got += (size_t)ret;
    return 1;
  }
  if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) r->srv_dead = 1;
  return 0;
}

/* Turns both sides until nothing moves. */
static void pump(run *r, int rounds) {
  while (rounds-- > 0) {
    size_t before = r->pipe.s2c.pos + r->pipe.c2s.pos + r->pipe.s2c.len + r->pipe.c2s.len + r->got + r->srv_got;
    int ev = 0, moved;
    if (++r->steps > MAX_STEPS) fail("no end in sight: too many steps");
    moved = server_step(r);
    if (r->s && !r->failed) {
      if (r->pipe.rd && r->pipe.piece && (q_avail(&r->pipe.s2c) || r->pipe.eof)) ev |= YHC__EV_READ;
      if (r->pipe.wr) ev |= YHC__EV_WRITE;
      if (ev) yhc__stream_emit(&r->pipe.base, ev);
      yhc_loop_poll(r->loop, 0); /* the pending-bytes timer, READ for what mbedTLS holds */
    }
    note_heap(r);
    if (!moved && before == r->pipe.s2c.pos + r->pipe.c2s.pos + r->pipe.s2c.len + r->pipe.c2s.len + r->got + r->srv_got &&
        !(ev & YHC__EV_READ))
      break;
  }
}

/* Input reader: bytes past the end read as 0. */
typedef struct in {
  const unsigned char *p;
  size_t n, i;
} in;
static unsigned next(in *x) { return x->i < x->n ? x->p[x->i++] : 0; }

/* Room on the wire for a record of n bytes: mbedTLS must never meet a full wire while
   writing, because a write it could not send has to be retried with the same bytes. */
static int wire_room(const run *r, size_t n) { return q_avail(&r->pipe.s2c) + n + 1024 <= MAX_WIRE; }

/* The server sends n application bytes; -1 once it cannot (the rest of a bulk op is moot). */
static int server_write(run *r, const unsigned char *data, size_t n) {
  size_t off = 0;
  if (!r->srv_ready || r->srv_dead || r->srv_closed || r->sent_len + n > MAX_SENT) return -1;
  while (off < n) {
    int ret;
    if (!wire_room(r, n - off)) return -1;
    ret = mbedtls_ssl_write(&r->srv, data + off, n - off);
    if (ret <= 0) {
      if (ret != MBEDTLS_ERR_SSL_WANT_READ) r->srv_dead = 1;
      return -1; /* mid-renegotiation: what went out so far is recorded */
    }
    memcpy(r->sent + r->sent_len, data + off, (size_t)ret);
    r->sent_len += (size_t)ret;
    off += (size_t)ret;
  }
  return 0;
}

static int setup_run(run *r, unsigned cfg) {
  static const int *const suites[] = {suites_psk_gcm, suites_psk_cbc, suites_psk_chacha, suites_psk_gcm};
  yhc_error err;
  yhc__tls *t;
  /* ECDHE-ECDSA costs some 25 times a PSK handshake: one input in 32 */
  int ecdsa = (cfg & 0x67) == 0x67;
  memset(r, 0, sizeof *r);
  r->sent = (unsigned char *)malloc(MAX_SENT);
  r->cw = (unsigned char *)malloc(MAX_SENT);
  if (!r->sent || !r->cw) fail("malloc");
  r->loop = yhc_loop_create(NULL);
  if (!r->loop) fail("loop");
  /* a numeric host "connects" to port 9 at once, and the TCP stream is swapped for the pipe
     before it can say anything */
  r->s = yhc__tls_open(r->loop, &client_ctx[(cfg >> 3) & 1], NULL, "127.0.0.1", 9, &err);
  if (!r->s) return -1;
  t = (yhc__tls *)r->s;
  t->tcp->vt->close(t->tcp);
  r->pipe.base.vt = &pipe_vt;
  r->pipe.base.owner = t;
  r->pipe.base.on_event = yhc__tls_inner_event;
  r->pipe.piece = 1 + ((cfg >> 4) & 15) * 97;
  r->pipe.wlimit = 16384;
  t->tcp = &r->pipe.base;
  r->s->owner = r;
  r->s->on_event = owner_event;

  mbedtls_ssl_config_init(&r->sconf);
  if (mbedtls_ssl_config_defaults(&r->sconf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                  MBEDTLS_SSL_PRESET_DEFAULT))
    fail("server config");
  mbedtls_ssl_conf_rng(&r->sconf, det_rng, NULL);
  mbedtls_ssl_conf_ciphersuites(&r->sconf, ecdsa ? suites_ecdsa : suites[cfg & 3]);
  mbedtls_ssl_conf_renegotiation(&r->sconf, MBEDTLS_SSL_RENEGOTIATION_ENABLED);
  if (ecdsa) {
    if (mbedtls_ssl_conf_own_cert(&r->sconf, &srv_cert, &srv_key)) fail("own cert");
  } else if (mbedtls_ssl_conf_psk(&r->sconf, psk, sizeof psk, (const unsigned char *)psk_id, sizeof psk_id - 1)) {
    fail("server psk");
  }
  if (cfg & 0x100) /* a NewSessionTicket in the handshake, which the client must take */
    mbedtls_ssl_conf_session_tickets_cb(&r->sconf, mbedtls_ssl_ticket_write, mbedtls_ssl_ticket_parse, &srv_tickets);
  mbedtls_ssl_init(&r->srv);
  if (mbedtls_ssl_setup(&r->srv, &r->sconf)) fail("server setup");
  mbedtls_ssl_set_bio(&r->srv, &r->pipe, srv_send, srv_recv, NULL);
  return 0;
}

static void end_run(run *r) {
  if (r->s) r->s->vt->close(r->s);
  mbedtls_ssl_free(&r->srv);
  mbedtls_ssl_config_free(&r->sconf);
  yhc_loop_destroy(r->loop);
  free(r->pipe.s2c.p);
  free(r->pipe.c2s.p);
  free(r->sent);
  free(r->cw);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static run r;
  in x;
  unsigned cfg, cfg2;
  int closed_early = 0;
  rng_state = 0x9E3779B97F4A7C15ull;
  setup_once();
  rng_state = 0x9E3779B97F4A7C15ull;
  x.p = data;
  x.n = size;
  x.i = 0;
  cfg = next(&x);
  cfg2 = next(&x);
  cfg |= (cfg2 & 1u) << 8;
  if (setup_run(&r, cfg) < 0) {
    end_run(&r);
    return 0;
  }
  if (cfg2 & 2) { /* a byte of the server's handshake flipped: the parsers of its messages */
    r.pipe.flip_at = (cfg2 >> 2) * 13u;
    r.pipe.flip = (unsigned char)(cfg2 | 1);
  }
  r.heap0 = r.heap_peak = __sanitizer_get_current_allocated_bytes();
  yhc__stream_emit(&r.pipe.base, YHC__EV_CONNECT);
  pump(&r, 200);
  /* a flipped length can leave both sides waiting: yhc's connect timeout ends that */
  if (!r.pipe.flipped && (!r.connected || r.failed)) fail("no handshake over an untouched memory pipe");

  while (x.i < x.n && !closed_early) {
    unsigned op = next(&x), a = next(&x), b = next(&x);
    switch (op % 12) {
    case 0: { /* application data, one write, bytes from the input */
      size_t n = 1 + a;
      unsigned char chunk[256];
      size_t k;
      for (k = 0; k < n; k++) chunk[k] = (unsigned char)next(&x);
      server_write(&r, chunk, n);
      break;
    }
    case 1: { /* a bulk stream in records of a chosen size */
      size_t total = ((size_t)a << 8 | b) % 40000, rec = 1 + (size_t)next(&x) * 67, off;
      unsigned char *big = (unsigned char *)malloc(total ? total : 1);
      if (!big) fail("malloc");
      for (off = 0; off < total; off++) big[off] = (unsigned char)(r.sent_len + off);
      for (off = 0; off < total; off += rec)
        if (server_write(&r, big + off, total - off < rec ? total - off : rec)) break;
      free(big);
      break;
    }
    case 2: { /* an alert: warning or fatal, now and then a level that is neither */
      unsigned level = (a & 4) ? a : 1 + (a & 1);
      if (r.srv_ready && !r.srv_dead && wire_room(&r, 64) &&
          mbedtls_ssl_send_alert_message(&r.srv, (unsigned char)level, (unsigned char)b) == 0 && level == 1 && b == 0 &&
          !r.srv_closed) {
        r.srv_closed = 1; /* a warning close_notify is close_notify */
        r.sent_at_close = r.sent_len;
      }
      break;
    }
    case 3: /* close_notify */
      if (r.srv_ready && !r.srv_dead && !r.srv_closed && wire_room(&r, 64) && mbedtls_ssl_close_notify(&r.srv) == 0) {
        r.srv_closed = 1;
        r.sent_at_close = r.sent_len;
      }
      break;
    case 4: /* HelloRequest: renegotiation, as far as each side allows */
      if (r.srv_ready && !r.srv_dead && !r.srv_closed && wire_room(&r, 64)) {
        int ret = mbedtls_ssl_renegotiate(&r.srv);
        if (ret && ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) r.srv_dead = 1;
      }
      break;
    case 5: { /* a byte of ciphertext or of a record header flipped: one the client has not
                 read yet, or one the server will send later */
      size_t off = (size_t)a << 8 | b;
      unsigned char flip = (unsigned char)(next(&x) | 1);
      if (off < q_avail(&r.pipe.s2c)) {
        r.pipe.s2c.p[r.pipe.s2c.pos + off] ^= flip;
        r.pipe.flipped = 1;
      } else {
        r.pipe.flip_at = r.pipe.out + (off - q_avail(&r.pipe.s2c));
        r.pipe.flip = flip;
      }
      break;
    }
    case 6: { /* raw bytes on the wire: a forged record header, garbage */
      unsigned char raw[40];
      size_t n = a % sizeof raw, k;
      raw[0] = (unsigned char)(20 + b % 5); /* a record type, or near one */
      for (k = 1; k < n; k++) raw[k] = (unsigned char)next(&x);
      if (n) q_put(&r.pipe.s2c, raw, n);
      r.tampered = 1;
      break;
    }
    case 7: /* the client's reads get pieces of another size, or (0) nothing for now */
      r.pipe.piece = (size_t)a * 64 + b;
      break;
    case 8: { /* the client sends */
      size_t n = 1 + (size_t)a * 37, k;
      if (r.cw_len + n > MAX_SENT) break;
      for (k = 0; k < n; k++) r.cw[r.cw_len + k] = (unsigned char)(b + k);
      r.cw_len += n;
      client_write(&r);
      if (r.s && !r.failed) r.s->vt->want(r.s, !r.eof, r.cw_pos < r.cw_len);
      break;
    }
    case 9: /* TCP EOF from the server's side */
      r.pipe.eof = 1;
      break;
    case 10: /* the client closes now, whatever the state */
      closed_early = a & 1;
      break;
    case 11: /* the client's writes take this much at most (0 = the socket is full); with b odd
                the bytes held back are let through at the same time, so the client meets
                readable and writable together */
      r.pipe.wlimit = (size_t)a * 61;
      if ((b & 1) && !r.pipe.piece) r.pipe.piece = 700;
      break;
    }
    pump(&r, 64 + (int)(b & 63));
    r.tampered |= r.pipe.flipped;
  }
  if (!closed_early) { /* everything left is delivered in big pieces */
    r.pipe.piece = 16384;
    r.pipe.wlimit = 16384;
    pump(&r, 2000);
    r.tampered |= r.pipe.flipped;
    if (!r.tampered && !r.failed && r.got != (r.srv_closed ? r.sent_at_close : r.sent_len))
      fail("bytes sent on an untouched wire were not all delivered");
    if (!r.tampered && !r.failed && (r.srv_closed || r.pipe.eof) && !r.eof)
      fail("close_notify or FIN on an untouched wire, and no EOF");
    if (!r.tampered && !r.failed && !r.srv_dead && !r.pipe.eof && r.srv_got < r.cw_pos)
      fail("bytes the client's write took never reached the server");
  }
  end_run(&r);
  return 0;
}
