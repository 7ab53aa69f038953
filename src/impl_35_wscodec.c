/* ==== WebSocket frames (RFC 6455), SHA-1, base64 ================================= */
/* Owns: the bytes of the WebSocket protocol and nothing else -- the opening-handshake key and
   accept values (which need SHA-1 and base64, so they live here rather than in a crypto layer
   nobody else needs), the client frame encoder with masking, the server frame parser with its
   fragmentation state and limits, close payloads, and strict UTF-8 checking. Every function
   is pure over caller-owned bytes: no sockets, no clocks, no allocation except appends to a
   caller's yhc_buf, so the client layer, the tests and the fuzzer drive the same code.
   Randomness for keys and masks comes from the caller for the same reason. */

/* Opcodes (RFC 6455 5.2). Values are the wire values. */
#define YHC__WS_OP_CONT 0x0
#define YHC__WS_OP_TEXT 0x1
#define YHC__WS_OP_BINARY 0x2
#define YHC__WS_OP_CLOSE 0x8
#define YHC__WS_OP_PING 0x9
#define YHC__WS_OP_PONG 0xA

/* Control frames carry at most this much payload (RFC 6455 5.5). */
#define YHC__WS_MAX_CONTROL 125
/* Largest frame header: 2 + 8 (64-bit length) + 4 (mask key). */
#define YHC__WS_MAX_HEADER 14

/* Defaults for a parser whose limits are given as 0. A frame is buffered whole by
   yhc__ws_parse, so its limit bounds memory per connection; bulk byte pipes stream payload via
   yhc__ws_parse_header and are bounded by their own flow control instead. */
#ifndef YHC__WS_DEFAULT_MAX_FRAME
#  define YHC__WS_DEFAULT_MAX_FRAME ((size_t)16 << 20)
#endif
#ifndef YHC__WS_DEFAULT_MAX_MESSAGE
#  define YHC__WS_DEFAULT_MAX_MESSAGE ((size_t)64 << 20)
#endif

/* ---- SHA-1 (FIPS 180-4, 6.1) --------------------------------------------------- */
/* Only for Sec-WebSocket-Accept, where SHA-1 is mandated and no secrecy is at stake. */

typedef struct yhc__sha1_ctx {
  uint32_t h[5];
  uint64_t total;          /* message bytes seen so far */
  unsigned char block[64]; /* bytes of the current, not yet full, block */
  size_t used;
} yhc__sha1_ctx;

static uint32_t yhc__rol32(uint32_t x, unsigned n) { return (x << n) | (x >> (32u - n)); }

static void yhc__sha1_block(uint32_t h[5], const unsigned char *p) {
  uint32_t w[80], a, b, c, d, e, f, k, t;
  int i;
  for (i = 0; i < 16; i++) {
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
           (uint32_t)p[4 * i + 3];
  }
  for (i = 16; i < 80; i++) w[i] = yhc__rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  a = h[0];
  b = h[1];
  c = h[2];
  d = h[3];
  e = h[4];
  for (i = 0; i < 80; i++) {
    if (i < 20) {
      f = (b & c) | (~b & d); /* Ch */
      k = 0x5A827999u;
    } else if (i < 40) {
      f = b ^ c ^ d; /* Parity */
      k = 0x6ED9EBA1u;
    } else if (i < 60) {
      f = (b & c) | (b & d) | (c & d); /* Maj */
      k = 0x8F1BBCDCu;
    } else {
      f = b ^ c ^ d;
      k = 0xCA62C1D6u;
    }
    t = yhc__rol32(a, 5) + f + e + k + w[i];
    e = d;
    d = c;
    c = yhc__rol32(b, 30);
    b = a;
    a = t;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

static void yhc__sha1_init(yhc__sha1_ctx *c) {
  c->h[0] = 0x67452301u;
  c->h[1] = 0xEFCDAB89u;
  c->h[2] = 0x98BADCFEu;
  c->h[3] = 0x10325476u;
  c->h[4] = 0xC3D2E1F0u;
  c->total = 0;
  c->used = 0;
}

static void yhc__sha1_update(yhc__sha1_ctx *c, const void *data, size_t len) {
  const unsigned char *p = YHC__CAST(const unsigned char *, data);
  c->total += len;
  if (c->used) {
    size_t n = YHC__MIN(len, 64 - c->used);
    memcpy(c->block + c->used, p, n);
    c->used += n;
    p += n;
    len -= n;
    if (c->used < 64) return;
    yhc__sha1_block(c->h, c->block);
    c->used = 0;
  }
  for (; len >= 64; p += 64, len -= 64) yhc__sha1_block(c->h, p);
  if (len) memcpy(c->block, p, len);
  c->used = len;
}

static void yhc__sha1_final(yhc__sha1_ctx *c, unsigned char out[20]) {
  uint64_t bits = c->total * 8;
  int i;
  /* Padding: 0x80, zeros up to 56 mod 64, then the bit length big-endian (5.1.1). */
  c->block[c->used++] = 0x80;
  if (c->used > 56) {
    memset(c->block + c->used, 0, 64 - c->used);
    yhc__sha1_block(c->h, c->block);
    c->used = 0;
  }
  memset(c->block + c->used, 0, 56 - c->used);
  for (i = 0; i < 8; i++) c->block[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
  yhc__sha1_block(c->h, c->block);
  for (i = 0; i < 20; i++) out[i] = (unsigned char)(c->h[i / 4] >> (24 - 8 * (i % 4)));
}

static YHC__UNUSED void yhc__sha1(const void *data, size_t len, unsigned char out[20]) {
  yhc__sha1_ctx c;
  yhc__sha1_init(&c);
  yhc__sha1_update(&c, data, len);
  yhc__sha1_final(&c, out);
}

/* ---- base64 (RFC 4648 section 4, with padding) --------------------------------- */

/* `out` needs 4*ceil(len/3)+1 bytes; it is NUL-terminated. Returns the characters written. */
static size_t yhc__base64_encode(const unsigned char *in, size_t len, char *out) {
  static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i, o = 0;
  for (i = 0; i + 3 <= len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = digits[(v >> 18) & 63];
    out[o++] = digits[(v >> 12) & 63];
    out[o++] = digits[(v >> 6) & 63];
    out[o++] = digits[v & 63];
  }
  if (len - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = digits[(v >> 18) & 63];
    out[o++] = digits[(v >> 12) & 63];
    out[o++] = '=';
    out[o++] = '=';
  } else if (len - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = digits[(v >> 18) & 63];
    out[o++] = digits[(v >> 12) & 63];
    out[o++] = digits[(v >> 6) & 63];
    out[o++] = '=';
  }
  out[o] = 0;
  return o;
}

/* ---- Opening handshake values (RFC 6455 4.1, 4.2.2) ---------------------------- */

/* Sec-WebSocket-Key from 16 random bytes the caller drew; 24 characters plus NUL. */
static YHC__UNUSED void yhc__ws_make_key(const unsigned char nonce16[16], char out[25]) {
  yhc__base64_encode(nonce16, 16, out);
}

/* The Sec-WebSocket-Accept a server must answer to `key`; 28 characters plus NUL. */
static YHC__UNUSED void yhc__ws_accept_for_key(const char *key, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[20];
  yhc__sha1_ctx c;
  yhc__sha1_init(&c);
  yhc__sha1_update(&c, key, strlen(key));
  yhc__sha1_update(&c, guid, sizeof guid - 1);
  yhc__sha1_final(&c, digest);
  yhc__base64_encode(digest, 20, out);
}

/* ---- UTF-8 (RFC 3629) ---------------------------------------------------------- */

/* Length of the longest prefix of `s` made of complete, valid UTF-8 sequences: shortest
   form only, no surrogates (U+D800..DFFF), nothing above U+10FFFF. Equals `len` exactly when
   all of `s` is valid; otherwise it is the offset of the sequence that is bad or cut off,
   which is what an error message and a streaming validator both need. */
static size_t yhc__utf8_scan(const unsigned char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    unsigned c = s[i];
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the first continuation byte */
    size_t need, j;
    if (c < 0x80) {
      /* Text is mostly ASCII; skipping it eight bytes at a time keeps validation of large
         messages cheap. memcpy keeps the load free of alignment assumptions. */
      while (len - i >= 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull) break;
        i += 8;
      }
      if (i < len && s[i] < 0x80) i++;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0; /* below is overlong */
      if (c == 0xED) hi = 0x9F; /* above is a surrogate */
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90; /* below is overlong */
      if (c == 0xF4) hi = 0x8F; /* above is past U+10FFFF */
    } else {
      return i; /* continuation byte, overlong lead C0/C1, or F5..FF */
    }
    if (len - i <= need) return i; /* cut off */
    if (s[i + 1] < lo || s[i + 1] > hi) return i;
    for (j = 2; j <= need; j++) {
      if (s[i + j] < 0x80 || s[i + j] > 0xBF) return i;
    }
    i += need + 1;
  }
  return i;
}

/* 1 when all `len` bytes are strict UTF-8 (see yhc__utf8_scan), else 0. */
static YHC__UNUSED int yhc__utf8_valid(const unsigned char *s, size_t len) {
  return yhc__utf8_scan(s, len) == len;
}

/* ---- Client frames: header, masking, encoding (RFC 6455 5.2, 5.3) -------------- */

/* Writes a frame header into `hdr` (room for YHC__WS_MAX_HEADER bytes) and returns its
   length. Lengths use the shortest encoding. A client always masks (5.1); `mask` may be NULL
   only to build unmasked server frames for tests and fuzzers. */
static size_t yhc__ws_frame_header(unsigned char *hdr, int fin, int opcode, uint64_t payload_len,
                                   const unsigned char mask[4]) {
  size_t n = 2;
  int i;
  hdr[0] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0F));
  if (payload_len <= 125) {
    hdr[1] = (unsigned char)payload_len;
  } else if (payload_len <= 0xFFFF) {
    hdr[1] = 126;
    hdr[2] = (unsigned char)(payload_len >> 8);
    hdr[3] = (unsigned char)payload_len;
    n = 4;
  } else {
    hdr[1] = 127;
    for (i = 0; i < 8; i++) hdr[2 + i] = (unsigned char)(payload_len >> (56 - 8 * i));
    n = 10;
  }
  if (mask) {
    hdr[1] |= 0x80;
    memcpy(hdr + n, mask, 4);
    n += 4;
  }
  return n;
}

/* XORs `len` bytes with the mask in place. `offset` is how many bytes of this frame's payload
   were masked already, so a payload can be masked in pieces as it is sent. Eight bytes at a
   time: an 8-byte pattern holds the 4-byte key twice, so one rotation by `offset` keeps it in
   phase for every later word; memcpy makes the word loads legal at any alignment. */
static void yhc__ws_mask(unsigned char *data, size_t len, const unsigned char mask[4], size_t offset) {
  unsigned char pat[8];
  uint64_t pw, w;
  size_t i;
  for (i = 0; i < 8; i++) pat[i] = mask[(offset + i) & 3];
  memcpy(&pw, pat, 8);
  for (i = 0; len - i >= 8; i += 8) {
    memcpy(&w, data + i, 8);
    w ^= pw;
    memcpy(data + i, &w, 8);
  }
  for (; i < len; i++) data[i] ^= pat[i & 7];
}

/* Appends one complete masked frame to `out`. 0 on success; -1 when memory ran out, with
   `out` left as it was. */
static YHC__UNUSED int yhc__ws_encode(yhc_buf *out, int opcode, int fin, const void *payload, size_t len,
                                      const unsigned char mask[4]) {
  unsigned char hdr[YHC__WS_MAX_HEADER];
  size_t hlen = yhc__ws_frame_header(hdr, fin, opcode, (uint64_t)len, mask);
  size_t start;
  if (len > SIZE_MAX - hlen || yhc_buf_reserve(out, hlen + len)) return -1;
  /* Cannot fail now that the room is reserved. */
  yhc_buf_append(out, hdr, hlen);
  start = out->len;
  yhc_buf_append(out, payload, len);
  if (mask) yhc__ws_mask(YHC__CAST(unsigned char *, YHC__CAST(void *, out->ptr + start)), len, mask, 0);
  return 0;
}

/* ---- Close frames (RFC 6455 5.5.1, 7.4) ---------------------------------------- */

/* Codes a peer may put on the wire. 1004-1006 and 1015 are reserved or local-only (7.4.1),
   the rest of 1000-2999 is unassigned, and 3000-4999 belong to libraries and applications.
   1012-1014 are accepted although RFC 6455 predates them: they are in the IANA registry and
   servers send 1012/1013 when restarting, which a client should see as a clean close. */
static int yhc__ws_close_code_valid(int code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

/* Builds a close payload: the code big-endian, then `reason` (NULL for none) cut to the 123
   bytes that fit, never inside a UTF-8 sequence. code 0 means "no status" and gives an empty
   payload. Returns the length, or -1 when `code` may not be sent or `reason` is not UTF-8. */
static YHC__UNUSED int yhc__ws_close_payload(unsigned char out[125], int code, const char *reason) {
  size_t n;
  if (code == 0) return 0;
  if (!yhc__ws_close_code_valid(code)) return -1;
  out[0] = (unsigned char)(code >> 8);
  out[1] = (unsigned char)code;
  n = reason ? strlen(reason) : 0;
  if (n > YHC__WS_MAX_CONTROL - 2) {
    n = YHC__WS_MAX_CONTROL - 2;
    /* Back off over continuation bytes so the cut lands on a sequence boundary. */
    while (n > 0 && (YHC__CAST(unsigned char, reason[n]) & 0xC0) == 0x80) n--;
  }
  if (n) {
    const unsigned char *r = YHC__CAST(const unsigned char *, YHC__CAST(const void *, reason));
    if (!yhc__utf8_valid(r, n)) return -1;
    memcpy(out + 2, r, n);
  }
  return (int)(n + 2);
}

/* Checks a received close payload and splits it. `base` is added to error offsets so they
   point into the caller's buffer. An empty payload gives code 0 (the peer sent no status;
   RFC 6455 calls that 1005). */
static YHC__UNUSED int yhc__ws_close_parse(const unsigned char *payload, size_t len, int *code, yhc_str *reason,
                               size_t base, yhc_error *err) {
  size_t good;
  int c;
  *code = 0;
  reason->ptr = "";
  reason->len = 0;
  if (len == 0) return 0;
  if (len == 1) {
    yhc__error_set(err, YHC_ERR_WEBSOCKET, base, "close frame payload of 1 byte (must be empty or hold a 2-byte code)");
    return -1;
  }
  c = payload[0] << 8 | payload[1];
  if (!yhc__ws_close_code_valid(c)) {
    yhc__error_set(err, YHC_ERR_WEBSOCKET, base, "invalid close code %d", c);
    return -1;
  }
  good = yhc__utf8_scan(payload + 2, len - 2);
  if (good != len - 2) {
    yhc__error_set(err, YHC_ERR_WEBSOCKET, base + 2 + good, "close reason is not valid UTF-8 (byte %lu of the reason)",
                   (unsigned long)good);
    return -1;
  }
  *code = c;
  reason->ptr = YHC__CAST(const char *, YHC__CAST(const void *, payload + 2));
  reason->len = len - 2;
  return 0;
}

/* ---- Server frames: parser (RFC 6455 5.2-5.5) ---------------------------------- */

/* What a frame header says, once checked on its own (no state): no RSV bits, a known opcode,
   control frames final and short, not masked, a length below 2^63. */
typedef struct yhc__ws_header {
  int fin;
  int opcode;
  uint64_t payload_len;
  size_t header_len; /* 2, 4 or 10: server frames carry no mask key */
} yhc__ws_header;

/* One complete frame. `payload` points into the caller's buffer and lives as long as it. */
typedef struct yhc__ws_frame {
  int fin;
  int opcode;         /* as on the wire: 0 for a continuation */
  int message_opcode; /* data frames: TEXT or BINARY of the message this frame belongs to;
                         control frames: same as opcode */
  const unsigned char *payload;
  size_t len;
  int close_code;   /* CLOSE only: the status, or 0 when the peer sent none */
  yhc_str close_reason; /* CLOSE only: the UTF-8 reason (validated), possibly empty */
} yhc__ws_frame;

/* Per-connection receive state: the limits and where the current fragmented message stands.
   Zero it, or call yhc__ws_parser_init, before the first frame. */
typedef struct yhc__ws_parser {
  size_t max_frame;   /* payload bytes of one frame; 0 = YHC__WS_DEFAULT_MAX_FRAME */
  size_t max_message; /* bytes of a whole data message over all its fragments; 0 = default */
  int msg_opcode;     /* TEXT/BINARY while a fragmented message is open, else 0 */
  size_t msg_len;     /* bytes of the open message received so far */
  int failed;         /* set by the first error: the connection must be failed (7.1.7) */
} yhc__ws_parser;

static YHC__UNUSED void yhc__ws_parser_init(yhc__ws_parser *p, size_t max_frame, size_t max_message) {
  memset(p, 0, sizeof *p);
  p->max_frame = max_frame;
  p->max_message = max_message;
}

/* Parses and checks the header at the start of `buf`. Returns the header length (>0), 0 when
   more bytes are needed, or -1 with `err` filled (offset = the offending byte). Errors visible
   in the bytes present are reported at once rather than after more arrive.
   Non-minimal length encodings (e.g. 5 sent in the 16-bit form) are accepted: they are
   unambiguous and RFC 6455 puts no duty on the receiver to refuse them. */
static int yhc__ws_parse_header(const unsigned char *buf, size_t len, yhc__ws_header *h, yhc_error *err) {
  unsigned b0, b1, len7;
  int op, i;
  uint64_t plen;
  size_t hl;
  if (len < 1) return 0;
  b0 = buf[0];
  op = (int)(b0 & 0x0F);
  if (b0 & 0x70) {
    yhc__error_set(err, YHC_ERR_WEBSOCKET, 0, "reserved bits 0x%02x set in frame header (no extension negotiated)",
                   b0 & 0x70);
    return -1;
  }
  if (!(op <= YHC__WS_OP_BINARY || (op >= YHC__WS_OP_CLOSE && op <= YHC__WS_OP_PONG))) {
    yhc__error_set(err, YHC_ERR_WEBSOCKET, 0, "unknown opcode 0x%x", (unsigned)op);
    return -1;
  }
  if (op >= YHC__WS_OP_CLOSE && !(b0 & 0x80)) {
    yhc__error_set(err, YHC_ERR_WEBSOCKET, 0, "fragmented control frame (opcode 0x%x without FIN)", (unsigned)op);
    return -1;
  }
  if (len < 2) return 0;
  b1 = buf[1];
  if (b1 & 0x80) {
    yhc__error_set(err, YHC_ERR_WEBSOCKET, 1, "masked frame from server (servers must not mask)");
    return -1;
  }
  len7 = b1 & 0x7F;
  if (op >= YHC__WS_OP_CLOSE && len7 > YHC__WS_MAX_CONTROL) {
    /* 126 and 127 announce an extended length, which is over 125 whatever follows. */
    yhc__error_set(err, YHC_ERR_WEBSOCKET, 1, "control frame (opcode 0x%x) with payload over 125 bytes", (unsigned)op);
    return -1;
  }
  if (len7 < 126) {
    plen = len7;
    hl = 2;
  } else if (len7 == 126) {
    if (len < 4) return 0;
    plen = (uint64_t)buf[2] << 8 | buf[3];
    hl = 4;
  } else {
    if (len >= 3 && (buf[2] & 0x80)) {
      yhc__error_set(err, YHC_ERR_WEBSOCKET, 2, "64-bit payload length with the most significant bit set");
      return -1;
    }
    if (len < 10) return 0;
    plen = 0;
    for (i = 0; i < 8; i++) plen = plen << 8 | buf[2 + i];
    hl = 10;
  }
  h->fin = (b0 & 0x80) != 0;
  h->opcode = op;
  h->payload_len = plen;
  h->header_len = hl;
  return (int)hl;
}

/* Checks a parsed header against the parser's fragmentation state and limits without
   changing anything, so a caller that must wait for the payload can ask again. */
static int yhc__ws_parser_check(const yhc__ws_parser *p, const yhc__ws_header *h, yhc_error *err) {
  size_t max_frame = p->max_frame ? p->max_frame : YHC__WS_DEFAULT_MAX_FRAME;
  size_t max_message = p->max_message ? p->max_message : YHC__WS_DEFAULT_MAX_MESSAGE;
  if (p->failed) {
    yhc__error_set(err, YHC_ERR_WEBSOCKET, 0, "WebSocket stream already failed");
    return -1;
  }
  if (h->opcode == YHC__WS_OP_CONT && !p->msg_opcode) {
    yhc__error_set(err, YHC_ERR_WEBSOCKET, 0, "continuation frame without a message in progress");
    return -1;
  }
  if ((h->opcode == YHC__WS_OP_TEXT || h->opcode == YHC__WS_OP_BINARY) && p->msg_opcode) {
    yhc__error_set(err, YHC_ERR_WEBSOCKET, 0, "new data frame (opcode 0x%x) while a fragmented message is in progress",
                   (unsigned)h->opcode);
    return -1;
  }
  if (h->payload_len > (uint64_t)max_frame) {
    yhc__error_set(err, YHC_ERR_LIMIT, 1, "frame payload of %llu bytes exceeds limit %llu",
                   (unsigned long long)h->payload_len, (unsigned long long)max_frame);
    return -1;
  }
  if (h->opcode < YHC__WS_OP_CLOSE && (p->msg_len > max_message || h->payload_len > (uint64_t)(max_message - p->msg_len))) {
    yhc__error_set(err, YHC_ERR_LIMIT, 1, "message of %llu bytes exceeds limit %llu",
                   (unsigned long long)((uint64_t)p->msg_len + h->payload_len), (unsigned long long)max_message);
    return -1;
  }
  return 0;
}

/* Records that the frame described by `h` is being delivered. Returns the opcode of the
   message it belongs to (the frame's own opcode for control frames). */
static int yhc__ws_parser_commit(yhc__ws_parser *p, const yhc__ws_header *h) {
  int msg_op;
  if (h->opcode >= YHC__WS_OP_CLOSE) return h->opcode;
  msg_op = h->opcode == YHC__WS_OP_CONT ? p->msg_opcode : h->opcode;
  if (h->fin) {
    p->msg_opcode = 0;
    p->msg_len = 0;
  } else {
    p->msg_opcode = msg_op;
    p->msg_len += (size_t)h->payload_len; /* fits: checked against max_message */
  }
  return msg_op;
}

/* For callers that stream payload instead of buffering whole frames: after
   yhc__ws_parse_header succeeds, checks sequencing and limits and, if they pass, records the
   frame. The caller then owns `h->payload_len` payload bytes; a CLOSE payload should be
   checked with yhc__ws_close_parse once it is complete. 0, or -1 with `err` set. */
static YHC__UNUSED int yhc__ws_parser_begin(yhc__ws_parser *p, const yhc__ws_header *h, int *message_opcode,
                                            yhc_error *err) {
  int op;
  if (yhc__ws_parser_check(p, h, err)) {
    p->failed = 1;
    return -1;
  }
  op = yhc__ws_parser_commit(p, h);
  if (message_opcode) *message_opcode = op;
  return 0;
}

/* Parses one whole server frame at the start of `buf`. Returns the bytes it spans (>0) and
   fills `out`, 0 when `buf` does not hold all of it yet (nothing changes: call again with the
   same start and more bytes), or -1 with `err` set (YHC_ERR_WEBSOCKET, or YHC_ERR_LIMIT for
   a limit; offset relative to `buf`). After an error every later call fails too. Limit errors
   come as soon as the header is in, before the payload. The whole frame must fit an int,
   which bounds frames parsed this way to about 2 GiB; stream bigger ones. */
static YHC__UNUSED int yhc__ws_parse(yhc__ws_parser *p, const unsigned char *buf, size_t len, yhc__ws_frame *out,
                                     yhc_error *err) {
  yhc__ws_header h;
  int r;
  size_t total;
  if (p->failed) {
    yhc__error_set(err, YHC_ERR_WEBSOCKET, 0, "WebSocket stream already failed");
    return -1;
  }
  r = yhc__ws_parse_header(buf, len, &h, err);
  if (r <= 0) {
    if (r < 0) p->failed = 1;
    return r;
  }
  if (yhc__ws_parser_check(p, &h, err)) {
    p->failed = 1;
    return -1;
  }
  if (h.payload_len > (uint64_t)(INT_MAX - (int)h.header_len)) {
    yhc__error_set(err, YHC_ERR_LIMIT, 1, "frame payload of %llu bytes too large to parse whole",
                   (unsigned long long)h.payload_len);
    p->failed = 1;
    return -1;
  }
  total = h.header_len + (size_t)h.payload_len;
  if (len < total) return 0;
  out->fin = h.fin;
  out->opcode = h.opcode;
  out->payload = buf + h.header_len;
  out->len = (size_t)h.payload_len;
  out->close_code = 0;
  out->close_reason.ptr = "";
  out->close_reason.len = 0;
  if (h.opcode == YHC__WS_OP_CLOSE &&
      yhc__ws_close_parse(out->payload, out->len, &out->close_code, &out->close_reason, h.header_len, err)) {
    p->failed = 1;
    return -1;
  }
  out->message_opcode = yhc__ws_parser_commit(p, &h);
  return (int)total;
}
