/* libFuzzer target for the WebSocket codec layer.
   Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -I. fuzz/fuzz_ws.c -o /tmp/fw -lm

   Besides "never crashes", it checks that the parser's answer does not depend on how the
   bytes arrive: the input parsed whole, in pieces whose sizes come from the input, and through
   the header-only streaming path must give the same frames and the same error (message and
   offset). Every parse call sees a heap copy of exactly the bytes it is given, so an overread
   by one byte is an ASan report. It also round-trips payloads taken from the input through
   the encoder, masking, the parser and the close payload builder. */
#define YHC_IMPLEMENTATION
#include "yhc.h"

#include <stdlib.h>

#define FUZZ_MAX_FRAME 64
#define FUZZ_MAX_MESSAGE 200
#define FUZZ_MAX_EVENTS 4096

typedef struct event {
  int kind; /* 1 frame, 2 error, 3 need more at end */
  size_t at; /* stream offset of the frame start */
  int fin, opcode, message_opcode, close_code;
  size_t len, reason_len;
  yhc_err code;
  size_t err_offset;
  char msg[YHC_ERROR_MSG_MAX];
} event;

typedef struct events {
  event e[FUZZ_MAX_EVENTS];
  int n;
} events;

static void fail(const char *what) {
  fprintf(stderr, "fuzz_ws: %s\n", what);
  abort();
}

static unsigned char *copy_exact(const unsigned char *p, size_t n) {
  unsigned char *c = (unsigned char *)malloc(n ? n : 1);
  if (!c) fail("malloc");
  if (n) memcpy(c, p, n);
  return c;
}

static event *push(events *ev) {
  event *e;
  if (ev->n >= FUZZ_MAX_EVENTS) fail("too many events");
  e = &ev->e[ev->n++];
  memset(e, 0, sizeof *e);
  return e;
}

static void record_frame(events *ev, size_t at, const yhc__ws_frame *f, const unsigned char *base) {
  event *e = push(ev);
  (void)base;
  e->kind = 1;
  e->at = at;
  e->fin = f->fin;
  e->opcode = f->opcode;
  e->message_opcode = f->message_opcode;
  e->close_code = f->close_code;
  e->len = f->len;
  e->reason_len = f->close_reason.len;
}

static void record_end(events *ev, size_t at, int r, const yhc_error *err) {
  event *e = push(ev);
  e->at = at;
  if (r < 0) {
    e->kind = 2;
    e->code = err->code;
    e->err_offset = err->offset;
    memcpy(e->msg, err->msg, sizeof e->msg);
  } else {
    e->kind = 3;
  }
}

/* Checks the invariants of one successful parse against the bytes it was given. */
static void check_frame(const unsigned char *buf, size_t len, int r, const yhc__ws_frame *f) {
  if ((size_t)r > len || f->len > (size_t)r) fail("frame longer than input");
  if (f->payload != buf + (r - (int)f->len)) fail("payload not at the end of the frame");
  if (f->len > FUZZ_MAX_FRAME) fail("frame limit not enforced");
  if (f->opcode >= YHC__WS_OP_CLOSE && (!f->fin || f->len > 125)) fail("bad control frame accepted");
  if (f->opcode == YHC__WS_OP_CLOSE && f->len && !yhc__utf8_valid(f->payload + 2, f->len - 2)) fail("bad reason");
  if (buf[0] & 0x70) fail("RSV accepted");
  if (buf[1] & 0x80) fail("masked frame accepted");
}

/* The input parsed from one buffer holding all of it. */
static void run_whole(const unsigned char *data, size_t size, events *ev) {
  yhc__ws_parser p;
  yhc__ws_frame f;
  yhc_error err;
  size_t pos = 0;
  unsigned char *buf = copy_exact(data, size);
  yhc__ws_parser_init(&p, FUZZ_MAX_FRAME, FUZZ_MAX_MESSAGE);
  for (;;) {
    int r = yhc__ws_parse(&p, buf + pos, size - pos, &f, &err);
    if (r <= 0) {
      record_end(ev, pos, r, &err);
      break;
    }
    check_frame(buf + pos, size - pos, r, &f);
    if (f.message_opcode != YHC__WS_OP_TEXT && f.message_opcode != YHC__WS_OP_BINARY && f.message_opcode != f.opcode)
      fail("message opcode");
    if (p.msg_len > FUZZ_MAX_MESSAGE) fail("message limit not enforced");
    record_frame(ev, pos, &f, buf);
    pos += (size_t)r;
  }
  free(buf);
}

/* The input arriving in pieces; each call sees only the unconsumed bytes received so far. */
static void run_pieces(const unsigned char *data, size_t size, const unsigned char *sizes, size_t nsizes,
                       events *ev) {
  yhc__ws_parser p;
  yhc__ws_frame f;
  yhc_error err;
  size_t start = 0, have = 0, si = 0;
  yhc__ws_parser_init(&p, FUZZ_MAX_FRAME, FUZZ_MAX_MESSAGE);
  for (;;) {
    int r;
    unsigned char *buf = copy_exact(data + start, have - start);
    yhc__ws_parser before = p;
    r = yhc__ws_parse(&p, buf, have - start, &f, &err);
    if (r > 0) {
      check_frame(buf, have - start, r, &f);
      record_frame(ev, start, &f, buf);
      start += (size_t)r;
    } else if (r < 0) {
      record_end(ev, start, r, &err);
      free(buf);
      return;
    } else {
      if (before.msg_opcode != p.msg_opcode || before.msg_len != p.msg_len || before.failed != p.failed)
        fail("parser state changed on need-more");
      if (have == size) {
        record_end(ev, start, 0, &err);
        free(buf);
        return;
      }
      have += nsizes ? (size_t)(sizes[si++ % nsizes] % 23) + 1 : 1;
      if (have > size) have = size;
    }
    free(buf);
  }
}

/* The streaming path: header-only parse, parser_begin, then the payload taken as raw bytes. */
static void run_streaming(const unsigned char *data, size_t size, events *ev) {
  yhc__ws_parser p;
  yhc__ws_header h;
  yhc_error err;
  size_t pos = 0;
  yhc__ws_parser_init(&p, FUZZ_MAX_FRAME, FUZZ_MAX_MESSAGE);
  for (;;) {
    unsigned char *buf = copy_exact(data + pos, size - pos);
    int r = yhc__ws_parse_header(buf, size - pos, &h, &err), mop = -1;
    yhc__ws_frame f;
    if (r > 0 && yhc__ws_parser_check(&p, &h, &err)) r = -1;
    if (r > 0 && h.payload_len > size - pos - (size_t)r) r = 0;
    if (r <= 0) {
      if (r < 0) p.failed = 1;
      record_end(ev, pos, r, &err);
      free(buf);
      return;
    }
    memset(&f, 0, sizeof f);
    f.fin = h.fin;
    f.opcode = h.opcode;
    f.payload = buf + r;
    f.len = (size_t)h.payload_len;
    if (h.opcode == YHC__WS_OP_CLOSE &&
        yhc__ws_close_parse(f.payload, f.len, &f.close_code, &f.close_reason, h.header_len, &err)) {
      record_end(ev, pos, -1, &err);
      free(buf);
      return;
    }
    /* begin fails after the check only for an empty final frame ending text inside a
       character; the payload's UTF-8 goes through as the whole parse checks it, in one piece */
    if (yhc__ws_parser_begin(&p, &h, &mop, &err) ||
        (h.opcode < YHC__WS_OP_CLOSE && f.len && yhc__ws_parser_text(&p, f.payload, f.len, 1, h.header_len, &err))) {
      if (p.close_status != 1007) fail("begin failed after check passed");
      record_end(ev, pos, -1, &err);
      free(buf);
      return;
    }
    f.message_opcode = mop;
    record_frame(ev, pos, &f, buf);
    pos += (size_t)r + f.len;
    free(buf);
  }
}

static void compare(const events *a, const events *b, const char *what) {
  int i;
  if (a->n != b->n) {
    fprintf(stderr, "%s: %d vs %d events\n", what, a->n, b->n);
    fail("event count differs");
  }
  for (i = 0; i < a->n; i++) {
    const event *x = &a->e[i], *y = &b->e[i];
    if (x->kind != y->kind || x->at != y->at || x->fin != y->fin || x->opcode != y->opcode ||
        x->message_opcode != y->message_opcode || x->close_code != y->close_code || x->len != y->len ||
        x->reason_len != y->reason_len || x->code != y->code || x->err_offset != y->err_offset ||
        strcmp(x->msg, y->msg) != 0) {
      fprintf(stderr, "%s: event %d differs: kind %d/%d at %zu/%zu msg '%s'/'%s'\n", what, i, x->kind, y->kind, x->at,
              y->at, x->msg, y->msg);
      fail("events differ");
    }
  }
}

/* Payload from the input through encoder, mask and parser. */
static void round_trip(const unsigned char *data, size_t size) {
  unsigned char mask[4] = {0, 0, 0, 0};
  yhc_buf b;
  yhc__ws_parser p;
  yhc__ws_frame f;
  yhc_error err;
  size_t i, split, hl;
  unsigned char *copy;
  int op, r;
  for (i = 0; i < 4 && i < size; i++) mask[i] = data[i];
  op = yhc__utf8_valid(data, size) ? YHC__WS_OP_TEXT : YHC__WS_OP_BINARY;
  memset(&b, 0, sizeof b);

  /* Masked, as a client sends it: unmasking in two pieces restores the payload. */
  if (yhc__ws_encode(&b, op, 1, data, size, mask)) fail("encode");
  hl = b.len - size;
  if (hl != (size < 126 ? 6u : size < 65536 ? 8u : 14u)) fail("header length");
  if (memcmp(b.ptr + hl - 4, mask, 4) != 0) fail("mask key not in header");
  copy = copy_exact((const unsigned char *)b.ptr + hl, size);
  split = size ? data[size - 1] % (size + 1) : 0;
  yhc__ws_mask(copy, split, mask, 0);
  yhc__ws_mask(copy + split, size - split, mask, split);
  if (size && memcmp(copy, data, size) != 0) fail("mask round trip");
  free(copy);
  /* ... and the parser refuses it, servers must not mask. */
  copy = copy_exact((const unsigned char *)b.ptr, b.len);
  yhc__ws_parser_init(&p, 0, 0);
  if (yhc__ws_parse(&p, copy, b.len, &f, &err) != -1 || err.offset != 1) fail("masked frame accepted");
  free(copy);

  /* Unmasked, as a server sends it, split into two fragments: the parser gives it back. */
  b.len = 0;
  if (yhc__ws_encode(&b, op, 0, data, split, NULL)) fail("encode");
  if (yhc__ws_encode(&b, YHC__WS_OP_CONT, 1, data + split, size - split, NULL)) fail("encode");
  copy = copy_exact((const unsigned char *)b.ptr, b.len);
  yhc__ws_parser_init(&p, 0, 0);
  r = yhc__ws_parse(&p, copy, b.len, &f, &err);
  if (r <= 0 || f.opcode != op || f.fin || f.len != split || (split && memcmp(f.payload, data, split) != 0))
    fail("first fragment");
  hl = (size_t)r;
  r = yhc__ws_parse(&p, copy + hl, b.len - hl, &f, &err);
  if (r <= 0 || hl + (size_t)r != b.len || f.opcode != YHC__WS_OP_CONT || f.message_opcode != op || !f.fin ||
      f.len != size - split || (size - split && memcmp(f.payload, data + split, size - split) != 0))
    fail("second fragment");
  free(copy);

  /* Close payload with a reason from the input. */
  {
    unsigned char pl[125], fr[140];
    char *reason = (char *)malloc(size + 1);
    int code = size >= 2 ? (data[0] << 8 | data[1]) : 1000, n;
    size_t fl;
    if (!reason) fail("malloc");
    if (size) memcpy(reason, data, size);
    reason[size] = 0;
    n = yhc__ws_close_payload(pl, code, reason);
    if (n > 125) fail("close payload too long");
    if (n >= 2) {
      fl = yhc__ws_frame_header(fr, 1, YHC__WS_OP_CLOSE, (uint64_t)n, NULL);
      memcpy(fr + fl, pl, (size_t)n);
      fl += (size_t)n;
      copy = copy_exact(fr, fl);
      yhc__ws_parser_init(&p, 0, 0);
      r = yhc__ws_parse(&p, copy, fl, &f, &err);
      if (r != (int)fl || f.close_code != code || f.close_reason.len != (size_t)n - 2 ||
          memcmp(f.close_reason.ptr, reason, (size_t)n - 2) != 0)
        fail("close round trip");
      free(copy);
    }
    free(reason);
  }
  yhc_buf_free(&b);
}

/* The streaming UTF-8 validator, fed the input in pieces whose sizes come from the input,
   agrees with the whole-buffer check, and puts the fault where the scan stops. */
static void utf8_pieces(const unsigned char *data, size_t size) {
  yhc__utf8_stream u;
  size_t pos = 0, si = size;
  uint64_t at = 0;
  const char *fault = NULL;
  int ok = 1, valid = yhc__utf8_valid(data, size);
  memset(&u, 0, sizeof u);
  while (ok && pos < size) {
    size_t n = si ? (size_t)(data[--si] % 7) : 1;
    unsigned char *piece;
    if (n > size - pos) n = size - pos;
    piece = copy_exact(data + pos, n);
    ok = yhc__utf8_feed(&u, piece, n, &at, &fault) == 0;
    free(piece);
    pos += n;
    if (u.part_len > 3) fail("utf8 stream carries more than a cut character");
  }
  if (ok) ok = yhc__utf8_finish(&u, &at, &fault) == 0;
  if (ok != valid) fail("utf8 stream vs whole");
  if (!ok && (at != yhc__utf8_scan(data, size) || !fault || !fault[0])) fail("utf8 stream fault position");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static events whole, pieces, bytes, streaming;
  size_t scan;
  whole.n = pieces.n = bytes.n = streaming.n = 0;
  run_whole(data, size, &whole);
  /* Piece sizes come from the tail of the input, read backwards, so they vary independently
     of the frame bytes at the front. */
  {
    unsigned char *rev = copy_exact(data, size);
    size_t i;
    for (i = 0; i < size / 2; i++) {
      unsigned char t = rev[i];
      rev[i] = rev[size - 1 - i];
      rev[size - 1 - i] = t;
    }
    run_pieces(data, size, rev, size, &pieces);
    free(rev);
  }
  run_pieces(data, size, NULL, 0, &bytes);
  run_streaming(data, size, &streaming);
  compare(&whole, &pieces, "pieces");
  compare(&whole, &bytes, "byte by byte");
  compare(&whole, &streaming, "streaming");
  /* The UTF-8 scan's prefix is valid and ends where a sequence starts. */
  scan = yhc__utf8_scan(data, size);
  if (scan > size || !yhc__utf8_valid(data, scan)) fail("utf8 scan prefix");
  if ((scan == size) != yhc__utf8_valid(data, size)) fail("utf8 scan vs valid");
  utf8_pieces(data, size);
  round_trip(data, size);
  return 0;
}
