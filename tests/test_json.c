/* test_json.c -- the JSON layer: parser, queries, number conversion, writer, and the
   JSONTestSuite conformance corpus from $YHC_SHARED/JSONTestSuite/test_parsing. */
#define YHC_IMPLEMENTATION
#include "yhc.h"
#include "tests/yt.h"
#include "tests/yt_locale.h"
#include <dirent.h>
#include <sys/stat.h>
#include <float.h>
#include <locale.h>

static yhc_json_doc *P(const char *s) { return yhc_json_parse(s, strlen(s), NULL, NULL); }

/* Parses s expecting failure; checks code, a message fragment and the offset. */
static void expect_fail(const char *s, size_t len, const yhc_json_opts *o, yhc_err code,
                        const char *msg_part, size_t offset) {
  yhc_error e;
  yhc_json_doc *d = yhc_json_parse(s, len, o, &e);
  YT_CHECKF(d == NULL, "accepted: %.*s", (int)len, s);
  yhc_json_free(d);
  YT_CHECKF(e.code == code, "%.*s: code %d (%s), want %d", (int)len, s, (int)e.code, e.msg, (int)code);
  YT_CHECKF(strstr(e.msg, msg_part) != NULL, "%.*s: msg \"%s\" lacks \"%s\"", (int)len, s, e.msg, msg_part);
  YT_CHECKF(e.offset == offset, "%.*s: offset %zu, want %zu (%s)", (int)len, s, e.offset, offset, e.msg);
}
#define FAIL(s, code, part, off) expect_fail((s), strlen(s), NULL, (code), (part), (off))

/* Deep structural equality, member order included; numbers by source text. */
static int tree_eq(const yhc_json *a, const yhc_json *b) {
  const yhc_json *x, *y;
  yhc_str sa, sb;
  if (yhc_json_typeof(a) != yhc_json_typeof(b)) return 0;
  switch (yhc_json_typeof(a)) {
    case YHC_JSON_STRING:
      sa = yhc_json_str(a, yhc__str_c(NULL));
      sb = yhc_json_str(b, yhc__str_c(NULL));
      return sa.len == sb.len && memcmp(sa.ptr, sb.ptr, sa.len) == 0;
    case YHC_JSON_NUMBER:
      sa = yhc_json_raw_number(a);
      sb = yhc_json_raw_number(b);
      return sa.len == sb.len && memcmp(sa.ptr, sb.ptr, sa.len) == 0;
    case YHC_JSON_BOOL: return yhc_json_bool(a, 0) == yhc_json_bool(b, 0);
    case YHC_JSON_ARRAY:
    case YHC_JSON_OBJECT:
      if (yhc_json_len(a) != yhc_json_len(b)) return 0;
      for (x = yhc_json_first(a), y = yhc_json_first(b); x && y; x = yhc_json_next(x), y = yhc_json_next(y)) {
        sa = yhc_json_key(x);
        sb = yhc_json_key(y);
        if (sa.len != sb.len || (sa.len && memcmp(sa.ptr, sb.ptr, sa.len))) return 0;
        if (!tree_eq(x, y)) return 0;
      }
      return x == NULL && y == NULL;
    default: return 1;
  }
}

/* parse -> write -> parse; returns 1 when the second tree equals the first. */
static int round_trip(const yhc_json *v, yhc_buf *out) {
  yhc_jw w;
  yhc_json_doc *d2;
  int ok;
  out->len = 0;
  yhc_jw_init(&w, out);
  yhc_jw_value(&w, v);
  if (yhc_jw_finish(&w)) return 0;
  d2 = yhc_json_parse(out->ptr, out->len, NULL, NULL);
  ok = d2 && tree_eq(v, yhc_json_root(d2));
  yhc_json_free(d2);
  return ok;
}

static void test_basics(void) {
  yhc_json_doc *d;
  const yhc_json *r, *v, *m;
  yhc_str def = {"dflt", 4}, s;
  int i;
  YT_GROUP("basics and getters");
  d = P(" {\"s\":\"hi\", \"n\": -12.5e1, \"i\": 42, \"t\": true, \"f\": false, \"z\": null,"
        " \"a\": [1, [2, 3], {\"k\": \"v\"}, \"x\"], \"o\": {}, \"e\": [], \"es\": \"\"} \n");
  YT_CHECK(d != NULL);
  r = yhc_json_root(d);
  YT_EQ_INT(yhc_json_typeof(r), YHC_JSON_OBJECT);
  YT_EQ_INT(yhc_json_len(r), 10);
  YT_EQ_STR(yhc_json_cstr(yhc_json_get(r, "s"), NULL), "hi");
  YT_EQ_INT(yhc_json_len(yhc_json_get(r, "s")), 2);
  s = yhc_json_str(yhc_json_get(r, "s"), def);
  YT_EQ_MEM(s.ptr, s.len, "hi");
  s = yhc_json_str(yhc_json_get(r, "n"), def); /* wrong type -> default */
  YT_EQ_MEM(s.ptr, s.len, "dflt");
  s = yhc_json_str(yhc_json_get(r, "missing"), def);
  YT_EQ_MEM(s.ptr, s.len, "dflt");
  YT_EQ_STR(yhc_json_cstr(yhc_json_get(r, "i"), "d"), "d");
  YT_CHECK(yhc_json_num(yhc_json_get(r, "n"), 0) == -125.0);
  YT_EQ_INT(yhc_json_int(yhc_json_get(r, "n"), 7), -125); /* integral value, exponent form */
  YT_EQ_INT(yhc_json_int(yhc_json_get(r, "i"), 7), 42);
  YT_CHECK(yhc_json_num(yhc_json_get(r, "i"), 0) == 42.0);
  YT_EQ_INT(yhc_json_int(yhc_json_get(r, "s"), 7), 7);
  YT_CHECK(yhc_json_num(yhc_json_get(r, "s"), 1.5) == 1.5);
  YT_CHECK(yhc_json_num(NULL, 2.5) == 2.5);
  s = yhc_json_raw_number(yhc_json_get(r, "n"));
  YT_EQ_MEM(s.ptr, s.len, "-12.5e1");
  YT_CHECK(yhc_json_raw_number(yhc_json_get(r, "s")).ptr == NULL);
  YT_EQ_INT(yhc_json_bool(yhc_json_get(r, "t"), 0), 1);
  YT_EQ_INT(yhc_json_bool(yhc_json_get(r, "f"), 1), 0);
  YT_EQ_INT(yhc_json_bool(yhc_json_get(r, "z"), 5), 5);
  YT_EQ_INT(yhc_json_bool(NULL, 3), 3);
  YT_EQ_INT(yhc_json_typeof(yhc_json_get(r, "z")), YHC_JSON_NULL);
  YT_EQ_INT(yhc_json_typeof(yhc_json_get(r, "t")), YHC_JSON_BOOL);
  YT_EQ_INT(yhc_json_typeof(yhc_json_get(r, "nope")), YHC_JSON_NONE);
  YT_EQ_INT(yhc_json_typeof(NULL), YHC_JSON_NONE);
  v = yhc_json_get(r, "a");
  YT_EQ_INT(yhc_json_typeof(v), YHC_JSON_ARRAY);
  YT_EQ_INT(yhc_json_len(v), 4);
  YT_EQ_INT(yhc_json_int(yhc_json_at(v, 0), 0), 1);
  YT_EQ_INT(yhc_json_len(yhc_json_at(v, 1)), 2);
  YT_EQ_INT(yhc_json_int(yhc_json_at(yhc_json_at(v, 1), 1), 0), 3);
  YT_EQ_STR(yhc_json_cstr(yhc_json_get(yhc_json_at(v, 2), "k"), NULL), "v");
  YT_EQ_STR(yhc_json_cstr(yhc_json_at(v, 3), NULL), "x");
  YT_CHECK(yhc_json_at(v, 4) == NULL);
  YT_CHECK(yhc_json_at(yhc_json_get(r, "s"), 0) == NULL);
  YT_CHECK(yhc_json_at(NULL, 0) == NULL);
  /* chained lookups through missing values stay NULL */
  YT_CHECK(yhc_json_get(yhc_json_get(r, "nope"), "x") == NULL);
  YT_CHECK(yhc_json_get(v, "x") == NULL); /* array is not an object */
  YT_CHECK(yhc_json_get(r, NULL) == NULL);
  YT_CHECK(yhc_json_getn(r, "sx", 1) == yhc_json_get(r, "s"));
  YT_EQ_INT(yhc_json_len(yhc_json_get(r, "o")), 0);
  YT_CHECK(yhc_json_first(yhc_json_get(r, "o")) == NULL);
  YT_CHECK(yhc_json_first(yhc_json_get(r, "e")) == NULL);
  YT_CHECK(yhc_json_first(yhc_json_get(r, "s")) == NULL);
  YT_EQ_STR(yhc_json_cstr(yhc_json_get(r, "es"), NULL), "");
  YT_EQ_INT(yhc_json_len(NULL), 0);
  YT_EQ_INT(yhc_json_len(yhc_json_get(r, "i")), 0);
  /* object member by index, and its key */
  m = yhc_json_at(r, 2);
  s = yhc_json_key(m);
  YT_EQ_MEM(s.ptr, s.len, "i");
  /* iteration order is document order */
  {
    const char *want[] = {"s", "n", "i", "t", "f", "z", "a", "o", "e", "es"};
    for (i = 0, m = yhc_json_first(r); m; m = yhc_json_next(m), i++) {
      s = yhc_json_key(m);
      YT_CHECK(i < 10 && s.len == strlen(want[i]) && memcmp(s.ptr, want[i], s.len) == 0);
    }
    YT_EQ_INT(i, 10);
  }
  /* array elements have no key; iteration over a mixed array */
  for (i = 0, m = yhc_json_first(v); m; m = yhc_json_next(m), i++) YT_CHECK(yhc_json_key(m).ptr == NULL);
  YT_EQ_INT(i, 4);
  YT_CHECK(yhc_json_next(r) == NULL); /* the root has no siblings */
  YT_CHECK(yhc_json_next(NULL) == NULL);
  YT_CHECK(yhc_json_key(r).ptr == NULL);
  yhc_json_free(d);
  yhc_json_free(NULL);
  YT_CHECK(yhc_json_root(NULL) == NULL);

  /* scalars at the top level */
  d = P("  \"top\" ");
  YT_EQ_STR(yhc_json_cstr(yhc_json_root(d), NULL), "top");
  yhc_json_free(d);
  d = P("7");
  YT_EQ_INT(yhc_json_int(yhc_json_root(d), 0), 7);
  yhc_json_free(d);
  d = P("null");
  YT_EQ_INT(yhc_json_typeof(yhc_json_root(d)), YHC_JSON_NULL);
  yhc_json_free(d);

  /* whitespace runs of every length, also right up to the end of the input */
  {
    char buf[128]; /* '[', n spaces, newline, 1, n / 2 spaces, ']', spaces to 2n + 4 */
    int n;
    for (n = 0; n < 40; n++) {
      memset(buf, ' ', sizeof buf);
      buf[0] = '[';
      buf[n + 1] = '\n';
      buf[n + 2] = '1';
      buf[n + 3 + n / 2] = ']';
      d = yhc_json_parse(buf, (size_t)(n + 4 + n), NULL, NULL);
      YT_CHECKF(d && yhc_json_int(yhc_json_at(yhc_json_root(d), 0), 0) == 1, "ws run %d", n);
      yhc_json_free(d);
    }
  }

  /* duplicate keys: both kept, lookup finds the first */
  d = P("{\"a\":1,\"a\":2}");
  r = yhc_json_root(d);
  YT_EQ_INT(yhc_json_len(r), 2);
  YT_EQ_INT(yhc_json_int(yhc_json_get(r, "a"), 0), 1);
  YT_EQ_INT(yhc_json_int(yhc_json_next(yhc_json_first(r)), 0), 2);
  yhc_json_free(d);

  /* the input need not be NUL-terminated, and is not kept */
  {
    char buf[16];
    memcpy(buf, "[1,2]xxxxxxxxxxx", 16);
    d = yhc_json_parse(buf, 5, NULL, NULL);
    memset(buf, '9', sizeof buf);
    YT_EQ_INT(yhc_json_len(yhc_json_root(d)), 2);
    YT_EQ_INT(yhc_json_int(yhc_json_at(yhc_json_root(d), 1), 0), 2);
    yhc_json_free(d);
    d = yhc_json_parse(buf, 3, NULL, NULL); /* "999" */
    YT_EQ_INT(yhc_json_int(yhc_json_root(d), 0), 999);
    yhc_json_free(d);
  }
}

static void test_at_deep(void) {
  yhc_json_doc *d;
  const yhc_json *r;
  yhc_buf b = {0, 0, 0};
  int i;
  YT_GROUP("array index across nested elements");
  yhc_buf_appends(&b, "[");
  for (i = 0; i < 300; i++) yhc_buf_printf(&b, "%s[%d,{\"k\":[%d]}]", i ? "," : "", i, i);
  yhc_buf_appends(&b, "]");
  d = yhc_json_parse(b.ptr, b.len, NULL, NULL);
  r = yhc_json_root(d);
  YT_EQ_INT(yhc_json_len(r), 300);
  for (i = 0; i < 300; i += 37)
    YT_EQ_INT(yhc_json_int(yhc_json_at(yhc_json_get(yhc_json_at(yhc_json_at(r, (size_t)i), 1), "k"), 0), -1), i);
  YT_EQ_INT(yhc_json_int(yhc_json_at(yhc_json_at(r, 299), 0), -1), 299);
  yhc_json_free(d);
  /* a flat array is indexed directly */
  b.len = 0;
  yhc_buf_appends(&b, "[");
  for (i = 0; i < 1000; i++) yhc_buf_printf(&b, "%s%d", i ? "," : "", i * 3);
  yhc_buf_appends(&b, "]");
  d = yhc_json_parse(b.ptr, b.len, NULL, NULL);
  YT_EQ_INT(yhc_json_int(yhc_json_at(yhc_json_root(d), 999), -1), 2997);
  YT_EQ_INT(yhc_json_int(yhc_json_at(yhc_json_root(d), 500), -1), 1500);
  yhc_json_free(d);
  yhc_buf_free(&b);
}

static void check_int(const char *text, int ok, int64_t want) {
  yhc_json_doc *d = P(text);
  int64_t got = 12345;
  YT_CHECKF(d != NULL, "parse %s", text);
  YT_CHECKF(yhc_json_int_ok(yhc_json_root(d), &got) == ok, "int_ok(%s) != %d", text, ok);
  if (ok) YT_CHECKF(got == want, "%s -> %lld, want %lld", text, (long long)got, (long long)want);
  YT_CHECKF(yhc_json_int(yhc_json_root(d), 77) == (ok ? want : 77), "int(%s)", text);
  yhc_json_free(d);
}

static void check_num(const char *text, double want) {
  yhc_json_doc *d = P(text);
  double got = yhc_json_num(yhc_json_root(d), -999);
  YT_CHECKF(memcmp(&got, &want, sizeof got) == 0, "%s -> %.17g, want %.17g", text, got, want);
  yhc_json_free(d);
}

static void test_numbers(void) {
  char buf[64];
  int i;
  YT_GROUP("numbers");
  check_int("0", 1, 0);
  check_int("-0", 1, 0);
  check_int("9223372036854775807", 1, INT64_MAX);
  check_int("-9223372036854775808", 1, INT64_MIN);
  check_int("9223372036854775808", 0, 0);
  check_int("-9223372036854775809", 0, 0);
  check_int("18446744073709551616", 0, 0);
  check_int("123456789012345678", 1, 123456789012345678LL);
  check_int("-999999999999999999", 1, -999999999999999999LL);
  check_int("1.5", 0, 0);
  check_int("1.0", 1, 1);
  check_int("1e2", 1, 100);
  check_int("1E+2", 1, 100);
  check_int("12.34e2", 1, 1234);
  check_int("1234e-2", 0, 0);
  check_int("1200e-2", 1, 12);
  check_int("0.0e-5", 1, 0);
  check_int("1e400", 0, 0);
  check_int("1e18", 1, 1000000000000000000LL);
  check_int("1e19", 0, 0);
  check_int("9.223372036854775807e18", 1, INT64_MAX);
  check_int("-9.223372036854775808e18", 1, INT64_MIN);
  check_int("0.1", 0, 0);
  check_num("0", 0.0);
  check_num("-0", -0.0);
  check_num("-0.0e7", -0.0);
  check_num("1.5", 1.5);
  check_num("-2.25e-3", -2.25e-3);
  check_num("0.1", 0.1);
  check_num("3.141592653589793", 3.141592653589793);
  check_num("1e22", 1e22);
  check_num("1e23", 1e23);
  check_num("9007199254740993", 9007199254740992.0);   /* 2^53+1 rounds to even */
  check_num("9007199254740995", 9007199254740996.0);
  check_num("1.7976931348623157e308", 1.7976931348623157e308);
  check_num("4.9406564584124654e-324", 4.9406564584124654e-324);
  check_num("2.2250738585072011e-308", 2.2250738585072011e-308);
  check_num("1e-400", 0.0);
  check_num("123456789012345678901234567890", 123456789012345678901234567890.0);
  check_num("0.000000000000000000000000000001", 1e-30);
  check_num("-65.613616999999977", -65.613616999999977);
  check_num("1e99999999999999999999", HUGE_VAL);
  check_num("-1e99999999999999999999", -HUGE_VAL);
  check_num("1e-99999999999999999999", 0.0);
  /* exponents at the edges of the parser's packed form (2^15), and long ones with few digits */
  check_num("1e32767", HUGE_VAL);
  check_num("1e32768", HUGE_VAL);
  check_num("-1.5e-32767", -0.0);
  check_num("1e-32768", 0.0);
  check_num("1E+0000000000000000000000000001", 10.0);
  check_num("25e-0000000000000000000000000001", 2.5);
  check_num("0.000000000000000000000000000000000000000000001e45", 1.0);
  check_num("1234567890123456789e-19", 0.1234567890123456789);
  check_num("12345678901234567890e-20", 0.1234567890123456789);
  /* a halfway case that needs every digit: 2^-1074 * 1.5 is between two subnormals */
  check_num("7.4109846876186981626485318930233205854758970392148714663837852375101326090531312779794975454245398856969484704316857659638998506553390969459816219401617281718945106978546710679176872575177347315553307795408549809608457500958111373034747658096871009590975442271004757307809711118935784838675653998783503015228055934046593739791790738723868299395818481660169122019456499931289798411362062484498678713572180352209017023903285791732520220528974020802906854021606612375549983402671300035812486479041385743401875520901590172592547146296175134159774938718574737870961645638908718119841271673056017045493004705269590165763776884908267986972573366521765567941072508764337560846003984904972149117463085539556354188641513168478436313080237596295773983001708984375e-324",
            9.8813129168249309e-324);
  YT_GROUP("numbers: random round trip through %.17g");
  for (i = 0; i < 2000; i++) {
    uint64_t bits = (uint64_t)rand() * 2654435761u ^ ((uint64_t)rand() << 31) ^ ((uint64_t)rand() << 50);
    double x, y;
    yhc_json_doc *d;
    memcpy(&x, &bits, sizeof x);
    if (!(x - x == 0)) continue;
    snprintf(buf, sizeof buf, "%.17g", x);
    if (strchr(buf, ',')) continue;
    d = P(buf);
    y = yhc_json_num(yhc_json_root(d), 0);
    YT_CHECKF(memcmp(&x, &y, sizeof x) == 0, "%s -> %.17g", buf, y);
    yhc_json_free(d);
  }
}

/* ---- number conversion against the C library, on many inputs */

/* xorshift64*: a fixed seed, so a failure repeats */
static uint64_t rng_next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * UINT64_C(2685821657736338717);
}

static double random_finite(uint64_t *s) {
  for (;;) {
    uint64_t bits = rng_next(s);
    double x;
    memcpy(&x, &bits, sizeof x);
    if (x - x == 0) return x;
  }
}

/* A random JSON number: 1-40 significant digits (runs of 0s and 9s now and then, which
   sit next to rounding boundaries), a point anywhere, an exponent across the whole range. */
static size_t random_number_text(uint64_t *s, char *out) {
  size_t k = 0;
  int nd = 1 + (int)(rng_next(s) % (rng_next(s) % 4 ? 19 : 40)), pt = (int)(rng_next(s) % (unsigned)(nd + 1)), i;
  int ex = (int)(rng_next(s) % 700) - 350, run = (int)(rng_next(s) % 3);
  if (rng_next(s) & 1) out[k++] = '-';
  for (i = 0; i < nd; i++) {
    int dgt = (int)(rng_next(s) % 10);
    if (i > 0 && run && rng_next(s) % 4) dgt = run == 1 ? 0 : 9;
    if (i == 0 && dgt == 0) dgt = 1;
    if (i == pt && pt) out[k++] = '.';
    out[k++] = (char)('0' + dgt);
  }
  if (rng_next(s) % 8) k += (size_t)sprintf(out + k, "e%d", ex - pt);
  out[k] = 0;
  return k;
}

static int same_double(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* The fewest significant digits that read back as x through strtod(), by search over %.*e
   (monotone: if p digits read back, so do p + 1). */
static int shortest_by_printf(double x) {
  char buf[64];
  int lo = 1, hi = 17;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    snprintf(buf, sizeof buf, "%.*e", mid - 1, x);
    if (same_double(strtod(buf, NULL), x)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

static int significant_digits(const char *s) {
  int n = 0, lead = 1, zeros = 0;
  for (; *s && *s != 'e'; s++) {
    if (*s < '0' || *s > '9') continue;
    if (*s == '0' && lead) continue;
    lead = 0;
    if (*s == '0') {
      zeros++;
    } else {
      n += zeros + 1;
      zeros = 0;
    }
  }
  return n;
}

/* The number text read through a document (the parser's digit counts, yhc_json_num())
   gives `want`; reports the first few that do not. */
static int document_number_ok(const char *text, size_t len, double want, long bad_so_far, long *n) {
  yhc_json_doc *d = yhc_json_parse(text, len, NULL, NULL);
  double got = d ? yhc_json_num(yhc_json_root(d), 0) : -1;
  yhc_json_free(d);
  ++*n;
  if (same_double(got, want)) return 1;
  if (bad_so_far < 5) fprintf(stderr, "  document %s -> %.17g, strtod %.17g\n", text, got, want);
  return 0;
}

static void test_numbers_differential(void) {
  uint64_t seed = UINT64_C(0x9e3779b97f4a7c15);
  char buf[128];
  long n = 0, bad = 0, i;
  const long million = yt_iters(1000000), many = yt_iters(200000), writes = yt_iters(300000);
  YT_GROUP("numbers: differential against strtod");
  for (i = 0; i < million; i++) { /* doubles printed at 1-17 digits */
    double x = random_finite(&seed), got, want;
    size_t len = (size_t)snprintf(buf, sizeof buf, "%.*g", 1 + (int)(rng_next(&seed) % 17), x);
    got = yhc__json_text_to_double(buf, len, (int)(i & 1));
    want = strtod(buf, NULL);
    n++;
    if (!same_double(got, want) && bad++ < 5) fprintf(stderr, "  %s -> %.17g, strtod %.17g\n", buf, got, want);
    if (i % 4 == 0) bad += !document_number_ok(buf, len, want, bad, &n);
  }
  for (i = 0; i < million; i++) { /* digit strings of every shape */
    size_t len = random_number_text(&seed, buf);
    double got = yhc__json_text_to_double(buf, len, (int)(i & 1)), want = strtod(buf, NULL);
    n++;
    if (!same_double(got, want) && bad++ < 5) fprintf(stderr, "  %s -> %.17g, strtod %.17g\n", buf, got, want);
    if (i % 4 == 0) bad += !document_number_ok(buf, len, want, bad, &n);
  }
#if LDBL_MANT_DIG >= 64
  for (i = 0; i < many; i++) { /* near and exactly halfway between neighbours */
    double x = random_finite(&seed), nx = nextafter(x, x < 0 ? -HUGE_VAL : HUGE_VAL), got, want;
    long double mid = ((long double)x + (long double)nx) / 2;
    size_t len;
    if (!(nx - nx == 0)) continue;
    len = (size_t)snprintf(buf, sizeof buf, "%.*Le", 17 + (int)(rng_next(&seed) % 30), mid);
    got = yhc__json_text_to_double(buf, len, (int)(i & 1));
    want = strtod(buf, NULL);
    n++;
    if (!same_double(got, want) && bad++ < 5) fprintf(stderr, "  %s -> %.17g, strtod %.17g\n", buf, got, want);
  }
  for (i = 0; i < 2000; i++) { /* exact halfway points, all their digits (up to ~770) */
    static char big[1200];
    double x = random_finite(&seed), nx = nextafter(x, x < 0 ? -HUGE_VAL : HUGE_VAL), got, want;
    long double mid = ((long double)x + (long double)nx) / 2;
    size_t len;
    if (!(nx - nx == 0)) continue;
    len = (size_t)snprintf(big, sizeof big, "%.780Le", mid);
    got = yhc__json_text_to_double(big, len, 1);
    want = strtod(big, NULL);
    n++;
    if (!same_double(got, want) && bad++ < 5) fprintf(stderr, "  halfway of %.17g -> %.17g, strtod %.17g\n", x, got, want);
  }
#endif
  printf("number conversion: %ld inputs against strtod, %ld differ\n", n, bad);
  YT_CHECKF(bad == 0, "%ld of %ld conversions differ from strtod", bad, n);

  YT_GROUP("writer: shortest text that reads back, against printf");
  {
    yhc_buf b = {0, 0, 0};
    yhc_jw w;
    long longer = 0, wrong = 0, m = 0;
    for (i = 0; i < writes; i++) {
      double x = random_finite(&seed), back;
      if (i % 3 == 0) x = (double)(int64_t)(rng_next(&seed) % 2000000) / 1000; /* short decimals */
      if (i % 3 == 1) x = ldexp((double)(rng_next(&seed) % 4096), (int)(rng_next(&seed) % 2100) - 1090); /* few bits, subnormals */
      b.len = 0;
      yhc_jw_init(&w, &b);
      yhc_jw_num(&w, x);
      if (yhc_jw_finish(&w)) {
        wrong++;
        continue;
      }
      m++;
      back = strtod(b.ptr, NULL);
      if (!same_double(back, x) && wrong++ < 5) fprintf(stderr, "  %.17g written as %s\n", x, b.ptr);
      if (x != 0 && significant_digits(b.ptr) > shortest_by_printf(x) && longer++ < 5)
        fprintf(stderr, "  %.17g written as %s: %d digits, printf needs %d\n", x, b.ptr, significant_digits(b.ptr),
                shortest_by_printf(x));
    }
    printf("writer: %ld doubles, %ld do not read back, %ld longer than needed\n", m, wrong, longer);
    YT_CHECK(wrong == 0);
    YT_CHECK(longer == 0);
    yhc_buf_free(&b);
  }
}


static void test_numbers_comma_locale(void) {
  static const char *texts[] = {"1.5", "-0.1", "3.141592653589793", "2.2250738585072011e-308", "1e23",
                                "123456789012345678901234567890.123", "0.1000000000000000055511151231257827"};
  static const double vals[] = {1.5, -0.1, 3.141592653589793, 2.2250738585072011e-308, 1e23,
                                123456789012345678901234567890.123, 0.1};
  uint64_t seed = 42;
  yhc_buf b = {0, 0, 0};
  yhc_jw w;
  size_t i;
  long bad = 0;
  YT_GROUP("numbers under a comma locale");
  if (!yt_comma_locale()) {
    printf("no locale with a decimal comma (de_DE.UTF-8): the comma-locale checks are skipped\n");
    return;
  }
  for (i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    double got = yhc__json_text_to_double(texts[i], strlen(texts[i]), 0);
    YT_CHECKF(same_double(got, vals[i]), "%s -> %.17g under %s", texts[i], got, setlocale(LC_NUMERIC, NULL));
  }
  b.len = 0;
  yhc_jw_init(&w, &b);
  yhc_jw_arr_begin(&w);
  yhc_jw_num(&w, 0.5);
  yhc_jw_num(&w, 1.25e-7);
  yhc_jw_num(&w, 5e-324);
  yhc_jw_num(&w, -1234.5678);
  yhc_jw_arr_end(&w);
  YT_EQ_INT(yhc_jw_finish(&w), 0);
  YT_EQ_STR(b.ptr, "[0.5,1.25e-7,5e-324,-1234.5678]");
  for (i = 0; i < 20000; i++) { /* write, then read back with the library's own reader */
    double x = random_finite(&seed), back;
    b.len = 0;
    yhc_jw_init(&w, &b);
    yhc_jw_num(&w, x);
    back = yhc__json_text_to_double(b.ptr, b.len, 0);
    if ((!same_double(back, x) || strchr(b.ptr, ',')) && bad++ < 5) fprintf(stderr, "  %.17g -> %s\n", x, b.ptr);
  }
  YT_CHECKF(bad == 0, "%ld of 20000 doubles did not survive writing and reading under a comma locale", bad);
  printf("comma locale %s: numbers read and written as in C\n", setlocale(LC_NUMERIC, NULL));
  setlocale(LC_ALL, "C");
  yhc_buf_free(&b);
}

static void test_strings(void) {
  yhc_json_doc *d;
  yhc_str s, none = {NULL, 0};
  YT_GROUP("strings and escapes");
  d = P("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20ac\\ud83d\\ude00z\"");
  s = yhc_json_str(yhc_json_root(d), none);
  YT_EQ_MEM(s.ptr, s.len, "a\"b\\c/d\b\f\n\r\tA\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z");
  YT_CHECK(s.ptr[s.len] == 0);
  yhc_json_free(d);
  d = P("[\"x\\u0000y\", \"\\u0000\"]");
  s = yhc_json_str(yhc_json_at(yhc_json_root(d), 0), none);
  YT_EQ_INT(s.len, 3);
  YT_CHECK(s.ptr && memcmp(s.ptr, "x\0y", 4) == 0);
  YT_EQ_INT(yhc_json_len(yhc_json_at(yhc_json_root(d), 1)), 1);
  yhc_json_free(d);
  /* raw UTF-8 passes through: 2, 3 and 4 byte forms, the extremes */
  d = P("\"\xC2\x80\xDF\xBF\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF\"");
  YT_CHECK(d != NULL);
  YT_EQ_INT(yhc_json_len(yhc_json_root(d)), 24);
  yhc_json_free(d);
  /* long strings cross the word-at-a-time scanner's boundaries */
  {
    char buf[200];
    int n;
    for (n = 0; n < 40; n++) {
      memset(buf, 'a', sizeof buf);
      buf[0] = '"';
      buf[n + 1] = '"';
      d = yhc_json_parse(buf, (size_t)n + 2, NULL, NULL);
      YT_CHECKF(d && yhc_json_len(yhc_json_root(d)) == (size_t)n, "length %d", n);
      yhc_json_free(d);
      /* unterminated at every length */
      d = yhc_json_parse(buf, (size_t)n + 1, NULL, NULL);
      YT_CHECK(d == NULL);
    }
  }
  /* keys with escapes are looked up unescaped */
  d = P("{\"k\\u00e9y\":1,\"\\n\":2,\"\":3}");
  YT_EQ_INT(yhc_json_int(yhc_json_get(yhc_json_root(d), "k\xC3\xA9y"), 0), 1);
  YT_EQ_INT(yhc_json_int(yhc_json_get(yhc_json_root(d), "\n"), 0), 2);
  YT_EQ_INT(yhc_json_int(yhc_json_get(yhc_json_root(d), ""), 0), 3);
  yhc_json_free(d);
}

/* ---- the word-at-a-time scanners against byte-at-a-time references */

/* Length of the well-formed UTF-8 sequence at s (Unicode table 3-7), or 0: the plain
   range checks, one byte at a time. */
static size_t ref_utf8(const unsigned char *s, size_t n) {
  unsigned c = s[0], lo = 0x80, hi = 0xBF;
  size_t k, i;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) k = 2;
  else if (c >= 0xE0 && c <= 0xEF) k = 3;
  else if (c >= 0xF0 && c <= 0xF4) k = 4;
  else return 0;
  if (c == 0xE0) lo = 0xA0;
  if (c == 0xED) hi = 0x9F;
  if (c == 0xF0) lo = 0x90;
  if (c == 0xF4) hi = 0x8F;
  if (n < k || s[1] < lo || s[1] > hi) return 0;
  for (i = 2; i < k; i++)
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  return k;
}

static int ref_hex4(const unsigned char *s, size_t n, unsigned *u) {
  size_t i;
  *u = 0;
  if (n < 4) return 0;
  for (i = 0; i < 4; i++) {
    unsigned c = s[i], d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return 0;
    *u = *u * 16 + d;
  }
  return 1;
}

/* The string body s[0..n) (no quotes; a raw '"' in it ends the string, so it is invalid here)
   unescaped into out; returns 1 when RFC 8259 accepts it. */
static int ref_string(const unsigned char *s, size_t n, unsigned char *out, size_t *outlen) {
  size_t i = 0, o = 0, k;
  unsigned u, lo;
  while (i < n) {
    unsigned c = s[i];
    if (c == '"' || c < 0x20) return 0;
    if (c >= 0x80) {
      if (!(k = ref_utf8(s + i, n - i))) return 0;
      memcpy(out + o, s + i, k);
      o += k;
      i += k;
      continue;
    }
    if (c != '\\') {
      out[o++] = (unsigned char)c;
      i++;
      continue;
    }
    if (i + 1 >= n) return 0;
    switch (s[i + 1]) {
      case '"': out[o++] = '"'; break;
      case '\\': out[o++] = '\\'; break;
      case '/': out[o++] = '/'; break;
      case 'b': out[o++] = '\b'; break;
      case 'f': out[o++] = '\f'; break;
      case 'n': out[o++] = '\n'; break;
      case 'r': out[o++] = '\r'; break;
      case 't': out[o++] = '\t'; break;
      case 'u':
        if (!ref_hex4(s + i + 2, n - i - 2, &u)) return 0;
        i += 6;
        if (u >= 0xDC00 && u <= 0xDFFF) return 0;
        if (u >= 0xD800 && u <= 0xDBFF) {
          if (i + 1 >= n || s[i] != '\\' || s[i + 1] != 'u' || !ref_hex4(s + i + 2, n - i - 2, &lo) ||
              lo < 0xDC00 || lo > 0xDFFF)
            return 0;
          u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
          i += 6;
        }
        if (u < 0x80) {
          out[o++] = (unsigned char)u;
        } else if (u < 0x800) {
          out[o++] = (unsigned char)(0xC0 | (u >> 6));
          out[o++] = (unsigned char)(0x80 | (u & 0x3F));
        } else if (u < 0x10000) {
          out[o++] = (unsigned char)(0xE0 | (u >> 12));
          out[o++] = (unsigned char)(0x80 | ((u >> 6) & 0x3F));
          out[o++] = (unsigned char)(0x80 | (u & 0x3F));
        } else {
          out[o++] = (unsigned char)(0xF0 | (u >> 18));
          out[o++] = (unsigned char)(0x80 | ((u >> 12) & 0x3F));
          out[o++] = (unsigned char)(0x80 | ((u >> 6) & 0x3F));
          out[o++] = (unsigned char)(0x80 | (u & 0x3F));
        }
        continue;
      default: return 0;
    }
    i += 2;
  }
  *outlen = o;
  return 1;
}

/* Appends a random piece of string body: plain runs of every length, escapes (some broken),
   UTF-8 of every length with the edge leads E0, ED, F0, F4 (some malformed), runs of CJK,
   now and then a control character. */
static size_t random_string_piece(uint64_t *s, unsigned char *o) {
  static const char *esc[] = {"\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\u00e9", "\\u20AC",
                              "\\ud83d\\ude00", "\\ud800", "\\udc00", "\\ud800\\u0041", "\\u12G4", "\\x", "\\u004"};
  static const unsigned char leads3[] = {0xE0, 0xE1, 0xE3, 0xE9, 0xEC, 0xED, 0xEE, 0xEF};
  size_t k = 0, n, i;
  uint64_t r = rng_next(s);
  switch (r % 8) {
    case 0:
    case 1:
      for (n = rng_next(s) % 24, i = 0; i < n; i++) {
        unsigned c = 0x20 + (unsigned)(rng_next(s) % 95);
        o[k++] = (unsigned char)(c == '"' || c == '\\' ? 'a' + i % 26 : c);
      }
      break;
    case 2: {
      const char *e = esc[rng_next(s) % 9 == 0 ? 9 + rng_next(s) % 8 : rng_next(s) % 11];
      memcpy(o, e, strlen(e));
      k = strlen(e);
      break;
    }
    case 3: /* a run of 3-byte sequences; a bad second or third byte now and then */
      for (n = 1 + rng_next(s) % 12, i = 0; i < n; i++) {
        o[k++] = rng_next(s) % 6 ? 0xE3 : leads3[rng_next(s) % 8];
        o[k++] = (unsigned char)(0x80 + rng_next(s) % 64);
        o[k++] = (unsigned char)(0x80 + rng_next(s) % 64);
        if (rng_next(s) % 40 == 0) o[k - 1 - rng_next(s) % 2] = (unsigned char)(rng_next(s) % 256);
      }
      break;
    case 4: /* 2- and 4-byte sequences, the edge leads, truncations */
      n = 2 + rng_next(s) % 3;
      o[k++] = n == 2 ? (unsigned char)(0xC0 + rng_next(s) % 32)
                      : n == 3 ? leads3[rng_next(s) % 8] : (unsigned char)(0xF0 + rng_next(s) % 6);
      for (i = 1; i < n; i++) o[k++] = (unsigned char)(rng_next(s) % 8 ? 0x80 + rng_next(s) % 64 : rng_next(s) % 256);
      if (rng_next(s) % 10 == 0) k--;
      break;
    case 5: o[k++] = (unsigned char)(rng_next(s) % 32 == 0 ? rng_next(s) % 0x20 : 0x80 + rng_next(s) % 128); break;
    default: o[k++] = (unsigned char)('a' + rng_next(s) % 26); break;
  }
  return k;
}

static size_t random_ws(uint64_t *s, char *o) {
  static const char ws[] = " \n\r\t";
  size_t k = 0, n = rng_next(s) % 3 ? 0 : rng_next(s) % 20;
  for (; k < n; k++) o[k] = rng_next(s) % 4 ? ' ' : ws[rng_next(s) % 4];
  return k;
}

/* The word tests alone, on words biased towards the bytes at their edges: the first byte
   each flags must be the first byte that the byte rule picks, and a word with none has no
   flag. */
static int ref_first(const unsigned char *b, int kind) {
  int i;
  for (i = 0; i < 8; i++) {
    unsigned c = b[i];
    if (kind == 0 && (c == '"' || c == '\\' || c < 0x20 || c >= 0x80)) return i;
    if (kind == 1 && !(c >= '0' && c <= '9')) return i;
  }
  return 8;
}

static void test_word_tests(void) {
  static const unsigned char edge[] = {0x00, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x2F, '0', '5', '9', ':', 0x5B,
                                       0x5C, 0x5D, 0x7F, 0x80, 0x9F, 0xA0, 0xAF, 0xB0, 0xBA, 0xFF};
  uint64_t seed = UINT64_C(0x853c49e6748fea9b);
  long i, n = yt_iters(4000000), bad = 0;
  YT_GROUP("word tests against the byte rule");
  for (i = 0; i < n; i++) {
    unsigned char b[8];
    uint64_t w, m;
    int j, kind = (int)(i & 1), want, got;
    for (j = 0; j < 8; j++) {
      uint64_t r = rng_next(&seed);
      b[j] = (unsigned char)(r % 4 == 0 ? r >> 8 : r % 4 == 1 ? edge[(r >> 8) % sizeof edge]
                                                              : kind ? '0' + (r >> 8) % 10 : 'a' + (r >> 8) % 26);
    }
    w = yhc__load_le64(b);
    m = kind ? yhc__json_nondigit8(w) : yhc__json_special8(w);
    want = ref_first(b, kind);
    got = m ? (int)YHC__JSON_FIRST(m) : 8;
    if (got != want && bad++ < 5) fprintf(stderr, "  %s test on %016llx: byte %d, want %d\n", kind ? "digit" : "string", (unsigned long long)w, got, want);
  }
  YT_CHECKF(bad == 0, "%ld of %ld words", bad, n);
}

static void test_scanners_differential(void) {
  uint64_t seed = UINT64_C(0x2545f4914f6cdd1d);
  static unsigned char body[4096], want[4096];
  static char doc[8192];
  long i, n = yt_iters(300000), strings = 0, accepted = 0, bad = 0, nums = 0;
  YT_GROUP("strings, whitespace and numbers: word-at-a-time scanners against references");
  for (i = 0; i < n; i++) {
    size_t blen = 0, dlen = 0, wlen = 0, npieces = 1 + rng_next(&seed) % 12, j;
    char numtext[128];
    size_t numlen = random_number_text(&seed, numtext);
    int ok;
    yhc_json_doc *d;
    for (j = 0; j < npieces && blen < 3000; j++) blen += random_string_piece(&seed, body + blen);
    ok = ref_string(body, blen, want, &wlen);
    /* [ws "body" ws , ws number ws] */
    doc[dlen++] = '[';
    dlen += random_ws(&seed, doc + dlen);
    doc[dlen++] = '"';
    memcpy(doc + dlen, body, blen);
    dlen += blen;
    doc[dlen++] = '"';
    dlen += random_ws(&seed, doc + dlen);
    doc[dlen++] = ',';
    dlen += random_ws(&seed, doc + dlen);
    memcpy(doc + dlen, numtext, numlen);
    dlen += numlen;
    dlen += random_ws(&seed, doc + dlen);
    doc[dlen++] = ']';
    d = yhc_json_parse(doc, dlen, NULL, NULL);
    strings++;
    if (!d != !ok) {
      if (bad++ < 5) fprintf(stderr, "  string of %zu bytes: yhc %s, reference %s\n", blen, d ? "accepts" : "rejects", ok ? "accepts" : "rejects");
    } else if (d) {
      yhc_str got = yhc_json_str(yhc_json_at(yhc_json_root(d), 0), yhc__str_c(NULL));
      yhc_str raw = yhc_json_raw_number(yhc_json_at(yhc_json_root(d), 1));
      double num = yhc_json_num(yhc_json_at(yhc_json_root(d), 1), 0), ref = strtod(numtext, NULL);
      accepted++;
      nums++;
      if ((got.len != wlen || memcmp(got.ptr, want, wlen) || got.ptr[got.len]) && bad++ < 5)
        fprintf(stderr, "  string of %zu bytes unescaped to %zu bytes, reference %zu\n", blen, got.len, wlen);
      if ((raw.len != numlen || memcmp(raw.ptr, numtext, numlen) || !same_double(num, ref)) && bad++ < 5)
        fprintf(stderr, "  number %s: raw %.*s, %.17g, strtod %.17g\n", numtext, (int)raw.len, raw.ptr, num, ref);
    }
    yhc_json_free(d);
  }
  printf("scanners: %ld documents (%ld accepted, %ld numbers read), %ld differ from the references\n", strings,
         accepted, nums, bad);
  YT_CHECKF(bad == 0, "%ld of %ld documents differ from the byte-at-a-time references", bad, strings);
  YT_CHECK(accepted > n / 10 && accepted < n - n / 10); /* both outcomes are exercised */
}

static void test_errors(void) {
  yhc_json_opts o;
  yhc_error e;
  yhc_json_doc *d;
  char deep[2000];
  int i;
  YT_GROUP("errors: messages and offsets");
  FAIL("", YHC_ERR_JSON, "unexpected end of input", 0);
  FAIL("   ", YHC_ERR_JSON, "unexpected end of input", 3);
  FAIL("{\"a\":\"x\\q\"}", YHC_ERR_JSON, "invalid escape \\q at offset 7", 7);
  FAIL("[1,2,]", YHC_ERR_JSON, "unexpected ']', expected a value", 5);
  FAIL("{\"a\" 1}", YHC_ERR_JSON, "expected ':'", 5);
  FAIL("{\"a\":1,}", YHC_ERR_JSON, "expected a string key", 7);
  FAIL("{\"a\":1 \"b\":2}", YHC_ERR_JSON, "expected ',' or '}'", 7);
  FAIL("[1 2]", YHC_ERR_JSON, "expected ',' or ']'", 3);
  FAIL("[1", YHC_ERR_JSON, "unexpected end of input", 2);
  FAIL("{", YHC_ERR_JSON, "unexpected end of input, expected a string key", 1);
  FAIL("\"abc", YHC_ERR_JSON, "unterminated string", 0);
  FAIL("[\"ab\\", YHC_ERR_JSON, "unterminated string", 4);
  FAIL("\"a\tb\"", YHC_ERR_JSON, "control character 0x09", 2);
  FAIL("01", YHC_ERR_JSON, "leading zero", 0);
  FAIL("-", YHC_ERR_JSON, "no digit after '-'", 0);
  FAIL("1.", YHC_ERR_JSON, "no digit after '.'", 2);
  FAIL("1e+", YHC_ERR_JSON, "no digit in exponent", 3);
  FAIL("[.5]", YHC_ERR_JSON, "unexpected '.'", 1);
  FAIL("tru", YHC_ERR_JSON, "invalid literal", 0);
  FAIL("nulL", YHC_ERR_JSON, "invalid literal", 0);
  FAIL("[true] x", YHC_ERR_JSON, "after the top-level value", 7);
  FAIL("1 2", YHC_ERR_JSON, "after the top-level value", 2);
  FAIL("\"\\ud800\"", YHC_ERR_JSON, "lone surrogate \\uD800", 1);
  FAIL("\"\\udc00\\ud800\"", YHC_ERR_JSON, "lone surrogate \\uDC00", 1);
  FAIL("\"\\ud800\\u0041\"", YHC_ERR_JSON, "lone surrogate", 1);
  FAIL("\"\\u12g4\"", YHC_ERR_JSON, "invalid \\u escape", 1);
  FAIL("\"\\u12", YHC_ERR_JSON, "invalid \\u escape", 1);
  FAIL("\xEF\xBB\xBF{}", YHC_ERR_JSON, "unexpected 0xEF", 0);
  /* UTF-8: overlongs, surrogates, beyond U+10FFFF, truncations, stray continuation */
  FAIL("\"\xC0\x80\"", YHC_ERR_JSON, "invalid UTF-8", 1);
  FAIL("\"\xC1\xBF\"", YHC_ERR_JSON, "invalid UTF-8", 1);
  FAIL("\"\xE0\x80\xAF\"", YHC_ERR_JSON, "invalid UTF-8", 1);
  FAIL("\"\xF0\x80\x80\xAF\"", YHC_ERR_JSON, "invalid UTF-8", 1);
  FAIL("\"\xED\xA0\x80\"", YHC_ERR_JSON, "invalid UTF-8", 1);
  FAIL("\"\xED\xBF\xBF\"", YHC_ERR_JSON, "invalid UTF-8", 1);
  FAIL("\"\xF4\x90\x80\x80\"", YHC_ERR_JSON, "invalid UTF-8", 1);
  FAIL("\"\xF5\x80\x80\x80\"", YHC_ERR_JSON, "invalid UTF-8", 1);
  FAIL("\"\xFF\"", YHC_ERR_JSON, "invalid UTF-8", 1);
  FAIL("\"\x80\"", YHC_ERR_JSON, "invalid UTF-8", 1);
  FAIL("\"ab\xE2\x82\"", YHC_ERR_JSON, "invalid UTF-8", 3);
  FAIL("\"ab\xF0\x9F\x98", YHC_ERR_JSON, "invalid UTF-8", 3);
  FAIL("\"\xC3", YHC_ERR_JSON, "invalid UTF-8", 1);
  FAIL("\"\\n\xC3\"", YHC_ERR_JSON, "invalid UTF-8", 3); /* same check on the unescape path */
  /* NUL bytes inside the input are data, not the end */
  expect_fail("[1,\0]", 5, NULL, YHC_ERR_JSON, "unexpected 0x00", 3);
  expect_fail("\"a\0\"", 4, NULL, YHC_ERR_JSON, "control character 0x00", 2);
  expect_fail("1\0", 2, NULL, YHC_ERR_JSON, "0x00 after the top-level value", 1);
  /* NULL text */
  d = yhc_json_parse(NULL, 0, NULL, &e);
  YT_CHECK(d == NULL && e.code == YHC_ERR_JSON);
  d = yhc_json_parse(NULL, 5, NULL, &e);
  YT_CHECK(d == NULL && e.code == YHC_ERR_INVALID);
  YT_CHECK(yhc_json_parse("x", 1, NULL, NULL) == NULL); /* err may be NULL */

  YT_GROUP("limits");
  for (i = 0; i < 1000; i++) deep[i] = '[';
  for (i = 0; i < 1000; i++) deep[1000 + i] = ']';
  /* default 512: 512 levels parse, 513 do not */
  d = yhc_json_parse(deep + 488, 1024, NULL, &e);
  YT_CHECK(d != NULL);
  yhc_json_free(d);
  expect_fail(deep + 487, 1026, NULL, YHC_ERR_LIMIT, "nesting deeper than 512", 512);
  expect_fail(deep, 2000, NULL, YHC_ERR_LIMIT, "nesting deeper than 512 at offset 512", 512);
  memset(&o, 0, sizeof o);
  o.max_depth = 3;
  d = yhc_json_parse("{\"a\":[{}]}", 10, &o, &e);
  YT_CHECK(d != NULL);
  yhc_json_free(d);
  expect_fail("{\"a\":[{\"b\":[]}]}", 16, &o, YHC_ERR_LIMIT, "nesting deeper than 3", 11);
  o.max_depth = 1000;
  d = yhc_json_parse(deep, 2000, &o, &e);
  YT_CHECK(d != NULL);
  {
    /* a 1000-deep document writes back (yhc_jw_value is not bound by YHC_JW_MAX_DEPTH) */
    yhc_buf b = {0, 0, 0};
    yhc_jw w;
    yhc_jw_init(&w, &b);
    yhc_jw_value(&w, yhc_json_root(d));
    YT_EQ_INT(yhc_jw_finish(&w), 0);
    YT_CHECK(b.len == 2000 && memcmp(b.ptr, deep, 2000) == 0);
    yhc_buf_free(&b);
  }
  yhc_json_free(d);
  o.max_depth = 0;
  o.max_bytes = 10;
  d = yhc_json_parse("[1,2,3,4]", 9, &o, &e);
  YT_CHECK(d != NULL);
  yhc_json_free(d);
  expect_fail("[1,2,3,4,5]", 11, &o, YHC_ERR_LIMIT, "exceeds max_bytes 10", 0);
  /* a document failing late, after many nodes and regrowth, frees everything (ASan checks) */
  {
    yhc_buf b = {0, 0, 0};
    yhc_buf_appends(&b, "[");
    for (i = 0; i < 20000; i++) yhc_buf_appends(&b, "{\"k\":\"v\\n\",\"n\":[1,2]},");
    yhc_buf_appends(&b, "]");
    d = yhc_json_parse(b.ptr, b.len, NULL, &e);
    YT_CHECK(d == NULL && e.code == YHC_ERR_JSON && e.offset == b.len - 1);
    b.ptr[b.len - 2] = ' ';
    d = yhc_json_parse(b.ptr, b.len, NULL, &e);
    YT_CHECK(d != NULL && yhc_json_len(yhc_json_root(d)) == 20000);
    yhc_json_free(d);
    yhc_buf_free(&b);
  }
  /* the message carries the offset too */
  d = yhc_json_parse("[1,2,?]", 7, NULL, &e);
  YT_EQ_STR(e.msg, "unexpected '?', expected a value at offset 5");
  YT_EQ_INT(e.offset, 5);
  /* success clears a previous error */
  d = yhc_json_parse("[]", 2, NULL, &e);
  YT_CHECK(d && e.code == YHC_ERR_OK);
  yhc_json_free(d);
}

static void test_writer(void) {
  yhc_buf b = {0, 0, 0};
  yhc_jw w;
  yhc_json_doc *d;
  const char *rt[] = {
      "{\"a\":[1,2.5,-3e-7,\"x\"],\"b\":{\"c\":null,\"d\":true,\"e\":false},\"f\":[],\"g\":{}}",
      "[\"\\u0000\\u001f\\\"\\\\\\n\\t\\r\\b\\f\\/\",\"\\ud83d\\ude00\"]",
      "\"just a string\"", "-0", "[[[[[]]]]]", "{\"\":{\"\":[{}]}}",
      "[123456789012345678901234567890, 1E+5, 0.000001]"};
  size_t i;
  YT_GROUP("writer");
  yhc_jw_init(&w, &b);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "s");
  yhc_jw_str(&w, "q\"b\\n\n\x01\x1f\x7f\xC3\xA9\xE2\x80\xA8");
  yhc_jw_key(&w, "i");
  yhc_jw_int(&w, INT64_MIN);
  yhc_jw_key(&w, "j");
  yhc_jw_int(&w, INT64_MAX);
  yhc_jw_keyn(&w, "k\0z", 3);
  yhc_jw_arr_begin(&w);
  yhc_jw_num(&w, 0.1);
  yhc_jw_num(&w, 1e300);
  yhc_jw_num(&w, -0.0);
  yhc_jw_num(&w, 100);
  yhc_jw_num(&w, 1.0 / 3);
  yhc_jw_bool(&w, 1);
  yhc_jw_bool(&w, 0);
  yhc_jw_null(&w);
  yhc_jw_raw(&w, "{\"r\":1}", 7);
  yhc_jw_arr_end(&w);
  yhc_jw_key(&w, "e");
  yhc_jw_strn(&w, "", 0);
  yhc_jw_obj_end(&w);
  YT_EQ_INT(yhc_jw_finish(&w), 0);
  YT_EQ_STR(b.ptr, "{\"s\":\"q\\\"b\\\\n\\n\\u0001\\u001f\x7f\xC3\xA9\xE2\x80\xA8\",\"i\":-9223372036854775808,"
                   "\"j\":9223372036854775807,\"k\\u0000z\":[0.1,1e+300,-0,100,0.3333333333333333,"
                   "true,false,null,{\"r\":1}],\"e\":\"\"}");
  d = yhc_json_parse(b.ptr, b.len, NULL, NULL);
  YT_CHECK(d != NULL);
  YT_CHECK(yhc_json_num(yhc_json_at(yhc_json_getn(yhc_json_root(d), "k\0z", 3), 4), 0) == 1.0 / 3);
  YT_EQ_INT(yhc_json_int(yhc_json_get(yhc_json_root(d), "i"), 0), INT64_MIN);
  yhc_json_free(d);

  YT_GROUP("writer: shortest doubles");
  {
    const double xs[] = {0.1, 0.2, 0.3, 1e21, 5e-324, 1.7976931348623157e308, 123.456, 2.0 / 3, 1e-7,
                         1e20, 1e-6, 1.5e-6, -2.5, 100, 2.2250738585072014e-308, 9007199254740993.0, 1e23,
                         5e-310, 0.000123, 12345678901234567890.0, -0.0};
    const char *want[] = {"0.1", "0.2", "0.3", "1e+21", "5e-324", "1.7976931348623157e+308", "123.456",
                          "0.6666666666666666", "1e-7", "100000000000000000000", "0.000001", "0.0000015",
                          "-2.5", "100", "2.2250738585072014e-308", "9007199254740992", "1e+23", "5e-310",
                          "0.000123", "12345678901234567000", "-0"};
    for (i = 0; i < sizeof xs / sizeof xs[0]; i++) {
      double back;
      b.len = 0;
      yhc_jw_init(&w, &b);
      yhc_jw_num(&w, xs[i]);
      YT_EQ_INT(yhc_jw_finish(&w), 0);
      YT_EQ_STR(b.ptr, want[i]);
      d = yhc_json_parse(b.ptr, b.len, NULL, NULL);
      back = yhc_json_num(yhc_json_root(d), 0);
      YT_CHECKF(memcmp(&back, &xs[i], sizeof back) == 0, "%s", b.ptr);
      yhc_json_free(d);
    }
  }

  YT_GROUP("writer: errors are sticky");
  {
    double zero = 0.0;
    b.len = 0;
    yhc_jw_init(&w, &b);
    yhc_jw_arr_begin(&w);
    yhc_jw_num(&w, zero / zero);
    yhc_jw_int(&w, 1);
    yhc_jw_arr_end(&w);
    YT_EQ_INT(yhc_jw_finish(&w), YHC_ERR_JSON);
    yhc_jw_init(&w, &b);
    yhc_jw_num(&w, 1.0 / zero);
    YT_EQ_INT(yhc_jw_finish(&w), YHC_ERR_JSON);
  }
  {
    const char *bad[] = {"\xC0\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "a\xE2\x82", "\x80", "\xFF"};
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      b.len = 0;
      yhc_jw_init(&w, &b);
      yhc_jw_str(&w, bad[i]);
      YT_EQ_INT(yhc_jw_finish(&w), YHC_ERR_JSON);
      yhc_jw_init(&w, &b);
      yhc_jw_obj_begin(&w);
      yhc_jw_key(&w, bad[i]);
      yhc_jw_int(&w, 1);
      yhc_jw_obj_end(&w);
      YT_EQ_INT(yhc_jw_finish(&w), YHC_ERR_JSON);
    }
  }
  yhc_jw_init(&w, &b); /* nothing written */
  YT_EQ_INT(yhc_jw_finish(&w), YHC_ERR_INVALID);
  yhc_jw_init(&w, &b); /* unclosed */
  yhc_jw_arr_begin(&w);
  YT_EQ_INT(yhc_jw_finish(&w), YHC_ERR_INVALID);
  yhc_jw_init(&w, &b); /* two top-level values */
  yhc_jw_int(&w, 1);
  yhc_jw_int(&w, 2);
  YT_EQ_INT(yhc_jw_finish(&w), YHC_ERR_INVALID);
  yhc_jw_init(&w, &b); /* value without key */
  yhc_jw_obj_begin(&w);
  yhc_jw_int(&w, 2);
  yhc_jw_obj_end(&w);
  YT_EQ_INT(yhc_jw_finish(&w), YHC_ERR_INVALID);
  yhc_jw_init(&w, &b); /* key in an array */
  yhc_jw_arr_begin(&w);
  yhc_jw_key(&w, "k");
  yhc_jw_arr_end(&w);
  YT_EQ_INT(yhc_jw_finish(&w), YHC_ERR_INVALID);
  yhc_jw_init(&w, &b); /* key without value */
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "k");
  yhc_jw_obj_end(&w);
  YT_EQ_INT(yhc_jw_finish(&w), YHC_ERR_INVALID);
  yhc_jw_init(&w, &b); /* mismatched end */
  yhc_jw_arr_begin(&w);
  yhc_jw_obj_end(&w);
  YT_EQ_INT(yhc_jw_finish(&w), YHC_ERR_INVALID);
  yhc_jw_init(&w, &b); /* end with nothing open */
  yhc_jw_arr_end(&w);
  YT_EQ_INT(yhc_jw_finish(&w), YHC_ERR_INVALID);
  yhc_jw_init(&w, &b); /* NULL value */
  yhc_jw_value(&w, NULL);
  YT_EQ_INT(yhc_jw_finish(&w), YHC_ERR_INVALID);
  yhc_jw_init(&w, &b); /* deeper than YHC_JW_MAX_DEPTH */
  for (i = 0; i <= YHC_JW_MAX_DEPTH; i++) yhc_jw_arr_begin(&w);
  YT_EQ_INT(yhc_jw_finish(&w), YHC_ERR_LIMIT);
  b.len = 0;
  yhc_jw_init(&w, &b); /* exactly YHC_JW_MAX_DEPTH is fine */
  for (i = 0; i < YHC_JW_MAX_DEPTH; i++) yhc_jw_arr_begin(&w);
  for (i = 0; i < YHC_JW_MAX_DEPTH; i++) yhc_jw_arr_end(&w);
  YT_EQ_INT(yhc_jw_finish(&w), 0);

  YT_GROUP("writer: parse -> write -> parse");
  for (i = 0; i < sizeof rt / sizeof rt[0]; i++) {
    d = P(rt[i]);
    YT_CHECKF(d && round_trip(yhc_json_root(d), &b), "%s", rt[i]);
    yhc_json_free(d);
  }
  /* a member value, an element and a sub-object copy on their own, inside a new document */
  d = P("{\"a\":{\"b\":[1,{\"c\":\"d\"}],\"e\":2},\"f\":[3]}");
  b.len = 0;
  yhc_jw_init(&w, &b);
  yhc_jw_arr_begin(&w);
  yhc_jw_value(&w, yhc_json_get(yhc_json_root(d), "a"));
  yhc_jw_value(&w, yhc_json_at(yhc_json_get(yhc_json_get(yhc_json_root(d), "a"), "b"), 1));
  yhc_jw_value(&w, yhc_json_get(yhc_json_root(d), "f"));
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "x");
  yhc_jw_value(&w, yhc_json_get(yhc_json_get(yhc_json_root(d), "a"), "e"));
  yhc_jw_obj_end(&w);
  yhc_jw_arr_end(&w);
  YT_EQ_INT(yhc_jw_finish(&w), 0);
  YT_EQ_STR(b.ptr, "[{\"b\":[1,{\"c\":\"d\"}],\"e\":2},{\"c\":\"d\"},[3],{\"x\":2}]");
  yhc_json_free(d);
  yhc_buf_free(&b);
}

static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *p = NULL;
  size_t cap = 0, n = 0, r;
  if (!f) return NULL;
  for (;;) {
    if (n == cap) {
      char *q = (char *)realloc(p, cap = cap ? cap * 2 : 4096);
      if (!q) break;
      p = q;
    }
    r = fread(p + n, 1, cap - n, f);
    if (!r) break;
    n += r;
  }
  fclose(f);
  *len = n;
  return p;
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_suite(void) {
  const char *shared = getenv("YHC_SHARED");
  char dir[1024], path[2048];
  DIR *dh;
  struct dirent *de;
  char *names[1024];
  size_t nn = 0, i;
  int y_ok = 0, y_n = 0, n_ok = 0, n_n = 0, i_n = 0, i_acc = 0;
  yhc_buf b = {0, 0, 0};
  YT_GROUP("JSONTestSuite");
  snprintf(dir, sizeof dir, "%s/JSONTestSuite/test_parsing", shared && *shared ? shared : "../shared");
  dh = opendir(dir);
  if (!dh) {
    printf("JSONTestSuite not found at %s: conformance part skipped\n", dir);
    return;
  }
  while ((de = readdir(dh)) != NULL && nn < sizeof names / sizeof names[0]) {
    if (strlen(de->d_name) > 5 && de->d_name[1] == '_' && strstr(de->d_name, ".json"))
      names[nn++] = yhc__strdup(de->d_name);
  }
  closedir(dh);
  qsort(names, nn, sizeof names[0], name_cmp);
  for (i = 0; i < nn; i++) {
    size_t len = 0;
    char *text;
    yhc_error e;
    yhc_json_doc *d;
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    text = read_all(path, &len);
    YT_CHECKF(text != NULL, "cannot read %s", path);
    if (!text) continue;
    d = yhc_json_parse(text, len, NULL, &e);
    switch (names[i][0]) {
      case 'y':
        y_n++;
        y_ok += d != NULL;
        YT_CHECKF(d != NULL, "%s rejected: %s", names[i], e.msg);
        if (d) YT_CHECKF(round_trip(yhc_json_root(d), &b), "%s: write/reparse differs", names[i]);
        break;
      case 'n':
        n_n++;
        n_ok += d == NULL;
        YT_CHECKF(d == NULL, "%s accepted", names[i]);
        break;
      default:
        i_n++;
        if (d) {
          i_acc++;
          YT_CHECKF(round_trip(yhc_json_root(d), &b), "%s: write/reparse differs", names[i]);
          (void)yhc_json_num(yhc_json_root(d), 0);
          (void)yhc_json_int(yhc_json_root(d), 0);
        }
        break;
    }
    yhc_json_free(d);
    free(text);
    YHC_FREE(names[i]);
  }
  yhc_buf_free(&b);
  printf("JSONTestSuite: y %d/%d accepted, n %d/%d rejected, i %d ran (%d accepted)\n", y_ok, y_n,
         n_ok, n_n, i_n, i_acc);
  YT_CHECK(y_n > 0 && n_n > 0);
}

int main(void) {
  test_basics();
  test_at_deep();
  test_numbers();
  test_numbers_differential();
  test_numbers_comma_locale();
  test_strings();
  test_word_tests();
  test_scanners_differential();
  test_errors();
  test_writer();
  test_suite();
  return yt_done();
}
