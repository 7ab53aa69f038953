/* ==== WebSocket client ============================================================ */
/* Owns: the client side of RFC 6455 over a TCP or TLS stream -- the opening handshake with
   its Sec-WebSocket-Accept check, ping/pong, the close handshake, keepalive -- exposed as a
   byte stream, because that is what yagna's VPN tunnel is: raw TCP bytes in binary messages
   whose boundaries mean nothing. So the HTTP client runs over a tunnel unchanged.

   Received frames are parsed in place in the receive buffer (server frames are unmasked) and
   their payload is copied once, straight into the reader's buffer. Control frames are
   answered as they are met, even while the reader is idle, so the daemon's pings never go
   unanswered. A tunnel that has been silent past `dead_ms` (the daemon pings every 5 s) is
   reported as failed, which is how a vanished provider is noticed within seconds. */

typedef struct yhc__ws_conf {
  size_t max_frame;    /* [1 MiB] payload of one received frame */
  int ping_ms;         /* our own keepalive ping when we have sent nothing [5000] */
  int dead_ms;         /* nothing received for this long: the tunnel is dead [15000] */
  int handshake_ms;    /* [10000], from TCP connect to the 101 */
  size_t max_wbuf;     /* bytes queued for sending before write() pushes back [1 MiB] */
} yhc__ws_conf;

enum { YHC__WS_CONNECTING, YHC__WS_HANDSHAKE, YHC__WS_OPEN, YHC__WS_CLOSED };

typedef struct yhc__ws {
  yhc__stream base;    /* what the owner sees */
  yhc__stream *inner;  /* TCP or TLS */
  yhc_loop *loop;
  yhc__ws_conf conf;
  int state;
  int want_rd, want_wr;
  int eof;             /* the server closed (close frame or TCP EOF): reads return 0 */
  int inner_eof;       /* TCP EOF seen; becomes eof once the frames already received are read */
  int failed;
  int http_status;     /* of the handshake answer, for callers that map errors */
  char accept[32];
  char target_desc[160];
  yhc_buf rbuf;        /* raw bytes from inner */
  size_t rpos;
  uint64_t cur_left;   /* payload bytes of the current data frame not yet read */
  int cur_complete;    /* current frame's payload is wholly in rbuf */
  yhc__ws_parser parser;
  yhc_buf wbuf;        /* frames (or the handshake) waiting for inner */
  size_t wpos;
  yhc__timer kick;     /* deferred events to the owner */
  yhc__timer keepalive;
  uint64_t last_rx, last_tx;
  uint64_t rng[2];
  int pending_ev;
} yhc__ws;

static uint64_t yhc__ws_rand(yhc__ws *w) {
  /* xorshift128+, seeded from the system's entropy per connection: masks must not be
     predictable by the peer's software, and one urandom read per tunnel is cheap */
  uint64_t s1 = w->rng[0];
  const uint64_t s0 = w->rng[1];
  w->rng[0] = s0;
  s1 ^= s1 << 23;
  w->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
  return w->rng[1] + s0;
}

static void yhc__entropy(void *out, size_t n) {
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  size_t got = 0;
  if (fd >= 0) {
    while (got < n) {
      ssize_t r = read(fd, YHC__CAST(char *, out) + got, n - got);
      if (r <= 0) break;
      got += (size_t)r;
    }
    close(fd);
  }
  if (got < n) { /* no urandom: mix what varies, better than nothing */
    uint64_t x = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)out;
    size_t i;
    for (i = got; i < n; i++) {
      x ^= x << 13; x ^= x >> 7; x ^= x << 17;
      YHC__CAST(unsigned char *, out)[i] = (unsigned char)x;
    }
  }
}

static void yhc__ws_kick_fire(void *ctx) {
  yhc__ws *w = YHC__CAST(yhc__ws *, ctx);
  int ev = w->pending_ev;
  w->pending_ev = 0;
  if (ev) yhc__stream_emit(&w->base, ev);
}

/* Tells the owner about `ev` from the loop, not from inside its own call into us. */
static void yhc__ws_kick(yhc__ws *w, int ev) {
  w->pending_ev |= ev;
  if (!yhc__timer_armed(&w->kick)) yhc__timer_start(w->loop, &w->kick, 0, yhc__ws_kick_fire, w);
}

static void yhc__ws_fail(yhc__ws *w, yhc_err code, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void yhc__ws_fail(yhc__ws *w, yhc_err code, const char *fmt, ...) {
  va_list ap;
  if (w->failed) return;
  va_start(ap, fmt);
  yhc__error_vset(&w->base.err, code, 0, fmt, ap);
  va_end(ap);
  w->failed = 1;
  w->state = YHC__WS_CLOSED;
  yhc__timer_stop(w->loop, &w->keepalive);
  yhc__ws_kick(w, YHC__EV_ERROR);
}

/* Reads from inner only while the reader keeps up, so a stalled reader cannot make us buffer
   without bound (and a level-triggered poll cannot spin on data we will not take). */
static void yhc__ws_interest(yhc__ws *w) {
  int rd = w->state != YHC__WS_CLOSED && !w->eof && !w->inner_eof &&
           w->rbuf.len - w->rpos <= w->conf.max_frame + 64 + 65536;
  w->inner->vt->want(w->inner, rd, w->wpos < w->wbuf.len);
}

static void yhc__ws_flush(yhc__ws *w) {
  while (w->wpos < w->wbuf.len) {
    long n = w->inner->vt->write(w->inner, w->wbuf.ptr + w->wpos, w->wbuf.len - w->wpos);
    if (n == YHC__AGAIN) break;
    if (n < 0) {
      yhc__ws_fail(w, w->inner->err.code ? w->inner->err.code : YHC_ERR_IO, "tunnel %s: %s",
                   w->target_desc, w->inner->err.msg);
      return;
    }
    w->wpos += (size_t)n;
    w->last_tx = yhc_loop_now(w->loop);
  }
  if (w->wpos == w->wbuf.len) w->wbuf.len = w->wpos = 0;
  else if (w->wpos > 65536) {
    yhc__buf_consume(&w->wbuf, w->wpos);
    w->wpos = 0;
  }
  yhc__ws_interest(w);
}

static int yhc__ws_send_frame(yhc__ws *w, int opcode, const void *data, size_t len) {
  unsigned char mask[4];
  uint64_t r = yhc__ws_rand(w);
  memcpy(mask, &r, 4);
  if (yhc__ws_encode(&w->wbuf, opcode, 1, data, len, mask)) {
    yhc__ws_fail(w, YHC_ERR_NOMEM, "out of memory queueing a WebSocket frame");
    return -1;
  }
  return 0;
}

/* Handles one complete control frame from the server. */
static void yhc__ws_control(yhc__ws *w, const yhc__ws_frame *f) {
  if (f->opcode == YHC__WS_OP_PING) {
    yhc__ws_send_frame(w, YHC__WS_OP_PONG, f->payload, f->len);
  } else if (f->opcode == YHC__WS_OP_CLOSE) {
    unsigned char pl[YHC__WS_MAX_CONTROL];
    int n = yhc__ws_close_payload(pl, f->close_code ? 1000 : 0, NULL);
    /* answer the close handshake, then the pipe has ended */
    yhc__ws_send_frame(w, YHC__WS_OP_CLOSE, pl, (size_t)(n > 0 ? n : 0));
    w->eof = 1;
  }
}

/* Walks frames at the read position: answers control frames, stops at data. Returns 1 when
   data is available to read, 0 when more bytes are needed, -1 on a protocol error. */
static int yhc__ws_advance(yhc__ws *w) {
  while (!w->cur_left && !w->eof) {
    const unsigned char *p = YHC__PUN(const unsigned char *, w->rbuf.ptr) + w->rpos;
    size_t avail = w->rbuf.len - w->rpos;
    yhc__ws_header h;
    yhc_error e;
    int hl = yhc__ws_parse_header(p, avail, &h, &e);
    if (hl < 0) {
      yhc__ws_fail(w, e.code, "tunnel %s: %s", w->target_desc, e.msg);
      return -1;
    }
    if (hl == 0) {
      if (w->inner_eof) w->eof = 1; /* nothing complete is left: the pipe has ended */
      break;
    }
    if (h.opcode >= YHC__WS_OP_CLOSE) {
      yhc__ws_frame f;
      int n;
      memset(&f, 0, sizeof f);
      if (avail < hl + h.payload_len) {
        if (w->inner_eof) w->eof = 1;
        break;
      }
      n = yhc__ws_parse(&w->parser, p, avail, &f, &e);
      if (n < 0) {
        yhc__ws_fail(w, e.code, "tunnel %s: %s", w->target_desc, e.msg);
        return -1;
      }
      w->rpos += (size_t)n;
      yhc__ws_control(w, &f);
      continue;
    }
    /* data: its payload is streamed out by read(), so only the header is consumed here */
    if (yhc__ws_parser_begin(&w->parser, &h, NULL, &e)) {
      yhc__ws_fail(w, e.code, "tunnel %s: %s", w->target_desc, e.msg);
      return -1;
    }
    w->rpos += (size_t)hl;
    w->cur_left = h.payload_len;
  }
  return w->cur_left > 0 || w->eof;
}

/* Moves bytes from inner into rbuf until inner has no more (or we hold plenty). Returns 2
   when bytes were added, 0 when none were, 1 on EOF from inner, -1 on failure. */
static int yhc__ws_fill(yhc__ws *w) {
  int rounds, added = 0;
  for (rounds = 0; rounds < 16; rounds++) {
    long n;
    if (w->rpos == w->rbuf.len) w->rbuf.len = w->rpos = 0;
    else if (w->rpos > 0 && w->rbuf.cap - w->rbuf.len < 4096) {
      yhc__buf_consume(&w->rbuf, w->rpos);
      w->rpos = 0;
    }
    if (w->rbuf.len - w->rpos > w->conf.max_frame + 64 + 65536) break; /* reader is behind */
    if (yhc_buf_reserve(&w->rbuf, 16384)) {
      yhc__ws_fail(w, YHC_ERR_NOMEM, "out of memory receiving from tunnel %s", w->target_desc);
      return -1;
    }
    n = w->inner->vt->read(w->inner, w->rbuf.ptr + w->rbuf.len, w->rbuf.cap - w->rbuf.len - 1);
    if (n == YHC__AGAIN) break;
    if (n == 0) return added ? 2 : 1; /* the EOF is seen again on the next read */
    if (n < 0) {
      yhc__ws_fail(w, w->inner->err.code ? w->inner->err.code : YHC_ERR_IO, "tunnel %s: %s",
                   w->target_desc, w->inner->err.msg);
      return -1;
    }
    w->rbuf.len += (size_t)n;
    w->last_rx = yhc_loop_now(w->loop);
    added = 1;
  }
  return added ? 2 : 0;
}

/* ---- keepalive: one timer checks both directions */

static void yhc__ws_keepalive_fire(void *ctx);

static void yhc__ws_arm_keepalive(yhc__ws *w) {
  int step = w->conf.ping_ms;
  if (w->conf.dead_ms > 0 && (step <= 0 || w->conf.dead_ms / 3 < step)) step = w->conf.dead_ms / 3;
  if (step <= 0) return;
  yhc__timer_start(w->loop, &w->keepalive, (uint64_t)(step > 0 ? step : 1), yhc__ws_keepalive_fire, w);
}

static void yhc__ws_keepalive_fire(void *ctx) {
  yhc__ws *w = YHC__CAST(yhc__ws *, ctx);
  uint64_t now = yhc_loop_now(w->loop);
  if (w->state != YHC__WS_OPEN) return;
  /* payload the owner has not taken yet is no sign of a dead peer: we stopped reading */
  if (w->cur_left && w->rpos < w->rbuf.len) w->last_rx = now;
  if (w->conf.dead_ms > 0 && now - w->last_rx >= (uint64_t)w->conf.dead_ms) {
    yhc__ws_fail(w, YHC_ERR_TIMEOUT, "tunnel %s: nothing received for %d ms", w->target_desc,
                 w->conf.dead_ms);
    return;
  }
  if (w->conf.ping_ms > 0 && now - w->last_tx >= (uint64_t)w->conf.ping_ms) {
    if (yhc__ws_send_frame(w, YHC__WS_OP_PING, "yhc", 3) == 0) yhc__ws_flush(w);
    if (w->failed) return;
  }
  yhc__ws_arm_keepalive(w);
}

/* ---- handshake */

static void yhc__ws_handshake_read(yhc__ws *w) {
  yhc_header_view hv[64];
  yhc__head h;
  yhc_error e;
  size_t end, i;
  long n;
  int upgrade = 0, connection = 0, accept_ok = 0;
  yhc__error_clear(&e);
  end = yhc__find_head_end(w->rbuf.ptr, w->rbuf.len, 0);
  if (!end) {
    if (w->rbuf.len > 16384)
      yhc__ws_fail(w, YHC_ERR_LIMIT, "tunnel %s: handshake answer exceeds 16384 bytes", w->target_desc);
    return;
  }
  n = yhc__parse_head(w->rbuf.ptr, end, &h, hv, 64, &e);
  if (n <= 0) {
    yhc__ws_fail(w, YHC_ERR_WEBSOCKET, "tunnel %s: bad handshake answer: %s", w->target_desc,
                 n < 0 ? e.msg : "truncated");
    return;
  }
  w->http_status = h.status;
  if (h.status != 101) {
    /* yagna reports tunnel errors as ordinary answers with a JSON message; show it */
    size_t blen = w->rbuf.len - end;
    for (i = 0; i < h.nheaders; i++) {
      if (yhc__str_ieq(hv[i].name, "content-length")) {
        unsigned long cl = strtoul(hv[i].value.ptr, NULL, 10);
        if (cl < 4096 && blen < cl) return; /* wait for the small body */
      }
    }
    yhc__ws_fail(w, YHC_ERR_HTTP_STATUS, "tunnel %s refused: HTTP %d %.*s%s%.*s", w->target_desc,
                 h.status, (int)h.reason.len, h.reason.ptr, blen ? ": " : "",
                 (int)YHC__MIN(blen, 200), w->rbuf.ptr + end);
    return;
  }
  for (i = 0; i < h.nheaders; i++) {
    if (yhc__str_ieq(hv[i].name, "upgrade")) upgrade |= yhc__str_ieq(hv[i].value, "websocket");
    if (yhc__str_ieq(hv[i].name, "connection")) connection |= yhc__token_list_has(hv[i].value, "upgrade");
    if (yhc__str_ieq(hv[i].name, "sec-websocket-accept")) accept_ok = yhc__str_eq(hv[i].value, w->accept);
  }
  if (!upgrade || !connection || !accept_ok) {
    yhc__ws_fail(w, YHC_ERR_WEBSOCKET, "tunnel %s: handshake answer lacks %s", w->target_desc,
                 !upgrade ? "Upgrade: websocket" : !connection ? "Connection: Upgrade"
                                                               : "a matching Sec-WebSocket-Accept");
    return;
  }
  w->rpos = end;
  w->state = YHC__WS_OPEN;
  w->last_rx = w->last_tx = yhc_loop_now(w->loop);
  yhc__ws_arm_keepalive(w);
  yhc__ws_kick(w, YHC__EV_CONNECT | (w->rpos < w->rbuf.len ? YHC__EV_READ : 0));
}


static void yhc__ws_handshake_timeout(void *ctx) {
  yhc__ws *w = YHC__CAST(yhc__ws *, ctx);
  if (w->state == YHC__WS_OPEN) return;
  yhc__ws_fail(w, YHC_ERR_TIMEOUT, "tunnel %s: no handshake answer within %d ms", w->target_desc,
               w->conf.handshake_ms);
}

/* ---- events from the inner stream */

static void yhc__ws_inner_event(void *ctx, int ev) {
  yhc__ws *w = YHC__CAST(yhc__ws *, ctx);
  if (w->failed) return;
  if (ev & YHC__EV_ERROR) {
    yhc__ws_fail(w, w->inner->err.code ? w->inner->err.code : YHC_ERR_CONNECT, "tunnel %s: %s",
                 w->target_desc, w->inner->err.msg);
    return;
  }
  if (ev & YHC__EV_CONNECT) {
    w->state = YHC__WS_HANDSHAKE;
    yhc__ws_flush(w); /* the handshake request is already in wbuf */
    if (w->failed) return;
  }
  if (ev & YHC__EV_WRITE) {
    size_t before = w->wbuf.len - w->wpos;
    yhc__ws_flush(w);
    if (w->failed) return;
    if (w->state == YHC__WS_OPEN && w->want_wr && (w->wbuf.len - w->wpos) < before)
      yhc__ws_kick(w, YHC__EV_WRITE);
  }
  if (ev & YHC__EV_READ) {
    int r = yhc__ws_fill(w);
    if (r < 0) return;
    if (w->state == YHC__WS_HANDSHAKE) {
      if (r == 1) {
        yhc__ws_fail(w, YHC_ERR_CLOSED, "tunnel %s: connection closed during the handshake",
                     w->target_desc);
        return;
      }
      yhc__ws_handshake_read(w);
      if (w->state != YHC__WS_OPEN) return;
      /* frames that came with the 101 are met now, not when the owner first reads */
    }
    if (r == 1) w->inner_eof = 1;
    if (w->state == YHC__WS_OPEN && (r != 0 || w->cur_left || w->rpos < w->rbuf.len)) {
      int a = yhc__ws_advance(w);
      if (a < 0) return;
      if (w->wpos < w->wbuf.len) yhc__ws_flush(w); /* pongs, close replies */
      if (w->failed) return;
      if (a > 0 || w->eof) yhc__ws_kick(w, YHC__EV_READ);
    }
    if (!w->failed) yhc__ws_interest(w);
  }
}

/* ---- the stream the owner sees */

static long yhc__ws_read(yhc__stream *s, void *buf, size_t cap) {
  yhc__ws *w = YHC__PUN(yhc__ws *, s);
  size_t got = 0;
  if (w->failed) return YHC__FAIL;
  if (w->state != YHC__WS_OPEN) return YHC__AGAIN;
  while (got < cap) {
    int a = yhc__ws_advance(w), r;
    if (a < 0) return YHC__FAIL;
    if (w->cur_left && w->rpos < w->rbuf.len) {
      size_t take = YHC__MIN(w->rbuf.len - w->rpos, cap - got);
      if (take > w->cur_left) take = (size_t)w->cur_left;
      memcpy(YHC__CAST(char *, buf) + got, w->rbuf.ptr + w->rpos, take);
      got += take;
      w->rpos += take;
      w->cur_left -= take;
      continue;
    }
    if (w->eof) break;
    if (w->inner_eof) { /* EOF in the middle of a frame's payload */
      w->eof = 1;
      break;
    }
    r = yhc__ws_fill(w);
    if (r < 0) return YHC__FAIL;
    if (r == 1) w->inner_eof = 1; /* the frames before it are still data: loop once more */
    if (r == 0) break;
  }
  if (w->wpos < w->wbuf.len) yhc__ws_flush(w); /* pongs and close replies met on the way */
  else yhc__ws_interest(w);
  /* bytes left behind may never be announced by the socket (they are all in rbuf already):
     say READ again, as the TLS stream does for what mbedTLS holds, so a reader that stops
     early is not left waiting */
  if (got && !w->failed && (w->eof || w->rpos < w->rbuf.len)) yhc__ws_kick(w, YHC__EV_READ);
  if (got) return (long)got;
  if (w->failed) return YHC__FAIL;
  return w->eof ? 0 : YHC__AGAIN;
}

static long yhc__ws_write(yhc__stream *s, const void *buf, size_t len) {
  yhc__ws *w = YHC__PUN(yhc__ws *, s);
  size_t room, take;
  if (w->failed) return YHC__FAIL;
  if (w->state != YHC__WS_OPEN) return YHC__AGAIN;
  if (w->eof) {
    yhc__error_set(&w->base.err, YHC_ERR_CLOSED, 0, "tunnel %s closed by the daemon", w->target_desc);
    return YHC__FAIL;
  }
  room = w->wbuf.len - w->wpos < w->conf.max_wbuf ? w->conf.max_wbuf - (w->wbuf.len - w->wpos) : 0;
  if (!room) return YHC__AGAIN;
  take = YHC__MIN(len, room);
  if (take > 65536) take = 65536; /* frames of at most 64 KiB, as the daemon's own reads */
  if (yhc__ws_send_frame(w, YHC__WS_OP_BINARY, buf, take)) return YHC__FAIL;
  yhc__ws_flush(w);
  if (w->failed) return YHC__FAIL;
  return (long)take;
}

static void yhc__ws_want(yhc__stream *s, int rd, int wr) {
  yhc__ws *w = YHC__PUN(yhc__ws *, s);
  w->want_rd = rd;
  w->want_wr = wr;
  if (w->state != YHC__WS_OPEN) return;
  if (wr && w->wbuf.len - w->wpos < w->conf.max_wbuf) yhc__ws_kick(w, YHC__EV_WRITE);
  if (rd && (w->cur_left || w->eof || w->rpos < w->rbuf.len)) yhc__ws_kick(w, YHC__EV_READ);
}

static void yhc__ws_close(yhc__stream *s) {
  yhc__ws *w = YHC__PUN(yhc__ws *, s);
  if (w->state == YHC__WS_OPEN && !w->eof && !w->failed) {
    /* best effort: tell the daemon we are done so it drops the provider-side socket now */
    unsigned char pl[YHC__WS_MAX_CONTROL];
    int n = yhc__ws_close_payload(pl, 1000, NULL);
    if (yhc__ws_send_frame(w, YHC__WS_OP_CLOSE, pl, (size_t)(n > 0 ? n : 0)) == 0) {
      w->inner->vt->write(w->inner, w->wbuf.ptr + w->wpos, w->wbuf.len - w->wpos);
    }
  }
  yhc__timer_stop(w->loop, &w->kick);
  yhc__timer_stop(w->loop, &w->keepalive);
  if (w->inner) w->inner->vt->close(w->inner);
  yhc_buf_free(&w->rbuf);
  yhc_buf_free(&w->wbuf);
  YHC_FREE(w);
}

/* A tunnel is alive while open; the daemon's close arrives as a frame we have either seen
   (eof) or will see, and the retry rule covers the latter. */
static int yhc__ws_alive(yhc__stream *s) {
  yhc__ws *w = YHC__PUN(yhc__ws *, s);
  return w->state == YHC__WS_OPEN && !w->eof && !w->inner_eof && !w->failed;
}

static const yhc__stream_vt yhc__ws_vt = {yhc__ws_read, yhc__ws_write, yhc__ws_want, yhc__ws_close,
                                          yhc__ws_alive};

/* Opens a WebSocket to `url` (ws:// or wss://) as a byte stream. `headers` (e.g. the yagna
   Authorization) are added to the handshake. The stream emits CONNECT after a valid 101,
   ERROR (with the daemon's answer in err) otherwise. NULL = failed at once (err set). */
static YHC__UNUSED yhc__stream *yhc__ws_open(yhc_loop *loop, yhc__tls_ctx **tls, const yhc__tls_conf *tls_conf,
                                 const char *url, const yhc_header *headers, size_t nheaders,
                                 const yhc__ws_conf *conf, yhc_error *err) {
  yhc_url u;
  yhc__ws *w;
  char host[256], key[32];
  unsigned char nonce[16];
  size_t i;
  int secure, ok = 0;
  if (yhc_url_parse(url, strlen(url), &u, err) < 0) return NULL;
  secure = yhc__str_ieq(u.scheme, "wss") || yhc__str_ieq(u.scheme, "https");
  if (!secure && !yhc__str_ieq(u.scheme, "ws") && !yhc__str_ieq(u.scheme, "http")) {
    yhc__error_set(err, YHC_ERR_URL, 0, "WebSocket URL must be ws:// or wss://");
    return NULL;
  }
  if (u.host.len >= sizeof host) {
    yhc__error_set(err, YHC_ERR_URL, 0, "WebSocket host name too long");
    return NULL;
  }
  memcpy(host, u.host.ptr, u.host.len);
  host[u.host.len] = 0;
  w = YHC__NEW(yhc__ws);
  if (!w) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory opening a WebSocket");
    return NULL;
  }
  w->base.vt = &yhc__ws_vt;
  w->loop = loop;
  if (conf) w->conf = *conf;
  if (!w->conf.max_frame) w->conf.max_frame = (size_t)1 << 20;
  if (!w->conf.max_wbuf) w->conf.max_wbuf = (size_t)1 << 20;
  if (!w->conf.ping_ms) w->conf.ping_ms = 5000;
  if (!w->conf.dead_ms) w->conf.dead_ms = 15000;
  if (!w->conf.handshake_ms) w->conf.handshake_ms = 10000;
  yhc__ws_parser_init(&w->parser, w->conf.max_frame, (size_t)-1 / 2);
  snprintf(w->target_desc, sizeof w->target_desc, "%.*s", (int)YHC__MIN(u.target.len, 150),
           u.target.ptr);
  {
    /* strip a ?authToken= from what we print: it is the app key */
    char *q = strchr(w->target_desc, '?');
    if (q) *q = 0;
  }
  yhc__entropy(nonce, sizeof nonce);
  yhc__entropy(w->rng, sizeof w->rng);
  if (!w->rng[0] && !w->rng[1]) w->rng[0] = 0x9e3779b97f4a7c15ull;
  yhc__ws_make_key(nonce, key);
  yhc__ws_accept_for_key(key, w->accept);
  ok |= yhc_buf_append(&w->wbuf, "GET ", 4);
  ok |= yhc_buf_append(&w->wbuf, u.target.ptr, u.target.len);
  ok |= yhc_buf_printf(&w->wbuf, " HTTP/1.1\r\nHost: %s%s%s", strchr(host, ':') ? "[" : "", host,
                       strchr(host, ':') ? "]" : "");
  if (u.port != (secure ? 443 : 80)) ok |= yhc_buf_printf(&w->wbuf, ":%d", u.port);
  ok |= yhc_buf_printf(&w->wbuf, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", key);
  for (i = 0; i < nheaders; i++) {
    if (!yhc__header_ok(headers[i].name, 1) || !yhc__header_ok(headers[i].value, 0)) {
      yhc__error_set(err, YHC_ERR_INVALID, 0, "invalid WebSocket handshake header");
      ok = -1;
      break;
    }
    ok |= yhc_buf_printf(&w->wbuf, "%s: %s\r\n", headers[i].name, headers[i].value);
  }
  ok |= yhc_buf_append(&w->wbuf, "\r\n", 2);
  if (ok) {
    if (!err || !err->code) yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory opening a WebSocket");
    yhc__ws_close(&w->base);
    return NULL;
  }
  w->inner = secure ? yhc__tls_open(loop, tls, tls_conf, host, u.port, err)
                    : yhc__tcp_open(loop, host, u.port, err);
  if (!w->inner) {
    yhc__ws_close(&w->base);
    return NULL;
  }
  w->inner->owner = w;
  w->inner->on_event = yhc__ws_inner_event;
  w->state = YHC__WS_CONNECTING;
  yhc__timer_start(loop, &w->keepalive, (uint64_t)w->conf.handshake_ms, yhc__ws_handshake_timeout, w);
  return &w->base;
}

