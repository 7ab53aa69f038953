/* yhc.h -- Golem Network HTTP client in one C header.                   (generated TOC below)

   Send ordinary HTTP requests to HTTP servers running as services on Golem Network
   providers, as easily as to any other server; plain HTTP(S) to every other URL.

   Do this in exactly one C or C++ file:
       #define YHC_IMPLEMENTATION
       #include "yhc.h"
   and include "yhc.h" without the define everywhere else. License: MIT, at the end.

   Contents (one banner per layer; each layer uses only those above it):
     Public API: configuration, errors, strings, buffers
     Public API: JSON (RFC 8259) parse, query, write
     IMPLEMENTATION
     Config and portability hooks
     Buffers and errors
*/
#ifndef YHC_H
#define YHC_H

/* The implementation needs POSIX declarations (getaddrinfo, clock_gettime) even under
   -std=c99; this only works when yhc.h is the first include of the implementation file. */
#if defined(YHC_IMPLEMENTATION) && !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#  define _POSIX_C_SOURCE 200809L
#endif

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ==== Public API: configuration, errors, strings, buffers =========================== */

#ifndef YHCDEF
#  ifdef YHC_STATIC
#    define YHCDEF static
#  else
#    define YHCDEF extern
#  endif
#endif

/* Every failure the library reports has one of these codes. The X-macro keeps the enum and
   yhc_strerror() from drifting apart. Detail (which header, which byte) travels in the message
   of the object that failed, never in a global. */
#define YHC_ERRORS(X)                                                                       \
  X(OK, "ok")                                                                               \
  X(NOMEM, "out of memory")                                                                 \
  X(INVALID, "invalid argument")                                                            \
  X(URL, "invalid URL")                                                                     \
  X(DNS, "host name resolution failed")                                                     \
  X(CONNECT, "connection failed")                                                           \
  X(IO, "socket I/O error")                                                                 \
  X(CLOSED, "connection closed by peer")                                                    \
  X(TIMEOUT, "timed out")                                                                   \
  X(CANCELLED, "cancelled")                                                                 \
  X(PROTOCOL, "protocol violation by peer")                                                 \
  X(LIMIT, "limit exceeded")                                                                \
  X(JSON, "invalid JSON")                                                                   \
  X(NO_TLS, "built without TLS")                                                            \
  X(TLS, "TLS error")                                                                       \
  X(WEBSOCKET, "WebSocket error")                                                           \
  X(HTTP_STATUS, "unexpected HTTP status")                                                  \
  X(YAGNA, "yagna API error")                                                               \
  X(CONFIG, "invalid configuration")                                                        \
  X(QUEUE_FULL, "request queue full")                                                       \
  X(NO_SERVICE, "no such service")                                                          \
  X(SERVICE_FAILED, "service failed")                                                       \
  X(RETRIES, "retry limit reached")                                                         \
  X(BUDGET, "budget exhausted")                                                             \
  X(SHUTDOWN, "session closed")

typedef enum yhc_err {
#define YHC__ERR_ENUM(name, text) YHC_ERR_##name,
  YHC_ERRORS(YHC__ERR_ENUM)
#undef YHC__ERR_ENUM
  YHC_ERR__COUNT
} yhc_err;

/* Short fixed text for a code ("limit exceeded"); never NULL. */
YHCDEF const char *yhc_strerror(yhc_err code);

/* An error with its detail: `msg` names what went wrong, e.g.
   "response header section exceeds 16384 bytes"; `offset` is the byte offset into the input
   where a parser stopped (0 when it does not apply). */
#define YHC_ERROR_MSG_MAX 256
typedef struct yhc_error {
  yhc_err code;
  size_t offset;
  char msg[YHC_ERROR_MSG_MAX];
} yhc_error;

/* A view of bytes owned by someone else; not NUL-terminated unless stated. */
typedef struct yhc_str {
  const char *ptr;
  size_t len;
} yhc_str;

/* A growable byte buffer owned by whoever declared it. Zero-initialise it, append, and release
   with yhc_buf_free(). `ptr` is always NUL-terminated after a successful append (the NUL is
   not counted in `len`). Appends return 0 on success, -1 when memory ran out (the buffer is
   then left as it was). */
typedef struct yhc_buf {
  char *ptr;
  size_t len;
  size_t cap;
} yhc_buf;

YHCDEF int yhc_buf_reserve(yhc_buf *b, size_t extra);
YHCDEF int yhc_buf_append(yhc_buf *b, const void *data, size_t len);
YHCDEF int yhc_buf_appends(yhc_buf *b, const char *cstr);
YHCDEF int yhc_buf_printf(yhc_buf *b, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
YHCDEF void yhc_buf_free(yhc_buf *b);

/* Log levels for the log callbacks that sessions and loops accept. */
typedef enum yhc_log_level {
  YHC_LOG_ERROR = 1,
  YHC_LOG_WARN = 2,
  YHC_LOG_INFO = 3,
  YHC_LOG_DEBUG = 4
} yhc_log_level;

typedef void (*yhc_log_fn)(void *user, yhc_log_level level, const char *msg);

/* ==== Public API: JSON (RFC 8259) parse, query, write =============================== */

typedef enum yhc_json_type {
  YHC_JSON_NONE = 0, /* what queries on a missing value report */
  YHC_JSON_NULL,
  YHC_JSON_BOOL,
  YHC_JSON_NUMBER,
  YHC_JSON_STRING,
  YHC_JSON_ARRAY,
  YHC_JSON_OBJECT
} yhc_json_type;

/* A parsed document. Every value in it lives in the document's own arena: one
   yhc_json_free() releases the whole tree and nothing inside may be freed on its own.
   Values are read-only; pointers to them stay valid until the document is freed. */
typedef struct yhc_json_doc yhc_json_doc;
typedef struct yhc_json yhc_json;

typedef struct yhc_json_opts {
  int max_depth;          /* nesting limit; 0 = 512 */
  size_t max_bytes;       /* input size limit; 0 = no limit beyond size_t */
} yhc_json_opts;

/* Parses `len` bytes (not NUL-terminated necessarily). Strict: UTF-8 validated, no trailing
   garbage, no comments, duplicate keys kept (lookup finds the first). On failure returns NULL
   and fills `err` (if not NULL) with code YHC_ERR_JSON (or NOMEM/LIMIT), a message and the
   byte offset. `opts` may be NULL. The input is not kept. */
YHCDEF yhc_json_doc *yhc_json_parse(const char *text, size_t len, const yhc_json_opts *opts,
                                    yhc_error *err);
YHCDEF void yhc_json_free(yhc_json_doc *doc);
YHCDEF const yhc_json *yhc_json_root(const yhc_json_doc *doc);

/* Queries accept NULL and answer "missing" (NONE / NULL / the default), so lookups chain:
   yhc_json_get(yhc_json_get(root, "offer"), "providerId"). */
YHCDEF yhc_json_type yhc_json_typeof(const yhc_json *v);
YHCDEF const yhc_json *yhc_json_get(const yhc_json *obj, const char *key);
YHCDEF const yhc_json *yhc_json_getn(const yhc_json *obj, const char *key, size_t key_len);
YHCDEF const yhc_json *yhc_json_at(const yhc_json *arr, size_t index);
YHCDEF size_t yhc_json_len(const yhc_json *v); /* elements, members, or string bytes */

/* Iteration over an array's elements or an object's members (in document order):
     for (const yhc_json *m = yhc_json_first(obj); m; m = yhc_json_next(m))
       use yhc_json_key(m) and m itself as the value. */
YHCDEF const yhc_json *yhc_json_first(const yhc_json *container);
YHCDEF const yhc_json *yhc_json_next(const yhc_json *v);
YHCDEF yhc_str yhc_json_key(const yhc_json *member); /* {NULL,0} for array elements */

/* Typed getters with defaults: the default comes back when v is missing or of another type.
   Strings are NUL-terminated and may contain NUL bytes (use the yhc_str form for those).
   yhc_json_int returns the default unless the number is an integer that fits int64 exactly
   (so 1e400, 1.5 and 2^63 do not silently become something else). */
YHCDEF yhc_str yhc_json_str(const yhc_json *v, yhc_str def);
YHCDEF const char *yhc_json_cstr(const yhc_json *v, const char *def);
YHCDEF int64_t yhc_json_int(const yhc_json *v, int64_t def);
YHCDEF int yhc_json_int_ok(const yhc_json *v, int64_t *out); /* 1 if exact int64 */
YHCDEF double yhc_json_num(const yhc_json *v, double def);
YHCDEF int yhc_json_bool(const yhc_json *v, int def);
YHCDEF yhc_str yhc_json_raw_number(const yhc_json *v); /* the number's source text */

/* Writer: builds JSON text into a yhc_buf the caller owns, escaping as RFC 8259 requires
   (control characters as \u00XX, '"' and '\\' escaped; UTF-8 passed through; invalid UTF-8
   is an error). Commas and nesting are tracked for you. Errors are sticky: check
   yhc_jw_finish() once at the end; it returns 0 when the text is complete and valid. */
#define YHC_JW_MAX_DEPTH 64
typedef struct yhc_jw {
  yhc_buf *out;
  int depth;
  int err; /* 0 or a yhc_err */
  unsigned char need_comma[YHC_JW_MAX_DEPTH + 1];
  unsigned char in_object[YHC_JW_MAX_DEPTH + 1];
  unsigned char after_key;
} yhc_jw;

YHCDEF void yhc_jw_init(yhc_jw *w, yhc_buf *out);
YHCDEF void yhc_jw_obj_begin(yhc_jw *w);
YHCDEF void yhc_jw_obj_end(yhc_jw *w);
YHCDEF void yhc_jw_arr_begin(yhc_jw *w);
YHCDEF void yhc_jw_arr_end(yhc_jw *w);
YHCDEF void yhc_jw_key(yhc_jw *w, const char *key);
YHCDEF void yhc_jw_keyn(yhc_jw *w, const char *key, size_t len);
YHCDEF void yhc_jw_str(yhc_jw *w, const char *s);
YHCDEF void yhc_jw_strn(yhc_jw *w, const char *s, size_t len);
YHCDEF void yhc_jw_int(yhc_jw *w, int64_t v);
YHCDEF void yhc_jw_num(yhc_jw *w, double v); /* shortest text that reads back exactly */
YHCDEF void yhc_jw_bool(yhc_jw *w, int v);
YHCDEF void yhc_jw_null(yhc_jw *w);
YHCDEF void yhc_jw_raw(yhc_jw *w, const char *json, size_t len); /* trusted, already JSON */
YHCDEF void yhc_jw_value(yhc_jw *w, const yhc_json *v);          /* copies a parsed value */
YHCDEF int yhc_jw_finish(yhc_jw *w);

#ifdef __cplusplus
}
#endif
#endif /* YHC_H */

/* ================================================================================= */
/* ==== IMPLEMENTATION ============================================================= */
/* ================================================================================= */
#if defined(YHC_IMPLEMENTATION) && !defined(YHC__IMPLEMENTED)
#define YHC__IMPLEMENTED

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
#else
#  define YHC__CAST(T, v) ((T)(v))
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

#endif /* YHC_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
MIT License

Copyright (c) 2026 the yhc authors

Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
*/
