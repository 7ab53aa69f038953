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

