/* fuzz_tls.c -- the TLS stream layer over a memory BIO (needs -DYHC_MBEDTLS).
   Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -DYHC_MBEDTLS -I. fuzz/fuzz_tls.c \
          -o /tmp/ft -lm -lmbedtls -lmbedx509 -lmbedcrypto

   The TLS stream's inner stream (normally TCP) is a memory stream: what the client sends is
   counted and dropped, what it receives is the input, in pieces whose sizes come from the
   input, then EOF. Without the server's keys the fuzzer cannot finish a handshake, so this
   reaches the record layer, the handshake parsers (ServerHello, Certificate, alerts, ...),
   and yhc's glue around them: want flags, AGAIN/EOF/failure mapping, error messages, close
   in every state. Decrypted application data is test_tls's part (a real server). What must
   hold: no crash, an error with a message or a handshake, and a close that frees it all. */
#define YHC_IMPLEMENTATION
#include "yhc.h"

#include <stdlib.h>

typedef struct mem_stream {
  yhc__stream base;
  const unsigned char *data;
  size_t size, pos, piece_left;
  size_t sent;
  int rd, wr;
} mem_stream;

static long mem_read(yhc__stream *s, void *buf, size_t cap) {
  mem_stream *m = (mem_stream *)s;
  size_t n;
  if (m->pos >= m->size) return 0;
  if (!m->piece_left) return YHC__AGAIN; /* this piece is used up: wait for the next READ */
  n = cap < m->piece_left ? cap : m->piece_left;
  if (n > m->size - m->pos) n = m->size - m->pos;
  memcpy(buf, m->data + m->pos, n);
  m->pos += n;
  m->piece_left -= n;
  return (long)n;
}

static long mem_write(yhc__stream *s, const void *buf, size_t len) {
  mem_stream *m = (mem_stream *)s;
  (void)buf;
  if (len > 4096) len = 4096; /* a partial write now and then */
  m->sent += len;
  return (long)len;
}

static void mem_want(yhc__stream *s, int rd, int wr) {
  mem_stream *m = (mem_stream *)s;
  m->rd = rd;
  m->wr = wr;
}

static void mem_close(yhc__stream *s) { (void)s; }

static const yhc__stream_vt mem_vt = {mem_read, mem_write, mem_want, mem_close, NULL};

typedef struct owner {
  int connected, failed;
} owner;

static void on_event(void *ctx, int ev) {
  owner *o = (owner *)ctx;
  if (ev & YHC__EV_ERROR) o->failed = 1;
  if (ev & YHC__EV_CONNECT) o->connected = 1;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static yhc__tls_ctx *ctx;
  static yhc__tls_conf conf;
  yhc_loop *loop = yhc_loop_create(NULL);
  yhc__stream *s;
  yhc__tls *t;
  yhc_error err;
  mem_stream mem;
  owner o;
  int rounds;
  char buf[512];
  if (!loop) return 0;
  conf.insecure = 1; /* certificate checks would only end the handshake sooner */
  /* a numeric host connects to port 9 at once (discard; nothing listens): the TCP stream is
     then swapped for the memory one before it can say anything */
  s = yhc__tls_open(loop, &ctx, &conf, "127.0.0.1", 9, &err);
  if (!s) {
    yhc_loop_destroy(loop);
    return 0;
  }
  t = (yhc__tls *)s;
  t->tcp->vt->close(t->tcp);
  memset(&mem, 0, sizeof mem);
  mem.base.vt = &mem_vt;
  mem.base.owner = t;
  mem.base.on_event = yhc__tls_inner_event;
  mem.data = data;
  mem.size = size;
  t->tcp = &mem.base;
  memset(&o, 0, sizeof o);
  s->owner = &o;
  s->on_event = on_event;
  yhc__stream_emit(&mem.base, YHC__EV_CONNECT);
  for (rounds = 0; rounds < 10000 && !o.failed; rounds++) {
    if (o.connected) {
      long n = s->vt->read(s, buf, sizeof buf);
      if (n == YHC__FAIL && !s->err.msg[0]) abort();
      if (n == 0 || n == YHC__FAIL) break;
      s->vt->write(s, "GET / HTTP/1.1\r\n\r\n", 18);
    }
    if (mem.pos >= mem.size) { /* EOF: the layer must say so and stop */
      yhc__stream_emit(&mem.base, YHC__EV_READ);
      if (!o.connected) break;
      continue;
    }
    mem.piece_left = 1 + data[mem.pos] % 200;
    yhc__stream_emit(&mem.base, YHC__EV_READ | YHC__EV_WRITE);
    yhc_loop_poll(loop, 0);
  }
  if (o.failed && !s->err.msg[0]) abort();
  s->vt->close(s);
  yhc_loop_destroy(loop);
  return 0;
}
