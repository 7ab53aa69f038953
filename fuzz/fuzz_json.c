/* fuzz_json.c -- libFuzzer target for the JSON layer.
   Build and run (from the repo root):
     clang -g -O1 -fsanitize=fuzzer,address,undefined -I. fuzz/fuzz_json.c -o /tmp/fj -lm
     /tmp/fj -max_total_time=60
   Whatever parses must write back, reparse to an equal tree, and write back to the same
   bytes; the getters must agree with each other; a tighter limit must never accept more. */
#define YHC_IMPLEMENTATION
#include "yhc.h"

static int fz_tree_eq(const yhc_json *a, const yhc_json *b) {
  const yhc_json *x, *y;
  yhc_str sa, sb, none = {NULL, 0};
  if (yhc_json_typeof(a) != yhc_json_typeof(b)) return 0;
  switch (yhc_json_typeof(a)) {
    case YHC_JSON_STRING:
      sa = yhc_json_str(a, none);
      sb = yhc_json_str(b, none);
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
        if (!fz_tree_eq(x, y)) return 0;
      }
      return x == NULL && y == NULL;
    default: return 1;
  }
}

/* Every query on every value: indexes agree with iteration, getters with each other. */
static void fz_walk(const yhc_json *v) {
  const yhc_json *c;
  size_t i = 0;
  int64_t n;
  double d;
  yhc_str k;
  switch (yhc_json_typeof(v)) {
    case YHC_JSON_NUMBER:
      d = yhc_json_num(v, 0);
      if (yhc_json_int_ok(v, &n) && n > -(INT64_C(1) << 53) && n < (INT64_C(1) << 53) && d != (double)n)
        abort();
      break;
    case YHC_JSON_STRING:
      if (strlen(yhc_json_cstr(v, "")) > yhc_json_len(v)) abort();
      break;
    case YHC_JSON_ARRAY:
    case YHC_JSON_OBJECT:
      for (c = yhc_json_first(v); c; c = yhc_json_next(c), i++) {
        if (yhc_json_at(v, i) != c) abort();
        if (yhc_json_typeof(v) == YHC_JSON_OBJECT) {
          k = yhc_json_key(c);
          if (!k.ptr) abort();
          if (!yhc_json_getn(v, k.ptr, k.len)) abort();
        } else if (yhc_json_key(c).ptr) {
          abort();
        }
        fz_walk(c);
      }
      if (i != yhc_json_len(v) || yhc_json_at(v, i)) abort();
      break;
    default: break;
  }
}

static int fz_write(const yhc_json *v, yhc_buf *out) {
  yhc_jw w;
  out->len = 0;
  yhc_jw_init(&w, out);
  yhc_jw_value(&w, v);
  return yhc_jw_finish(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  yhc_error err;
  yhc_json_opts tight;
  yhc_json_doc *doc, *doc2, *small;
  yhc_buf b1 = {0, 0, 0}, b2 = {0, 0, 0};

  doc = yhc_json_parse(text, size, NULL, &err);
  if (!doc && (err.code == YHC_ERR_OK || !err.msg[0])) abort();
  if (doc) {
    fz_walk(yhc_json_root(doc));
    if (fz_write(yhc_json_root(doc), &b1)) abort();
    doc2 = yhc_json_parse(b1.ptr, b1.len, NULL, &err);
    if (!doc2 || !fz_tree_eq(yhc_json_root(doc), yhc_json_root(doc2))) abort();
    if (fz_write(yhc_json_root(doc2), &b2) || b1.len != b2.len || memcmp(b1.ptr, b2.ptr, b1.len))
      abort();
    yhc_json_free(doc2);
  }

  /* tight limits: never accept what the default rejected, never crash */
  memset(&tight, 0, sizeof tight);
  tight.max_depth = 3;
  tight.max_bytes = size / 2 + 1;
  small = yhc_json_parse(text, size, &tight, &err);
  if (small && !doc) abort();
  if (!small && doc && err.code != YHC_ERR_LIMIT) abort();
  yhc_json_free(small);

  yhc_json_free(doc);
  yhc_buf_free(&b1);
  yhc_buf_free(&b2);
  return 0;
}
