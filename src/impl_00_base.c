/* ==== Config and portability hooks ============================================== */
/* Owns: the allocator, assert and visibility hooks, and the system headers. Touches
   nothing else. YHC_MALLOC/YHC_REALLOC/YHC_FREE come as a set (each takes the user
   pointer given in YHC_ALLOC_CTX, default NULL, as stb does); YHC_ASSERT guards
   programmer errors only, never bytes from a peer. */

#if defined(YHC_MALLOC) || defined(YHC_REALLOC) || defined(YHC_FREE)
#  if !defined(YHC_MALLOC) || !defined(YHC_REALLOC) || !defined(YHC_FREE)
#    error "define all of YHC_MALLOC, YHC_REALLOC and YHC_FREE, or none"
#  endif
#else
#  include <stdlib.h>
#  define YHC_MALLOC(sz) malloc(sz)
#  define YHC_REALLOC(p, sz) realloc(p, sz)
#  define YHC_FREE(p) free(p)
#endif

#ifndef YHC_ASSERT
#  include <assert.h>
#  define YHC_ASSERT(c) assert(c)
#endif

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <math.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
#  define YHC__CAST(T, v) static_cast<T>(v)
#  define YHC__PUN(T, v) reinterpret_cast<T>(v)
#else
#  define YHC__CAST(T, v) ((T)(v))
#  define YHC__PUN(T, v) ((T)(v))
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define YHC__LIKELY(x) __builtin_expect(!!(x), 1)
#  define YHC__UNLIKELY(x) __builtin_expect(!!(x), 0)
#  define YHC__UNUSED __attribute__((unused))
#else
#  define YHC__LIKELY(x) (x)
#  define YHC__UNLIKELY(x) (x)
#  define YHC__UNUSED
#endif

#define YHC__MIN(a, b) ((a) < (b) ? (a) : (b))
#define YHC__MAX(a, b) ((a) > (b) ? (a) : (b))

/* Typed allocation so C++ builds need no casts at every call site. */
#define YHC__NEW(T) YHC__CAST(T *, yhc__calloc(sizeof(T)))
#define YHC__NEWN(T, n) YHC__CAST(T *, yhc__calloc_array(n, sizeof(T)))

static void *yhc__calloc(size_t size) {
  void *p = YHC_MALLOC(size ? size : 1);
  if (p) memset(p, 0, size);
  return p;
}

static YHC__UNUSED void *yhc__calloc_array(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) return NULL;
  return yhc__calloc(n * size);
}

static char *yhc__strndup(const char *s, size_t len) {
  char *p = YHC__CAST(char *, YHC_MALLOC(len + 1));
  if (!p) return NULL;
  if (len) memcpy(p, s, len);
  p[len] = 0;
  return p;
}

static YHC__UNUSED char *yhc__strdup(const char *s) { return s ? yhc__strndup(s, strlen(s)) : NULL; }

/* ==== Buffers and errors ========================================================= */
/* Owns: yhc_buf growth, error codes and messages, ASCII helpers shared by the parsers. */

YHCDEF const char *yhc_strerror(yhc_err code) {
  static const char *const texts[] = {
#define YHC__ERR_TEXT(name, text) text,
      YHC_ERRORS(YHC__ERR_TEXT)
#undef YHC__ERR_TEXT
  };
  if ((int)code < 0 || (int)code >= (int)YHC_ERR__COUNT) return "unknown error";
  return texts[code];
}

static void yhc__error_vset(yhc_error *e, yhc_err code, size_t offset, const char *fmt, va_list ap) {
  if (!e) return;
  e->code = code;
  e->offset = offset;
  if (fmt) {
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  } else {
    snprintf(e->msg, sizeof e->msg, "%s", yhc_strerror(code));
  }
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 4, 5), unused))
#endif
static YHC__UNUSED void yhc__error_set(yhc_error *e, yhc_err code, size_t offset, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  yhc__error_vset(e, code, offset, fmt, ap);
  va_end(ap);
}

static YHC__UNUSED void yhc__error_clear(yhc_error *e) {
  if (!e) return;
  e->code = YHC_ERR_OK;
  e->offset = 0;
  e->msg[0] = 0;
}

/* Growth by 1.5x keeps memory within 50% of need while still amortising appends. */
YHCDEF int yhc_buf_reserve(yhc_buf *b, size_t extra) {
  size_t need, cap;
  char *p;
  if (extra > SIZE_MAX - b->len - 1) return -1;
  need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  cap = b->cap ? b->cap + b->cap / 2 : 64;
  if (cap < need) cap = need;
  p = YHC__CAST(char *, YHC_REALLOC(b->ptr, cap));
  if (!p) return -1;
  b->ptr = p;
  b->cap = cap;
  return 0;
}

YHCDEF int yhc_buf_append(yhc_buf *b, const void *data, size_t len) {
  if (yhc_buf_reserve(b, len)) return -1;
  if (len) memcpy(b->ptr + b->len, data, len);
  b->len += len;
  b->ptr[b->len] = 0;
  return 0;
}

YHCDEF int yhc_buf_appends(yhc_buf *b, const char *cstr) { return yhc_buf_append(b, cstr, strlen(cstr)); }

YHCDEF int yhc_buf_printf(yhc_buf *b, const char *fmt, ...) {
  va_list ap;
  int n;
  char small[256];
  va_start(ap, fmt);
  n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) return -1;
  if ((size_t)n < sizeof small) return yhc_buf_append(b, small, (size_t)n);
  if (yhc_buf_reserve(b, (size_t)n)) return -1;
  va_start(ap, fmt);
  vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

YHCDEF void yhc_buf_free(yhc_buf *b) {
  if (!b) return;
  YHC_FREE(b->ptr);
  b->ptr = NULL;
  b->len = b->cap = 0;
}

static YHC__UNUSED void yhc__buf_consume(yhc_buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
  } else {
    memmove(b->ptr, b->ptr + n, b->len - n);
    b->len -= n;
  }
  if (b->ptr) b->ptr[b->len] = 0;
}

static int yhc__lower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

static YHC__UNUSED int yhc__str_ieq(yhc_str a, const char *b) {
  size_t i;
  for (i = 0; i < a.len; i++) {
    if (!b[i] || yhc__lower((unsigned char)a.ptr[i]) != yhc__lower((unsigned char)b[i])) return 0;
  }
  return b[i] == 0;
}

static YHC__UNUSED int yhc__str_eq(yhc_str a, const char *b) {
  size_t n = strlen(b);
  return a.len == n && (n == 0 || memcmp(a.ptr, b, n) == 0);
}

static YHC__UNUSED yhc_str yhc__str_c(const char *s) {
  yhc_str r;
  r.ptr = s;
  r.len = s ? strlen(s) : 0;
  return r;
}

