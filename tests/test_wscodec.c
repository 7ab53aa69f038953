/* WebSocket codec layer: SHA-1, base64, handshake values, masking, frame encode/parse,
   close payloads, UTF-8. White-box: calls the static yhc__ws_* functions directly. */
#define YHC_IMPLEMENTATION
#include "yhc.h"
#include "tests/yt.h"

#include <stdlib.h>

/* Deterministic data so a failure reproduces. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}

static unsigned char *xmalloc(size_t n) {
  unsigned char *p = (unsigned char *)malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  return p;
}

static void hex(const unsigned char *d, size_t n, char *out) {
  static const char h[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = h[d[i] >> 4];
    out[2 * i + 1] = h[d[i] & 15];
  }
  out[2 * n] = 0;
}

static void check_sha1(const void *data, size_t len, const char *want) {
  unsigned char d[20];
  char h[41];
  yhc__sha1(data, len, d);
  hex(d, 20, h);
  YT_EQ_STR(h, want);
}

static void test_sha1(void) {
  static const struct {
    size_t n;
    const char *digest;
  } pattern[] = {{1, "9842926af7ca0a8cca12604f945414f07b01e13d"},   {55, "ddf57317ef34bfee3b6df83d359098930eb278bc"},
                 {56, "a0d492bb0fc889d0eca3bc137066ab6f4f74f369"},  {57, "11a02dcf95859677a62e75024067c22b165d890f"},
                 {63, "c55856749bef509bdfe6bfebfc7bf4e793e82132"},  {64, "bede92be29c3874e1b54ddc77988d606fc857a8e"},
                 {65, "b05a80522b053d6dc7e0a517d0e70212c7dad11f"},  {119, "504e27376a6e0f0dba8295b85cb25dc4dfa17d23"},
                 {120, "82134b02fb3f702491be9bed581eeab59334acb2"}, {127, "34d5e582029e9b9b85b2febe31da3db7cdabaaea"},
                 {128, "a09133e6730ffe899efb70204cb5646cd5dc24ee"}, {129, "808aea332ce367541d37adae7f94e59c5c1a934e"},
                 {1000, "4231a8a50a10fa9758db8ec71fdef855b751048a"}};
  unsigned char buf[1000];
  unsigned char *million;
  size_t i, n, k;
  int bad;
  YT_GROUP("sha1");
  /* FIPS 180-2 appendix A and the usual extra vectors. */
  check_sha1("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d");
  check_sha1("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  check_sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
             "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  check_sha1("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
             112, "a49b2446a02c645bf419f995b67091253a04a259");
  million = xmalloc(1000000);
  memset(million, 'a', 1000000);
  check_sha1(million, 1000000, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
  free(million);
  /* Lengths around the padding boundaries (55/56, 63/64 ...), references from Python hashlib. */
  for (i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)(i * 7 + 3);
  for (i = 0; i < sizeof pattern / sizeof pattern[0]; i++) check_sha1(buf, pattern[i].n, pattern[i].digest);
  /* Feeding in two pieces at every split must not change the digest (the block buffering). */
  bad = 0;
  for (n = 0; n <= 200; n++) {
    unsigned char whole[20], parts[20];
    yhc__sha1(buf, n, whole);
    for (k = 0; k <= n; k++) {
      yhc__sha1_ctx c;
      yhc__sha1_init(&c);
      yhc__sha1_update(&c, buf, k);
      yhc__sha1_update(&c, buf + k, n - k);
      yhc__sha1_final(&c, parts);
      if (memcmp(whole, parts, 20) != 0) bad++;
    }
  }
  YT_EQ_INT(bad, 0);
}

static void check_b64(const char *in, const char *want) {
  char out[64];
  size_t n = yhc__base64_encode((const unsigned char *)in, strlen(in), out);
  YT_EQ_INT(n, strlen(want));
  YT_EQ_STR(out, want);
}

static void test_base64(void) {
  static const unsigned char hi[] = {0xFF, 0xFE, 0xFD, 0xFB, 0xFF};
  static const unsigned char zero[] = {0, 0, 0, 0};
  char out[16];
  size_t n, len;
  YT_GROUP("base64");
  /* RFC 4648 section 10 */
  check_b64("", "");
  check_b64("f", "Zg==");
  check_b64("fo", "Zm8=");
  check_b64("foo", "Zm9v");
  check_b64("foob", "Zm9vYg==");
  check_b64("fooba", "Zm9vYmE=");
  check_b64("foobar", "Zm9vYmFy");
  /* The two non-alphanumeric digits and NUL bytes. */
  n = yhc__base64_encode(hi, 3, out);
  YT_EQ_INT(n, 4);
  YT_EQ_STR(out, "//79");
  n = yhc__base64_encode(hi + 3, 2, out);
  YT_EQ_STR(out, "+/8=");
  n = yhc__base64_encode(zero, 4, out);
  YT_EQ_INT(n, 8);
  YT_EQ_STR(out, "AAAAAA==");
  /* Output length is 4*ceil(len/3) and the byte after it is the NUL. */
  for (len = 0; len <= 9; len++) {
    memset(out, 'x', sizeof out);
    n = yhc__base64_encode(hi, len > 5 ? 5 : len, out);
    YT_EQ_INT(n, 4 * (((len > 5 ? 5 : len) + 2) / 3));
    YT_EQ_INT(out[n], 0);
  }
}

static void test_handshake(void) {
  char key[25], acc[29];
  const unsigned char nonce[16] = {'t', 'h', 'e', ' ', 's', 'a', 'm', 'p', 'l', 'e', ' ', 'n', 'o', 'n', 'c', 'e'};
  YT_GROUP("handshake");
  memset(key, 'x', sizeof key);
  yhc__ws_make_key(nonce, key);
  YT_EQ_STR(key, "dGhlIHNhbXBsZSBub25jZQ=="); /* RFC 6455 4.1 / 1.3 */
  YT_EQ_INT(strlen(key), 24);
  memset(acc, 'x', sizeof acc);
  yhc__ws_accept_for_key("dGhlIHNhbXBsZSBub25jZQ==", acc);
  YT_EQ_STR(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="); /* RFC 6455 1.3 */
  YT_EQ_INT(strlen(acc), 28);
  /* The example MDN uses (Sec-WebSocket-Key x3JJ...). */
  yhc__ws_accept_for_key("x3JJHMbDL1EzLkh9GBhXDw==", acc);
  YT_EQ_STR(acc, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

static void naive_mask(unsigned char *d, size_t n, const unsigned char m[4], size_t off) {
  size_t i;
  for (i = 0; i < n; i++) d[i] ^= m[(off + i) & 3];
}

static void test_mask(void) {
  unsigned char storage[320 + 8], ref[320];
  unsigned char m[4];
  size_t len, off, align, split;
  int bad = 0, bad_split = 0, unchanged = 0;
  YT_GROUP("mask");
  for (len = 0; len <= 300; len++) {
    for (off = 0; off <= 7; off++) {
      for (align = 0; align < 8; align += 3) {
        unsigned char *d = storage + align; /* misaligned starts too */
        size_t i;
        for (i = 0; i < 4; i++) m[i] = (unsigned char)rnd();
        for (i = 0; i < len; i++) d[i] = ref[i] = (unsigned char)rnd();
        d[len] = 0xA5; /* guard: must not be touched */
        yhc__ws_mask(d, len, m, off);
        naive_mask(ref, len, m, off);
        if ((len && memcmp(d, ref, len) != 0) || d[len] != 0xA5) bad++;
      }
    }
  }
  YT_EQ_INT(bad, 0);
  /* Masking a payload in two pieces, passing the bytes done so far as offset, equals masking
     it at once; masking twice restores the data. */
  for (len = 0; len <= 80; len++) {
    for (split = 0; split <= len; split++) {
      unsigned char a[80], b[80], orig[80];
      size_t i;
      for (i = 0; i < 4; i++) m[i] = (unsigned char)rnd();
      for (i = 0; i < len; i++) a[i] = b[i] = orig[i] = (unsigned char)rnd();
      yhc__ws_mask(a, len, m, 0);
      yhc__ws_mask(b, split, m, 0);
      yhc__ws_mask(b + split, len - split, m, split);
      if (len && memcmp(a, b, len) != 0) bad_split++;
      yhc__ws_mask(a, len, m, 0);
      if (len && memcmp(a, orig, len) != 0) bad_split++;
    }
  }
  YT_EQ_INT(bad_split, 0);
  /* An offset that is a multiple of 4 is the same as 0; other offsets are not. */
  {
    unsigned char a[16], b[16];
    const unsigned char mk[4] = {1, 2, 3, 4};
    memset(a, 0, 16);
    memset(b, 0, 16);
    yhc__ws_mask(a, 16, mk, 0);
    yhc__ws_mask(b, 16, mk, 4);
    YT_CHECK(memcmp(a, b, 16) == 0);
    memset(b, 0, 16);
    yhc__ws_mask(b, 16, mk, 1);
    unchanged = memcmp(a, b, 16) == 0;
    YT_CHECK(!unchanged);
    YT_EQ_INT(b[0], 2);
    YT_EQ_INT(b[3], 1);
  }
}

static void test_frame_header(void) {
  unsigned char h[YHC__WS_MAX_HEADER];
  const unsigned char m[4] = {0x37, 0xfa, 0x21, 0x3d};
  static const unsigned char h126[] = {0x82, 0xFE, 0x00, 0x7E, 0x37, 0xfa, 0x21, 0x3d};
  static const unsigned char h64k[] = {0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 0x37, 0xfa, 0x21, 0x3d};
  static const unsigned char hbig[] = {0x02, 0x7F, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF};
  size_t n;
  YT_GROUP("frame header");
  n = yhc__ws_frame_header(h, 1, YHC__WS_OP_TEXT, 0, m);
  YT_EQ_INT(n, 6);
  YT_EQ_INT(h[0], 0x81);
  YT_EQ_INT(h[1], 0x80);
  n = yhc__ws_frame_header(h, 1, YHC__WS_OP_TEXT, 125, m);
  YT_EQ_INT(n, 6);
  YT_EQ_INT(h[1], 0x80 | 125);
  YT_CHECK(memcmp(h + 2, m, 4) == 0);
  n = yhc__ws_frame_header(h, 1, YHC__WS_OP_BINARY, 126, m);
  YT_EQ_INT(n, 8);
  YT_CHECK(memcmp(h, h126, 8) == 0);
  n = yhc__ws_frame_header(h, 1, YHC__WS_OP_BINARY, 65535, m);
  YT_EQ_INT(n, 8);
  YT_EQ_INT(h[1], 0xFE);
  YT_EQ_INT(h[2], 0xFF);
  YT_EQ_INT(h[3], 0xFF);
  n = yhc__ws_frame_header(h, 1, YHC__WS_OP_BINARY, 65536, m);
  YT_EQ_INT(n, 14);
  YT_CHECK(memcmp(h, h64k, 14) == 0);
  n = yhc__ws_frame_header(h, 0, YHC__WS_OP_BINARY, 0x0123456789ABCDEFull, NULL);
  YT_EQ_INT(n, 10);
  YT_CHECK(memcmp(h, hbig, 10) == 0);
  n = yhc__ws_frame_header(h, 0, YHC__WS_OP_CONT, 3, NULL);
  YT_EQ_INT(n, 2);
  YT_EQ_INT(h[0], 0x00);
  YT_EQ_INT(h[1], 0x03);
}

/* RFC 6455 5.7 examples. */
static const unsigned char ex_text[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
static const unsigned char ex_masked_text[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
static const unsigned char ex_frag1[] = {0x01, 0x03, 0x48, 0x65, 0x6c};
static const unsigned char ex_frag2[] = {0x80, 0x02, 0x6c, 0x6f};
static const unsigned char ex_ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
static const unsigned char ex_masked_pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};

static void test_encode(void) {
  const unsigned char m[4] = {0x37, 0xfa, 0x21, 0x3d};
  yhc_buf b;
  size_t lens[] = {0, 1, 7, 8, 9, 125, 126, 127, 1000, 65535, 65536, 70001};
  size_t li;
  YT_GROUP("encode");
  memset(&b, 0, sizeof b);
  YT_EQ_INT(yhc__ws_encode(&b, YHC__WS_OP_TEXT, 1, "Hello", 5, m), 0);
  YT_EQ_INT(b.len, sizeof ex_masked_text);
  YT_CHECK(memcmp(b.ptr, ex_masked_text, sizeof ex_masked_text) == 0);
  b.len = 0;
  YT_EQ_INT(yhc__ws_encode(&b, YHC__WS_OP_PONG, 1, "Hello", 5, m), 0);
  YT_EQ_INT(b.len, sizeof ex_masked_pong);
  YT_CHECK(memcmp(b.ptr, ex_masked_pong, sizeof ex_masked_pong) == 0);
  /* Appends after what is already there. */
  YT_EQ_INT(yhc__ws_encode(&b, YHC__WS_OP_TEXT, 1, "Hello", 5, m), 0);
  YT_EQ_INT(b.len, 2 * sizeof ex_masked_pong);
  YT_CHECK(memcmp(b.ptr + sizeof ex_masked_pong, ex_masked_text, sizeof ex_masked_text) == 0);
  /* Unmasked (server-style) encoding of the examples. */
  b.len = 0;
  YT_EQ_INT(yhc__ws_encode(&b, YHC__WS_OP_TEXT, 0, "Hel", 3, NULL), 0);
  YT_EQ_INT(yhc__ws_encode(&b, YHC__WS_OP_CONT, 1, "lo", 2, NULL), 0);
  YT_EQ_INT(b.len, sizeof ex_frag1 + sizeof ex_frag2);
  YT_CHECK(memcmp(b.ptr, ex_frag1, sizeof ex_frag1) == 0);
  YT_CHECK(memcmp(b.ptr + sizeof ex_frag1, ex_frag2, sizeof ex_frag2) == 0);

  /* Round trips: a test-only decoder reads the masked frame back. */
  for (li = 0; li < sizeof lens / sizeof lens[0]; li++) {
    size_t n = lens[li], i, hl, plen;
    unsigned char *pl = xmalloc(n), mk[4];
    unsigned char *f;
    int ok = 1;
    for (i = 0; i < n; i++) pl[i] = (unsigned char)rnd();
    for (i = 0; i < 4; i++) mk[i] = (unsigned char)rnd();
    b.len = 0;
    YT_EQ_INT(yhc__ws_encode(&b, YHC__WS_OP_BINARY, (int)(li & 1), pl, n, mk), 0);
    f = (unsigned char *)b.ptr;
    YT_EQ_INT(f[0], (li & 1 ? 0x80 : 0) | 2);
    YT_CHECK(f[1] & 0x80);
    plen = f[1] & 0x7F;
    hl = 2;
    if (plen == 126) {
      plen = (size_t)f[2] << 8 | f[3];
      hl = 4;
    } else if (plen == 127) {
      plen = 0;
      for (i = 0; i < 8; i++) plen = plen << 8 | f[2 + i];
      hl = 10;
    }
    YT_EQ_INT(plen, n);
    YT_EQ_INT(hl, n < 126 ? 2 : n < 65536 ? 4 : 10);
    YT_CHECK(memcmp(f + hl, mk, 4) == 0);
    YT_EQ_INT(b.len, hl + 4 + n);
    for (i = 0; i < n; i++) {
      if ((unsigned char)(f[hl + 4 + i] ^ mk[i & 3]) != pl[i]) ok = 0;
    }
    YT_CHECK(ok);
    free(pl);
  }
  yhc_buf_free(&b);
}

/* Frames through the parser. */
static void parser(yhc__ws_parser *p) { yhc__ws_parser_init(p, 0, 0); }

/* Parses `buf` whole with a fresh parser and checks it is one frame; then at every split k
   the parser must ask for more and change nothing. */
static void check_splits(const unsigned char *buf, size_t n, int want_op, const unsigned char *want_pl,
                         size_t want_len) {
  yhc__ws_parser p;
  yhc__ws_frame f;
  yhc_error e;
  size_t k;
  int early = 0, moved = 0, r;
  parser(&p);
  for (k = 0; k < n; k++) {
    r = yhc__ws_parse(&p, buf, k, &f, &e);
    if (r != 0) early++;
    if (p.msg_opcode || p.msg_len || p.failed) moved++;
  }
  YT_EQ_INT(early, 0);
  YT_EQ_INT(moved, 0);
  r = yhc__ws_parse(&p, buf, n, &f, &e);
  YT_EQ_INT(r, n);
  YT_EQ_INT(f.opcode, want_op);
  YT_EQ_INT(f.len, want_len);
  YT_CHECK(f.payload == buf + (n - want_len));
  YT_CHECK(want_len == 0 || memcmp(f.payload, want_pl, want_len) == 0);
}

static void test_parse_examples(void) {
  yhc__ws_parser p;
  yhc__ws_frame f;
  yhc_error e;
  unsigned char *big;
  size_t i;
  int r;
  YT_GROUP("parse RFC 6455 5.7 examples");
  parser(&p);
  r = yhc__ws_parse(&p, ex_text, sizeof ex_text, &f, &e);
  YT_EQ_INT(r, 7);
  YT_EQ_INT(f.fin, 1);
  YT_EQ_INT(f.opcode, YHC__WS_OP_TEXT);
  YT_EQ_INT(f.message_opcode, YHC__WS_OP_TEXT);
  YT_EQ_MEM(f.payload, f.len, "Hello");
  check_splits(ex_text, sizeof ex_text, YHC__WS_OP_TEXT, (const unsigned char *)"Hello", 5);
  check_splits(ex_ping, sizeof ex_ping, YHC__WS_OP_PING, (const unsigned char *)"Hello", 5);
  check_splits(ex_frag1, sizeof ex_frag1, YHC__WS_OP_TEXT, (const unsigned char *)"Hel", 3);

  /* Trailing bytes of the next frame are not consumed. */
  {
    unsigned char two[14];
    memcpy(two, ex_text, 7);
    memcpy(two + 7, ex_ping, 7);
    parser(&p);
    YT_EQ_INT(yhc__ws_parse(&p, two, 14, &f, &e), 7);
    YT_EQ_INT(f.opcode, YHC__WS_OP_TEXT);
    YT_EQ_INT(yhc__ws_parse(&p, two + 7, 7, &f, &e), 7);
    YT_EQ_INT(f.opcode, YHC__WS_OP_PING);
  }

  /* Fragmented "Hel" + "lo", with a ping interleaved; the continuation reports its message. */
  parser(&p);
  YT_EQ_INT(yhc__ws_parse(&p, ex_frag1, sizeof ex_frag1, &f, &e), 5);
  YT_EQ_INT(f.fin, 0);
  YT_EQ_INT(f.opcode, YHC__WS_OP_TEXT);
  YT_EQ_MEM(f.payload, f.len, "Hel");
  YT_EQ_INT(p.msg_opcode, YHC__WS_OP_TEXT);
  YT_EQ_INT(p.msg_len, 3);
  YT_EQ_INT(yhc__ws_parse(&p, ex_ping, sizeof ex_ping, &f, &e), 7);
  YT_EQ_INT(f.opcode, YHC__WS_OP_PING);
  YT_EQ_INT(f.message_opcode, YHC__WS_OP_PING);
  YT_EQ_INT(p.msg_len, 3); /* control frames do not count */
  for (i = 0; i < sizeof ex_frag2; i++) YT_EQ_INT(yhc__ws_parse(&p, ex_frag2, i, &f, &e), 0);
  YT_EQ_INT(yhc__ws_parse(&p, ex_frag2, sizeof ex_frag2, &f, &e), 4);
  YT_EQ_INT(f.fin, 1);
  YT_EQ_INT(f.opcode, YHC__WS_OP_CONT);
  YT_EQ_INT(f.message_opcode, YHC__WS_OP_TEXT);
  YT_EQ_MEM(f.payload, f.len, "lo");
  YT_EQ_INT(p.msg_opcode, 0);
  YT_EQ_INT(p.msg_len, 0);

  /* 256 bytes with a 16-bit length; 64 KiB with a 64-bit length. */
  big = xmalloc(10 + 65536);
  big[0] = 0x82;
  big[1] = 0x7E;
  big[2] = 0x01;
  big[3] = 0x00;
  for (i = 0; i < 256; i++) big[4 + i] = (unsigned char)rnd();
  check_splits(big, 260, YHC__WS_OP_BINARY, big + 4, 256);
  big[0] = 0x82;
  big[1] = 0x7F;
  memcpy(big + 2, "\0\0\0\0\0\1\0\0", 8);
  for (i = 0; i < 65536; i++) big[10 + i] = (unsigned char)rnd();
  check_splits(big, 10 + 65536, YHC__WS_OP_BINARY, big + 10, 65536);
  free(big);

  /* Empty frames: text, binary, pong, close. */
  {
    static const unsigned char e0[] = {0x81, 0x00}, e1[] = {0x82, 0x00}, e2[] = {0x8A, 0x00}, e3[] = {0x88, 0x00};
    check_splits(e0, 2, YHC__WS_OP_TEXT, NULL, 0);
    check_splits(e1, 2, YHC__WS_OP_BINARY, NULL, 0);
    check_splits(e2, 2, YHC__WS_OP_PONG, NULL, 0);
    check_splits(e3, 2, YHC__WS_OP_CLOSE, NULL, 0);
    parser(&p);
    YT_EQ_INT(yhc__ws_parse(&p, e3, 2, &f, &e), 2);
    YT_EQ_INT(f.close_code, 0);
    YT_EQ_INT(f.close_reason.len, 0);
  }

  /* Non-minimal length encodings are accepted (documented choice). */
  {
    static const unsigned char nm16[] = {0x82, 0x7E, 0x00, 0x03, 'a', 'b', 'c'};
    static const unsigned char nm64[] = {0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0x03, 'a', 'b', 'c'};
    check_splits(nm16, sizeof nm16, YHC__WS_OP_BINARY, (const unsigned char *)"abc", 3);
    check_splits(nm64, sizeof nm64, YHC__WS_OP_BINARY, (const unsigned char *)"abc", 3);
  }
}

/* Drives a stream of frames through a parser the way a client would: bytes arrive in chunks
   of the given sizes (cycled), complete frames are consumed from the front. Writes one line per
   frame into `log` ("op/msgop/fin:payload;") and returns the last parse result. */
static int drive(const unsigned char *s, size_t n, const size_t *chunks, size_t nchunks, size_t max_frame,
                 size_t max_message, char *log, size_t logcap, yhc_error *e) {
  yhc__ws_parser p;
  yhc__ws_frame f;
  unsigned char *buf = xmalloc(n);
  size_t have = 0, start = 0, fed = 0, ci = 0, ll = 0;
  int r = 0;
  yhc__ws_parser_init(&p, max_frame, max_message);
  log[0] = 0;
  while (fed < n || have > start) {
    size_t c = chunks[ci++ % nchunks];
    if (c > n - fed) c = n - fed;
    memcpy(buf + have, s + fed, c);
    have += c;
    fed += c;
    for (;;) {
      r = yhc__ws_parse(&p, buf + start, have - start, &f, e);
      if (r <= 0) break;
      ll += (size_t)snprintf(log + ll, logcap - ll, "%x/%x/%d:%.*s;", f.opcode, f.message_opcode, f.fin, (int)f.len,
                             (const char *)f.payload);
      start += (size_t)r;
    }
    if (r < 0 || (r == 0 && fed == n)) break;
  }
  free(buf);
  return r;
}

static void test_stream(void) {
  static const size_t one[] = {1}, mixed[] = {3, 1, 7, 2, 13, 5}, all[] = {1000};
  unsigned char s[64];
  size_t n = 0;
  char log[256];
  yhc_error e;
  const char *want = "1/1/0:Hel;9/9/1:Hello;0/1/1:lo;1/1/1:Hello;";
  YT_GROUP("stream at chunk sizes");
  memcpy(s + n, ex_frag1, sizeof ex_frag1);
  n += sizeof ex_frag1;
  memcpy(s + n, ex_ping, sizeof ex_ping);
  n += sizeof ex_ping;
  memcpy(s + n, ex_frag2, sizeof ex_frag2);
  n += sizeof ex_frag2;
  memcpy(s + n, ex_text, sizeof ex_text);
  n += sizeof ex_text;
  YT_EQ_INT(drive(s, n, one, 1, 0, 0, log, sizeof log, &e), 0);
  YT_EQ_STR(log, want);
  YT_EQ_INT(drive(s, n, mixed, 6, 0, 0, log, sizeof log, &e), 0);
  YT_EQ_STR(log, want);
  YT_EQ_INT(drive(s, n, all, 1, 0, 0, log, sizeof log, &e), 0);
  YT_EQ_STR(log, want);
  /* The same stream with the message limit one byte short fails at the last fragment. */
  YT_EQ_INT(drive(s, n, one, 1, 0, 4, log, sizeof log, &e), -1);
  YT_EQ_STR(log, "1/1/0:Hel;9/9/1:Hello;");
  YT_EQ_INT(e.code, YHC_ERR_LIMIT);
  YT_EQ_STR(e.msg, "message of 5 bytes exceeds limit 4");
  YT_EQ_INT(drive(s, n, mixed, 6, 0, 5, log, sizeof log, &e), 0);
  YT_EQ_STR(log, want);
}

/* Expects `buf` to fail with the given code, message and offset, both whole and as soon as
   the offending byte is present (and never before). */
static void check_error_at(yhc__ws_parser *p0, const unsigned char *buf, size_t n, yhc_err code, const char *msg,
                           size_t offset, size_t first_fail) {
  yhc__ws_parser p;
  yhc__ws_frame f;
  yhc_error e;
  size_t k;
  int early = 0;
  for (k = 0; k < first_fail; k++) {
    p = *p0;
    if (yhc__ws_parse(&p, buf, k, &f, &e) != 0) early++;
  }
  YT_EQ_INT(early, 0);
  p = *p0;
  memset(&e, 0, sizeof e);
  YT_EQ_INT(yhc__ws_parse(&p, buf, first_fail, &f, &e), -1);
  p = *p0;
  memset(&e, 0, sizeof e);
  YT_EQ_INT(yhc__ws_parse(&p, buf, n, &f, &e), -1);
  YT_EQ_INT(e.code, code);
  YT_EQ_STR(e.msg, msg);
  YT_EQ_INT(e.offset, offset);
  YT_EQ_INT(p.failed, 1);
  /* Sticky: a failed stream stays failed even for a valid frame. */
  YT_EQ_INT(yhc__ws_parse(&p, ex_text, sizeof ex_text, &f, &e), -1);
  YT_EQ_STR(e.msg, "WebSocket stream already failed");
}

static void check_error(const unsigned char *buf, size_t n, yhc_err code, const char *msg, size_t offset) {
  yhc__ws_parser p;
  parser(&p);
  check_error_at(&p, buf, n, code, msg, offset, n);
}

static void test_protocol_errors(void) {
  unsigned char b[16];
  char msg[128];
  int op;
  yhc__ws_parser p;
  yhc__ws_frame f;
  yhc_error e;
  YT_GROUP("protocol errors");
  /* RSV1..3 each, seen from the first byte. */
  b[0] = 0xC1;
  b[1] = 0;
  parser(&p);
  check_error_at(&p, b, 2, YHC_ERR_WEBSOCKET, "reserved bits 0x40 set in frame header (no extension negotiated)", 0, 1);
  b[0] = 0xA1;
  check_error_at(&p, b, 2, YHC_ERR_WEBSOCKET, "reserved bits 0x20 set in frame header (no extension negotiated)", 0, 1);
  b[0] = 0x91;
  check_error_at(&p, b, 2, YHC_ERR_WEBSOCKET, "reserved bits 0x10 set in frame header (no extension negotiated)", 0, 1);
  b[0] = 0x72; /* all three, on a non-final frame */
  check_error_at(&p, b, 2, YHC_ERR_WEBSOCKET, "reserved bits 0x70 set in frame header (no extension negotiated)", 0, 1);
  /* Unknown opcodes 3-7 and B-F. */
  for (op = 3; op <= 15; op++) {
    if (op >= 8 && op <= 10) continue;
    b[0] = (unsigned char)(0x80 | op);
    b[1] = 0;
    snprintf(msg, sizeof msg, "unknown opcode 0x%x", op);
    parser(&p);
    check_error_at(&p, b, 2, YHC_ERR_WEBSOCKET, msg, 0, 1);
  }
  /* Control frames: no FIN, payload over 125 (in any length form). */
  for (op = 8; op <= 10; op++) {
    b[0] = (unsigned char)op;
    b[1] = 0;
    snprintf(msg, sizeof msg, "fragmented control frame (opcode 0x%x without FIN)", op);
    parser(&p);
    check_error_at(&p, b, 2, YHC_ERR_WEBSOCKET, msg, 0, 1);
    b[0] = (unsigned char)(0x80 | op);
    snprintf(msg, sizeof msg, "control frame (opcode 0x%x) with payload over 125 bytes", op);
    b[1] = 126;
    b[2] = 0;
    b[3] = 5;
    parser(&p);
    check_error_at(&p, b, 4, YHC_ERR_WEBSOCKET, msg, 1, 2);
    b[1] = 127;
    memset(b + 2, 0, 8);
    b[9] = 5;
    parser(&p);
    check_error_at(&p, b, 10, YHC_ERR_WEBSOCKET, msg, 1, 2);
  }
  /* Exactly 125 is fine for a control frame. */
  {
    unsigned char c[127];
    c[0] = 0x89;
    c[1] = 125;
    memset(c + 2, 'p', 125);
    check_splits(c, 127, YHC__WS_OP_PING, c + 2, 125);
  }
  /* A masked frame from the server, e.g. RFC 6455's masked "Hello". */
  parser(&p);
  check_error_at(&p, ex_masked_text, sizeof ex_masked_text, YHC_ERR_WEBSOCKET,
                 "masked frame from server (servers must not mask)", 1, 2);
  /* 64-bit length with the top bit set: caught at byte 2. */
  b[0] = 0x82;
  b[1] = 127;
  b[2] = 0x80;
  memset(b + 3, 0, 7);
  parser(&p);
  check_error_at(&p, b, 10, YHC_ERR_WEBSOCKET, "64-bit payload length with the most significant bit set", 2, 3);
  b[2] = 0x7F; /* largest legal length: fine as a header, over any limit */
  memset(b + 3, 0xFF, 7);
  check_error(b, 10, YHC_ERR_LIMIT, "frame payload of 9223372036854775807 bytes exceeds limit 16777216", 1);

  /* Sequencing: continuation without a message; new data frame inside one. */
  parser(&p);
  check_error_at(&p, ex_frag2, sizeof ex_frag2, YHC_ERR_WEBSOCKET, "continuation frame without a message in progress", 0,
                 2);
  b[0] = 0x00; /* non-final continuation, also without a message */
  b[1] = 0;
  check_error(b, 2, YHC_ERR_WEBSOCKET, "continuation frame without a message in progress", 0);
  parser(&p);
  YT_EQ_INT(yhc__ws_parse(&p, ex_frag1, sizeof ex_frag1, &f, &e), 5);
  check_error_at(&p, ex_text, sizeof ex_text, YHC_ERR_WEBSOCKET,
                 "new data frame (opcode 0x1) while a fragmented message is in progress", 0, 2);
  b[0] = 0x02;
  b[1] = 0;
  check_error_at(&p, b, 2, YHC_ERR_WEBSOCKET, "new data frame (opcode 0x2) while a fragmented message is in progress",
                 0, 2);
  /* After a completed message, a continuation is an error again. */
  YT_EQ_INT(yhc__ws_parse(&p, ex_frag2, sizeof ex_frag2, &f, &e), 4);
  check_error_at(&p, ex_frag2, sizeof ex_frag2, YHC_ERR_WEBSOCKET, "continuation frame without a message in progress",
                 0, 2);
  /* Non-final continuations keep the message open; a binary message reports BINARY. */
  {
    static const unsigned char s1[] = {0x02, 0x01, 'a'}, s2[] = {0x00, 0x01, 'b'}, s3[] = {0x80, 0x01, 'c'};
    parser(&p);
    YT_EQ_INT(yhc__ws_parse(&p, s1, 3, &f, &e), 3);
    YT_EQ_INT(yhc__ws_parse(&p, s2, 3, &f, &e), 3);
    YT_EQ_INT(f.message_opcode, YHC__WS_OP_BINARY);
    YT_EQ_INT(f.fin, 0);
    YT_EQ_INT(p.msg_len, 2);
    YT_EQ_INT(yhc__ws_parse(&p, ex_ping, sizeof ex_ping, &f, &e), 7);
    YT_EQ_INT(yhc__ws_parse(&p, s3, 3, &f, &e), 3);
    YT_EQ_INT(f.message_opcode, YHC__WS_OP_BINARY);
    YT_EQ_INT(f.fin, 1);
    YT_EQ_INT(p.msg_opcode, 0);
  }
}

static void test_limits(void) {
  yhc__ws_parser p;
  yhc__ws_frame f;
  yhc_error e;
  unsigned char b[300];
  YT_GROUP("limits");
  memset(b, 'x', sizeof b);
  /* Frame limit: exactly at the limit passes, one over fails as soon as the header is in. */
  b[0] = 0x82;
  b[1] = 100;
  yhc__ws_parser_init(&p, 100, 0);
  YT_EQ_INT(yhc__ws_parse(&p, b, 102, &f, &e), 102);
  b[1] = 101;
  yhc__ws_parser_init(&p, 100, 0);
  check_error_at(&p, b, 103, YHC_ERR_LIMIT, "frame payload of 101 bytes exceeds limit 100", 1, 2);
  /* A 64-bit length one over a 1 MiB limit is caught once all 8 length bytes are in. */
  b[1] = 127;
  memcpy(b + 2, "\0\0\0\0\0\x10\0\x01", 8);
  yhc__ws_parser_init(&p, 1048576, 0);
  check_error_at(&p, b, 10, YHC_ERR_LIMIT, "frame payload of 1048577 bytes exceeds limit 1048576", 1, 10);
  /* Zero limits mean the defaults: 16 MiB per frame, 64 MiB per message. */
  memcpy(b + 2, "\0\0\0\0\x01\0\0\x01", 8);
  parser(&p);
  check_error_at(&p, b, 10, YHC_ERR_LIMIT, "frame payload of 16777217 bytes exceeds limit 16777216", 1, 10);
  memcpy(b + 2, "\0\0\0\0\x01\0\0\0", 8);
  b[0] = 0x02;
  parser(&p);
  p.msg_opcode = YHC__WS_OP_BINARY; /* as if 3 frames of 16 MiB had been received */
  p.msg_len = (size_t)48 << 20;
  b[0] = 0x00;
  YT_EQ_INT(yhc__ws_parse(&p, b, 10, &f, &e), 0); /* exactly 64 MiB: waits for the payload */
  p.msg_len++;
  check_error_at(&p, b, 10, YHC_ERR_LIMIT, "message of 67108865 bytes exceeds limit 67108864", 1, 10);
  b[0] = 0x82;
  /* Control frames obey the frame limit too. */
  b[0] = 0x89;
  b[1] = 50;
  yhc__ws_parser_init(&p, 10, 0);
  check_error_at(&p, b, 52, YHC_ERR_LIMIT, "frame payload of 50 bytes exceeds limit 10", 1, 2);

  /* Message limit: a single frame is a whole message. */
  b[0] = 0x81;
  b[1] = 20;
  yhc__ws_parser_init(&p, 0, 20);
  YT_EQ_INT(yhc__ws_parse(&p, b, 22, &f, &e), 22);
  b[1] = 21;
  yhc__ws_parser_init(&p, 0, 20);
  check_error_at(&p, b, 23, YHC_ERR_LIMIT, "message of 21 bytes exceeds limit 20", 1, 2);
  /* Across fragments: 8 + 8 + 4 = 20 passes with pings in between that do not count. */
  yhc__ws_parser_init(&p, 0, 20);
  b[0] = 0x01;
  b[1] = 8;
  YT_EQ_INT(yhc__ws_parse(&p, b, 10, &f, &e), 10);
  YT_EQ_INT(yhc__ws_parse(&p, ex_ping, sizeof ex_ping, &f, &e), 7);
  b[0] = 0x00;
  YT_EQ_INT(yhc__ws_parse(&p, b, 10, &f, &e), 10);
  YT_EQ_INT(p.msg_len, 16);
  YT_EQ_INT(yhc__ws_parse(&p, ex_ping, sizeof ex_ping, &f, &e), 7);
  {
    yhc__ws_parser saved = p;
    b[0] = 0x80;
    b[1] = 4;
    YT_EQ_INT(yhc__ws_parse(&p, b, 6, &f, &e), 6);
    YT_EQ_INT(p.msg_len, 0);
    /* From the same state a 5-byte final fragment is one too many. */
    b[1] = 5;
    check_error_at(&saved, b, 7, YHC_ERR_LIMIT, "message of 21 bytes exceeds limit 20", 1, 2);
    /* The next message starts counting from zero. */
    b[0] = 0x82;
    b[1] = 20;
    YT_EQ_INT(yhc__ws_parse(&p, b, 22, &f, &e), 22);
  }
}

static void close_frame(unsigned char *b, size_t *n, const unsigned char *payload, size_t len) {
  *n = yhc__ws_frame_header(b, 1, YHC__WS_OP_CLOSE, len, NULL);
  if (len) memcpy(b + *n, payload, len);
  *n += len;
}

static void test_close(void) {
  static const int good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
  static const int bad[] = {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
  unsigned char pl[125], b[140];
  char msg[128], longr[200];
  size_t n, i;
  int len;
  yhc__ws_parser p;
  yhc__ws_frame f;
  yhc_error e;
  YT_GROUP("close");
  /* Payload builder. */
  len = yhc__ws_close_payload(pl, 1000, "bye");
  YT_EQ_INT(len, 5);
  YT_CHECK(memcmp(pl, "\x03\xe8" "bye", 5) == 0);
  YT_EQ_INT(yhc__ws_close_payload(pl, 4001, NULL), 2);
  YT_EQ_INT(pl[0], 0x0F);
  YT_EQ_INT(pl[1], 0xA1);
  YT_EQ_INT(yhc__ws_close_payload(pl, 1000, ""), 2);
  YT_EQ_INT(yhc__ws_close_payload(pl, 0, "ignored"), 0);
  YT_EQ_INT(yhc__ws_close_payload(pl, 1005, NULL), -1);
  YT_EQ_INT(yhc__ws_close_payload(pl, 1006, NULL), -1);
  YT_EQ_INT(yhc__ws_close_payload(pl, 5000, NULL), -1);
  YT_EQ_INT(yhc__ws_close_payload(pl, 1000, "\xC3"), -1); /* cut UTF-8 */
  /* Long reasons are cut to 123 bytes, never inside a UTF-8 sequence. */
  memset(longr, 'a', sizeof longr);
  longr[199] = 0;
  YT_EQ_INT(yhc__ws_close_payload(pl, 1000, longr), 125);
  longr[122] = (char)0xC3; /* a 2-byte character spanning bytes 122..123 */
  longr[123] = (char)0xA9;
  YT_EQ_INT(yhc__ws_close_payload(pl, 1000, longr), 124);
  YT_EQ_INT(pl[123], 'a');
  longr[121] = (char)0xE2; /* 3-byte U+20AC at 121..123 */
  longr[122] = (char)0x82;
  longr[123] = (char)0xAC;
  YT_EQ_INT(yhc__ws_close_payload(pl, 1000, longr), 123);
  memset(longr, 'a', 199);
  longr[120] = (char)0xE2; /* ends exactly at byte 122: kept whole */
  longr[121] = (char)0x82;
  longr[122] = (char)0xAC;
  YT_EQ_INT(yhc__ws_close_payload(pl, 1000, longr), 125);
  YT_CHECK(yhc__utf8_valid(pl + 2, 123));

  /* Parse: built payloads round-trip. */
  len = yhc__ws_close_payload(pl, 1001, "going away \xE2\x82\xAC");
  close_frame(b, &n, pl, (size_t)len);
  parser(&p);
  YT_EQ_INT(yhc__ws_parse(&p, b, n, &f, &e), n);
  YT_EQ_INT(f.opcode, YHC__WS_OP_CLOSE);
  YT_EQ_INT(f.close_code, 1001);
  YT_EQ_MEM(f.close_reason.ptr, f.close_reason.len, "going away \xE2\x82\xAC");
  check_splits(b, n, YHC__WS_OP_CLOSE, pl, (size_t)len);
  /* Every valid code passes, every invalid one fails with its number. */
  for (i = 0; i < sizeof good / sizeof good[0]; i++) {
    pl[0] = (unsigned char)(good[i] >> 8);
    pl[1] = (unsigned char)good[i];
    close_frame(b, &n, pl, 2);
    parser(&p);
    YT_EQ_INT(yhc__ws_parse(&p, b, n, &f, &e), n);
    YT_EQ_INT(f.close_code, good[i]);
    YT_EQ_INT(yhc__ws_close_payload(pl, good[i], "x"), 3);
  }
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    pl[0] = (unsigned char)(bad[i] >> 8);
    pl[1] = (unsigned char)bad[i];
    close_frame(b, &n, pl, 2);
    snprintf(msg, sizeof msg, "invalid close code %d", bad[i]);
    check_error(b, n, YHC_ERR_WEBSOCKET, msg, 2);
    if (bad[i]) YT_EQ_INT(yhc__ws_close_payload(pl, bad[i], NULL), -1);
  }
  /* A 1-byte payload. */
  pl[0] = 0x03;
  close_frame(b, &n, pl, 1);
  check_error(b, n, YHC_ERR_WEBSOCKET, "close frame payload of 1 byte (must be empty or hold a 2-byte code)", 2);
  /* Bad UTF-8 in the reason, offset at the bad byte. */
  memcpy(pl, "\x03\xe8" "ab\xC0\xAF", 6);
  close_frame(b, &n, pl, 6);
  check_error(b, n, YHC_ERR_WEBSOCKET, "close reason is not valid UTF-8 (byte 2 of the reason)", 6);
  memcpy(pl, "\x03\xe8" "\xED\xA0\x80", 5); /* surrogate */
  close_frame(b, &n, pl, 5);
  check_error(b, n, YHC_ERR_WEBSOCKET, "close reason is not valid UTF-8 (byte 0 of the reason)", 4);
  memcpy(pl, "\x03\xe8" "ok\xE2\x82", 6); /* cut off at the end of the frame */
  close_frame(b, &n, pl, 6);
  check_error(b, n, YHC_ERR_WEBSOCKET, "close reason is not valid UTF-8 (byte 2 of the reason)", 6);
  /* Close frames may arrive inside a fragmented message. */
  parser(&p);
  YT_EQ_INT(yhc__ws_parse(&p, ex_frag1, sizeof ex_frag1, &f, &e), 5);
  len = yhc__ws_close_payload(pl, 1000, NULL);
  close_frame(b, &n, pl, (size_t)len);
  YT_EQ_INT(yhc__ws_parse(&p, b, n, &f, &e), n);
  YT_EQ_INT(f.close_code, 1000);
  /* The stand-alone checker, as streaming callers use it. */
  {
    int code;
    yhc_str reason;
    YT_EQ_INT(yhc__ws_close_parse((const unsigned char *)"\x0b\xb8" "why", 5, &code, &reason, 0, &e), 0);
    YT_EQ_INT(code, 3000);
    YT_EQ_MEM(reason.ptr, reason.len, "why");
    YT_EQ_INT(yhc__ws_close_parse((const unsigned char *)"", 0, &code, &reason, 0, &e), 0);
    YT_EQ_INT(code, 0);
    /* the answer is the status to close with: 1002 for a malformed payload, 1007 for a
       reason that is not UTF-8 */
    YT_EQ_INT(yhc__ws_close_parse((const unsigned char *)"\x03\xed", 2, &code, &reason, 100, &e), 1002);
    YT_EQ_INT(e.offset, 100);
    YT_EQ_STR(e.msg, "invalid close code 1005");
    YT_EQ_INT(yhc__ws_close_parse((const unsigned char *)"\x03", 1, &code, &reason, 0, &e), 1002);
    YT_EQ_INT(yhc__ws_close_parse((const unsigned char *)"\x03\xe8" "a\xff", 4, &code, &reason, 0, &e), 1007);
    YT_EQ_INT(e.offset, 3);
  }
}

static void test_header_mode(void) {
  unsigned char b[16];
  yhc__ws_header h;
  yhc__ws_parser p;
  yhc_error e;
  int msg_op = -1;
  size_t k;
  int early = 0;
  YT_GROUP("header-only parse");
  /* A 5 GiB frame header parses without its payload. */
  b[0] = 0x82;
  b[1] = 127;
  memcpy(b + 2, "\0\0\0\x01\x40\0\0\0", 8);
  for (k = 0; k < 10; k++) {
    if (yhc__ws_parse_header(b, k, &h, &e) != 0) early++;
  }
  YT_EQ_INT(early, 0);
  YT_EQ_INT(yhc__ws_parse_header(b, 10, &h, &e), 10);
  YT_EQ_INT(h.header_len, 10);
  YT_EQ_INT(h.fin, 1);
  YT_EQ_INT(h.opcode, 2);
  YT_CHECK(h.payload_len == 0x140000000ull);
  /* With data after it the header length is still 10. */
  memset(b + 10, 0, 6);
  YT_EQ_INT(yhc__ws_parse_header(b, 16, &h, &e), 10);
  /* Too big for the default limit; fine for a streaming parser with a large one. */
  parser(&p);
  YT_EQ_INT(yhc__ws_parser_begin(&p, &h, &msg_op, &e), -1);
  YT_EQ_INT(e.code, YHC_ERR_LIMIT);
  YT_EQ_INT(p.failed, 1);
  if (sizeof(size_t) >= 8) {
    yhc__ws_parser_init(&p, (size_t)-1, (size_t)-1);
    YT_EQ_INT(yhc__ws_parser_begin(&p, &h, &msg_op, &e), 0);
    YT_EQ_INT(msg_op, YHC__WS_OP_BINARY);
    /* But yhc__ws_parse refuses to return it as an int. */
    {
      yhc__ws_frame f;
      yhc__ws_parser_init(&p, (size_t)-1, (size_t)-1);
      YT_EQ_INT(yhc__ws_parse(&p, b, 10, &f, &e), -1);
      YT_EQ_STR(e.msg, "frame payload of 5368709120 bytes too large to parse whole");
    }
  }
  /* Streaming fragments: begin tracks the message like parse does. */
  parser(&p);
  YT_EQ_INT(yhc__ws_parse_header(ex_frag1, sizeof ex_frag1, &h, &e), 2);
  YT_EQ_INT(yhc__ws_parser_begin(&p, &h, &msg_op, &e), 0);
  YT_EQ_INT(msg_op, YHC__WS_OP_TEXT);
  YT_EQ_INT(p.msg_len, 3);
  YT_EQ_INT(yhc__ws_parse_header(ex_frag2, sizeof ex_frag2, &h, &e), 2);
  YT_EQ_INT(yhc__ws_parser_begin(&p, &h, &msg_op, &e), 0);
  YT_EQ_INT(msg_op, YHC__WS_OP_TEXT);
  YT_EQ_INT(p.msg_opcode, 0);
  YT_EQ_INT(yhc__ws_parse_header(ex_frag2, sizeof ex_frag2, &h, &e), 2);
  YT_EQ_INT(yhc__ws_parser_begin(&p, &h, &msg_op, &e), -1);
  YT_EQ_STR(e.msg, "continuation frame without a message in progress");
  /* Header errors come from parse_header itself. */
  YT_EQ_INT(yhc__ws_parse_header(ex_masked_text, 2, &h, &e), -1);
  YT_EQ_INT(e.offset, 1);
  YT_EQ_INT(yhc__ws_parse_header(b, 0, &h, &e), 0);
}

/* Reference validator written differently: decode the code point, then judge it. */
static int ref_utf8(const unsigned char *s, size_t n) {
  size_t i = 0, k, j;
  while (i < n) {
    unsigned c = s[i];
    unsigned long cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      cp = c & 0x1F;
      k = 1;
    } else if ((c & 0xF0) == 0xE0) {
      cp = c & 0x0F;
      k = 2;
    } else if ((c & 0xF8) == 0xF0) {
      cp = c & 0x07;
      k = 3;
    } else {
      return 0;
    }
    if (n - i - 1 < k) return 0;
    for (j = 1; j <= k; j++) {
      if ((s[i + j] & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (s[i + j] & 0x3F);
    }
    if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000)) return 0;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    i += k + 1;
  }
  return 1;
}

static void utf8_case(const char *s, int want) { YT_EQ_INT(yhc__utf8_valid((const unsigned char *)s, strlen(s)), want); }

static void test_utf8(void) {
  unsigned char s[48];
  unsigned a, b, c, d;
  static const unsigned char fourth[] = {0x00, 0x7F, 0x80, 0x8F, 0x90, 0xBF, 0xC0, 0xFF};
  long mismatch = 0;
  size_t len, pos;
  int bad_scan = 0;
  YT_GROUP("utf8");
  utf8_case("", 1);
  utf8_case("plain ascii", 1);
  utf8_case("\xC2\x80", 1);                 /* U+0080 */
  utf8_case("\xDF\xBF", 1);                 /* U+07FF */
  utf8_case("\xE0\xA0\x80", 1);             /* U+0800 */
  utf8_case("\xED\x9F\xBF", 1);             /* U+D7FF */
  utf8_case("\xEE\x80\x80", 1);             /* U+E000 */
  utf8_case("\xEF\xBF\xBF", 1);             /* U+FFFF */
  utf8_case("\xF0\x90\x80\x80", 1);         /* U+10000 */
  utf8_case("\xF4\x8F\xBF\xBF", 1);         /* U+10FFFF */
  utf8_case("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", 1); /* "kosme" from Kuhn's test */
  utf8_case("\xC0\x80", 0);                 /* overlong NUL */
  utf8_case("\xC1\xBF", 0);
  utf8_case("\xE0\x80\x80", 0);
  utf8_case("\xE0\x9F\xBF", 0);
  utf8_case("\xF0\x8F\xBF\xBF", 0);
  utf8_case("\xED\xA0\x80", 0);             /* U+D800 */
  utf8_case("\xED\xBF\xBF", 0);             /* U+DFFF */
  utf8_case("\xF4\x90\x80\x80", 0);         /* U+110000 */
  utf8_case("\xF5\x80\x80\x80", 0);
  utf8_case("\xFF", 0);
  utf8_case("\x80", 0);
  utf8_case("a\xBF", 0);
  utf8_case("\xC2", 0);
  utf8_case("\xE2\x82", 0);
  utf8_case("\xF0\x9F\x98", 0);
  utf8_case("\xE2\x28\xA1", 0);
  YT_EQ_INT(yhc__utf8_valid((const unsigned char *)"a\0b", 3), 1); /* NUL is a character */

  /* Every sequence of up to 3 bytes, and 4-byte ones over all leads and two continuations,
     against the reference. */
  for (a = 0; a < 256; a++) {
    s[0] = (unsigned char)a;
    if (yhc__utf8_valid(s, 1) != ref_utf8(s, 1)) mismatch++;
    for (b = 0; b < 256; b++) {
      s[1] = (unsigned char)b;
      if (yhc__utf8_valid(s, 2) != ref_utf8(s, 2)) mismatch++;
      for (c = 0; c < 256; c++) {
        s[2] = (unsigned char)c;
        if (yhc__utf8_valid(s, 3) != ref_utf8(s, 3)) mismatch++;
        if (a >= 0xE0 && a <= 0xF7) {
          for (d = 0; d < sizeof fourth; d++) {
            s[3] = fourth[d];
            if (yhc__utf8_valid(s, 4) != ref_utf8(s, 4)) mismatch++;
          }
        }
      }
    }
  }
  YT_EQ_INT(mismatch, 0);

  /* The word-at-a-time ASCII skip: one bad or multi-byte character at every position of
     ASCII text, and scan reports the bad position exactly. */
  for (len = 1; len <= 40; len++) {
    for (pos = 0; pos < len; pos++) {
      memset(s, 'a', len);
      s[pos] = 0xFF;
      if (yhc__utf8_valid(s, len) || yhc__utf8_scan(s, len) != pos) bad_scan++;
      s[pos] = 0x7F;
      if (!yhc__utf8_valid(s, len) || yhc__utf8_scan(s, len) != len) bad_scan++;
      if (pos + 1 < len) {
        s[pos] = 0xC3;
        s[pos + 1] = 0xA9;
        if (!yhc__utf8_valid(s, len)) bad_scan++;
        if (yhc__utf8_scan(s, pos + 1) != pos) bad_scan++; /* cut off: prefix ends before it */
      }
    }
  }
  YT_EQ_INT(bad_scan, 0);
  /* Random mixtures against the reference. */
  mismatch = 0;
  for (a = 0; a < 20000; a++) {
    size_t n = rnd() % 40, i;
    static const unsigned char pick[] = {'a', 0x7F, 0x80, 0xBF, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xA0, 0x9F, 0x8F, 0x90};
    for (i = 0; i < n; i++) s[i] = pick[rnd() % sizeof pick];
    if (yhc__utf8_valid(s, n) != ref_utf8(s, n)) mismatch++;
    if (ref_utf8(s, yhc__utf8_scan(s, n)) != 1) mismatch++; /* the scanned prefix is valid */
  }
  YT_EQ_INT(mismatch, 0);
}

/* Feeds `s` to the streaming validator in pieces cut at `cuts` (ascending offsets), then
   ends it. 1 when valid, else 0 with *at where the bad sequence starts. */
static int stream_check(const unsigned char *s, size_t n, const size_t *cuts, size_t ncuts, uint64_t *at,
                        const char **fault) {
  yhc__utf8_stream u;
  size_t from = 0, i;
  memset(&u, 0, sizeof u);
  for (i = 0; i <= ncuts; i++) {
    size_t to = i < ncuts ? cuts[i] : n;
    if (yhc__utf8_feed(&u, s + from, to - from, at, fault)) return 0;
    from = to;
  }
  return yhc__utf8_finish(&u, at, fault) == 0;
}

/* Text validated as it arrives: at every cut, byte by byte, and at random cuts it agrees
   with the whole-buffer check and finds the fault at the same place. */
static void test_utf8_stream(void) {
  static const unsigned char pick[] = {'a', 0x7F, 0x80, 0xBF, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xA0, 0x9F, 0x8F, 0x90};
  static const char *const cases[] = {"A\xE2\x82\xAC" "B\xF0\x9F\x98\x80" "C", "\xC0\xAF", "ab\xE0\x80\xAF", "\xED\xA0\x80",
                                      "x\xF4\x90\x80\x80", "ok\xE2\x82", "\xC3\x28", "\xF0\x9F\x98", "plain"};
  unsigned char s[64];
  size_t cuts[64], i, k, n;
  uint64_t at;
  const char *fault;
  long mismatch = 0;
  unsigned r;
  YT_GROUP("utf8 streaming: pieces cut anywhere, even inside a character");
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const unsigned char *c = (const unsigned char *)cases[i];
    int valid;
    n = strlen(cases[i]);
    valid = yhc__utf8_valid(c, n);
    for (k = 0; k <= n; k++) { /* two pieces, cut at k */
      at = 99;
      if (stream_check(c, n, &k, 1, &at, &fault) != valid || (!valid && at != yhc__utf8_scan(c, n))) mismatch++;
    }
    for (k = 0; k < n; k++) cuts[k] = k + 1; /* byte by byte */
    at = 99;
    if (stream_check(c, n, cuts, n ? n - 1 : 0, &at, &fault) != valid || (!valid && at != yhc__utf8_scan(c, n)))
      mismatch++;
  }
  YT_EQ_INT(mismatch, 0);
  for (r = 0; r < 20000; r++) {
    size_t nc = 0, pos = 0;
    int valid;
    n = rnd() % 40;
    for (i = 0; i < n; i++) s[i] = rnd() % 3 ? pick[rnd() % sizeof pick] : (unsigned char)"\xE2\x82\xAC\xC3\xA9"[rnd() % 5];
    while (nc < 8 && pos < n) {
      pos += 1 + rnd() % 5;
      if (pos < n) cuts[nc++] = pos;
    }
    valid = yhc__utf8_valid(s, n);
    at = 99;
    if (stream_check(s, n, cuts, nc, &at, &fault) != valid || (!valid && at != yhc__utf8_scan(s, n))) mismatch++;
  }
  YT_EQ_INT(mismatch, 0);
  /* the fault is named */
  YT_CHECK(!stream_check((const unsigned char *)"\xC0\xAF", 2, NULL, 0, &at, &fault) && strstr(fault, "overlong"));
  YT_CHECK(!stream_check((const unsigned char *)"\xF0\x80\x80\x80", 4, NULL, 0, &at, &fault) && strstr(fault, "overlong"));
  YT_CHECK(!stream_check((const unsigned char *)"\xED\xBF\xBF", 3, NULL, 0, &at, &fault) && strstr(fault, "surrogate"));
  YT_CHECK(!stream_check((const unsigned char *)"\xF4\x90\x80\x80", 4, NULL, 0, &at, &fault) && strstr(fault, "U+10FFFF"));
  YT_CHECK(!stream_check((const unsigned char *)"\xF5\x80", 2, NULL, 0, &at, &fault) && strstr(fault, "U+10FFFF"));
  YT_CHECK(!stream_check((const unsigned char *)"\xFF", 1, NULL, 0, &at, &fault) && strstr(fault, "never occurs"));
  YT_CHECK(!stream_check((const unsigned char *)"a\x80", 2, NULL, 0, &at, &fault) && strstr(fault, "continuation byte where"));
  k = 2;
  YT_CHECK(!stream_check((const unsigned char *)"a\xE2\x82", 3, &k, 1, &at, &fault) && strstr(fault, "end of the text"));
  YT_EQ_INT(at, 1);
}

/* Text frames through the parser, whole and header-only: UTF-8 checked frame by frame, with
   close_status 1007 for a fault; binary and control frames are not text. */
static void test_text_frames(void) {
  /* "A€" cut inside the euro sign, a ping between; then a BINARY frame of bytes that are not UTF-8 */
  static const unsigned char good[] = {0x01, 0x02, 'A', 0xE2, 0x89, 0x01, 0xFF, 0x80, 0x02, 0x82, 0xAC,
                                       0x82, 0x02, 0xC0, 0xAF};
  static const unsigned char overlong[] = {0x81, 0x03, 'A', 0xC0, 0xAF};
  static const unsigned char cut_final[] = {0x01, 0x01, 'A', 0x80, 0x02, 'B', 0xE2};
  static const unsigned char straddle[] = {0x01, 0x02, 'A', 0xC3, 0x80, 0x01, 0x28};
  static const unsigned char empty_end[] = {0x01, 0x02, 'A', 0xE2, 0x80, 0x00};
  yhc__ws_parser p;
  yhc__ws_frame f;
  yhc__ws_header h;
  yhc_error e;
  size_t pos = 0;
  int r, op;
  YT_GROUP("text frames: UTF-8 checked as frames come, close status 1007");
  parser(&p);
  while (pos < sizeof good && (r = yhc__ws_parse(&p, good + pos, sizeof good - pos, &f, &e)) > 0) pos += (size_t)r;
  YT_EQ_INT(pos, sizeof good);
  YT_EQ_INT(p.failed, 0);
  /* the first frame alone is fine: the cut character is not a fault yet */
  parser(&p);
  YT_EQ_INT(yhc__ws_parse(&p, good, 4, &f, &e), 4);
  YT_CHECK(p.text.part_len == 1);

  parser(&p);
  YT_EQ_INT(yhc__ws_parse(&p, overlong, sizeof overlong, &f, &e), -1);
  YT_EQ_INT(p.close_status, 1007);
  YT_EQ_INT(e.code, YHC_ERR_WEBSOCKET);
  YT_EQ_STR(e.msg, "text message is not valid UTF-8: an overlong encoding at byte 1 of the message");
  YT_EQ_INT(e.offset, 3);

  parser(&p);
  YT_EQ_INT(yhc__ws_parse(&p, cut_final, 3, &f, &e), 3);
  YT_EQ_INT(yhc__ws_parse(&p, cut_final + 3, 4, &f, &e), -1);
  YT_EQ_INT(p.close_status, 1007);
  YT_EQ_STR(e.msg, "text message is not valid UTF-8: a sequence cut short by the end of the text at byte 2 of the message");

  parser(&p);
  YT_EQ_INT(yhc__ws_parse(&p, straddle, 4, &f, &e), 4);
  YT_EQ_INT(yhc__ws_parse(&p, straddle + 4, 3, &f, &e), -1);
  YT_EQ_STR(e.msg, "text message is not valid UTF-8: a sequence cut short by a byte that is not a continuation at byte 1 of the message");
  YT_EQ_INT(e.offset, 2); /* the bad sequence began in the frame before */

  /* header-only: an empty final frame ends the message inside a character at once */
  parser(&p);
  YT_EQ_INT(yhc__ws_parse_header(empty_end, 4, &h, &e), 2);
  YT_EQ_INT(yhc__ws_parser_begin(&p, &h, &op, &e), 0);
  YT_EQ_INT(yhc__ws_parser_text(&p, empty_end + 2, 2, 1, 2, &e), 0);
  YT_EQ_INT(yhc__ws_parse_header(empty_end + 4, 2, &h, &e), 2);
  YT_EQ_INT(yhc__ws_parser_begin(&p, &h, &op, &e), -1);
  YT_EQ_INT(p.close_status, 1007);
  YT_CHECK(strstr(e.msg, "end of the text") != NULL);

  /* other failures say their status: 1002 protocol, 1009 too big */
  parser(&p);
  YT_EQ_INT(yhc__ws_parse(&p, (const unsigned char *)"\xC1\x00", 2, &f, &e), -1);
  YT_EQ_INT(p.close_status, 1002);
  yhc__ws_parser_init(&p, 2, 0);
  YT_EQ_INT(yhc__ws_parse(&p, overlong, sizeof overlong, &f, &e), -1);
  YT_EQ_INT(p.close_status, 1009);
  parser(&p);
  YT_EQ_INT(yhc__ws_parse(&p, (const unsigned char *)"\x88\x01\x03", 3, &f, &e), -1);
  YT_EQ_INT(p.close_status, 1002);
  parser(&p);
  YT_EQ_INT(yhc__ws_parse(&p, (const unsigned char *)"\x88\x03\x03\xe8\xff", 5, &f, &e), -1);
  YT_EQ_INT(p.close_status, 1007);
}

/* What yhc sends as text is UTF-8: the encoder refuses a whole text message that is not. */
static void test_encode_text(void) {
  static const unsigned char mask[4] = {1, 2, 3, 4};
  yhc_buf b;
  YT_GROUP("encode: a text message that is not UTF-8 is refused, not sent");
  memset(&b, 0, sizeof b);
  YT_EQ_INT(yhc__ws_encode(&b, YHC__WS_OP_TEXT, 1, "\xE2\x82\xAC", 3, mask), 0);
  YT_EQ_INT(b.len, 9);
  YT_EQ_INT(yhc__ws_encode(&b, YHC__WS_OP_TEXT, 1, "a\xED\xA0\x80", 4, mask), -2);
  YT_EQ_INT(yhc__ws_encode(&b, YHC__WS_OP_TEXT, 1, "\xE2\x82", 2, NULL), -2);
  YT_EQ_INT(b.len, 9); /* nothing appended */
  YT_EQ_INT(yhc__ws_encode(&b, YHC__WS_OP_BINARY, 1, "\xFF", 1, mask), 0); /* bytes, not text */
  yhc_buf_free(&b);
}

int main(void) {
  test_sha1();
  test_base64();
  test_handshake();
  test_mask();
  test_frame_header();
  test_encode();
  test_parse_examples();
  test_stream();
  test_protocol_errors();
  test_limits();
  test_close();
  test_header_mode();
  test_utf8();
  test_utf8_stream();
  test_text_frames();
  test_encode_text();
  return yt_done();
}
