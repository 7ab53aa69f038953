/* yhc.h -- Golem Network HTTP client in one C header. v0.1.0

   Send ordinary HTTP requests to HTTP servers running as services on Golem Network
   providers, as easily as to any other server; plain HTTP(S) to every other URL. What the
   Python ya-httpx-client does on top of yapapi, in C: libc and POSIX sockets only, mbedTLS
   optional. Single-threaded and poll()-driven; embeds in your own event loop.

   Do this in exactly one C or C++ file, with yhc.h as its first include:
       #define YHC_IMPLEMENTATION
       #include "yhc.h"
   and include "yhc.h" without the define everywhere else. License: MIT, at the end.

   QUICK START (a service on Golem; see examples/calculator.c for the whole program)

       static void start(yhc_ctx *ctx, const char *listen_on, void *user) {
         const char *argv[] = {"/bin/sh", "-c", "python3 /golem/run/server.py &", NULL};
         yhc_ctx_run(ctx, argv);            // commands that start the server in the VM
       }
       yhc_session_desc sd = YHC_ZERO;      // YAGNA_API_URL, YAGNA_APPKEY from the env
       yhc_error err;
       yhc_session *s = yhc_session_create(&sd, &err);
       yhc_service_desc svc = YHC_ZERO;
       svc.url = "http://calc"; svc.image_hash = "..."; svc.startup = start;
       yhc_session_add_service(s, &svc, &err);
       yhc_request rq = YHC_ZERO;
       rq.url = "http://calc/add/3/4";      // any other URL is a plain HTTP request
       yhc_response *r = yhc_session_fetch(s, &rq);   // or yhc_session_request(..., cb, user)
       printf("%d %.*s\n", r->status, (int)r->body.len, r->body.ptr);
       yhc_response_free(r);
       yhc_session_close_wait(s);           // agreements terminated, invoices paid
       yhc_session_destroy(s);

   Plain HTTP without Golem: yhc_loop_create(), yhc_http_create(), yhc_http_fetch() or
   yhc_http_request() with a callback, driven by yhc_loop_poll(), your own poll() through
   yhc_loop_fds()/yhc_loop_dispatch(), or your epoll/libuv/libevent loop through
   yhc_loop_set_callbacks() (see "Public API: event loop").

   CONFIGURATION MACROS (define before the implementation include)
     YHC_MALLOC(sz), YHC_REALLOC(p,sz), YHC_FREE(p)   all three or none  [malloc/realloc/free]
     YHC_ASSERT(c)       programmer errors only, never peer bytes         [assert]
     YHCDEF              linkage of the public API                        [extern]
     YHC_STATIC          makes YHCDEF static (private copy per file)
     YHC_MBEDTLS         compile in TLS (https://, wss://); link -lmbedtls -lmbedx509 -lmbedcrypto
     YHC_VERSION         the User-Agent version                           ["0.1.0"]
     YHC_RESOLVER_GETADDRINFO  DNS by the platform's blocking getaddrinfo() instead of
                         the built-in asynchronous resolver (answers still come from the loop)
     YHC_NO_EPOLL        yhc_loop_poll() waits in poll() on Linux too (it uses epoll there)

   NAME RESOLUTION (never blocks the loop; one resolver per loop, yhc_loop_desc.resolver)
     numeric hosts, localhost, the hosts file and the cache answer at once; then DNS: A and
     AAAA over UDP (random port and ids), TCP when truncated, resolv.conf's nameservers,
     search, ndots, timeout, attempts. Fields of yhc_resolver_desc (0 = default):
       nameservers [resolv.conf's, else 127.0.0.1]  search [resolv.conf's]  resolv_conf
       [/etc/resolv.conf]  hosts_file [/etc/hosts]  timeout_ms [resolv.conf, else 5000]
       attempts [resolv.conf, else 2]  ndots [resolv.conf, else 1]  max_cache [256 names]
       max_ttl_s [3600]  hook [none: start/cancel to plug in c-ares or the platform's]
     DNS answers: 16 addresses, 256 records, 16 CNAME hops, 64 KiB over TCP at most.

   LIMITS AGAINST UNTRUSTED PEERS (runtime, per client; 0 = default)
     yhc_limits.max_header_bytes   response head (and trailers)           [16384]
     yhc_limits.max_header_count   header fields per response             [100]
     yhc_limits.max_body_bytes     collected body (streaming: unlimited)  [64 MiB]
     yhc_limits.max_chunk_digits   hex digits of a chunk size             [16]
     yhc_limits.max_interim        interim 1xx responses per request      [16]
     yhc_json_opts.max_depth       JSON nesting                           [512]
     WebSocket tunnel frames       payload of one received frame          [1 MiB]
     WebSocket text and close reasons must be UTF-8; a fault is Close 1007 and
     YHC_ERR_WEBSOCKET once the peer ended the connection (or after 1 s)
     timeouts: connect [10 s], idle [30 s], keep-alive [30 s], request [120 s; 60 s for services]
     Daemon answers are parsed with a depth of 64 and at most 16 MiB.

   CALLBACKS: one rule everywhere. A user callback (request completions, on_head, on_body,
   timers, session events, size functions, startup functions) runs only from the top of the
   loop's dispatch (yhc_loop_poll, yhc_loop_dispatch, and so the blocking fetches), never
   inside the call that submitted or cancelled something and never nested inside a library
   frame that still uses the object afterwards. The one exception is a destroy call, which
   answers every unfinished request before it returns. From inside any callback every
   public call is allowed: cancel or destroy the request, the client or the session, submit
   new requests, or run a nested blocking fetch (it turns the loop; other callbacks may run
   from inside it). Requests submitted from callbacks run by a destroy are refused (0).

   ERRORS: every failure has a code (yhc_err, yhc_strerror()) and a message naming what went
   wrong, e.g. "response header section exceeds 16384 bytes". Every request ends exactly once,
   through its callback, with a response or an error.

   Contents (one banner per layer; each layer uses only those above it):
     Public API: configuration, errors, strings, buffers
     Public API: JSON (RFC 8259) parse, query, write
     Public API: event loop, timers
     Public API: HTTP/1.1 client
     Public API: Golem session, services, clusters
     IMPLEMENTATION
     Config and portability hooks
     Buffers and errors
     JSON parse, query, write
     Sockets, watchers and timers
     Name resolution: hosts, resolv.conf, DNS over UDP and TCP
     TLS streams (mbedTLS, optional)
     HTTP/1.1 client
     WebSocket frames (RFC 6455), SHA-1, base64
     WebSocket client
     poll() loop
     yagna REST calls: identity, payment, market, activity, net
     Service instance lifecycle
     Cluster scheduler
     Session and the public client API
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
/* a private copy per file: the functions that file does not call are not worth a warning */
#    if defined(__GNUC__) || defined(__clang__)
#      define YHCDEF static __attribute__((unused))
#    else
#      define YHCDEF static
#    endif
#  else
#    define YHCDEF extern
#  endif
#endif

/* Zero-initializes any yhc struct (descs, requests, limits) the same way in C and C++, with
   no warning in either: `yhc_request rq = YHC_ZERO;`. C's `{0}` trips C++'s
   -Wmissing-field-initializers, and C99 has no `{}`. */
#ifdef __cplusplus
#  define YHC_ZERO {}
#else
#  define YHC_ZERO {0}
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
   garbage, no comments, no byte order mark, duplicate keys kept (lookup finds the first).
   On failure returns NULL and fills `err` (if not NULL) with code YHC_ERR_JSON (or
   NOMEM/LIMIT), a message ending "at offset N" and the byte offset N. `opts` may be NULL.
   The input is copied, not kept: the document costs about len + 16 bytes per value. */
YHCDEF yhc_json_doc *yhc_json_parse(const char *text, size_t len, const yhc_json_opts *opts,
                                    yhc_error *err);
YHCDEF void yhc_json_free(yhc_json_doc *doc);
YHCDEF const yhc_json *yhc_json_root(const yhc_json_doc *doc);

/* Queries accept NULL and answer "missing" (NONE / NULL / the default), so lookups chain:
   yhc_json_get(yhc_json_get(root, "offer"), "providerId"). */
YHCDEF yhc_json_type yhc_json_typeof(const yhc_json *v);
YHCDEF const yhc_json *yhc_json_get(const yhc_json *obj, const char *key);
YHCDEF const yhc_json *yhc_json_getn(const yhc_json *obj, const char *key, size_t key_len);
/* The index-th element; O(1) in an array of scalars, else one step per element skipped.
   On an object it gives the index-th member's value (its key via yhc_json_key). */
YHCDEF const yhc_json *yhc_json_at(const yhc_json *arr, size_t index);
YHCDEF size_t yhc_json_len(const yhc_json *v); /* elements, members, or string bytes; O(1) */

/* Iteration over an array's elements or an object's members (in document order):
     for (const yhc_json *m = yhc_json_first(obj); m; m = yhc_json_next(m))
       use yhc_json_key(m) and m itself as the value. */
YHCDEF const yhc_json *yhc_json_first(const yhc_json *container);
YHCDEF const yhc_json *yhc_json_next(const yhc_json *v);
YHCDEF yhc_str yhc_json_key(const yhc_json *member); /* {NULL,0} for array elements */

/* Typed getters with defaults: the default comes back when v is missing or of another type.
   Strings are NUL-terminated and may contain NUL bytes (use the yhc_str form for those).
   yhc_json_int returns the default unless the number is an integer that fits int64 exactly
   (so 1e400, 1.5 and 2^63 do not silently become something else; 1e2 and 100.0 are 100).
   Numbers are converted from their source text on each call (parsing stays fast): int64
   exactly, double correctly rounded whatever the C locale; out of range gives +-inf or 0. */
YHCDEF yhc_str yhc_json_str(const yhc_json *v, yhc_str def);
YHCDEF const char *yhc_json_cstr(const yhc_json *v, const char *def);
YHCDEF int64_t yhc_json_int(const yhc_json *v, int64_t def);
YHCDEF int yhc_json_int_ok(const yhc_json *v, int64_t *out); /* 1 if exact int64 */
YHCDEF double yhc_json_num(const yhc_json *v, double def);
YHCDEF int yhc_json_bool(const yhc_json *v, int def);
YHCDEF yhc_str yhc_json_raw_number(const yhc_json *v); /* source text, not NUL-terminated */

/* Writer: builds JSON text into a yhc_buf the caller owns, escaping as RFC 8259 requires
   (control characters as \u00XX, '"' and '\\' escaped; UTF-8 passed through; invalid UTF-8
   is an error). Commas and nesting are tracked for you. Errors are sticky: check
   yhc_jw_finish() once at the end; it returns 0 when the text is complete (one top-level
   value, everything closed) and valid, otherwise the first error: YHC_ERR_JSON (invalid
   UTF-8, NaN or infinity), YHC_ERR_INVALID (misuse: a value where a key belongs, a second
   top-level value, an unbalanced end, a NULL string, nothing written), YHC_ERR_LIMIT (deeper
   than YHC_JW_MAX_DEPTH) or YHC_ERR_NOMEM. The output buffer is the caller's either way. */
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
/* The shortest text that reads back as exactly v (the nearest such when several), in
   ECMAScript's layout: 0.1, 100, 1e+21, 1e-7, 5e-324, -0; never the C locale's point. */
YHCDEF void yhc_jw_num(yhc_jw *w, double v);
YHCDEF void yhc_jw_bool(yhc_jw *w, int v);
YHCDEF void yhc_jw_null(yhc_jw *w);
YHCDEF void yhc_jw_raw(yhc_jw *w, const char *json, size_t len); /* trusted, already JSON */
/* Copies a parsed value (numbers as their source text). A subtree of any depth: only the
   containers opened with yhc_jw_obj_begin/arr_begin count against YHC_JW_MAX_DEPTH. */
YHCDEF void yhc_jw_value(yhc_jw *w, const yhc_json *v);
YHCDEF int yhc_jw_finish(yhc_jw *w);

/* ==== Public API: event loop, timers ============================================== */

/* All I/O runs from one single-threaded poll() loop. Three ways to drive it, as curl's multi
   interface does:
     1. yhc_loop_poll(loop, timeout): the library waits once and dispatches (in epoll on
        Linux, whose cost does not grow with the fds watched; poll() elsewhere or with
        YHC_NO_EPOLL); yhc_loop_run(loop, &done) turns it until *done becomes non-zero.
     2. Your own poll(): yhc_loop_fds() fills pollfds and the timeout the library needs,
        you poll() them together with your own fds, then hand them to yhc_loop_dispatch().
     3. Socket and timer callbacks, for epoll, libuv, libevent... (yhc_loop_set_callbacks):
        the library says which fds to watch for what and when to call it back, you call
        yhc_loop_action() when an fd is ready and yhc_loop_timeout() when the time has come.
   A loop is not thread-safe; use one per thread. The one exception is yhc_loop_wakeup(). */
#include <poll.h>

typedef struct yhc_loop yhc_loop;
typedef uint64_t (*yhc_clock_fn)(void *user); /* milliseconds, monotonic */

/* Name resolution never blocks the loop. A host name is looked up in this order: a numeric
   address or "localhost" (and *.localhost: 127.0.0.1, ::1) at once; the hosts file; the
   cache; then asynchronous DNS: A and AAAA over UDP from a random source port with random
   query ids, TCP when an answer comes back truncated, against the nameservers of
   resolv.conf with its search list, ndots, timeout and attempts. Answers are validated (id,
   question echo, sizes, counts, compression pointers) and cached up to their TTL. Addresses
   come IPv4 first; a connection tries them in order. A resolver hook replaces the DNS step
   with your platform's resolver or c-ares; with YHC_RESOLVER_GETADDRINFO defined, the DNS
   step is a blocking getaddrinfo() instead (its answer is still delivered from the loop). */
typedef struct yhc_ip {
  int family;               /* 4 or 6 */
  unsigned char addr[16];   /* network byte order; 4 bytes used for IPv4 */
  unsigned scope_id;        /* IPv6 zone (link-local), else 0 */
} yhc_ip;

/* A lookup handed to a resolver hook; owned by the library. */
typedef struct yhc_resolve_query yhc_resolve_query;

typedef struct yhc_resolver_hook {
  /* Starts resolving `host` (a name, never numeric). Return 0 when under way, then call
     yhc_resolve_done(q, ...) exactly once, from the loop's thread, even from inside start;
     the library delivers the answer from the loop. Non-zero = failed (a DNS error). */
  int (*start)(void *user, yhc_resolve_query *q, const char *host);
  /* Nobody waits any more: forget q, never call yhc_resolve_done for it after this. */
  void (*cancel)(void *user, yhc_resolve_query *q);
  void *user;
} yhc_resolver_hook;

/* Ends a hook's lookup: err YHC_ERR_OK with n > 0 addresses (at most 16 are kept), or an
   error with a message (NULL = a generic one). ttl_s > 0 lets the answer be cached. */
YHCDEF void yhc_resolve_done(yhc_resolve_query *q, yhc_err err, const char *msg,
                             const yhc_ip *addrs, size_t n, uint32_t ttl_s);

/* Zero means the default in brackets. Strings are copied when the loop is created. */
typedef struct yhc_resolver_desc {
  const char *nameservers; /* "127.0.0.1:5353 [::1]:53", up to 3 [resolv.conf's, else 127.0.0.1] */
  const char *search;      /* "a.example b.example"; "" = none [resolv.conf's] */
  const char *resolv_conf; /* [/etc/resolv.conf] */
  const char *hosts_file;  /* [/etc/hosts]; "" = none */
  int timeout_ms;          /* one try [resolv.conf timeout, else 5000] */
  int attempts;            /* rounds over the nameservers [resolv.conf attempts, else 2] */
  int ndots;               /* names with fewer dots try the search list first; <0 = 0
                              [resolv.conf ndots, else 1] */
  int max_cache;           /* cached names [256]; <0 = no cache */
  int max_ttl_s;           /* cap on a cached answer's TTL [3600] */
  yhc_resolver_hook hook;  /* start set = lookups go to the hook instead of DNS */
} yhc_resolver_desc;

typedef struct yhc_loop_desc {
  yhc_clock_fn clock; /* default: CLOCK_MONOTONIC; tests inject their own */
  void *clock_user;
  yhc_log_fn log;     /* default: none */
  void *log_user;
  yhc_log_level log_level; /* 0 = WARN */
  yhc_resolver_desc resolver; /* host name lookups (default: resolv.conf, hosts) */
} yhc_loop_desc;

/* desc may be NULL. Returns NULL when out of memory. */
YHCDEF yhc_loop *yhc_loop_create(const yhc_loop_desc *desc);
/* Destroys the loop; every object built on it must be destroyed first. */
YHCDEF void yhc_loop_destroy(yhc_loop *loop);
YHCDEF uint64_t yhc_loop_now(yhc_loop *loop);

/* Tier 1. Waits at most timeout_ms (-1 = until something is due) and runs what is ready.
   Returns the number of callbacks run, or -1 with errno when the wait itself failed. */
YHCDEF int yhc_loop_poll(yhc_loop *loop, int timeout_ms);
/* Turns the loop until *done is non-zero or nothing is left to wait for. Returns 0 when
   *done was set, -1 when the loop ran dry first. */
YHCDEF int yhc_loop_run(yhc_loop *loop, const volatile int *done);

/* Tier 2. Writes up to `cap` pollfds and the timeout the library needs (ms, -1 = none).
   Returns how many fds the library watches (call again with more room if that exceeds cap). */
YHCDEF int yhc_loop_fds(yhc_loop *loop, struct pollfd *fds, int cap, int *timeout_ms);
/* Hands poll()'s results back (fds not owned by the library are ignored) and runs due timers. */
YHCDEF void yhc_loop_dispatch(yhc_loop *loop, const struct pollfd *fds, int nfds);

/* Tier 3, as curl's CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION + curl_multi_socket_action.
   on_socket(user, fd, events, old_events, fd_data) says what to watch fd for, as poll() bits
   (POLLIN, POLLOUT; on Linux the same values as EPOLLIN, EPOLLOUT):
     old_events == 0               add fd to your loop (first time, or again after a removal)
     both non-zero                 change what you watch it for
     events == 0                   remove it; yhc closes the fd only after this returns, so
                                   an fd number you were told about is never reused under you
   *fd_data is yours, one pointer per fd (NULL on add; keep your handle there; yhc forgets it
   after the removal). on_timeout(user, timeout_ms) asks you to call yhc_loop_timeout() once
   after timeout_ms (0 = as soon as you can), replacing the previous request; -1 = no timer.
   Both are called from yhc_loop_set_callbacks() (the fds already open, the first timeout),
   at the end of yhc_loop_action(), yhc_loop_timeout() and any dispatch, and from
   yhc_loop_destroy() (removals), never from deep inside other calls: when a call you make
   outside them (a new request, a destroy) changes what to watch, the loop's own wakeup fd
   turns readable, so your loop calls yhc_loop_action() and hears of it there. They may call
   any yhc function. Pass NULLs to go back to tiers 1/2 (every fd is first removed).
   Blocking calls (yhc_http_fetch, yhc_session_fetch, close_wait) still work in this tier:
   they poll() the loop's fds themselves until their answer is in. */
typedef void (*yhc_socket_fn)(void *user, int fd, int events, int old_events, void **fd_data);
typedef void (*yhc_timeout_fn)(void *user, int timeout_ms);
YHCDEF void yhc_loop_set_callbacks(yhc_loop *loop, yhc_socket_fn on_socket,
                                   yhc_timeout_fn on_timeout, void *user);
/* fd is ready for `events` (poll()/epoll bits; POLLERR and POLLHUP count as both): runs its
   handler and the timers that are due. Returns 1 when fd is the library's, else 0. */
YHCDEF int yhc_loop_action(yhc_loop *loop, int fd, int events);
/* The time asked for by on_timeout has come: runs the timers that are due. */
YHCDEF void yhc_loop_timeout(yhc_loop *loop);

/* Thread-safe, async-signal-safe: makes the loop's current or next wait return (an eventfd,
   or a self-pipe where there is none, that every tier watches). Use it after handing the
   loop's thread work through your own queue. Returns 0, or -1 with errno. */
YHCDEF int yhc_loop_wakeup(yhc_loop *loop);

/* Timers: one-shot; the callback runs from the loop. Ids are never reused, so cancelling a
   timer that already fired is a harmless no-op (returns 0). */
typedef void (*yhc_timer_fn)(void *user);
YHCDEF uint64_t yhc_timer_add(yhc_loop *loop, uint64_t delay_ms, yhc_timer_fn fn, void *user);
YHCDEF int yhc_timer_cancel(yhc_loop *loop, uint64_t id);

/* Resolves a host name with the loop's resolver (see yhc_resolver_desc). The callback runs
   once, from the loop, never from inside this call: err YHC_ERR_OK with n >= 1 addresses
   (valid during the callback), or YHC_ERR_DNS / TIMEOUT / INVALID with a message. Returns an
   id for yhc_resolve_cancel (never 0), or 0 when out of memory (no callback then). */
typedef void (*yhc_resolve_fn)(void *user, yhc_err err, const char *msg, const yhc_ip *addrs,
                               size_t n);
YHCDEF uint64_t yhc_resolve(yhc_loop *loop, const char *host, yhc_resolve_fn fn, void *user);
/* Drops a lookup: its callback never runs. Returns 1, or 0 for an id already answered. */
YHCDEF int yhc_resolve_cancel(yhc_loop *loop, uint64_t id);

/* ==== Public API: HTTP/1.1 client ================================================ */

/* Limits against untrusted peers. Zero means the default in brackets. Exceeding one ends the
   request with YHC_ERR_LIMIT and a message naming the limit; the connection is closed. */
typedef struct yhc_limits {
  size_t max_header_bytes;  /* status line + headers, also trailers [16384] */
  size_t max_header_count;  /* headers (and trailers) per response [100] */
  size_t max_body_bytes;    /* collected body; streaming bodies are not limited [64 MiB] */
  size_t max_chunk_digits;  /* hex digits of a chunk size [16] */
  size_t max_interim;       /* interim (1xx) responses before the final one [16] */
} yhc_limits;

typedef struct yhc_http_desc {
  yhc_limits limits;
  int max_conns_per_host;  /* open connections per scheme://host:port [16] */
  int max_idle_per_host;   /* idle keep-alive connections kept [= max_conns_per_host] */
  int connect_timeout_ms;  /* TCP connect (and TLS handshake) [10000] */
  int idle_timeout_ms;     /* no byte received while waiting for a response [30000] */
  int keepalive_ms;        /* how long an idle connection is kept for reuse [30000] */
  int request_timeout_ms;  /* whole request, queueing included [120000]; <0 = none */
  size_t recv_buffer;      /* initial receive buffer per connection [16384] */
  const char *user_agent;  /* [yhc/VERSION]; "" sends none */
  /* TLS (only with YHC_MBEDTLS) */
  const char *ca_file;     /* [system bundle] */
  const char *ca_path;     /* directory of CA certificates */
  int tls_insecure;        /* 1 = do not verify certificates (logged loudly) */
} yhc_http_desc;

/* A request header. Names and values are NUL-terminated; CR, LF and NUL inside either make the
   request fail with YHC_ERR_INVALID before anything is sent. */
typedef struct yhc_header {
  const char *name;
  const char *value;
} yhc_header;

typedef struct yhc_response yhc_response;

/* A request. Everything is copied when the request is submitted; the caller may free its
   strings and body right after yhc_http_request() returns. */
typedef struct yhc_request {
  const char *method;          /* NULL = "GET" */
  const char *url;             /* http://host[:port]/path?query (https:// with YHC_MBEDTLS) */
  const yhc_header *headers;
  size_t header_count;
  const void *body;
  size_t body_len;
  int timeout_ms;              /* overrides request_timeout_ms when non-zero; <0 = none */
  /* Streaming: when set, body bytes are handed over as they arrive and not collected, so
     memory stays at the receive buffer. Return non-zero to abort (YHC_ERR_CANCELLED). It may
     also cancel its request or destroy the client itself. */
  int (*on_body)(void *user, const void *data, size_t len);
  /* Streaming: called once the final status and headers are in, before any body byte (the
     view's body is empty). Return non-zero to abort. A service request whose head or body
     reached the caller is no longer moved to another provider if its provider fails. */
  int (*on_head)(void *user, const yhc_response *head);
  int retry_unsafe;            /* 1 = a stale keep-alive connection may resend even a POST */
} yhc_request;

typedef struct yhc_header_view {
  yhc_str name;
  yhc_str value;
} yhc_header_view;

/* What a callback receives. Everything it points to is valid until the callback returns
   (yhc_http_fetch() hands out an owned copy instead). err != YHC_ERR_OK means no complete
   response: `error` then says why, e.g. "response header section exceeds 16384 bytes". */
struct yhc_response {
  uint64_t id;
  yhc_err err;
  const char *error;           /* "" when err == YHC_ERR_OK */
  int status;
  int http_minor;              /* 0 or 1 */
  yhc_str reason;
  const yhc_header_view *headers;
  size_t header_count;
  const yhc_header_view *trailers;
  size_t trailer_count;
  yhc_str body;                /* empty when the request streamed its body */
};

typedef void (*yhc_response_fn)(const yhc_response *resp, void *user);

typedef struct yhc_http yhc_http;

/* desc may be NULL. The client keeps using `loop`; destroy the client before the loop. */
YHCDEF yhc_http *yhc_http_create(yhc_loop *loop, const yhc_http_desc *desc);
/* Ends every unfinished request with YHC_ERR_CANCELLED (their callbacks, and those of
   answers not yet delivered, run from inside this call), closes every connection and frees
   the client. Allowed from any of its callbacks (the memory goes when they return); a second
   call from a callback it runs does nothing. */
YHCDEF void yhc_http_destroy(yhc_http *http);

/* Submits a request. The callback runs exactly once, from the loop, never from inside this
   call (so invalid requests and connections that cannot start are reported through it too).
   Returns the request's id (never 0), or 0 when not even the request record could be
   allocated or the client is being destroyed (no callback then). */
YHCDEF uint64_t yhc_http_request(yhc_http *http, const yhc_request *req, yhc_response_fn cb,
                                 void *user);
/* Ends an unfinished request with YHC_ERR_CANCELLED; its callback runs from the loop, not
   from inside this call. Returns 0, or -1 when the id is unknown or already finished. */
YHCDEF int yhc_http_cancel(yhc_http *http, uint64_t id);

/* Blocking convenience: submits and turns the loop until the request ends (allowed inside
   callbacks; other callbacks may run meanwhile). Returns an owned response (check ->err) to
   release with yhc_response_free(); NULL only when out of memory or the client is being
   destroyed. */
YHCDEF yhc_response *yhc_http_fetch(yhc_http *http, const yhc_request *req);
YHCDEF void yhc_response_free(yhc_response *resp);

/* Case-insensitive header lookup; the first match, or {NULL,0}. For repeated headers
   (Set-Cookie) iterate: size_t i = 0; while (yhc_response_header_next(r, "set-cookie", &i, &v)) */
YHCDEF yhc_str yhc_response_header(const yhc_response *resp, const char *name);
YHCDEF int yhc_response_header_next(const yhc_response *resp, const char *name, size_t *iter,
                                    yhc_str *value);

/* JSON in and out. yhc_json_request() makes `out->req` a copy of `base` (NULL: a GET with
   no headers) whose body is the JSON text json[0..len) -- e.g. what a yhc_jw wrote into a
   yhc_buf -- with "Content-Type: application/json" and "Accept: application/json" added
   unless base already has them. Method NULL becomes "POST". out->req borrows json and
   base's strings: submit it (yhc_http_request, yhc_session_request, the fetches) before they
   go away. Returns 0, or -1 (YHC_ERR_INVALID in err) when base has more than
   YHC_JSON_REQ_MAX_HEADERS headers. */
#define YHC_JSON_REQ_MAX_HEADERS 30
typedef struct yhc_json_req {
  yhc_request req;
  yhc_header headers[YHC_JSON_REQ_MAX_HEADERS + 2];
} yhc_json_req;
YHCDEF int yhc_json_request(yhc_json_req *out, const yhc_request *base, const char *json, size_t len,
                            yhc_error *err);
/* Parses a response body as JSON. NULL with err filled when the request itself failed (its
   code and message), the body is not JSON (YHC_ERR_JSON, with the offset), or memory ran out.
   The status is not judged: a 4xx with a JSON error body parses too. Free with
   yhc_json_free(). */
YHCDEF yhc_json_doc *yhc_response_json(const yhc_response *resp, yhc_error *err);
/* One call, as client.post(url, json=...): a blocking JSON request with `json` (a
   NUL-terminated JSON text, or NULL for none) as its body; method NULL is POST with a body,
   GET without. Parse the answer with yhc_response_json(). NULL only when out of memory. */
YHCDEF yhc_response *yhc_http_fetch_json(yhc_http *http, const char *method, const char *url, const char *json);

/* Pieces of a URL, as views into the string given. */
typedef struct yhc_url {
  yhc_str scheme;   /* lower-case compare: http, https, ws, wss */
  yhc_str userinfo;
  yhc_str host;     /* without [] for IPv6 literals */
  int port;         /* explicit or the scheme's default */
  yhc_str target;   /* path + query; "/" when empty; starts with '?' for "http://h?q" */
  yhc_str fragment;
} yhc_url;
/* Returns 0, or -1 with err (YHC_ERR_URL, message and offset). */
YHCDEF int yhc_url_parse(const char *url, size_t len, yhc_url *out, yhc_error *err);

/* ==== Public API: Golem session, services, clusters ============================== */

/* A session rents providers through a yagna daemon and routes requests: a request whose URL
   host names a registered service ("http://calc/add/1/2") goes to that service's cluster of
   provider instances over the yagna VPN; any other URL is a plain HTTP(S) request. */

typedef struct yhc_session yhc_session;
typedef struct yhc_cluster yhc_cluster;
typedef struct yhc_ctx yhc_ctx;

/* Every kind of event, with its stable name (yhc_event_name()) and the short tag printed
   with log_events. One list, so the enum and the names never drift apart. */
#define YHC_EVENTS(X)                                                                        \
  X(SESSION_READY, "session_ready", "session")    /* identity, allocation and VPN are set up */ \
  X(DEMAND_PUBLISHED, "demand_published", "demand")                                          \
  X(OFFER_RECEIVED, "offer_received", "offer")                                               \
  X(OFFER_REJECTED, "offer_rejected", "offer")    /* by us: price, resources, platform, avoided */ \
  X(PROPOSAL_REJECTED, "proposal_rejected", "proposal") /* by the provider */                \
  X(AGREEMENT_SIGNED, "agreement_signed", "agreement")                                       \
  X(ACTIVITY_STARTED, "activity_started", "activity")                                        \
  X(SERVICE_READY, "service_ready", "ready")                                                 \
  X(REQUEST_FORWARDED, "request_forwarded", "request")                                       \
  X(REQUEST_RETRIED, "request_retried", "retry")                                             \
  X(DEBIT_NOTE_ACCEPTED, "debit_note_accepted", "payment")                                   \
  X(DEBIT_NOTE_REJECTED, "debit_note_rejected", "payment")                                   \
  X(INVOICE_ACCEPTED, "invoice_accepted", "invoice")                                         \
  X(INVOICE_REJECTED, "invoice_rejected", "invoice")                                         \
  X(SERVICE_FAILED, "service_failed", "failed")                                              \
  X(SERVICE_STOPPED, "service_stopped", "stopped")                                           \
  X(CLUSTER_FAILED, "cluster_failed", "cluster")                                             \
  X(SESSION_CLOSED, "session_closed", "closed")                                              \
  X(ERROR, "error", "error")                                                                 \
  X(DAEMON_LOST, "daemon_lost", "daemon")   /* calls to the yagna daemon stopped reaching it */ \
  X(DAEMON_BACK, "daemon_back", "daemon")   /* it answers again; feeds resume, instances re-checked */

typedef enum yhc_event_kind {
  YHC_EV__NONE = 0,
#define YHC__EV_ENUM(name, text, tag) YHC_EV_##name,
  YHC_EVENTS(YHC__EV_ENUM)
#undef YHC__EV_ENUM
  YHC_EV__COUNT
} yhc_event_kind;

/* The stable snake_case name of an event kind ("request_retried"), for logs and metrics;
   "unknown" for a value outside the enum. Never NULL. */
YHCDEF const char *yhc_event_name(yhc_event_kind kind);

/* Everything an event points to is valid during the callback only. Fields that do not apply
   are NULL (or 0). `message` is always one complete human-readable line, without a trailing
   newline. */
typedef struct yhc_event {
  yhc_event_kind kind;
  const char *service;        /* the service URL, e.g. "http://calc" */
  const char *provider_id;
  const char *provider_name;
  const char *agreement_id;
  const char *activity_id;
  const char *amount;         /* GLM as a decimal string (payments) */
  double price_hour;          /* expected GLM per hour (agreements) */
  uint64_t request_id;        /* the request (forwarded, retried), else 0 */
  yhc_err err;
  const char *message;
} yhc_event;

typedef void (*yhc_event_fn)(const yhc_event *ev, void *user);

/* Config structs: a field left zero takes the default in brackets. The few fields where zero
   is a meaningful value say "as written" and take it literally (yhc_service_desc.initial_size:
   0 instances), and money has no default at all (the budget must be set). */
typedef struct yhc_session_desc {
  const char *yagna_url;        /* [$YAGNA_API_URL or http://127.0.0.1:7465] */
  const char *app_key;          /* [$YAGNA_APPKEY]; required */
  const char *subnet;           /* [$YAGNA_SUBNET or "public"] */
  const char *payment_driver;   /* [$YAGNA_PAYMENT_DRIVER or "erc20"] */
  const char *payment_network;  /* [$YAGNA_PAYMENT_NETWORK or "holesky"]; "polygon" = mainnet */
  double budget;                /* GLM the allocation holds, read to 12 decimals; as written:
                                   required (this or budget_glm), zero is an error */
  const char *budget_glm;       /* the budget as an exact decimal string ("0.0005"); wins over
                                   `budget`. Money is exact inside: 18-decimal fixed point */
  int budget_cover_min;         /* sign an agreement only if the remaining budget covers its
                                   start price plus this many minutes at its rates [5] */
  const char *max_glm_per_hour; /* optional burn-rate cap: GLM per hour at the agreed rates of
                                   all running agreements; limits instances at once [none] */
  int mid_agreement_payments;   /* [0]: for lifetimes of 5 h or more negotiate debit-note
                                   interval (>= 60 s) and payment timeout (>= 5 h) as yapapi;
                                   -1 = never (then a lifetime of 10 h or more is a config error) */
  int time_scale;               /* [1] a test stand-in that compresses time by this factor
                                   (yagna-sim timeScale): payment checks read its clock */
  double max_price_cpu_hour;    /* GLM per CPU-hour an offer may ask [0.5], read to 12 decimals */
  double max_price_env_hour;    /* GLM per hour of duration [0.5], likewise */
  double max_price_start;       /* GLM start price [0.5], likewise */
  const char *max_price_cpu_hour_glm; /* the same three limits as exact decimal strings ("0.25"); */
  const char *max_price_env_hour_glm; /* each wins over its double. Offers are compared with */
  const char *max_price_start_glm;    /* them exactly, 18 decimals */
  int agreement_lifetime_s;     /* demand expiration and agreement validTo [3600] */
  int agreement_renew_s;        /* start an instance's replacement this long before its
                                   agreement ends; must be below the lifetime [120] */
  const char *image_repo;       /* image registry [https://registry.golem.network] */
  int request_timeout_ms;       /* default deadline of a service request [60000]; <0 none */
  size_t max_queue;             /* queued requests per cluster before refusing [10000] */
  int max_retries;              /* times a request moves to another provider [3] */
  int retry_idempotent_only;    /* 1 = a request already sent is retried only if idempotent */
  int instance_concurrency;     /* requests in flight per instance (tunnel connections) [8] */
  int offer_window_ms;          /* collect offers this long before choosing the cheapest [1500];
                                   while a cluster has no instance and requests wait, the best
                                   acceptable offer so far starts one at once */
  int offer_window_strict;      /* 1 = never sign before the window ends, even then [0] */
  int close_timeout_ms;         /* graceful close: wait for work and invoices [20000] */
  int drain_timeout_ms;         /* scale-down: wait for an instance's requests [10000] */
  int tunnel_dead_ms;           /* a silent tunnel counts as dead after [15000] */
  int state_poll_ms;            /* activity state checks per instance [3000]; 3 failed checks in
                                   a row (408, 5xx, Unresponsive, no answer) fail the instance,
                                   Terminated or a definite not-found at once; read sooner
                                   when requests are out and their answers stop coming */
  int vanish_timeout_ms;        /* a provider whose activity gave no good state reading for this
                                   long is gone: its instance fails and its requests move [30000] */
  int startup_timeout_ms;       /* deploy, start, the startup commands and the readiness probe
                                   must finish within this [300000] */
  int approval_timeout_ms;      /* wait this long for a provider to approve an agreement, then
                                   cancel it and take the next draft [60000] */
  int max_startup_failures;     /* instances failing at startup this many times in a row stop
                                   the renting; set_size starts it again [3] */
  int clock_skew_ms;            /* how far providers' clocks may lag: the agreement-event window
                                   overlaps this much [60000] */
  yhc_event_fn on_event;
  void *event_user;
  int log_events;               /* 1 = also print events on stderr; 2 = with every request */
  yhc_loop *loop;               /* [a loop of the session's own] */
  yhc_resolver_desc resolver;   /* name resolution of the session's own loop (with `loop`
                                   set, that loop's own config applies) */
  yhc_http_desc http;           /* for plain requests */
  yhc_log_fn log;               /* library log (when the session makes its own loop) */
  void *log_user;
  yhc_log_level log_level;
} yhc_session_desc;

/* Validates the config (a clear YHC_ERR_CONFIG otherwise) and starts talking to the daemon
   from the loop: identity, allocation, VPN. Returns NULL with err filled on failure. */
YHCDEF yhc_session *yhc_session_create(const yhc_session_desc *desc, yhc_error *err);

typedef enum yhc_on_stop {
  YHC_ON_STOP_RESTART = 0, /* replace a failed instance on another provider (default) */
  YHC_ON_STOP_RAISE,       /* the cluster fails: its requests end with an error */
  YHC_ON_STOP_IGNORE       /* do not replace: the cluster shrinks */
} yhc_on_stop;

/* Startup: called once for each new instance, from the loop, as soon as yhc has chosen the
   provider's offer and before the agreement is signed, so that a callback that cannot queue
   its commands (out of memory) costs no agreement. Queue the commands that start the HTTP
   server with yhc_ctx_run(); they run later, in the VM, as one batch after deploy and start,
   and the instance counts as ready once the server accepts tunnel connections. `listen_on` is
   where the server must listen, e.g. "0.0.0.0:80". The ctx is valid during the call only. */
typedef void (*yhc_startup_fn)(yhc_ctx *ctx, const char *listen_on, void *user);

typedef struct yhc_service_desc {
  const char *url;              /* "http://calc": requests to this host go to the service */
  const char *image_hash;       /* sha3 of the VM image, resolved at the image repository */
  const char *image_url;        /* optional: the image's download URL (no repository lookup) */
  yhc_startup_fn startup;
  void *startup_user;
  int initial_size;             /* instances to start with, as written (no default): 0 starts
                                   the cluster empty, its requests wait in the queue until
                                   yhc_session_set_size() or autoscale gives it instances */
  int port;                     /* where the server listens in the VM [80] */
  double min_mem_gib;           /* [0.5] */
  double min_storage_gib;       /* [2.0] */
  int min_threads;              /* [1] */
  const char *extra_properties; /* JSON object merged into the demand's properties */
  const char *extra_constraints;/* e.g. "(golem.inf.cpu.threads>=4)", ANDed in */
  yhc_on_stop on_stop;
} yhc_service_desc;

/* Registers a service. A duplicate URL or bad description is YHC_ERR_CONFIG. */
YHCDEF int yhc_session_add_service(yhc_session *s, const yhc_service_desc *desc, yhc_error *err);

/* Queues a command for the instance being started: argv[0] is the entry point, NULL ends the
   list. Output is captured and shown in errors. Returns 0, or -1 when out of memory. */
YHCDEF int yhc_ctx_run(yhc_ctx *ctx, const char *const *argv);
/* The same with a raw ExeScript command object, e.g. {"run":{...}}. */
YHCDEF int yhc_ctx_command(yhc_ctx *ctx, const char *command_json);

/* Requests: the callback runs exactly once, from the loop. Service requests wait in their
   cluster's queue until an instance is ready (or their deadline passes). */
YHCDEF uint64_t yhc_session_request(yhc_session *s, const yhc_request *req, yhc_response_fn cb,
                                    void *user);
YHCDEF int yhc_session_cancel(yhc_session *s, uint64_t id);
/* Blocking convenience, as yhc_http_fetch. */
YHCDEF yhc_response *yhc_session_fetch(yhc_session *s, const yhc_request *req);
/* The session's yhc_http_fetch_json(): a service URL goes to its cluster. */
YHCDEF yhc_response *yhc_session_fetch_json(yhc_session *s, const char *method, const char *url,
                                            const char *json);

/* Cluster size: a number, a function re-evaluated on every scheduling decision and at least
   once a second, or the built-in auto-balancer. Returns 0, or -1 for an unknown URL. */
typedef int (*yhc_size_fn)(const yhc_cluster *c, void *user);
YHCDEF int yhc_session_set_size(yhc_session *s, const char *url, int size);
YHCDEF int yhc_session_set_size_fn(yhc_session *s, const char *url, yhc_size_fn fn, void *user);

typedef struct yhc_autoscale_desc {
  int min_size;           /* [0] */
  int max_size;           /* [4] */
  double queue_per_instance; /* grow when queued per instance exceeds this [4] */
  int idle_ms;            /* shrink by one after this long with nothing queued and little in flight [30000] */
  int cooldown_ms;        /* between two changes [5000] */
} yhc_autoscale_desc;
YHCDEF int yhc_session_autoscale(yhc_session *s, const char *url, const yhc_autoscale_desc *d);

typedef struct yhc_cluster_stats {
  const char *url;
  int size_target;
  int starting;            /* negotiating, deploying, starting */
  int ready;
  int stopping;
  int instances_failed;    /* total so far */
  size_t queued;
  size_t in_flight;
  uint64_t completed;      /* requests answered with a response */
  uint64_t failed;         /* requests answered with an error */
  uint64_t retried;        /* times a request moved to another instance */
  double p50_ms, p99_ms;   /* over the last 1024 responses, submission to answer */
  double queue_ms_avg;     /* of the answered requests: mean time waiting in the queue */
  double service_ms_avg;   /* ... and mean time on the provider that answered (last attempt) */
  uint64_t bytes_out;      /* request bytes sent (head and body, last attempt) */
  uint64_t bytes_in;       /* response bytes received (head and body) */
  double spent;            /* GLM accepted for this cluster's agreements (for display) */
  char spent_glm[48];      /* the same, exact decimal */
  int failed_cluster;      /* on_stop = raise fired */
} yhc_cluster_stats;

/* Read access for size functions and monitoring. */
YHCDEF void yhc_cluster_stats_get(const yhc_cluster *c, yhc_cluster_stats *out);
YHCDEF int yhc_session_stats(yhc_session *s, const char *url, yhc_cluster_stats *out);
YHCDEF double yhc_session_spent(yhc_session *s); /* GLM accepted so far, all clusters (display) */
/* 1 while the yagna daemon answers; 0 during an outage, with `why` (may be NULL) naming the
   cause and how long it has lasted. */
YHCDEF int yhc_session_daemon_ok(yhc_session *s, yhc_error *why);

/* Money, exact: decimal strings with up to 18 decimals (trailing zeros trimmed); the doubles
   are for display only. committed = the most still owed: what the agreed prices give for
   the time so far, every agreed thread busy, beyond what was accepted (agreements without a
   decided invoice); it is what budget decisions hold back, so providers that bill less
   leave it high until their next debit note. remaining = budget - spent - committed. After yhc_session_close_wait() it says what was settled: invoices_unpaid counts
   agreements whose invoice was neither accepted nor rejected (missing, failed or malformed),
   agreements_unterminated those still running. refused counts debit notes and invoices yhc
   would not pay (each also an event with the numbers). */
typedef struct yhc_money {
  char budget[48], spent[48], committed[48], remaining[48];
  double spent_d, committed_d, remaining_d;
  int invoices_accepted, invoices_rejected, invoices_unpaid;
  int agreements_unterminated;
  int refused;
} yhc_money;
YHCDEF void yhc_session_money(yhc_session *s, yhc_money *out);

/* The cluster of a registered service URL ("http://calc"), or NULL. Valid until the session
   is destroyed. */
YHCDEF yhc_cluster *yhc_session_cluster(yhc_session *s, const char *url);

typedef enum yhc_instance_state {
  YHC_INSTANCE_STARTING = 1, /* agreement, activity, deploy, start, startup commands, probe */
  YHC_INSTANCE_READY,        /* serving (draining = 1 when it takes no new requests) */
  YHC_INSTANCE_STOPPING,
  YHC_INSTANCE_STOPPED
} yhc_instance_state;

/* One provider instance of a cluster. The strings are valid until the next loop turn. */
typedef struct yhc_instance_info {
  const char *provider_id;
  const char *provider_name;
  const char *agreement_id;  /* "" before the agreement exists */
  const char *activity_id;   /* "" before the activity exists */
  yhc_instance_state state;
  int draining;              /* finishing its requests before it stops */
  int in_flight;
  uint64_t served;           /* requests answered with a response */
  uint64_t failed;           /* requests that failed on it (moved elsewhere or ended) */
  double spent;              /* GLM accepted for its agreement so far */
  uint64_t ready_ms;         /* how long it has been ready, 0 if it is not */
} yhc_instance_info;

/* Inventory: fills out[0..max) with the cluster's instances, oldest first, and returns how
   many there are (which may exceed max). */
YHCDEF size_t yhc_cluster_instances(const yhc_cluster *c, yhc_instance_info *out, size_t max);

typedef enum yhc_state {
  YHC_STATE_STARTING = 1, /* identity, allocation, network being set up */
  YHC_STATE_READY,        /* every cluster has its target size */
  YHC_STATE_DEGRADED,     /* running, but a cluster is below its target, failed, or the daemon
                             is not answering */
  YHC_STATE_FAILED,       /* start-up failed: only plain HTTP requests work */
  YHC_STATE_CLOSING,
  YHC_STATE_CLOSED
} yhc_state;

/* The session's state now; with last_error non-NULL, also the last error it reported (an
   event of kind ERROR, SERVICE_FAILED or CLUSTER_FAILED), code YHC_ERR_OK when none. */
YHCDEF yhc_state yhc_session_state(yhc_session *s, yhc_error *last_error);
/* "starting", "ready", "degraded", "failed", "closing", "closed"; never NULL. */
YHCDEF const char *yhc_state_name(yhc_state state);

/* Calls that answer only -1 (set_size and friends) leave their reason here: YHC_ERR_SHUTDOWN
   after close, YHC_ERR_NO_SERVICE for an unknown URL, YHC_ERR_INVALID for a bad argument. */
YHCDEF const yhc_error *yhc_session_call_error(yhc_session *s);

/* Appends the session's metrics to out in the OpenMetrics text format (what Prometheus and
   its kin scrape), ending with "# EOF": requests by result, retries, queue length, in flight,
   instances by state, bytes, GLM spent, and latency histograms (total, queue wait, service
   time) per cluster, plus served/failed/service-time per provider. Numbers never depend on
   the locale. Returns 0, or -1 when memory ran out. */
YHCDEF int yhc_session_metrics(yhc_session *s, yhc_buf *out);

/* Graceful close: no new requests; queued ones fail with YHC_ERR_SHUTDOWN, in-flight ones
   finish (bounded by close_timeout_ms); instances stop, agreements are terminated, invoices
   accepted, the VPN removed, the allocation released. Non-blocking: watch
   yhc_session_closed(), or call yhc_session_close_wait(). Calling it twice is harmless. */
YHCDEF void yhc_session_close(yhc_session *s);
YHCDEF int yhc_session_closed(yhc_session *s);
/* Returns 0 once everything was cleaned up, 1 when something could not be (close_timeout_ms
   passed, or the daemon refused: yhc_session_leftovers() and the SESSION_CLOSED event say
   what), -1 on a loop error. */
YHCDEF int yhc_session_close_wait(yhc_session *s);
/* What the close could not clean up ("" when nothing). */
YHCDEF const char *yhc_session_leftovers(yhc_session *s);
/* Frees everything at once (after close, or to abandon): every unanswered request ends with
   YHC_ERR_SHUTDOWN first. Does not talk to the daemon. */
YHCDEF void yhc_session_destroy(yhc_session *s);
YHCDEF yhc_loop *yhc_session_loop(yhc_session *s);
/* Turns the session's loop until *done (or, with done NULL, until the session has closed). */
YHCDEF int yhc_session_run(yhc_session *s, const volatile int *done);

#ifdef __cplusplus
}
#endif
#endif /* YHC_H */

/* ================================================================================= */
/* ==== IMPLEMENTATION ============================================================= */
/* ================================================================================= */
/* The implementation needs POSIX declarations. When a system header came before yhc.h, they
   were fixed without _POSIX_C_SOURCE (under -std=c99) and are hidden: say so, once, rather
   than let a hundred errors like "storage size of 'ts' isn't known" follow. */
#if defined(YHC_IMPLEMENTATION) && !defined(YHC__IMPLEMENTED)
#  include <time.h>
#  if !defined(CLOCK_MONOTONIC)
#    error "yhc.h must be the first #include of the file that defines YHC_IMPLEMENTATION (it needs _POSIX_C_SOURCE before any system header); or define _POSIX_C_SOURCE 200809L before every include there"
#    define YHC__IMPLEMENTED /* skip the implementation: the one error above is the message */
#  endif
#endif
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
#ifdef __linux__
#  include <sys/eventfd.h>
#endif
/* Tier 1 waits in epoll where there is one: poll() costs every watched fd on every call, which
   a session with hundreds of tunnel connections pays on every wakeup. */
#if defined(__linux__) && !defined(YHC_NO_EPOLL)
#  define YHC__EPOLL 1
#  include <sys/epoll.h>
#else
#  define YHC__EPOLL 0
#endif

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
#  define YHC__INLINE __attribute__((always_inline)) inline
#else
#  define YHC__LIKELY(x) (x)
#  define YHC__UNLIKELY(x) (x)
#  define YHC__UNUSED
#  define YHC__INLINE inline
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
  /* most calls classify a header name against another ("content-type" against
     "content-length"): the length settles them before the shared prefix is compared */
  if (strlen(b) != a.len) return 0;
  for (i = 0; i < a.len; i++)
    if (yhc__lower((unsigned char)a.ptr[i]) != yhc__lower((unsigned char)b[i])) return 0;
  return 1;
}

/* The last n bytes of a (all of it when shorter). */
static YHC__UNUSED yhc_str yhc__tail(yhc_str a, size_t n) {
  if (a.len > n) {
    a.ptr += a.len - n;
    a.len = n;
  }
  return a;
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

/* ==== JSON parse, query, write =================================================== */
/* Owns: the JSON document (parser, tree, queries, number conversion) and the JSON writer.
   Uses only the base layer (allocator hooks, yhc_buf, yhc_error).

   Why the design is as it is (yyjson's, cut down):
   - A document is two heap blocks: the doc header with a NUL-padded copy of the input behind
     it, and one array of 16-byte nodes in document order. Strings are unescaped in place in
     that copy (unescaped text is never longer than its escaped form) and NUL-terminated where
     the closing quote was, so most strings cost no copy and freeing a document is one call.
   - The padding after the copy lets the hot loops run without bounds checks: the NUL after
     the last byte stops every scanner (it is never valid where a scanner is looking), and
     reading a word past the end stays inside the block.
   - Containers record their node count (span), so the next sibling is one add away, a value
     can be skipped or copied as a slice of the array, and an array of scalars is indexed
     directly. Object members are a key node followed by the value node; a flag on the value
     says "the node before me is my key", and another marks the last child, so iteration
     needs only the node pointer.
   - Scanners go a word (8 bytes, loaded through memcpy) at a time: whitespace runs, plain
     string bytes, digit runs, pairs of 3-byte UTF-8 sequences. Each word test is exact for
     the first byte it flags, which tests/test_json.c checks against byte-at-a-time references.
   - Numbers are validated during the parse and keep their source text; the getters convert
     (int64 exactly, double correctly rounded). Converting later costs the reader of one
     field almost nothing and keeps the parse of number-heavy input fast. The parse leaves
     the digit counts and the exponent's value in the tag (SHAPE), so yhc_json_num() reads
     the digits straight away (two words for up to 16) and, with 19 digits or fewer, gets
     its answer from Clinger's exact case or Eisel-Lemire. The double path never hands
     strtod() a decimal point, so the C locale setting cannot change a result. */

#define YHC__JSON_TMASK 7u
#define YHC__JSON_MEMBER 8u  /* an object member's value: the node before it is the key */
#define YHC__JSON_LAST 16u   /* the last child of its container (and the root) */
#define YHC__JSON_FLAG 32u   /* BOOL: true; NUMBER: integer syntax (no '.', no exponent) */
#define YHC__JSON_SHAPE 64u  /* NUMBER: the tag also holds its digit counts (see below) */
#define YHC__JSON_SHIFT 8    /* tag >> SHIFT: string bytes, number text bytes, child count */
#define YHC__JSON_PAD 16     /* NUL bytes after the input copy; >= the 8-byte word scan */

struct yhc_json {
  uint64_t tag; /* type | flags | length << YHC__JSON_SHIFT */
  union {
    const char *s; /* STRING: the unescaped bytes; NUMBER: the source text */
    size_t span;   /* ARRAY/OBJECT: nodes in the subtree, itself included */
  } u;
};

struct yhc_json_doc {
  yhc_json *nodes; /* nodes[0] is the root */
  size_t count;
  /* the NUL-padded input copy follows in the same block */
};

/* 1 for the four bytes RFC 8259 calls whitespace */
static const unsigned char yhc__json_ws[256] = {
    0,0,0,0,0,0,0,0,0,1,1,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
};

/* 1 for bytes a string keeps as they are: printable ASCII other than '"' and '\\'. Shared by
   the parser (what to skip) and the writer (what needs no escape). */
static const unsigned char yhc__json_plain[256] = {
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    1,1,0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
};

#define YHC__JSON_ONES UINT64_C(0x0101010101010101)
#define YHC__JSON_HIGH UINT64_C(0x8080808080808080)
#define YHC__JSON_TYPE(v) ((unsigned)((v)->tag & YHC__JSON_TMASK))
#define YHC__JSON_LEN(v) ((size_t)((v)->tag >> YHC__JSON_SHIFT))

/* A number's tag above the type bits: the length of its text, or (SHAPE) when its digits fit
   the fast conversion (19 at most before any exponent), its text is under 2^24 bytes and its
   exponent under 2^15, the length in 24 bits beside the exponent's value and the digit counts
   of its integer and fraction parts, so that yhc_json_num() goes straight to the digits. */
#define YHC__JSON_SHAPE_LEN ((UINT64_C(1) << 24) - 1)
#define YHC__JSON_SHAPE_EXP 32768 /* the exponent's bias in bits 32-47 */
#define YHC__JSON_NINT(v) ((unsigned)((v)->tag >> 48) & 0xFFu)
#define YHC__JSON_NFRAC(v) ((unsigned)((v)->tag >> 56))
#define YHC__JSON_EXP10(v) ((long long)(((v)->tag >> 32) & 0xFFFFu) - YHC__JSON_SHAPE_EXP)
static size_t yhc__json_number_len(const yhc_json *v) {
  return (size_t)((v->tag & YHC__JSON_SHAPE) ? (v->tag >> YHC__JSON_SHIFT) & YHC__JSON_SHAPE_LEN
                                             : v->tag >> YHC__JSON_SHIFT);
}

/* Powers of ten that fit a uint64_t: scales for digit groups and digit counts. */
static const uint64_t yhc__json_p10u[20] = {
    1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u, 10000000u, 100000000u, 1000000000u,
    UINT64_C(10000000000), UINT64_C(100000000000), UINT64_C(1000000000000),
    UINT64_C(10000000000000), UINT64_C(100000000000000), UINT64_C(1000000000000000),
    UINT64_C(10000000000000000), UINT64_C(100000000000000000),
    UINT64_C(1000000000000000000), UINT64_C(10000000000000000000)};

/* Eight bytes as a little-endian word whatever the machine, so that in a byte mask made from
   it the lowest set bit belongs to the first byte in memory. memcpy: no alignment needed. */
static YHC__INLINE uint64_t yhc__load_le64(const void *s) {
  const unsigned char *p = YHC__CAST(const unsigned char *, s);
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t w;
  memcpy(&w, p, 8);
  return w;
#else
  return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
         (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
#endif
}

static YHC__INLINE int yhc__ctz64(uint64_t x) { /* x != 0 */
#if defined(__GNUC__)
  return __builtin_ctzll(x);
#else
  int n = 0;
  for (; !(x & 1); x >>= 1) n++;
  return n;
#endif
}

/* The index of the first flagged byte of a nonzero mask from yhc__load_le64. */
#define YHC__JSON_FIRST(mask) ((size_t)(unsigned)yhc__ctz64(mask) >> 3)

/* Nonzero when any of the 8 bytes in w is '"', '\\', below 0x20 or at least 0x80: the bytes
   that end a plain run inside a string, and then the lowest set bit is in the first of them
   (little-endian word). For a byte below 0x80, x - 1 reaches the high bit only from 0 (so
   b ^ '"' - 1 only at '"', b ^ '\\' - 1 only at '\\') and b - 0x20 only below 0x20; bytes
   from 0x80 up have it themselves. A borrow only starts at a flagged byte and only moves up,
   so no byte below the first flagged one is disturbed, and a word without one has no bit. */
static YHC__INLINE uint64_t yhc__json_special8(uint64_t w) {
  uint64_t q = w ^ (YHC__JSON_ONES * 0x22u), b = w ^ (YHC__JSON_ONES * 0x5Cu);
  return ((q - YHC__JSON_ONES) | (b - YHC__JSON_ONES) | (w - YHC__JSON_ONES * 0x20u) | w) & YHC__JSON_HIGH;
}

/* Nonzero when a byte of w is not an ASCII digit, and then its lowest set bit is in the first
   such byte of a little-endian word: x = b ^ '0' is 0-9 for a digit, and below 0x80 x + 0x76
   reaches the high bit exactly from 10 up; from 0x80 up x has it itself. A digit never
   carries into the next byte, so the bytes up to the first flagged one are exact (those above
   it may not be). */
static YHC__INLINE uint64_t yhc__json_nondigit8(uint64_t w) {
  uint64_t x = w ^ (YHC__JSON_ONES * 0x30u); /* digits become 0-9 */
  return ((x + YHC__JSON_ONES * 0x76u) | x) & YHC__JSON_HIGH;
}

/* How many digits start at p, eight bytes per step. Callers have a non-digit (at worst the
   NUL pad of a document) within reach, and 7 readable bytes after it. */
static YHC__INLINE size_t yhc__json_digit_count(const void *p) {
  const unsigned char *s = YHC__CAST(const unsigned char *, p);
  uint64_t bad;
  while (!(bad = yhc__json_nondigit8(yhc__load_le64(s)))) s += 8;
  return (size_t)(s - YHC__CAST(const unsigned char *, p)) + YHC__JSON_FIRST(bad);
}

/* Length of the well-formed UTF-8 sequence at p (Unicode table 3-7: no overlongs, no
   surrogates, nothing above U+10FFFF), or 0. Reads a byte only after the one before it
   proved to be a continuation byte, so it never reads past a terminator. */
static size_t yhc__json_utf8(const unsigned char *p, size_t avail) {
  unsigned c = p[0];
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;
  if (c < 0xE0) return (avail >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
  if (c < 0xF0) {
    if (avail < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && p[1] < 0xA0) return 0;
    if (c == 0xED && p[1] > 0x9F) return 0;
    return 3;
  }
  if (c < 0xF5) {
    if (avail < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
      return 0;
    if (c == 0xF0 && p[1] < 0x90) return 0;
    if (c == 0xF4 && p[1] > 0x8F) return 0;
    return 4;
  }
  return 0;
}

/* ---- parser */

typedef struct yhc__json_parser {
  unsigned char *start; /* the input copy; start[len..len+PAD) are NUL */
  unsigned char *end;
  yhc_json *nodes;
  size_t cap;
  yhc_error *err;
} yhc__json_parser;

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 4, 5)))
#endif
static void yhc__json_fail(yhc__json_parser *ps, yhc_err code, const unsigned char *at,
                           const char *fmt, ...) {
  char what[160];
  size_t off = (size_t)(at - ps->start);
  va_list ap;
  if (!ps->err) return;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  yhc__error_set(ps->err, code, off, "%s at offset %zu", what, off);
}

/* Names the byte a parser stopped at, for messages: 'x', or 0xNN when not printable. */
static const char *yhc__json_byte_name(char buf[8], const yhc__json_parser *ps,
                                       const unsigned char *p) {
  if (p >= ps->end) return "end of input";
  if (*p >= 0x21 && *p < 0x7F)
    snprintf(buf, 8, "'%c'", *p);
  else
    snprintf(buf, 8, "0x%02X", *p);
  return buf;
}

static void yhc__json_unexpected(yhc__json_parser *ps, const unsigned char *p, const char *want) {
  char b[8];
  if (p >= ps->end)
    yhc__json_fail(ps, YHC_ERR_JSON, p, "unexpected end of input, expected %s", want);
  else
    yhc__json_fail(ps, YHC_ERR_JSON, p, "unexpected %s, expected %s",
                   yhc__json_byte_name(b, ps, p), want);
}

static int yhc__json_hex4(const unsigned char *p) {
  int v = 0, i, d;
  for (i = 0; i < 4; i++) { /* stops at the first non-hex byte, so never passes the NUL pad */
    unsigned c = p[i];
    if (c - '0' < 10u)
      d = (int)(c - '0');
    else if ((c | 0x20u) - 'a' < 6u)
      d = (int)((c | 0x20u) - 'a' + 10);
    else
      return -1;
    v = v * 16 + d;
  }
  return v;
}

/* Parses one escape at p (which points at the backslash) and writes its UTF-8 bytes to *w.
   Returns the input position after it, or NULL with the error set. */
static unsigned char *yhc__json_escape(yhc__json_parser *ps, unsigned char *p, unsigned char **w) {
  unsigned char *o = *w;
  int u, lo;
  char b[8];
  switch (p[1]) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '/': *o++ = '/'; break;
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'n': *o++ = '\n'; break;
    case 'r': *o++ = '\r'; break;
    case 't': *o++ = '\t'; break;
    case 'u':
      u = yhc__json_hex4(p + 2);
      if (u < 0) {
        yhc__json_fail(ps, YHC_ERR_JSON, p, "invalid \\u escape (needs 4 hex digits)");
        return NULL;
      }
      if (u >= 0xD800 && u <= 0xDFFF) {
        lo = (u <= 0xDBFF && p[6] == '\\' && p[7] == 'u') ? yhc__json_hex4(p + 8) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF) {
          yhc__json_fail(ps, YHC_ERR_JSON, p, "lone surrogate \\u%04X", (unsigned)u);
          return NULL;
        }
        u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
        p += 6;
      }
      if (u < 0x80) {
        *o++ = (unsigned char)u;
      } else if (u < 0x800) {
        *o++ = (unsigned char)(0xC0 | (u >> 6));
        *o++ = (unsigned char)(0x80 | (u & 0x3F));
      } else if (u < 0x10000) {
        *o++ = (unsigned char)(0xE0 | (u >> 12));
        *o++ = (unsigned char)(0x80 | ((u >> 6) & 0x3F));
        *o++ = (unsigned char)(0x80 | (u & 0x3F));
      } else {
        *o++ = (unsigned char)(0xF0 | (u >> 18));
        *o++ = (unsigned char)(0x80 | ((u >> 12) & 0x3F));
        *o++ = (unsigned char)(0x80 | ((u >> 6) & 0x3F));
        *o++ = (unsigned char)(0x80 | (u & 0x3F));
      }
      *w = o;
      return p + 6;
    default:
      if (p + 1 >= ps->end)
        yhc__json_fail(ps, YHC_ERR_JSON, p, "unterminated string");
      else if (p[1] >= 0x21 && p[1] < 0x7F)
        yhc__json_fail(ps, YHC_ERR_JSON, p, "invalid escape \\%c", p[1]);
      else
        yhc__json_fail(ps, YHC_ERR_JSON, p, "invalid escape \\ followed by %s",
                       yhc__json_byte_name(b, ps, p + 1));
      return NULL;
  }
  *w = o;
  return p + 2;
}

static void yhc__json_bad_string_byte(yhc__json_parser *ps, const unsigned char *p,
                                      const unsigned char *open) {
  if (p >= ps->end)
    yhc__json_fail(ps, YHC_ERR_JSON, open, "unterminated string");
  else if (*p >= 0x80)
    yhc__json_fail(ps, YHC_ERR_JSON, p, "invalid UTF-8 in string");
  else
    yhc__json_fail(ps, YHC_ERR_JSON, p, "unescaped control character 0x%02X in string", *p);
}

/* The first byte at or after p that ends a plain run of string bytes, eight per step (the
   NUL pad stops the scan at the end of the input). */
static YHC__INLINE unsigned char *yhc__json_plain_end(unsigned char *p) {
  uint64_t m;
  while (!(m = yhc__json_special8(yhc__load_le64(p)))) p += 8;
  return p + YHC__JSON_FIRST(m);
}

static void yhc__json_set_string(yhc_json *node, uint64_t flags, const unsigned char *s, size_t len) {
  node->tag = YHC_JSON_STRING | flags | ((uint64_t)len << YHC__JSON_SHIFT);
  node->u.s = YHC__CAST(const char *, YHC__CAST(const void *, s));
}

/* The rest of a string that is not plain ASCII: s is its first byte, p the first byte that
   is not plain (and not the closing quote). Validates UTF-8, unescapes in place, and returns
   the position after the closing quote, or NULL with the error set. */
static unsigned char *yhc__json_string_rest(yhc__json_parser *ps, unsigned char *s, unsigned char *p,
                                            yhc_json *node, uint64_t flags) {
  unsigned char *w = p; /* the output: the same as p until the first escape, then behind it */
  uint64_t word, m;
  size_t k;
  for (;;) {
    if (*p == '"') break;
    if (*p == '\\') {
      p = yhc__json_escape(ps, p, &w);
      if (!p) return NULL;
    } else if (*p >= 0x80) {
      /* multibyte runs (CJK text, say): two 3-byte sequences at a time when both leads are
         E1-EC or EE-EF (no overlong or surrogate forms there), then one at a time inline,
         the rest in the function */
      do {
        word = yhc__load_le64(p);
        if ((word & UINT64_C(0xC0C0F0C0C0F0)) == UINT64_C(0x8080E08080E0) &&
            (word & 0x0F) != 0 && (word & 0x0F) != 0x0D && (word & 0x0F000000) != 0 &&
            (word & 0x0F000000) != 0x0D000000)
          k = 6;
        else if (*p >= 0xE1 && *p <= 0xEF && *p != 0xED && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80)
          k = 3;
        else if (!(k = yhc__json_utf8(p, 4)))
          goto bad;
        if (w == p) {
          w += k;
          p += k;
        } else {
          do *w++ = *p++; /* forward: w trails p */
          while (--k);
        }
      } while (*p >= 0x80);
    } else {
      goto bad;
    }
    if (w == p) { /* nothing unescaped yet: just find the end of the plain run */
      p = w = yhc__json_plain_end(p);
      continue;
    }
    for (;;) { /* copy the plain run, a word at a time while the whole word is plain */
      memcpy(&word, p, 8);
      m = yhc__json_special8(yhc__load_le64(p));
      if (m) break;
      memcpy(w, &word, 8); /* read before the copy may overwrite part of it */
      w += 8;
      p += 8;
    }
    for (k = YHC__JSON_FIRST(m); k; k--) *w++ = *p++;
  }
  yhc__json_set_string(node, flags, s, (size_t)(w - s));
  *w = 0;
  return p + 1;

bad:
  yhc__json_bad_string_byte(ps, p, s - 1);
  return NULL;
}

/* Parses the string whose opening quote is at p[-1] into node (flags: YHC__JSON_MEMBER or 0)
   and returns the position after the closing quote, or NULL with the error set. Plain ASCII
   strings, the common case, are done here in the parser's loop. */
static YHC__INLINE unsigned char *yhc__json_string(yhc__json_parser *ps, unsigned char *p, yhc_json *node,
                                                   uint64_t flags) {
  unsigned char *s = p;
  p = yhc__json_plain_end(p);
  if (YHC__LIKELY(*p == '"')) {
    yhc__json_set_string(node, flags, s, (size_t)(p - s));
    *p = 0;
    return p + 1;
  }
  return yhc__json_string_rest(ps, s, p, node, flags);
}

static int yhc__json_grow(yhc__json_parser *ps, size_t need) {
  size_t cap = ps->cap + ps->cap / 2 + 64;
  yhc_json *nn;
  if (cap < need) cap = need;
  if (cap > SIZE_MAX / sizeof(yhc_json)) return -1;
  nn = YHC__CAST(yhc_json *, YHC_REALLOC(ps->nodes, cap * sizeof(yhc_json)));
  if (!nn) return -1;
  ps->nodes = nn;
  ps->cap = cap;
  return 0;
}

/* Skips the whitespace at p (*p is whitespace). Pretty-printed input is a newline and then
   a run of spaces: the spaces go in one step (up to 8 at a time) from the first byte of the
   word that is not a space. */
static YHC__INLINE unsigned char *yhc__json_skip_ws(unsigned char *p) {
  uint64_t x;
  for (;;) {
    p++;
    while (!(x = yhc__load_le64(p) ^ (YHC__JSON_ONES * 0x20u))) p += 8; /* zero bytes: spaces */
    p += YHC__JSON_FIRST(x);
    if (!yhc__json_ws[*p]) return p;
  }
}
#define YHC__JSON_SKIP_WS(p)                  \
  do {                                        \
    if (yhc__json_ws[*(p)]) (p) = yhc__json_skip_ws(p); \
  } while (0)
#define YHC__JSON_DIGIT(c) ((unsigned)(c) - '0' < 10u)

/* One pass, no recursion: an open container keeps its parent's index in u.span; the tag
   (type and flags) and count of the container being filled live in registers, saved in its
   node while a child container is open and written there for good when it closes. So
   nesting costs no stack beyond the node array itself. */
static size_t yhc__json_run(yhc__json_parser *ps, int max_depth) {
  unsigned char *p = ps->start, *s;
  /* nd: the next node; cont: the open container; prev: the value completed last */
  yhc_json *nd = ps->nodes, *end = ps->nodes + ps->cap, *cont = ps->nodes, *prev = ps->nodes;
  size_t nint, nfrac;
  long ex;
  int shaped;
  uint64_t vflag = 0, flag; /* vflag: MEMBER while filling an object, else 0 */
  uint64_t ctag = 0;        /* the open container's tag: type, flags, children so far */
  int depth = 0;
  unsigned char c;

value:
  YHC__JSON_SKIP_WS(p);
  if (YHC__UNLIKELY(end - nd < 2)) { /* 2: a key and its value */
    size_t n = (size_t)(nd - ps->nodes), ci = (size_t)(cont - ps->nodes), pi = (size_t)(prev - ps->nodes);
    if (yhc__json_grow(ps, n + 2)) goto nomem;
    nd = ps->nodes + n;
    end = ps->nodes + ps->cap;
    cont = ps->nodes + ci;
    prev = ps->nodes + pi;
  }
  c = *p;
  /* tests in the order of how common each kind of value is (a jump table costs more here) */
  if (c == '"') {
    p = yhc__json_string(ps, p + 1, nd, vflag);
    if (!p) return 0;
    goto scalar_done;
  }
  if (YHC__JSON_DIGIT(c) || c == '-') {
    s = p;
    p += c == '-';
    nint = yhc__json_digit_count(p);
    if (!nint) {
      yhc__json_fail(ps, YHC_ERR_JSON, s, "invalid number: no digit after '-'");
      return 0;
    }
    if (*p == '0' && nint > 1) {
      yhc__json_fail(ps, YHC_ERR_JSON, s, "number with a leading zero");
      return 0;
    }
    p += nint;
    nfrac = 0;
    flag = YHC__JSON_FLAG;
    if (*p == '.') {
      nfrac = yhc__json_digit_count(p + 1);
      if (!nfrac) {
        yhc__json_fail(ps, YHC_ERR_JSON, p + 1, "invalid number: no digit after '.'");
        return 0;
      }
      p += nfrac + 1;
      flag = 0;
    }
    shaped = nint + nfrac <= 19; /* then, without an exponent, the text is short too */
    ex = 0;
    if ((*p | 0x20) == 'e') {
      int eneg;
      p++;
      eneg = *p == '-';
      if (*p == '+' || *p == '-') p++;
      if (!YHC__JSON_DIGIT(*p)) {
        yhc__json_fail(ps, YHC_ERR_JSON, p, "invalid number: no digit in exponent");
        return 0;
      }
      do {
        if (ex < YHC__JSON_SHAPE_EXP) ex = ex * 10 + (*p - '0'); /* past the bias: no SHAPE */
        p++;
      } while (YHC__JSON_DIGIT(*p));
      shaped &= ex < YHC__JSON_SHAPE_EXP && (uint64_t)(p - s) <= YHC__JSON_SHAPE_LEN;
      if (eneg) ex = -ex;
      flag = 0;
    }
    flag |= YHC_JSON_NUMBER | vflag | (uint64_t)(p - s) << YHC__JSON_SHIFT;
    if (shaped)
      flag |= YHC__JSON_SHAPE | (uint64_t)(ex + YHC__JSON_SHAPE_EXP) << 32 | (uint64_t)nint << 48 |
              (uint64_t)nfrac << 56;
    nd->tag = flag;
    nd->u.s = YHC__CAST(const char *, YHC__CAST(void *, s));
    goto scalar_done;
  }
  if (c == '{' || c == '[') {
    if (depth >= max_depth) {
      yhc__json_fail(ps, YHC_ERR_LIMIT, p, "nesting deeper than %d", max_depth);
      return 0;
    }
    if (depth) cont->tag = ctag; /* the parent's, for later */
    ctag = (c == '{' ? YHC_JSON_OBJECT : YHC_JSON_ARRAY) | vflag;
    nd->u.span = (size_t)(nd - cont); /* the way back to the parent (0 for the root) */
    cont = nd++;
    depth++;
    p++;
    vflag = c == '{' ? YHC__JSON_MEMBER : 0;
    YHC__JSON_SKIP_WS(p);
    if (*p == c + 2) goto close; /* '{'+2 == '}', '['+2 == ']' */
    ctag += (uint64_t)1 << YHC__JSON_SHIFT;
    if (vflag) goto key;
    goto value;
  }
  if (c == 't') {
    if (memcmp(p, "true", 4)) goto bad_literal; /* the pad makes 4 bytes readable */
    nd->tag = YHC_JSON_BOOL | YHC__JSON_FLAG | vflag;
    p += 4;
    goto scalar_done;
  }
  if (c == 'f') {
    if (memcmp(p, "false", 5)) goto bad_literal;
    nd->tag = YHC_JSON_BOOL | vflag;
    p += 5;
    goto scalar_done;
  }
  if (c == 'n') {
    if (memcmp(p, "null", 4)) goto bad_literal;
    nd->tag = YHC_JSON_NULL | vflag;
    p += 4;
    goto scalar_done;
  }
  yhc__json_unexpected(ps, p, "a value");
  return 0;

bad_literal:
  yhc__json_fail(ps, YHC_ERR_JSON, p, "invalid literal (true, false or null expected)");
  return 0;

key:
  YHC__JSON_SKIP_WS(p);
  if (*p != '"') {
    yhc__json_unexpected(ps, p, "a string key");
    return 0;
  }
  p = yhc__json_string(ps, p + 1, nd++, 0); /* room for key + value was reserved */
  if (!p) return 0;
  YHC__JSON_SKIP_WS(p);
  if (*p != ':') {
    yhc__json_unexpected(ps, p, "':' after object key");
    return 0;
  }
  p++;
  goto value;

scalar_done:
  prev = nd++;
next:
  if (!depth) goto done;
  YHC__JSON_SKIP_WS(p);
  if (*p == ',') {
    p++;
    ctag += (uint64_t)1 << YHC__JSON_SHIFT;
    if (vflag) goto key;
    goto value;
  }
  if (*p == (vflag ? '}' : ']')) goto close;
  yhc__json_unexpected(ps, p, vflag ? "',' or '}'" : "',' or ']'");
  return 0;

close:
  if (ctag >> YHC__JSON_SHIFT) prev->tag |= YHC__JSON_LAST;
  prev = cont;
  cont -= cont->u.span; /* the parent, or the root itself */
  prev->tag = ctag;
  prev->u.span = (size_t)(nd - prev);
  p++;
  if (--depth) {
    ctag = cont->tag;
    vflag = (ctag & YHC__JSON_TMASK) == YHC_JSON_OBJECT ? YHC__JSON_MEMBER : 0;
  }
  goto next;

done:
  YHC__JSON_SKIP_WS(p);
  if (p != ps->end) {
    char b[8];
    yhc__json_fail(ps, YHC_ERR_JSON, p, "unexpected %s after the top-level value",
                   yhc__json_byte_name(b, ps, p));
    return 0;
  }
  ps->nodes[0].tag |= YHC__JSON_LAST;
  return (size_t)(nd - ps->nodes);

nomem:
  yhc__json_fail(ps, YHC_ERR_NOMEM, p, "out of memory for %zu JSON values", (size_t)(nd - ps->nodes) + 2);
  return 0;
}

/* The input copy in 64-byte blocks, which compilers turn into a few vector moves each:
   glibc's large-copy path (rep movsb) runs one counted instruction per byte under
   callgrind, which `make bench` uses, while on hardware both run at cache speed. */
static void yhc__json_copy_in(unsigned char *dst, const char *src, size_t len) {
  for (; len >= 64; len -= 64, dst += 64, src += 64) memcpy(dst, src, 64);
  if (len) memcpy(dst, src, len);
}

YHCDEF yhc_json_doc *yhc_json_parse(const char *text, size_t len, const yhc_json_opts *opts,
                                    yhc_error *err) {
  yhc__json_parser ps;
  yhc_json_doc *doc;
  size_t max_bytes = opts && opts->max_bytes ? opts->max_bytes : SIZE_MAX;
  int max_depth = opts && opts->max_depth > 0 ? opts->max_depth : 512;
  yhc__error_clear(err);
  if (!text && len) {
    yhc__error_set(err, YHC_ERR_INVALID, 0, "NULL text with length %zu", len);
    return NULL;
  }
  if (len > max_bytes) {
    yhc__error_set(err, YHC_ERR_LIMIT, 0, "input of %zu bytes exceeds max_bytes %zu", len,
                   max_bytes);
    return NULL;
  }
  if (len > SIZE_MAX - sizeof(yhc_json_doc) - YHC__JSON_PAD) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "input of %zu bytes is too large", len);
    return NULL;
  }
  doc = YHC__CAST(yhc_json_doc *, YHC_MALLOC(sizeof(yhc_json_doc) + len + YHC__JSON_PAD));
  if (!doc) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory copying %zu bytes of JSON", len);
    return NULL;
  }
  ps.start = YHC__CAST(unsigned char *, YHC__CAST(void *, doc + 1));
  ps.end = ps.start + len;
  yhc__json_copy_in(ps.start, text, len);
  memset(ps.end, 0, YHC__JSON_PAD);
  ps.err = err;
  /* A guess from typical documents (one value per 8-16 bytes) that avoids most regrowth
     without reserving the worst case (one value per 2 bytes). */
  ps.cap = len / 12 + 16;
  ps.nodes = YHC__CAST(yhc_json *, YHC_MALLOC(ps.cap * sizeof(yhc_json)));
  if (!ps.nodes) {
    YHC_FREE(doc);
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory for JSON values");
    return NULL;
  }
  doc->count = yhc__json_run(&ps, max_depth);
  if (!doc->count) {
    YHC_FREE(ps.nodes);
    YHC_FREE(doc);
    return NULL;
  }
  doc->nodes = ps.nodes;
  return doc;
}

YHCDEF void yhc_json_free(yhc_json_doc *doc) {
  if (!doc) return;
  YHC_FREE(doc->nodes);
  YHC_FREE(doc);
}

YHCDEF const yhc_json *yhc_json_root(const yhc_json_doc *doc) { return doc ? doc->nodes : NULL; }

/* ---- queries */

static size_t yhc__json_span(const yhc_json *v) {
  unsigned t = YHC__JSON_TYPE(v);
  return (t == YHC_JSON_ARRAY || t == YHC_JSON_OBJECT) ? v->u.span : 1;
}

YHCDEF yhc_json_type yhc_json_typeof(const yhc_json *v) {
  return v ? YHC__CAST(yhc_json_type, YHC__JSON_TYPE(v)) : YHC_JSON_NONE;
}

YHCDEF size_t yhc_json_len(const yhc_json *v) {
  unsigned t = v ? YHC__JSON_TYPE(v) : 0u;
  return (t == YHC_JSON_ARRAY || t == YHC_JSON_OBJECT || t == YHC_JSON_STRING) ? YHC__JSON_LEN(v)
                                                                               : 0;
}

YHCDEF const yhc_json *yhc_json_first(const yhc_json *c) {
  if (!c || !YHC__JSON_LEN(c)) return NULL;
  if (YHC__JSON_TYPE(c) == YHC_JSON_ARRAY) return c + 1;
  if (YHC__JSON_TYPE(c) == YHC_JSON_OBJECT) return c + 2;
  return NULL;
}

YHCDEF const yhc_json *yhc_json_next(const yhc_json *v) {
  if (!v || (v->tag & YHC__JSON_LAST)) return NULL;
  return v + yhc__json_span(v) + ((v->tag & YHC__JSON_MEMBER) ? 1 : 0);
}

YHCDEF yhc_str yhc_json_key(const yhc_json *m) {
  yhc_str r;
  r.ptr = NULL;
  r.len = 0;
  if (m && (m->tag & YHC__JSON_MEMBER)) {
    r.ptr = m[-1].u.s;
    r.len = YHC__JSON_LEN(&m[-1]);
  }
  return r;
}

YHCDEF const yhc_json *yhc_json_at(const yhc_json *c, size_t index) {
  const yhc_json *v;
  if (!c || index >= yhc_json_len(c) || YHC__JSON_TYPE(c) == YHC_JSON_STRING) return NULL;
  if (YHC__JSON_TYPE(c) == YHC_JSON_ARRAY && c->u.span == YHC__JSON_LEN(c) + 1)
    return c + 1 + index; /* only scalars inside: every element is one node */
  for (v = yhc_json_first(c); index; index--) v = yhc_json_next(v);
  return v;
}

YHCDEF const yhc_json *yhc_json_getn(const yhc_json *obj, const char *key, size_t key_len) {
  const yhc_json *v;
  if (!obj || YHC__JSON_TYPE(obj) != YHC_JSON_OBJECT || (!key && key_len)) return NULL;
  for (v = yhc_json_first(obj); v; v = yhc_json_next(v)) {
    if (YHC__JSON_LEN(&v[-1]) == key_len && (key_len == 0 || !memcmp(v[-1].u.s, key, key_len)))
      return v;
  }
  return NULL;
}

YHCDEF const yhc_json *yhc_json_get(const yhc_json *obj, const char *key) {
  return key ? yhc_json_getn(obj, key, strlen(key)) : NULL;
}

YHCDEF yhc_str yhc_json_str(const yhc_json *v, yhc_str def) {
  if (v && YHC__JSON_TYPE(v) == YHC_JSON_STRING) {
    def.ptr = v->u.s;
    def.len = YHC__JSON_LEN(v);
  }
  return def;
}

YHCDEF const char *yhc_json_cstr(const yhc_json *v, const char *def) {
  return (v && YHC__JSON_TYPE(v) == YHC_JSON_STRING) ? v->u.s : def;
}

YHCDEF int yhc_json_bool(const yhc_json *v, int def) {
  if (!v || YHC__JSON_TYPE(v) != YHC_JSON_BOOL) return def;
  return (v->tag & YHC__JSON_FLAG) ? 1 : 0;
}

YHCDEF yhc_str yhc_json_raw_number(const yhc_json *v) {
  yhc_str r;
  r.ptr = NULL;
  r.len = 0;
  if (v && YHC__JSON_TYPE(v) == YHC_JSON_NUMBER) {
    r.ptr = v->u.s;
    r.len = yhc__json_number_len(v);
  }
  return r;
}

/* ---- number conversion (over number text already validated by the parser) */

/* A number as sign * digits * 10^exp10 with leading and trailing zeros removed from the
   digits (the trailing ones moved into exp10). Only the first 19 significant digits are kept
   in `mant`; exp10 then scales those, and `exp_raw` scales all digits up to the last one,
   trailing zeros included, for the slow path that copies them all. */
typedef struct yhc__json_dec {
  int neg;
  uint64_t mant;      /* the first min(ndig, 19) significant digits */
  size_t ndig;        /* significant digits, first nonzero to last nonzero */
  long long exp10;    /* value = mant * 10^exp10 when ndig <= 19 */
  long long exp_raw;  /* value = (digits from the first nonzero to the end) * 10^exp_raw */
} yhc__json_dec;

/* Exponents are saturated here: far beyond any double, yet no arithmetic can overflow. */
#define YHC__JSON_EXP_SAT 1000000000000LL

/* The value of the exponent's digits at p (after 'e' and any sign), saturated far beyond any
   double. */
static long long yhc__json_exp_value(const char *p, const char *e) {
  long long ex = 0;
  for (; p < e; p++)
    if (ex < YHC__JSON_EXP_SAT) ex = ex * 10 + (*p - '0');
  return ex;
}

static void yhc__json_decompose(const char *s, size_t len, yhc__json_dec *d) {
  const char *e = s + len;
  size_t zeros = 0, nfrac = 0;
  long long ex = 0;
  int in_frac = 0, eneg = 0;
  d->neg = 0;
  d->mant = 0;
  d->ndig = 0;
  if (s < e && *s == '-') {
    d->neg = 1;
    s++;
  }
  for (; s < e; s++) {
    unsigned c = (unsigned char)*s;
    if (c == '.') {
      in_frac = 1;
      continue;
    }
    if (c - '0' >= 10u) break;
    nfrac += (size_t)in_frac;
    if (c == '0') {
      if (d->ndig) zeros++; /* leading zeros are not significant */
      continue;
    }
    for (; zeros; zeros--) { /* zeros followed by a nonzero digit are significant */
      if (d->ndig < 19) d->mant *= 10;
      d->ndig++;
    }
    if (d->ndig < 19) d->mant = d->mant * 10 + (c - '0');
    d->ndig++;
  }
  if (s < e) { /* the exponent */
    s++;
    if (*s == '-' || *s == '+') eneg = *s++ == '-';
    ex = yhc__json_exp_value(s, e);
    if (eneg) ex = -ex;
  }
  d->exp_raw = ex - (long long)nfrac;
  d->exp10 = d->exp_raw + (long long)zeros + (d->ndig > 19 ? (long long)(d->ndig - 19) : 0);
}

YHCDEF int yhc_json_int_ok(const yhc_json *v, int64_t *out) {
  yhc__json_dec d;
  uint64_t m, lim;
  long long e;
  size_t len;
  if (!v || YHC__JSON_TYPE(v) != YHC_JSON_NUMBER) return 0;
  len = yhc__json_number_len(v);
  if ((v->tag & YHC__JSON_FLAG) && len <= 18) { /* fits without overflow */
    const char *s = v->u.s, *end = s + len;
    int neg = *s == '-';
    int64_t x = 0;
    for (s += neg; s < end; s++) x = x * 10 + (*s - '0');
    if (out) *out = neg ? -x : x;
    return 1;
  }
  yhc__json_decompose(v->u.s, len, &d);
  if (!d.ndig) {
    if (out) *out = 0;
    return 1;
  }
  if (d.ndig > 19 || d.exp10 < 0 || d.exp10 > 18) return 0;
  m = d.mant;
  for (e = d.exp10; e; e--) {
    if (m > UINT64_MAX / 10) return 0;
    m *= 10;
  }
  lim = d.neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  if (m > lim) return 0;
  if (out) *out = d.neg ? (m == lim ? INT64_MIN : -(int64_t)m) : (int64_t)m;
  return 1;
}

YHCDEF int64_t yhc_json_int(const yhc_json *v, int64_t def) {
  int64_t x;
  return yhc_json_int_ok(v, &x) ? x : def;
}

static const double yhc__json_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                           1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                           1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* 5^q for q in [-342, 308], 128 bits with the top bit set (high word, low word): the scale
   factors of the Eisel-Lemire conversion below. Generated by tools/pow5_table.py. */
static const uint64_t yhc__json_pow5[651 * 2] = {
    0xeef453d6923bd65a, 0x113faa2906a13b3f, 0x9558b4661b6565f8, 0x4ac7ca59a424c507,
    0xbaaee17fa23ebf76, 0x5d79bcf00d2df649, 0xe95a99df8ace6f53, 0xf4d82c2c107973dc,
    0x91d8a02bb6c10594, 0x79071b9b8a4be869, 0xb64ec836a47146f9, 0x9748e2826cdee284,
    0xe3e27a444d8d98b7, 0xfd1b1b2308169b25, 0x8e6d8c6ab0787f72, 0xfe30f0f5e50e20f7,
    0xb208ef855c969f4f, 0xbdbd2d335e51a935, 0xde8b2b66b3bc4723, 0xad2c788035e61382,
    0x8b16fb203055ac76, 0x4c3bcb5021afcc31, 0xaddcb9e83c6b1793, 0xdf4abe242a1bbf3d,
    0xd953e8624b85dd78, 0xd71d6dad34a2af0d, 0x87d4713d6f33aa6b, 0x8672648c40e5ad68,
    0xa9c98d8ccb009506, 0x680efdaf511f18c2, 0xd43bf0effdc0ba48, 0x0212bd1b2566def2,
    0x84a57695fe98746d, 0x014bb630f7604b57, 0xa5ced43b7e3e9188, 0x419ea3bd35385e2d,
    0xcf42894a5dce35ea, 0x52064cac828675b9, 0x818995ce7aa0e1b2, 0x7343efebd1940993,
    0xa1ebfb4219491a1f, 0x1014ebe6c5f90bf8, 0xca66fa129f9b60a6, 0xd41a26e077774ef6,
    0xfd00b897478238d0, 0x8920b098955522b4, 0x9e20735e8cb16382, 0x55b46e5f5d5535b0,
    0xc5a890362fddbc62, 0xeb2189f734aa831d, 0xf712b443bbd52b7b, 0xa5e9ec7501d523e4,
    0x9a6bb0aa55653b2d, 0x47b233c92125366e, 0xc1069cd4eabe89f8, 0x999ec0bb696e840a,
    0xf148440a256e2c76, 0xc00670ea43ca250d, 0x96cd2a865764dbca, 0x380406926a5e5728,
    0xbc807527ed3e12bc, 0xc605083704f5ecf2, 0xeba09271e88d976b, 0xf7864a44c633682e,
    0x93445b8731587ea3, 0x7ab3ee6afbe0211d, 0xb8157268fdae9e4c, 0x5960ea05bad82964,
    0xe61acf033d1a45df, 0x6fb92487298e33bd, 0x8fd0c16206306bab, 0xa5d3b6d479f8e056,
    0xb3c4f1ba87bc8696, 0x8f48a4899877186c, 0xe0b62e2929aba83c, 0x331acdabfe94de87,
    0x8c71dcd9ba0b4925, 0x9ff0c08b7f1d0b14, 0xaf8e5410288e1b6f, 0x07ecf0ae5ee44dd9,
    0xdb71e91432b1a24a, 0xc9e82cd9f69d6150, 0x892731ac9faf056e, 0xbe311c083a225cd2,
    0xab70fe17c79ac6ca, 0x6dbd630a48aaf406, 0xd64d3d9db981787d, 0x092cbbccdad5b108,
    0x85f0468293f0eb4e, 0x25bbf56008c58ea5, 0xa76c582338ed2621, 0xaf2af2b80af6f24e,
    0xd1476e2c07286faa, 0x1af5af660db4aee1, 0x82cca4db847945ca, 0x50d98d9fc890ed4d,
    0xa37fce126597973c, 0xe50ff107bab528a0, 0xcc5fc196fefd7d0c, 0x1e53ed49a96272c8,
    0xff77b1fcbebcdc4f, 0x25e8e89c13bb0f7a, 0x9faacf3df73609b1, 0x77b191618c54e9ac,
    0xc795830d75038c1d, 0xd59df5b9ef6a2417, 0xf97ae3d0d2446f25, 0x4b0573286b44ad1d,
    0x9becce62836ac577, 0x4ee367f9430aec32, 0xc2e801fb244576d5, 0x229c41f793cda73f,
    0xf3a20279ed56d48a, 0x6b43527578c1110f, 0x9845418c345644d6, 0x830a13896b78aaa9,
    0xbe5691ef416bd60c, 0x23cc986bc656d553, 0xedec366b11c6cb8f, 0x2cbfbe86b7ec8aa8,
    0x94b3a202eb1c3f39, 0x7bf7d71432f3d6a9, 0xb9e08a83a5e34f07, 0xdaf5ccd93fb0cc53,
    0xe858ad248f5c22c9, 0xd1b3400f8f9cff68, 0x91376c36d99995be, 0x23100809b9c21fa1,
    0xb58547448ffffb2d, 0xabd40a0c2832a78a, 0xe2e69915b3fff9f9, 0x16c90c8f323f516c,
    0x8dd01fad907ffc3b, 0xae3da7d97f6792e3, 0xb1442798f49ffb4a, 0x99cd11cfdf41779c,
    0xdd95317f31c7fa1d, 0x40405643d711d583, 0x8a7d3eef7f1cfc52, 0x482835ea666b2572,
    0xad1c8eab5ee43b66, 0xda3243650005eecf, 0xd863b256369d4a40, 0x90bed43e40076a82,
    0x873e4f75e2224e68, 0x5a7744a6e804a291, 0xa90de3535aaae202, 0x711515d0a205cb36,
    0xd3515c2831559a83, 0x0d5a5b44ca873e03, 0x8412d9991ed58091, 0xe858790afe9486c2,
    0xa5178fff668ae0b6, 0x626e974dbe39a872, 0xce5d73ff402d98e3, 0xfb0a3d212dc8128f,
    0x80fa687f881c7f8e, 0x7ce66634bc9d0b99, 0xa139029f6a239f72, 0x1c1fffc1ebc44e80,
    0xc987434744ac874e, 0xa327ffb266b56220, 0xfbe9141915d7a922, 0x4bf1ff9f0062baa8,
    0x9d71ac8fada6c9b5, 0x6f773fc3603db4a9, 0xc4ce17b399107c22, 0xcb550fb4384d21d3,
    0xf6019da07f549b2b, 0x7e2a53a146606a48, 0x99c102844f94e0fb, 0x2eda7444cbfc426d,
    0xc0314325637a1939, 0xfa911155fefb5308, 0xf03d93eebc589f88, 0x793555ab7eba27ca,
    0x96267c7535b763b5, 0x4bc1558b2f3458de, 0xbbb01b9283253ca2, 0x9eb1aaedfb016f16,
    0xea9c227723ee8bcb, 0x465e15a979c1cadc, 0x92a1958a7675175f, 0x0bfacd89ec191ec9,
    0xb749faed14125d36, 0xcef980ec671f667b, 0xe51c79a85916f484, 0x82b7e12780e7401a,
    0x8f31cc0937ae58d2, 0xd1b2ecb8b0908810, 0xb2fe3f0b8599ef07, 0x861fa7e6dcb4aa15,
    0xdfbdcece67006ac9, 0x67a791e093e1d49a, 0x8bd6a141006042bd, 0xe0c8bb2c5c6d24e0,
    0xaecc49914078536d, 0x58fae9f773886e18, 0xda7f5bf590966848, 0xaf39a475506a899e,
    0x888f99797a5e012d, 0x6d8406c952429603, 0xaab37fd7d8f58178, 0xc8e5087ba6d33b83,
    0xd5605fcdcf32e1d6, 0xfb1e4a9a90880a64, 0x855c3be0a17fcd26, 0x5cf2eea09a55067f,
    0xa6b34ad8c9dfc06f, 0xf42faa48c0ea481e, 0xd0601d8efc57b08b, 0xf13b94daf124da26,
    0x823c12795db6ce57, 0x76c53d08d6b70858, 0xa2cb1717b52481ed, 0x54768c4b0c64ca6e,
    0xcb7ddcdda26da268, 0xa9942f5dcf7dfd09, 0xfe5d54150b090b02, 0xd3f93b35435d7c4c,
    0x9efa548d26e5a6e1, 0xc47bc5014a1a6daf, 0xc6b8e9b0709f109a, 0x359ab6419ca1091b,
    0xf867241c8cc6d4c0, 0xc30163d203c94b62, 0x9b407691d7fc44f8, 0x79e0de63425dcf1d,
    0xc21094364dfb5636, 0x985915fc12f542e4, 0xf294b943e17a2bc4, 0x3e6f5b7b17b2939d,
    0x979cf3ca6cec5b5a, 0xa705992ceecf9c42, 0xbd8430bd08277231, 0x50c6ff782a838353,
    0xece53cec4a314ebd, 0xa4f8bf5635246428, 0x940f4613ae5ed136, 0x871b7795e136be99,
    0xb913179899f68584, 0x28e2557b59846e3f, 0xe757dd7ec07426e5, 0x331aeada2fe589cf,
    0x9096ea6f3848984f, 0x3ff0d2c85def7621, 0xb4bca50b065abe63, 0x0fed077a756b53a9,
    0xe1ebce4dc7f16dfb, 0xd3e8495912c62894, 0x8d3360f09cf6e4bd, 0x64712dd7abbbd95c,
    0xb080392cc4349dec, 0xbd8d794d96aacfb3, 0xdca04777f541c567, 0xecf0d7a0fc5583a0,
    0x89e42caaf9491b60, 0xf41686c49db57244, 0xac5d37d5b79b6239, 0x311c2875c522ced5,
    0xd77485cb25823ac7, 0x7d633293366b828b, 0x86a8d39ef77164bc, 0xae5dff9c02033197,
    0xa8530886b54dbdeb, 0xd9f57f830283fdfc, 0xd267caa862a12d66, 0xd072df63c324fd7b,
    0x8380dea93da4bc60, 0x4247cb9e59f71e6d, 0xa46116538d0deb78, 0x52d9be85f074e608,
    0xcd795be870516656, 0x67902e276c921f8b, 0x806bd9714632dff6, 0x00ba1cd8a3db53b6,
    0xa086cfcd97bf97f3, 0x80e8a40eccd228a4, 0xc8a883c0fdaf7df0, 0x6122cd128006b2cd,
    0xfad2a4b13d1b5d6c, 0x796b805720085f81, 0x9cc3a6eec6311a63, 0xcbe3303674053bb0,
    0xc3f490aa77bd60fc, 0xbedbfc4411068a9c, 0xf4f1b4d515acb93b, 0xee92fb5515482d44,
    0x991711052d8bf3c5, 0x751bdd152d4d1c4a, 0xbf5cd54678eef0b6, 0xd262d45a78a0635d,
    0xef340a98172aace4, 0x86fb897116c87c34, 0x9580869f0e7aac0e, 0xd45d35e6ae3d4da0,
    0xbae0a846d2195712, 0x8974836059cca109, 0xe998d258869facd7, 0x2bd1a438703fc94b,
    0x91ff83775423cc06, 0x7b6306a34627ddcf, 0xb67f6455292cbf08, 0x1a3bc84c17b1d542,
    0xe41f3d6a7377eeca, 0x20caba5f1d9e4a93, 0x8e938662882af53e, 0x547eb47b7282ee9c,
    0xb23867fb2a35b28d, 0xe99e619a4f23aa43, 0xdec681f9f4c31f31, 0x6405fa00e2ec94d4,
    0x8b3c113c38f9f37e, 0xde83bc408dd3dd04, 0xae0b158b4738705e, 0x9624ab50b148d445,
    0xd98ddaee19068c76, 0x3badd624dd9b0957, 0x87f8a8d4cfa417c9, 0xe54ca5d70a80e5d6,
    0xa9f6d30a038d1dbc, 0x5e9fcf4ccd211f4c, 0xd47487cc8470652b, 0x7647c3200069671f,
    0x84c8d4dfd2c63f3b, 0x29ecd9f40041e073, 0xa5fb0a17c777cf09, 0xf468107100525890,
    0xcf79cc9db955c2cc, 0x7182148d4066eeb4, 0x81ac1fe293d599bf, 0xc6f14cd848405530,
    0xa21727db38cb002f, 0xb8ada00e5a506a7c, 0xca9cf1d206fdc03b, 0xa6d90811f0e4851c,
    0xfd442e4688bd304a, 0x908f4a166d1da663, 0x9e4a9cec15763e2e, 0x9a598e4e043287fe,
    0xc5dd44271ad3cdba, 0x40eff1e1853f29fd, 0xf7549530e188c128, 0xd12bee59e68ef47c,
    0x9a94dd3e8cf578b9, 0x82bb74f8301958ce, 0xc13a148e3032d6e7, 0xe36a52363c1faf01,
    0xf18899b1bc3f8ca1, 0xdc44e6c3cb279ac1, 0x96f5600f15a7b7e5, 0x29ab103a5ef8c0b9,
    0xbcb2b812db11a5de, 0x7415d448f6b6f0e7, 0xebdf661791d60f56, 0x111b495b3464ad21,
    0x936b9fcebb25c995, 0xcab10dd900beec34, 0xb84687c269ef3bfb, 0x3d5d514f40eea742,
    0xe65829b3046b0afa, 0x0cb4a5a3112a5112, 0x8ff71a0fe2c2e6dc, 0x47f0e785eaba72ab,
    0xb3f4e093db73a093, 0x59ed216765690f56, 0xe0f218b8d25088b8, 0x306869c13ec3532c,
    0x8c974f7383725573, 0x1e414218c73a13fb, 0xafbd2350644eeacf, 0xe5d1929ef90898fa,
    0xdbac6c247d62a583, 0xdf45f746b74abf39, 0x894bc396ce5da772, 0x6b8bba8c328eb783,
    0xab9eb47c81f5114f, 0x066ea92f3f326564, 0xd686619ba27255a2, 0xc80a537b0efefebd,
    0x8613fd0145877585, 0xbd06742ce95f5f36, 0xa798fc4196e952e7, 0x2c48113823b73704,
    0xd17f3b51fca3a7a0, 0xf75a15862ca504c5, 0x82ef85133de648c4, 0x9a984d73dbe722fb,
    0xa3ab66580d5fdaf5, 0xc13e60d0d2e0ebba, 0xcc963fee10b7d1b3, 0x318df905079926a8,
    0xffbbcfe994e5c61f, 0xfdf17746497f7052, 0x9fd561f1fd0f9bd3, 0xfeb6ea8bedefa633,
    0xc7caba6e7c5382c8, 0xfe64a52ee96b8fc0, 0xf9bd690a1b68637b, 0x3dfdce7aa3c673b0,
    0x9c1661a651213e2d, 0x06bea10ca65c084e, 0xc31bfa0fe5698db8, 0x486e494fcff30a62,
    0xf3e2f893dec3f126, 0x5a89dba3c3efccfa, 0x986ddb5c6b3a76b7, 0xf89629465a75e01c,
    0xbe89523386091465, 0xf6bbb397f1135823, 0xee2ba6c0678b597f, 0x746aa07ded582e2c,
    0x94db483840b717ef, 0xa8c2a44eb4571cdc, 0xba121a4650e4ddeb, 0x92f34d62616ce413,
    0xe896a0d7e51e1566, 0x77b020baf9c81d17, 0x915e2486ef32cd60, 0x0ace1474dc1d122e,
    0xb5b5ada8aaff80b8, 0x0d819992132456ba, 0xe3231912d5bf60e6, 0x10e1fff697ed6c69,
    0x8df5efabc5979c8f, 0xca8d3ffa1ef463c1, 0xb1736b96b6fd83b3, 0xbd308ff8a6b17cb2,
    0xddd0467c64bce4a0, 0xac7cb3f6d05ddbde, 0x8aa22c0dbef60ee4, 0x6bcdf07a423aa96b,
    0xad4ab7112eb3929d, 0x86c16c98d2c953c6, 0xd89d64d57a607744, 0xe871c7bf077ba8b7,
    0x87625f056c7c4a8b, 0x11471cd764ad4972, 0xa93af6c6c79b5d2d, 0xd598e40d3dd89bcf,
    0xd389b47879823479, 0x4aff1d108d4ec2c3, 0x843610cb4bf160cb, 0xcedf722a585139ba,
    0xa54394fe1eedb8fe, 0xc2974eb4ee658828, 0xce947a3da6a9273e, 0x733d226229feea32,
    0x811ccc668829b887, 0x0806357d5a3f525f, 0xa163ff802a3426a8, 0xca07c2dcb0cf26f7,
    0xc9bcff6034c13052, 0xfc89b393dd02f0b5, 0xfc2c3f3841f17c67, 0xbbac2078d443ace2,
    0x9d9ba7832936edc0, 0xd54b944b84aa4c0d, 0xc5029163f384a931, 0x0a9e795e65d4df11,
    0xf64335bcf065d37d, 0x4d4617b5ff4a16d5, 0x99ea0196163fa42e, 0x504bced1bf8e4e45,
    0xc06481fb9bcf8d39, 0xe45ec2862f71e1d6, 0xf07da27a82c37088, 0x5d767327bb4e5a4c,
    0x964e858c91ba2655, 0x3a6a07f8d510f86f, 0xbbe226efb628afea, 0x890489f70a55368b,
    0xeadab0aba3b2dbe5, 0x2b45ac74ccea842e, 0x92c8ae6b464fc96f, 0x3b0b8bc90012929d,
    0xb77ada0617e3bbcb, 0x09ce6ebb40173744, 0xe55990879ddcaabd, 0xcc420a6a101d0515,
    0x8f57fa54c2a9eab6, 0x9fa946824a12232d, 0xb32df8e9f3546564, 0x47939822dc96abf9,
    0xdff9772470297ebd, 0x59787e2b93bc56f7, 0x8bfbea76c619ef36, 0x57eb4edb3c55b65a,
    0xaefae51477a06b03, 0xede622920b6b23f1, 0xdab99e59958885c4, 0xe95fab368e45eced,
    0x88b402f7fd75539b, 0x11dbcb0218ebb414, 0xaae103b5fcd2a881, 0xd652bdc29f26a119,
    0xd59944a37c0752a2, 0x4be76d3346f0495f, 0x857fcae62d8493a5, 0x6f70a4400c562ddb,
    0xa6dfbd9fb8e5b88e, 0xcb4ccd500f6bb952, 0xd097ad07a71f26b2, 0x7e2000a41346a7a7,
    0x825ecc24c873782f, 0x8ed400668c0c28c8, 0xa2f67f2dfa90563b, 0x728900802f0f32fa,
    0xcbb41ef979346bca, 0x4f2b40a03ad2ffb9, 0xfea126b7d78186bc, 0xe2f610c84987bfa8,
    0x9f24b832e6b0f436, 0x0dd9ca7d2df4d7c9, 0xc6ede63fa05d3143, 0x91503d1c79720dbb,
    0xf8a95fcf88747d94, 0x75a44c6397ce912a, 0x9b69dbe1b548ce7c, 0xc986afbe3ee11aba,
    0xc24452da229b021b, 0xfbe85badce996168, 0xf2d56790ab41c2a2, 0xfae27299423fb9c3,
    0x97c560ba6b0919a5, 0xdccd879fc967d41a, 0xbdb6b8e905cb600f, 0x5400e987bbc1c920,
    0xed246723473e3813, 0x290123e9aab23b68, 0x9436c0760c86e30b, 0xf9a0b6720aaf6521,
    0xb94470938fa89bce, 0xf808e40e8d5b3e69, 0xe7958cb87392c2c2, 0xb60b1d1230b20e04,
    0x90bd77f3483bb9b9, 0xb1c6f22b5e6f48c2, 0xb4ecd5f01a4aa828, 0x1e38aeb6360b1af3,
    0xe2280b6c20dd5232, 0x25c6da63c38de1b0, 0x8d590723948a535f, 0x579c487e5a38ad0e,
    0xb0af48ec79ace837, 0x2d835a9df0c6d851, 0xdcdb1b2798182244, 0xf8e431456cf88e65,
    0x8a08f0f8bf0f156b, 0x1b8e9ecb641b58ff, 0xac8b2d36eed2dac5, 0xe272467e3d222f3f,
    0xd7adf884aa879177, 0x5b0ed81dcc6abb0f, 0x86ccbb52ea94baea, 0x98e947129fc2b4e9,
    0xa87fea27a539e9a5, 0x3f2398d747b36224, 0xd29fe4b18e88640e, 0x8eec7f0d19a03aad,
    0x83a3eeeef9153e89, 0x1953cf68300424ac, 0xa48ceaaab75a8e2b, 0x5fa8c3423c052dd7,
    0xcdb02555653131b6, 0x3792f412cb06794d, 0x808e17555f3ebf11, 0xe2bbd88bbee40bd0,
    0xa0b19d2ab70e6ed6, 0x5b6aceaeae9d0ec4, 0xc8de047564d20a8b, 0xf245825a5a445275,
    0xfb158592be068d2e, 0xeed6e2f0f0d56712, 0x9ced737bb6c4183d, 0x55464dd69685606b,
    0xc428d05aa4751e4c, 0xaa97e14c3c26b886, 0xf53304714d9265df, 0xd53dd99f4b3066a8,
    0x993fe2c6d07b7fab, 0xe546a8038efe4029, 0xbf8fdb78849a5f96, 0xde98520472bdd033,
    0xef73d256a5c0f77c, 0x963e66858f6d4440, 0x95a8637627989aad, 0xdde7001379a44aa8,
    0xbb127c53b17ec159, 0x5560c018580d5d52, 0xe9d71b689dde71af, 0xaab8f01e6e10b4a6,
    0x9226712162ab070d, 0xcab3961304ca70e8, 0xb6b00d69bb55c8d1, 0x3d607b97c5fd0d22,
    0xe45c10c42a2b3b05, 0x8cb89a7db77c506a, 0x8eb98a7a9a5b04e3, 0x77f3608e92adb242,
    0xb267ed1940f1c61c, 0x55f038b237591ed3, 0xdf01e85f912e37a3, 0x6b6c46dec52f6688,
    0x8b61313bbabce2c6, 0x2323ac4b3b3da015, 0xae397d8aa96c1b77, 0xabec975e0a0d081a,
    0xd9c7dced53c72255, 0x96e7bd358c904a21, 0x881cea14545c7575, 0x7e50d64177da2e54,
    0xaa242499697392d2, 0xdde50bd1d5d0b9e9, 0xd4ad2dbfc3d07787, 0x955e4ec64b44e864,
    0x84ec3c97da624ab4, 0xbd5af13bef0b113e, 0xa6274bbdd0fadd61, 0xecb1ad8aeacdd58e,
    0xcfb11ead453994ba, 0x67de18eda5814af2, 0x81ceb32c4b43fcf4, 0x80eacf948770ced7,
    0xa2425ff75e14fc31, 0xa1258379a94d028d, 0xcad2f7f5359a3b3e, 0x096ee45813a04330,
    0xfd87b5f28300ca0d, 0x8bca9d6e188853fc, 0x9e74d1b791e07e48, 0x775ea264cf55347e,
    0xc612062576589dda, 0x95364afe032a819e, 0xf79687aed3eec551, 0x3a83ddbd83f52205,
    0x9abe14cd44753b52, 0xc4926a9672793543, 0xc16d9a0095928a27, 0x75b7053c0f178294,
    0xf1c90080baf72cb1, 0x5324c68b12dd6339, 0x971da05074da7bee, 0xd3f6fc16ebca5e04,
    0xbce5086492111aea, 0x88f4bb1ca6bcf585, 0xec1e4a7db69561a5, 0x2b31e9e3d06c32e6,
    0x9392ee8e921d5d07, 0x3aff322e62439fd0, 0xb877aa3236a4b449, 0x09befeb9fad487c3,
    0xe69594bec44de15b, 0x4c2ebe687989a9b4, 0x901d7cf73ab0acd9, 0x0f9d37014bf60a11,
    0xb424dc35095cd80f, 0x538484c19ef38c95, 0xe12e13424bb40e13, 0x2865a5f206b06fba,
    0x8cbccc096f5088cb, 0xf93f87b7442e45d4, 0xafebff0bcb24aafe, 0xf78f69a51539d749,
    0xdbe6fecebdedd5be, 0xb573440e5a884d1c, 0x89705f4136b4a597, 0x31680a88f8953031,
    0xabcc77118461cefc, 0xfdc20d2b36ba7c3e, 0xd6bf94d5e57a42bc, 0x3d32907604691b4d,
    0x8637bd05af6c69b5, 0xa63f9a49c2c1b110, 0xa7c5ac471b478423, 0x0fcf80dc33721d54,
    0xd1b71758e219652b, 0xd3c36113404ea4a9, 0x83126e978d4fdf3b, 0x645a1cac083126ea,
    0xa3d70a3d70a3d70a, 0x3d70a3d70a3d70a4, 0xcccccccccccccccc, 0xcccccccccccccccd,
    0x8000000000000000, 0x0000000000000000, 0xa000000000000000, 0x0000000000000000,
    0xc800000000000000, 0x0000000000000000, 0xfa00000000000000, 0x0000000000000000,
    0x9c40000000000000, 0x0000000000000000, 0xc350000000000000, 0x0000000000000000,
    0xf424000000000000, 0x0000000000000000, 0x9896800000000000, 0x0000000000000000,
    0xbebc200000000000, 0x0000000000000000, 0xee6b280000000000, 0x0000000000000000,
    0x9502f90000000000, 0x0000000000000000, 0xba43b74000000000, 0x0000000000000000,
    0xe8d4a51000000000, 0x0000000000000000, 0x9184e72a00000000, 0x0000000000000000,
    0xb5e620f480000000, 0x0000000000000000, 0xe35fa931a0000000, 0x0000000000000000,
    0x8e1bc9bf04000000, 0x0000000000000000, 0xb1a2bc2ec5000000, 0x0000000000000000,
    0xde0b6b3a76400000, 0x0000000000000000, 0x8ac7230489e80000, 0x0000000000000000,
    0xad78ebc5ac620000, 0x0000000000000000, 0xd8d726b7177a8000, 0x0000000000000000,
    0x878678326eac9000, 0x0000000000000000, 0xa968163f0a57b400, 0x0000000000000000,
    0xd3c21bcecceda100, 0x0000000000000000, 0x84595161401484a0, 0x0000000000000000,
    0xa56fa5b99019a5c8, 0x0000000000000000, 0xcecb8f27f4200f3a, 0x0000000000000000,
    0x813f3978f8940984, 0x4000000000000000, 0xa18f07d736b90be5, 0x5000000000000000,
    0xc9f2c9cd04674ede, 0xa400000000000000, 0xfc6f7c4045812296, 0x4d00000000000000,
    0x9dc5ada82b70b59d, 0xf020000000000000, 0xc5371912364ce305, 0x6c28000000000000,
    0xf684df56c3e01bc6, 0xc732000000000000, 0x9a130b963a6c115c, 0x3c7f400000000000,
    0xc097ce7bc90715b3, 0x4b9f100000000000, 0xf0bdc21abb48db20, 0x1e86d40000000000,
    0x96769950b50d88f4, 0x1314448000000000, 0xbc143fa4e250eb31, 0x17d955a000000000,
    0xeb194f8e1ae525fd, 0x5dcfab0800000000, 0x92efd1b8d0cf37be, 0x5aa1cae500000000,
    0xb7abc627050305ad, 0xf14a3d9e40000000, 0xe596b7b0c643c719, 0x6d9ccd05d0000000,
    0x8f7e32ce7bea5c6f, 0xe4820023a2000000, 0xb35dbf821ae4f38b, 0xdda2802c8a800000,
    0xe0352f62a19e306e, 0xd50b2037ad200000, 0x8c213d9da502de45, 0x4526f422cc340000,
    0xaf298d050e4395d6, 0x9670b12b7f410000, 0xdaf3f04651d47b4c, 0x3c0cdd765f114000,
    0x88d8762bf324cd0f, 0xa5880a69fb6ac800, 0xab0e93b6efee0053, 0x8eea0d047a457a00,
    0xd5d238a4abe98068, 0x72a4904598d6d880, 0x85a36366eb71f041, 0x47a6da2b7f864750,
    0xa70c3c40a64e6c51, 0x999090b65f67d924, 0xd0cf4b50cfe20765, 0xfff4b4e3f741cf6d,
    0x82818f1281ed449f, 0xbff8f10e7a8921a4, 0xa321f2d7226895c7, 0xaff72d52192b6a0d,
    0xcbea6f8ceb02bb39, 0x9bf4f8a69f764490, 0xfee50b7025c36a08, 0x02f236d04753d5b4,
    0x9f4f2726179a2245, 0x01d762422c946590, 0xc722f0ef9d80aad6, 0x424d3ad2b7b97ef5,
    0xf8ebad2b84e0d58b, 0xd2e0898765a7deb2, 0x9b934c3b330c8577, 0x63cc55f49f88eb2f,
    0xc2781f49ffcfa6d5, 0x3cbf6b71c76b25fb, 0xf316271c7fc3908a, 0x8bef464e3945ef7a,
    0x97edd871cfda3a56, 0x97758bf0e3cbb5ac, 0xbde94e8e43d0c8ec, 0x3d52eeed1cbea317,
    0xed63a231d4c4fb27, 0x4ca7aaa863ee4bdd, 0x945e455f24fb1cf8, 0x8fe8caa93e74ef6a,
    0xb975d6b6ee39e436, 0xb3e2fd538e122b44, 0xe7d34c64a9c85d44, 0x60dbbca87196b616,
    0x90e40fbeea1d3a4a, 0xbc8955e946fe31cd, 0xb51d13aea4a488dd, 0x6babab6398bdbe41,
    0xe264589a4dcdab14, 0xc696963c7eed2dd1, 0x8d7eb76070a08aec, 0xfc1e1de5cf543ca2,
    0xb0de65388cc8ada8, 0x3b25a55f43294bcb, 0xdd15fe86affad912, 0x49ef0eb713f39ebe,
    0x8a2dbf142dfcc7ab, 0x6e3569326c784337, 0xacb92ed9397bf996, 0x49c2c37f07965404,
    0xd7e77a8f87daf7fb, 0xdc33745ec97be906, 0x86f0ac99b4e8dafd, 0x69a028bb3ded71a3,
    0xa8acd7c0222311bc, 0xc40832ea0d68ce0c, 0xd2d80db02aabd62b, 0xf50a3fa490c30190,
    0x83c7088e1aab65db, 0x792667c6da79e0fa, 0xa4b8cab1a1563f52, 0x577001b891185938,
    0xcde6fd5e09abcf26, 0xed4c0226b55e6f86, 0x80b05e5ac60b6178, 0x544f8158315b05b4,
    0xa0dc75f1778e39d6, 0x696361ae3db1c721, 0xc913936dd571c84c, 0x03bc3a19cd1e38e9,
    0xfb5878494ace3a5f, 0x04ab48a04065c723, 0x9d174b2dcec0e47b, 0x62eb0d64283f9c76,
    0xc45d1df942711d9a, 0x3ba5d0bd324f8394, 0xf5746577930d6500, 0xca8f44ec7ee36479,
    0x9968bf6abbe85f20, 0x7e998b13cf4e1ecb, 0xbfc2ef456ae276e8, 0x9e3fedd8c321a67e,
    0xefb3ab16c59b14a2, 0xc5cfe94ef3ea101e, 0x95d04aee3b80ece5, 0xbba1f1d158724a12,
    0xbb445da9ca61281f, 0x2a8a6e45ae8edc97, 0xea1575143cf97226, 0xf52d09d71a3293bd,
    0x924d692ca61be758, 0x593c2626705f9c56, 0xb6e0c377cfa2e12e, 0x6f8b2fb00c77836c,
    0xe498f455c38b997a, 0x0b6dfb9c0f956447, 0x8edf98b59a373fec, 0x4724bd4189bd5eac,
    0xb2977ee300c50fe7, 0x58edec91ec2cb657, 0xdf3d5e9bc0f653e1, 0x2f2967b66737e3ed,
    0x8b865b215899f46c, 0xbd79e0d20082ee74, 0xae67f1e9aec07187, 0xecd8590680a3aa11,
    0xda01ee641a708de9, 0xe80e6f4820cc9495, 0x884134fe908658b2, 0x3109058d147fdcdd,
    0xaa51823e34a7eede, 0xbd4b46f0599fd415, 0xd4e5e2cdc1d1ea96, 0x6c9e18ac7007c91a,
    0x850fadc09923329e, 0x03e2cf6bc604ddb0, 0xa6539930bf6bff45, 0x84db8346b786151c,
    0xcfe87f7cef46ff16, 0xe612641865679a63, 0x81f14fae158c5f6e, 0x4fcb7e8f3f60c07e,
    0xa26da3999aef7749, 0xe3be5e330f38f09d, 0xcb090c8001ab551c, 0x5cadf5bfd3072cc5,
    0xfdcb4fa002162a63, 0x73d9732fc7c8f7f6, 0x9e9f11c4014dda7e, 0x2867e7fddcdd9afa,
    0xc646d63501a1511d, 0xb281e1fd541501b8, 0xf7d88bc24209a565, 0x1f225a7ca91a4226,
    0x9ae757596946075f, 0x3375788de9b06958, 0xc1a12d2fc3978937, 0x0052d6b1641c83ae,
    0xf209787bb47d6b84, 0xc0678c5dbd23a49a, 0x9745eb4d50ce6332, 0xf840b7ba963646e0,
    0xbd176620a501fbff, 0xb650e5a93bc3d898, 0xec5d3fa8ce427aff, 0xa3e51f138ab4cebe,
    0x93ba47c980e98cdf, 0xc66f336c36b10137, 0xb8a8d9bbe123f017, 0xb80b0047445d4184,
    0xe6d3102ad96cec1d, 0xa60dc059157491e5, 0x9043ea1ac7e41392, 0x87c89837ad68db2f,
    0xb454e4a179dd1877, 0x29babe4598c311fb, 0xe16a1dc9d8545e94, 0xf4296dd6fef3d67a,
    0x8ce2529e2734bb1d, 0x1899e4a65f58660c, 0xb01ae745b101e9e4, 0x5ec05dcff72e7f8f,
    0xdc21a1171d42645d, 0x76707543f4fa1f73, 0x899504ae72497eba, 0x6a06494a791c53a8,
    0xabfa45da0edbde69, 0x0487db9d17636892, 0xd6f8d7509292d603, 0x45a9d2845d3c42b6,
    0x865b86925b9bc5c2, 0x0b8a2392ba45a9b2, 0xa7f26836f282b732, 0x8e6cac7768d7141e,
    0xd1ef0244af2364ff, 0x3207d795430cd926, 0x8335616aed761f1f, 0x7f44e6bd49e807b8,
    0xa402b9c5a8d3a6e7, 0x5f16206c9c6209a6, 0xcd036837130890a1, 0x36dba887c37a8c0f,
    0x802221226be55a64, 0xc2494954da2c9789, 0xa02aa96b06deb0fd, 0xf2db9baa10b7bd6c,
    0xc83553c5c8965d3d, 0x6f92829494e5acc7, 0xfa42a8b73abbf48c, 0xcb772339ba1f17f9,
    0x9c69a97284b578d7, 0xff2a760414536efb, 0xc38413cf25e2d70d, 0xfef5138519684aba,
    0xf46518c2ef5b8cd1, 0x7eb258665fc25d69, 0x98bf2f79d5993802, 0xef2f773ffbd97a61,
    0xbeeefb584aff8603, 0xaafb550ffacfd8fa, 0xeeaaba2e5dbf6784, 0x95ba2a53f983cf38,
    0x952ab45cfa97a0b2, 0xdd945a747bf26183, 0xba756174393d88df, 0x94f971119aeef9e4,
    0xe912b9d1478ceb17, 0x7a37cd5601aab85d, 0x91abb422ccb812ee, 0xac62e055c10ab33a,
    0xb616a12b7fe617aa, 0x577b986b314d6009, 0xe39c49765fdf9d94, 0xed5a7e85fda0b80b,
    0x8e41ade9fbebc27d, 0x14588f13be847307, 0xb1d219647ae6b31c, 0x596eb2d8ae258fc8,
    0xde469fbd99a05fe3, 0x6fca5f8ed9aef3bb, 0x8aec23d680043bee, 0x25de7bb9480d5854,
    0xada72ccc20054ae9, 0xaf561aa79a10ae6a, 0xd910f7ff28069da4, 0x1b2ba1518094da04,
    0x87aa9aff79042286, 0x90fb44d2f05d0842, 0xa99541bf57452b28, 0x353a1607ac744a53,
    0xd3fa922f2d1675f2, 0x42889b8997915ce8, 0x847c9b5d7c2e09b7, 0x69956135febada11,
    0xa59bc234db398c25, 0x43fab9837e699095, 0xcf02b2c21207ef2e, 0x94f967e45e03f4bb,
    0x8161afb94b44f57d, 0x1d1be0eebac278f5, 0xa1ba1ba79e1632dc, 0x6462d92a69731732,
    0xca28a291859bbf93, 0x7d7b8f7503cfdcfe, 0xfcb2cb35e702af78, 0x5cda735244c3d43e,
    0x9defbf01b061adab, 0x3a0888136afa64a7, 0xc56baec21c7a1916, 0x088aaa1845b8fdd0,
    0xf6c69a72a3989f5b, 0x8aad549e57273d45, 0x9a3c2087a63f6399, 0x36ac54e2f678864b,
    0xc0cb28a98fcf3c7f, 0x84576a1bb416a7dd, 0xf0fdf2d3f3c30b9f, 0x656d44a2a11c51d5,
    0x969eb7c47859e743, 0x9f644ae5a4b1b325, 0xbc4665b596706114, 0x873d5d9f0dde1fee,
    0xeb57ff22fc0c7959, 0xa90cb506d155a7ea, 0x9316ff75dd87cbd8, 0x09a7f12442d588f2,
    0xb7dcbf5354e9bece, 0x0c11ed6d538aeb2f, 0xe5d3ef282a242e81, 0x8f1668c8a86da5fa,
    0x8fa475791a569d10, 0xf96e017d694487bc, 0xb38d92d760ec4455, 0x37c981dcc395a9ac,
    0xe070f78d3927556a, 0x85bbe253f47b1417, 0x8c469ab843b89562, 0x93956d7478ccec8e,
    0xaf58416654a6babb, 0x387ac8d1970027b2, 0xdb2e51bfe9d0696a, 0x06997b05fcc0319e,
    0x88fcf317f22241e2, 0x441fece3bdf81f03, 0xab3c2fddeeaad25a, 0xd527e81cad7626c3,
    0xd60b3bd56a5586f1, 0x8a71e223d8d3b074, 0x85c7056562757456, 0xf6872d5667844e49,
    0xa738c6bebb12d16c, 0xb428f8ac016561db, 0xd106f86e69d785c7, 0xe13336d701beba52,
    0x82a45b450226b39c, 0xecc0024661173473, 0xa34d721642b06084, 0x27f002d7f95d0190,
    0xcc20ce9bd35c78a5, 0x31ec038df7b441f4, 0xff290242c83396ce, 0x7e67047175a15271,
    0x9f79a169bd203e41, 0x0f0062c6e984d386, 0xc75809c42c684dd1, 0x52c07b78a3e60868,
    0xf92e0c3537826145, 0xa7709a56ccdf8a82, 0x9bbcc7a142b17ccb, 0x88a66076400bb691,
    0xc2abf989935ddbfe, 0x6acff893d00ea435, 0xf356f7ebf83552fe, 0x0583f6b8c4124d43,
    0x98165af37b2153de, 0xc3727a337a8b704a, 0xbe1bf1b059e9a8d6, 0x744f18c0592e4c5c,
    0xeda2ee1c7064130c, 0x1162def06f79df73, 0x9485d4d1c63e8be7, 0x8addcb5645ac2ba8,
    0xb9a74a0637ce2ee1, 0x6d953e2bd7173692, 0xe8111c87c5c1ba99, 0xc8fa8db6ccdd0437,
    0x910ab1d4db9914a0, 0x1d9c9892400a22a2, 0xb54d5e4a127f59c8, 0x2503beb6d00cab4b,
    0xe2a0b5dc971f303a, 0x2e44ae64840fd61d, 0x8da471a9de737e24, 0x5ceaecfed289e5d2,
    0xb10d8e1456105dad, 0x7425a83e872c5f47, 0xdd50f1996b947518, 0xd12f124e28f77719,
    0x8a5296ffe33cc92f, 0x82bd6b70d99aaa6f, 0xace73cbfdc0bfb7b, 0x636cc64d1001550b,
    0xd8210befd30efa5a, 0x3c47f7e05401aa4e, 0x8714a775e3e95c78, 0x65acfaec34810a71,
    0xa8d9d1535ce3b396, 0x7f1839a741a14d0d, 0xd31045a8341ca07c, 0x1ede48111209a050,
    0x83ea2b892091e44d, 0x934aed0aab460432, 0xa4e4b66b68b65d60, 0xf81da84d5617853f,
    0xce1de40642e3f4b9, 0x36251260ab9d668e, 0x80d2ae83e9ce78f3, 0xc1d72b7c6b426019,
    0xa1075a24e4421730, 0xb24cf65b8612f81f, 0xc94930ae1d529cfc, 0xdee033f26797b627,
    0xfb9b7cd9a4a7443c, 0x169840ef017da3b1, 0x9d412e0806e88aa5, 0x8e1f289560ee864e,
    0xc491798a08a2ad4e, 0xf1a6f2bab92a27e2, 0xf5b5d7ec8acb58a2, 0xae10af696774b1db,
    0x9991a6f3d6bf1765, 0xacca6da1e0a8ef29, 0xbff610b0cc6edd3f, 0x17fd090a58d32af3,
    0xeff394dcff8a948e, 0xddfc4b4cef07f5b0, 0x95f83d0a1fb69cd9, 0x4abdaf101564f98e,
    0xbb764c4ca7a4440f, 0x9d6d1ad41abe37f1, 0xea53df5fd18d5513, 0x84c86189216dc5ed,
    0x92746b9be2f8552c, 0x32fd3cf5b4e49bb4, 0xb7118682dbb66a77, 0x3fbc8c33221dc2a1,
    0xe4d5e82392a40515, 0x0fabaf3feaa5334a, 0x8f05b1163ba6832d, 0x29cb4d87f2a7400e,
    0xb2c71d5bca9023f8, 0x743e20e9ef511012, 0xdf78e4b2bd342cf6, 0x914da9246b255416,
    0x8bab8eefb6409c1a, 0x1ad089b6c2f7548e, 0xae9672aba3d0c320, 0xa184ac2473b529b1,
    0xda3c0f568cc4f3e8, 0xc9e5d72d90a2741e, 0x8865899617fb1871, 0x7e2fa67c7a658892,
    0xaa7eebfb9df9de8d, 0xddbb901b98feeab7, 0xd51ea6fa85785631, 0x552a74227f3ea565,
    0x8533285c936b35de, 0xd53a88958f87275f, 0xa67ff273b8460356, 0x8a892abaf368f137,
    0xd01fef10a657842c, 0x2d2b7569b0432d85, 0x8213f56a67f6b29b, 0x9c3b29620e29fc73,
    0xa298f2c501f45f42, 0x8349f3ba91b47b8f, 0xcb3f2f7642717713, 0x241c70a936219a73,
    0xfe0efb53d30dd4d7, 0xed238cd383aa0110, 0x9ec95d1463e8a506, 0xf4363804324a40aa,
    0xc67bb4597ce2ce48, 0xb143c6053edcd0d5, 0xf81aa16fdc1b81da, 0xdd94b7868e94050a,
    0x9b10a4e5e9913128, 0xca7cf2b4191c8326, 0xc1d4ce1f63f57d72, 0xfd1c2f611f63a3f0,
    0xf24a01a73cf2dccf, 0xbc633b39673c8cec, 0x976e41088617ca01, 0xd5be0503e085d813,
    0xbd49d14aa79dbc82, 0x4b2d8644d8a74e18, 0xec9c459d51852ba2, 0xddf8e7d60ed1219e,
    0x93e1ab8252f33b45, 0xcabb90e5c942b503, 0xb8da1662e7b00a17, 0x3d6a751f3b936243,
    0xe7109bfba19c0c9d, 0x0cc512670a783ad4, 0x906a617d450187e2, 0x27fb2b80668b24c5,
    0xb484f9dc9641e9da, 0xb1f9f660802dedf6, 0xe1a63853bbd26451, 0x5e7873f8a0396973,
    0x8d07e33455637eb2, 0xdb0b487b6423e1e8, 0xb049dc016abc5e5f, 0x91ce1a9a3d2cda62,
    0xdc5c5301c56b75f7, 0x7641a140cc7810fb, 0x89b9b3e11b6329ba, 0xa9e904c87fcb0a9d,
    0xac2820d9623bf429, 0x546345fa9fbdcd44, 0xd732290fbacaf133, 0xa97c177947ad4095,
    0x867f59a9d4bed6c0, 0x49ed8eabcccc485d, 0xa81f301449ee8c70, 0x5c68f256bfff5a74,
    0xd226fc195c6a2f8c, 0x73832eec6fff3111, 0x83585d8fd9c25db7, 0xc831fd53c5ff7eab,
    0xa42e74f3d032f525, 0xba3e7ca8b77f5e55, 0xcd3a1230c43fb26f, 0x28ce1bd2e55f35eb,
    0x80444b5e7aa7cf85, 0x7980d163cf5b81b3, 0xa0555e361951c366, 0xd7e105bcc332621f,
    0xc86ab5c39fa63440, 0x8dd9472bf3fefaa7, 0xfa856334878fc150, 0xb14f98f6f0feb951,
    0x9c935e00d4b9d8d2, 0x6ed1bf9a569f33d3, 0xc3b8358109e84f07, 0x0a862f80ec4700c8,
    0xf4a642e14c6262c8, 0xcd27bb612758c0fa, 0x98e7e9cccfbd7dbd, 0x8038d51cb897789c,
    0xbf21e44003acdd2c, 0xe0470a63e6bd56c3, 0xeeea5d5004981478, 0x1858ccfce06cac74,
    0x95527a5202df0ccb, 0x0f37801e0c43ebc8, 0xbaa718e68396cffd, 0xd30560258f54e6ba,
    0xe950df20247c83fd, 0x47c6b82ef32a2069, 0x91d28b7416cdd27e, 0x4cdc331d57fa5441,
    0xb6472e511c81471d, 0xe0133fe4adf8e952, 0xe3d8f9e563a198e5, 0x58180fddd97723a6,
    0x8e679c2f5e44ff8f, 0x570f09eaa7ea7648,
};

#if defined(__SIZEOF_INT128__)
__extension__ typedef unsigned __int128 yhc__u128;
#endif

/* The 128-bit product a * b: returns the high word, stores the low one. */
static uint64_t yhc__mul64(uint64_t a, uint64_t b, uint64_t *lo) {
#if defined(__SIZEOF_INT128__)
  yhc__u128 p = (yhc__u128)a * b;
  *lo = (uint64_t)p;
  return (uint64_t)(p >> 64);
#else
  uint64_t al = a & 0xffffffffu, ah = a >> 32, bl = b & 0xffffffffu, bh = b >> 32;
  uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
  uint64_t mid = (ll >> 32) + (lh & 0xffffffffu) + (hl & 0xffffffffu);
  *lo = (mid << 32) | (ll & 0xffffffffu);
  return hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
#endif
}

static int yhc__clz64(uint64_t x) { /* x != 0 */
#if defined(__GNUC__)
  return __builtin_clzll(x);
#else
  int n = 0;
  for (; !(x >> 63); x <<= 1) n++;
  return n;
#endif
}

/* Eisel-Lemire: the double nearest to m * 10^q (m > 0), as IEEE bits. Multiplying the
   normalised m by a 128-bit 5^q gives the top 55 bits of the product exactly except when the
   bits below them are all ones, where the low word decides; a result exactly halfway between
   two doubles can only come from small q and is rounded to even here. Returns 0 in the one
   case the truncated power cannot decide (the caller then asks the slow path). */
static int yhc__json_eisel_lemire(uint64_t m, long long q, uint64_t *bits) {
  const uint64_t *t;
  uint64_t hi, lo, hi2, lo2, mant;
  long long p2;
  int lz, upper, shift;
  if (q < -342) { /* below 2^64 * 10^-343: under half the smallest subnormal */
    *bits = 0;
    return 1;
  }
  if (q > 308) {
    *bits = UINT64_C(0x7ff) << 52;
    return 1;
  }
  lz = yhc__clz64(m);
  m <<= lz;
  t = yhc__json_pow5 + 2 * (q + 342);
  hi = yhc__mul64(m, t[0], &lo);
  if ((hi & 0x1ff) == 0x1ff) { /* the 9 bits below the 55 kept are all ones: refine */
    hi2 = yhc__mul64(m, t[1], &lo2);
    lo += hi2;
    if (lo < hi2) hi++;
  }
  if (lo == UINT64_MAX && (q < -27 || q > 55)) return 0;
  upper = (int)(hi >> 63);
  shift = upper + 9;
  mant = hi >> shift;
  /* floor(q * log2(10)) + 63 via a fixed-point multiply, exact for |q| <= 1500; the bias
     keeps the shifted value non-negative (q >= -342 here) */
  p2 = ((q * 217706 + (2048LL << 16)) >> 16) - 2048 + 63 + upper - lz + 1023;
  if (p2 <= 0) { /* subnormal: shift down, round; no halfway case reaches here */
    if (1 - p2 >= 64) {
      *bits = 0;
      return 1;
    }
    mant >>= 1 - p2;
    mant += mant & 1;
    mant >>= 1;
    /* rounding up to 2^52 makes it the smallest normal: the same bits */
    *bits = mant;
    return 1;
  }
  if (lo <= 1 && q >= -4 && q <= 23 && (mant & 3) == 1 && (mant << shift) == hi)
    mant &= ~(uint64_t)1; /* exactly halfway: round to even (down) */
  mant += mant & 1;
  mant >>= 1;
  if (mant >= UINT64_C(2) << 52) {
    mant = UINT64_C(1) << 52;
    p2++;
  }
  if (p2 >= 0x7ff) {
    *bits = UINT64_C(0x7ff) << 52;
    return 1;
  }
  *bits = (mant & ((UINT64_C(1) << 52) - 1)) | (uint64_t)p2 << 52;
  return 1;
}

/* The common case of the above inline: q in range, the first product decides, a normal
   result that is not halfway; everything else goes to the whole function. */
static YHC__INLINE int yhc__json_eisel_lemire_fast(uint64_t m, long long q, uint64_t *bits) {
  uint64_t hi, lo, mant;
  long long p2;
  int lz, upper;
  if ((unsigned long long)(q + 342) > 650) return yhc__json_eisel_lemire(m, q, bits);
  lz = yhc__clz64(m);
  hi = yhc__mul64(m << lz, yhc__json_pow5[2 * (q + 342)], &lo);
  /* 9 ones below the kept bits, or a low word of all ones, 0 or 1 (halfway candidates) */
  if (YHC__UNLIKELY((hi & 0x1ff) == 0x1ff || lo + 1 <= 2)) return yhc__json_eisel_lemire(m, q, bits);
  upper = (int)(hi >> 63);
  mant = hi >> (upper + 9);
  p2 = ((q * 217706 + (2048LL << 16)) >> 16) - 2048 + 63 + upper - lz + 1023;
  if (YHC__UNLIKELY(p2 <= 0 || p2 >= 0x7fe)) return yhc__json_eisel_lemire(m, q, bits);
  mant = (mant + (mant & 1)) >> 1;
  if (mant >= UINT64_C(2) << 52) {
    mant = UINT64_C(1) << 52;
    p2++;
  }
  *bits = (mant & ((UINT64_C(1) << 52) - 1)) | (uint64_t)p2 << 52;
  return 1;
}

static double yhc__bits_to_double(uint64_t bits, int neg) {
  double r;
  bits |= (uint64_t)(neg != 0) << 63;
  memcpy(&r, &bits, sizeof r);
  return r;
}

/* The double nearest to m * 10^q (any m, q) when it is decided fast: Clinger's exact
   one-operation case first, then Eisel-Lemire. Returns 0 when the slow path must decide. */
static YHC__INLINE int yhc__json_fast_double(uint64_t m, long long q, int neg, double *out) {
  uint64_t bits;
  double r;
  if (!m) {
    *out = neg ? -0.0 : 0.0;
    return 1;
  }
  if (m <= (UINT64_C(1) << 53) && q >= -22 && q <= 22) {
    r = (double)m;
    r = q < 0 ? r / yhc__json_pow10[-q] : r * yhc__json_pow10[q];
    *out = neg ? -r : r;
    return 1;
  }
  if (!yhc__json_eisel_lemire_fast(m, q, &bits)) return 0;
  *out = yhc__bits_to_double(bits, neg);
  return 1;
}

/* The slow path: strtod() over "<digits>e<exp>", no decimal point, so the locale cannot
   matter. 780 kept digits plus a nonzero sticky digit decide the rounding the same way all
   digits would (a halfway point between two doubles has fewer than 770 significant digits). */
static double yhc__json_slow_double(const char *s, size_t len, const yhc__json_dec *dp) {
  yhc__json_dec d = *dp;
  char buf[800];
  size_t k = 0, i;
  long long e;
  int sticky = 0;
  if (d.neg) buf[k++] = '-';
  e = d.exp_raw;
  for (i = 0; i < len; i++) { /* digits from the first nonzero one to the end */
    unsigned c = (unsigned char)s[i];
    if (c == 'e' || c == 'E') break;
    if (c - '0' >= 10u || (c == '0' && k == (size_t)d.neg)) continue;
    if (k < 781 + (size_t)d.neg) {
      buf[k++] = (char)c;
    } else {
      sticky |= c != '0';
      e++;
    }
  }
  if (sticky) {
    buf[k++] = '1';
    e--;
  }
  if (e > 99999) e = 99999; /* 781 digits times 10^99999 is infinite either way */
  if (e < -99999) e = -99999;
  buf[k++] = 'e';
  snprintf(buf + k, sizeof buf - k, "%lld", e);
  return strtod(buf, NULL);
}

/* The value of eight ASCII digits, the first in the low byte (a zero byte counts as a 0
   digit): the low nibbles make pairs, then quads, then the whole, each step one multiply. */
static YHC__INLINE uint64_t yhc__json_eight_value(uint64_t v) {
  v = ((v & UINT64_C(0x0F0F0F0F0F0F0F0F)) * 2561) >> 8;
  v = ((v & UINT64_C(0x00FF00FF00FF00FF)) * 6553601) >> 16;
  return ((v & UINT64_C(0x0000FFFF0000FFFF)) * UINT64_C(42949672960001)) >> 32;
}

/* The value of the k digits at p (1 <= k <= 19). Up to 3 one at a time (the integer part of
   most decimals: no multiply), up to 16 from one or two words (the first shifted so that the
   bytes after its digits fall out and zero bytes come in ahead of them; the two words are
   independent), more in a loop. Reads up to 7 bytes past the digits. */
static YHC__INLINE uint64_t yhc__json_digits_value(const char *p, size_t k) {
  uint64_t v;
  size_t head;
  if (k <= 3) {
    const unsigned char *u = YHC__CAST(const unsigned char *, YHC__CAST(const void *, p));
    v = (uint64_t)u[0] - '0';
    if (k > 1) v = v * 10 + u[1] - '0';
    if (k > 2) v = v * 10 + u[2] - '0';
    return v;
  }
  if (k <= 8) return yhc__json_eight_value(yhc__load_le64(p) << (64 - 8 * k));
  if (k <= 16)
    return yhc__json_eight_value(yhc__load_le64(p) << (128 - 8 * k)) * 100000000u +
           yhc__json_eight_value(yhc__load_le64(p + k - 8));
  head = k - 16;
  v = yhc__json_eight_value(yhc__load_le64(p) << (64 - 8 * head));
  for (p += head, k = 16; k; p += 8, k -= 8) v = v * 100000000u + yhc__json_eight_value(yhc__load_le64(p));
  return v;
}

/* m for validated number text with nint integer and nfrac fraction digits (nint + nfrac <=
   19) starting at p (after any sign): the value of its digits. Reads up to 7 bytes past them. */
static YHC__INLINE uint64_t yhc__json_shaped_digits(const char *p, size_t nint, size_t nfrac) {
  uint64_t v = yhc__json_digits_value(p, nint);
  if (nfrac) v = v * yhc__json_p10u[nfrac] + yhc__json_digits_value(p + nint + 1, nfrac);
  return v;
}

/* Correctly rounded text -> double. Up to 19 significant digits the fast paths decide
   exactly; with more, the first 19 (m) bound the value to [m, m + 1) * 10^q, and when both
   ends round to the same double so does the value. Whatever is left goes to strtod().
   `padded`: the 7 bytes after the text may be read (text inside a parsed document); short
   text that is not is copied to a padded buffer first. */
static double yhc__json_text_to_double(const char *s, size_t len, int padded) {
  yhc__json_dec d;
  uint64_t lo, hi;
  long long q;
  size_t nint, nfrac = 0, neg1 = *s == '-';
  double r;
  char tmp[72];
  if (!padded && len <= 64) {
    memcpy(tmp, s, len);
    memset(tmp + len, 0, 8);
    s = tmp;
    padded = 1;
  }
  if (padded) {
    size_t mlen;
    nint = yhc__json_digit_count(s + neg1);
    if (neg1 + nint < len && s[neg1 + nint] == '.') nfrac = yhc__json_digit_count(s + neg1 + nint + 1);
    mlen = neg1 + nint + (nfrac ? nfrac + 1 : 0);
    if (nint + nfrac <= 19 && mlen <= len) {
      q = -(long long)nfrac;
      if (mlen < len) { /* the exponent: 'e', a sign perhaps, digits */
        const char *x = s + mlen + 1;
        int eneg = *x == '-';
        x += *x == '-' || *x == '+';
        q += eneg ? -yhc__json_exp_value(x, s + len) : yhc__json_exp_value(x, s + len);
      }
      if (yhc__json_fast_double(yhc__json_shaped_digits(s + neg1, nint, nfrac), q, (int)neg1, &r)) return r;
    }
  }
  yhc__json_decompose(s, len, &d);
  if (d.ndig <= 19) {
    if (yhc__json_fast_double(d.mant, d.exp10, d.neg, &r)) return r;
  } else if (yhc__json_eisel_lemire(d.mant, d.exp10, &lo) && yhc__json_eisel_lemire(d.mant + 1, d.exp10, &hi) &&
             lo == hi) {
    return yhc__bits_to_double(lo, d.neg);
  }
  return yhc__json_slow_double(s, len, &d);
}

YHCDEF double yhc_json_num(const yhc_json *v, double def) {
  uint64_t m;
  double r;
  int neg;
  if (!v || YHC__JSON_TYPE(v) != YHC_JSON_NUMBER) return def;
  if (v->tag & YHC__JSON_SHAPE) { /* the parser counted the digits; the NUL pad follows */
    neg = *v->u.s == '-';
    m = yhc__json_shaped_digits(v->u.s + neg, YHC__JSON_NINT(v), YHC__JSON_NFRAC(v));
    if (yhc__json_fast_double(m, YHC__JSON_EXP10(v) - (long long)YHC__JSON_NFRAC(v), neg, &r)) return r;
  }
  return yhc__json_text_to_double(v->u.s, yhc__json_number_len(v), 1);
}

/* ---- writer */

static void yhc__jw_fail(yhc_jw *w, yhc_err code) {
  if (!w->err) w->err = (int)code;
}

static void yhc__jw_put(yhc_jw *w, const char *s, size_t n) {
  if (!w->err && yhc_buf_append(w->out, s, n)) yhc__jw_fail(w, YHC_ERR_NOMEM);
}

/* Writes the separator a new value needs and checks that a value may go here at all.
   Returns 0 when the caller should write the value. */
static int yhc__jw_pre_value(yhc_jw *w) {
  int d = w->depth;
  if (w->err) return -1;
  if (w->in_object[d]) {
    if (!w->after_key) { /* an object wants a key first */
      yhc__jw_fail(w, YHC_ERR_INVALID);
      return -1;
    }
    w->after_key = 0;
    return 0;
  }
  if (w->need_comma[d]) {
    if (!d) { /* a second top-level value */
      yhc__jw_fail(w, YHC_ERR_INVALID);
      return -1;
    }
    yhc__jw_put(w, ",", 1);
  }
  w->need_comma[d] = 1;
  return w->err ? -1 : 0;
}

/* Escapes s into the output: runs of bytes that need nothing are appended in one go. */
static void yhc__jw_string(yhc_jw *w, const char *str, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = YHC__CAST(const unsigned char *, YHC__CAST(const void *, str));
  size_t i = 0, run, k;
  char esc[6];
  if (w->err) return;
  if (yhc_buf_reserve(w->out, len + 2)) {
    yhc__jw_fail(w, YHC_ERR_NOMEM);
    return;
  }
  yhc__jw_put(w, "\"", 1);
  while (i < len) {
    run = i;
    for (;;) {
      while (i < len && yhc__json_plain[s[i]]) i++;
      if (i < len && s[i] >= 0x80) {
        k = yhc__json_utf8(s + i, len - i);
        if (!k) {
          yhc__jw_fail(w, YHC_ERR_JSON);
          return;
        }
        i += k;
        continue;
      }
      break;
    }
    if (i > run) yhc__jw_put(w, str + run, i - run);
    if (i == len) break;
    esc[0] = '\\';
    switch (s[i]) {
      case '"': esc[1] = '"'; k = 2; break;
      case '\\': esc[1] = '\\'; k = 2; break;
      case '\b': esc[1] = 'b'; k = 2; break;
      case '\f': esc[1] = 'f'; k = 2; break;
      case '\n': esc[1] = 'n'; k = 2; break;
      case '\r': esc[1] = 'r'; k = 2; break;
      case '\t': esc[1] = 't'; k = 2; break;
      default:
        esc[1] = 'u';
        esc[2] = '0';
        esc[3] = '0';
        esc[4] = hex[s[i] >> 4];
        esc[5] = hex[s[i] & 15];
        k = 6;
    }
    yhc__jw_put(w, esc, k);
    i++;
  }
  yhc__jw_put(w, "\"", 1);
}

YHCDEF void yhc_jw_init(yhc_jw *w, yhc_buf *out) {
  memset(w, 0, sizeof *w);
  w->out = out;
  if (!out) w->err = YHC_ERR_INVALID;
}

static void yhc__jw_open(yhc_jw *w, int object) {
  if (yhc__jw_pre_value(w)) return;
  if (w->depth >= YHC_JW_MAX_DEPTH) {
    yhc__jw_fail(w, YHC_ERR_LIMIT);
    return;
  }
  yhc__jw_put(w, object ? "{" : "[", 1);
  w->depth++;
  w->need_comma[w->depth] = 0;
  w->in_object[w->depth] = (unsigned char)object;
}

static void yhc__jw_close(yhc_jw *w, int object) {
  if (w->err) return;
  if (!w->depth || w->in_object[w->depth] != object || w->after_key) {
    yhc__jw_fail(w, YHC_ERR_INVALID);
    return;
  }
  yhc__jw_put(w, object ? "}" : "]", 1);
  w->depth--;
}

YHCDEF void yhc_jw_obj_begin(yhc_jw *w) { yhc__jw_open(w, 1); }
YHCDEF void yhc_jw_obj_end(yhc_jw *w) { yhc__jw_close(w, 1); }
YHCDEF void yhc_jw_arr_begin(yhc_jw *w) { yhc__jw_open(w, 0); }
YHCDEF void yhc_jw_arr_end(yhc_jw *w) { yhc__jw_close(w, 0); }

YHCDEF void yhc_jw_keyn(yhc_jw *w, const char *key, size_t len) {
  if (w->err) return;
  if (!w->in_object[w->depth] || w->after_key || (!key && len)) {
    yhc__jw_fail(w, YHC_ERR_INVALID);
    return;
  }
  if (w->need_comma[w->depth]) yhc__jw_put(w, ",", 1);
  w->need_comma[w->depth] = 1;
  yhc__jw_string(w, key ? key : "", len);
  yhc__jw_put(w, ":", 1);
  w->after_key = 1;
}

YHCDEF void yhc_jw_key(yhc_jw *w, const char *key) {
  if (!key) {
    yhc__jw_fail(w, YHC_ERR_INVALID);
    return;
  }
  yhc_jw_keyn(w, key, strlen(key));
}

YHCDEF void yhc_jw_strn(yhc_jw *w, const char *s, size_t len) {
  if (!s && len) {
    yhc__jw_fail(w, YHC_ERR_INVALID);
    return;
  }
  if (yhc__jw_pre_value(w)) return;
  yhc__jw_string(w, s ? s : "", len);
}

YHCDEF void yhc_jw_str(yhc_jw *w, const char *s) {
  if (!s) {
    yhc__jw_fail(w, YHC_ERR_INVALID);
    return;
  }
  yhc_jw_strn(w, s, strlen(s));
}

YHCDEF void yhc_jw_int(yhc_jw *w, int64_t v) {
  char buf[24], *p = buf + sizeof buf;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v; /* INT64_MIN safe */
  if (yhc__jw_pre_value(w)) return;
  do {
    *--p = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) *--p = '-';
  yhc__jw_put(w, p, (size_t)(buf + sizeof buf - p));
}

/* The 17 significant digits of |v| (finite, nonzero) correctly rounded, and the power of ten
   of the first one, from printf's exact %e. The locale only changes the point, which is
   skipped; every other byte of %e here is a digit, the 'e' or a sign. */
static uint64_t yhc__jw_digits17(double v, int *exp10) {
  char tmp[48];
  uint64_t m = 0;
  int n = snprintf(tmp, sizeof tmp, "%.16e", v < 0 ? -v : v), i, e = 0, eneg = 0;
  for (i = 0; i < n && tmp[i] != 'e'; i++)
    if (tmp[i] >= '0' && tmp[i] <= '9') m = m * 10 + (uint64_t)(tmp[i] - '0');
  for (i++; i < n; i++) {
    if (tmp[i] == '-') eneg = 1;
    if (tmp[i] >= '0' && tmp[i] <= '9') e = e * 10 + (tmp[i] - '0');
  }
  *exp10 = eneg ? -e : e;
  return m;
}

/* Among the p-digit decimals next to |v| (d17 is |v| to 17 digits, t its first p digits),
   the one reading back as |v| that is nearest to d17, or 0. The p-digit neighbours of the
   exact value are t and t + 1, or t - 1 and t when the 17-digit rounding carried into the
   first p digits (d17 then ends in zeros). Returns the digits; *q gets their scale. */
static uint64_t yhc__jw_try_digits(double av, uint64_t d17, int e17, int p, long long *q) {
  uint64_t unit = yhc__json_p10u[17 - p], t = d17 / unit, best = 0, best_dist = 0, c, dist;
  int k;
  *q = (long long)e17 - (p - 1);
  for (k = d17 % unit == 0 ? -1 : 0; k <= 1; k++) {
    double back;
    c = k < 0 ? t - 1 : t + (uint64_t)k;
    if (!c || !yhc__json_fast_double(c, *q, 0, &back)) continue;
    if (back != av) continue;
    dist = c * unit > d17 ? c * unit - d17 : d17 - c * unit;
    if (!best || dist < best_dist) {
      best = c;
      best_dist = dist;
    }
  }
  return best;
}

/* Shortest digits reading back as |v| (finite, nonzero), nearest to v among those: the
   fewest digits p for which a p-digit neighbour of v reads back (having one at p means one at
   every longer p, so a binary search finds the least). 17 correctly rounded digits always
   read back and are the nearest 17-digit text. */
static uint64_t yhc__jw_shortest(double v, long long *q) {
  double av = v < 0 ? -v : v;
  int e17, lo = 1, hi = 17, mid;
  uint64_t d17 = yhc__jw_digits17(av, &e17), best = d17, c;
  long long cq;
  *q = (long long)e17 - 16;
  while (lo < hi) {
    mid = (lo + hi) / 2;
    c = yhc__jw_try_digits(av, d17, e17, mid, &cq);
    if (c) {
      best = c;
      *q = cq;
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  while (best % 10 == 0) {
    best /= 10;
    ++*q;
  }
  return best;
}

/* JSON text of a finite double in ECMAScript's Number-to-String layout: plain digits while
   the point is within 21 places of the first digit and no more than 6 zeros follow it, else
   d.ddde+-x. Never printf, so no locale. */
static size_t yhc__jw_fmt_double(char *out, double v) {
  char dig[24];
  size_t k = 0;
  int n = 0, i, pt;
  long long q;
  uint64_t m;
  if (v < 0 || (v == 0 && 1 / v < 0)) out[k++] = '-';
  if (v == 0) {
    out[k++] = '0';
    return k;
  }
  m = yhc__jw_shortest(v, &q);
  for (; m; m /= 10) dig[n++] = (char)('0' + m % 10);
  for (i = 0; i < n / 2; i++) {
    char c = dig[i];
    dig[i] = dig[n - 1 - i];
    dig[n - 1 - i] = c;
  }
  pt = n + (int)q; /* digits before the point */
  if (pt >= n && pt <= 21) {
    memcpy(out + k, dig, (size_t)n);
    k += (size_t)n;
    for (i = n; i < pt; i++) out[k++] = '0';
  } else if (pt > 0 && pt <= 21) {
    memcpy(out + k, dig, (size_t)pt);
    k += (size_t)pt;
    out[k++] = '.';
    memcpy(out + k, dig + pt, (size_t)(n - pt));
    k += (size_t)(n - pt);
  } else if (pt > -6 && pt <= 0) {
    out[k++] = '0';
    out[k++] = '.';
    for (i = pt; i < 0; i++) out[k++] = '0';
    memcpy(out + k, dig, (size_t)n);
    k += (size_t)n;
  } else {
    int e = pt - 1, ae = e < 0 ? -e : e;
    out[k++] = dig[0];
    if (n > 1) {
      out[k++] = '.';
      memcpy(out + k, dig + 1, (size_t)(n - 1));
      k += (size_t)(n - 1);
    }
    out[k++] = 'e';
    out[k++] = e < 0 ? '-' : '+';
    if (ae >= 100) out[k++] = (char)('0' + ae / 100);
    if (ae >= 10) out[k++] = (char)('0' + ae / 10 % 10);
    out[k++] = (char)('0' + ae % 10);
  }
  return k;
}

YHCDEF void yhc_jw_num(yhc_jw *w, double v) {
  char buf[40];
  if (w->err) return;
  if (!(v - v == 0)) { /* NaN and the infinities: JSON has no such numbers */
    yhc__jw_fail(w, YHC_ERR_JSON);
    return;
  }
  if (yhc__jw_pre_value(w)) return;
  yhc__jw_put(w, buf, yhc__jw_fmt_double(buf, v));
}

YHCDEF void yhc_jw_bool(yhc_jw *w, int v) {
  if (yhc__jw_pre_value(w)) return;
  if (v)
    yhc__jw_put(w, "true", 4);
  else
    yhc__jw_put(w, "false", 5);
}

YHCDEF void yhc_jw_null(yhc_jw *w) {
  if (yhc__jw_pre_value(w)) return;
  yhc__jw_put(w, "null", 4);
}

YHCDEF void yhc_jw_raw(yhc_jw *w, const char *json, size_t len) {
  if (!json && len) {
    yhc__jw_fail(w, YHC_ERR_INVALID);
    return;
  }
  if (yhc__jw_pre_value(w)) return;
  yhc__jw_put(w, json ? json : "", len);
}

static void yhc__jw_scalar(yhc_jw *w, const yhc_json *v) {
  switch (YHC__JSON_TYPE(v)) {
    case YHC_JSON_STRING: yhc__jw_string(w, v->u.s, YHC__JSON_LEN(v)); break;
    case YHC_JSON_NUMBER: yhc__jw_put(w, v->u.s, yhc__json_number_len(v)); break; /* exact text */
    case YHC_JSON_BOOL:
      if (v->tag & YHC__JSON_FLAG)
        yhc__jw_put(w, "true", 4);
      else
        yhc__jw_put(w, "false", 5);
      break;
    default: yhc__jw_put(w, "null", 4); break;
  }
}

/* Walks the subtree in node order. The open containers are kept on a stack of their own
   (growing on the heap past 64), so a parsed document of any depth copies without recursion
   and without counting against YHC_JW_MAX_DEPTH. */
YHCDEF void yhc_jw_value(yhc_jw *w, const yhc_json *v) {
  const yhc_json *local[64], **stk = local, **grown;
  size_t sp = 0, cap = 64;
  unsigned t;
  if (!v) {
    yhc__jw_fail(w, YHC_ERR_INVALID);
    return;
  }
  if (yhc__jw_pre_value(w)) return;
  for (;;) {
    if (sp && (v->tag & YHC__JSON_MEMBER)) {
      yhc__jw_string(w, v[-1].u.s, YHC__JSON_LEN(&v[-1]));
      yhc__jw_put(w, ":", 1);
    }
    t = YHC__JSON_TYPE(v);
    if (t == YHC_JSON_ARRAY || t == YHC_JSON_OBJECT) {
      yhc__jw_put(w, t == YHC_JSON_OBJECT ? "{" : "[", 1);
      if (YHC__JSON_LEN(v)) {
        if (sp == cap) {
          if (cap > SIZE_MAX / 2 / sizeof *stk) {
            yhc__jw_fail(w, YHC_ERR_NOMEM);
            break;
          }
          grown = YHC__CAST(const yhc_json **,
                            stk == local ? YHC_MALLOC(2 * cap * sizeof *stk)
                                         : YHC_REALLOC(YHC__CAST(void *, stk), 2 * cap * sizeof *stk));
          if (!grown) {
            yhc__jw_fail(w, YHC_ERR_NOMEM);
            break;
          }
          if (stk == local) memcpy(YHC__CAST(void *, grown), local, sizeof local);
          stk = grown;
          cap *= 2;
        }
        stk[sp++] = v;
        v = yhc_json_first(v);
        continue;
      }
      yhc__jw_put(w, t == YHC_JSON_OBJECT ? "}" : "]", 1);
    } else {
      yhc__jw_scalar(w, v);
    }
    /* v is complete: close every container it was the last child of */
    while (sp && (v->tag & YHC__JSON_LAST)) {
      v = stk[--sp];
      yhc__jw_put(w, YHC__JSON_TYPE(v) == YHC_JSON_OBJECT ? "}" : "]", 1);
    }
    if (!sp || w->err) break;
    yhc__jw_put(w, ",", 1);
    v = yhc_json_next(v);
  }
  if (stk != local) YHC_FREE(YHC__CAST(void *, stk));
}

YHCDEF int yhc_jw_finish(yhc_jw *w) {
  if (w->err) return w->err;
  if (w->depth || !w->need_comma[0]) return YHC_ERR_INVALID; /* unclosed, or nothing written */
  return 0;
}
/* ==== Sockets, watchers and timers =============================================== */
/* Owns: the loop object's registries (fd watchers, a timer heap, the clock, logging),
   non-blocking TCP sockets, and the byte-stream interface that HTTP runs over. Knows nothing
   of HTTP. poll() itself is called only by the poll() loop layer further down, so a user
   who brings their own event loop drives exactly the same code.

   Why a stream interface: the same HTTP connection code talks to a plain TCP socket, a TLS
   session, or a yagna VPN tunnel (a WebSocket carrying raw TCP bytes). Streams are pull-based
   (the owner reads into its own buffer when told the stream is readable) so the plain TCP
   path copies bytes exactly once, from the kernel into the parser's buffer. */

/* -- timers: an intrusive binary min-heap; objects embed their timer, so starting and
   stopping never allocates and stopping is O(log n). */
typedef void (*yhc__timer_fn)(void *ctx);
typedef struct yhc__timer {
  uint64_t due;
  uint64_t seq;  /* FIFO among equal due times */
  yhc__timer_fn fn;
  void *ctx;
  size_t slot;   /* index in the heap + 1; 0 = not armed */
} yhc__timer;

/* -- fd watchers */
typedef void (*yhc__io_fn)(void *ctx, int revents);
typedef struct yhc__watch {
  int fd;
  short events;
  yhc__io_fn fn;
  void *ctx;
  uint64_t born; /* generation it was added in: revents polled before that belong to a
                    socket that used the same fd earlier, never to this one */
  yhc_loop *loop; /* so a change of events can be told to a tier-3 user */
} yhc__watch;

typedef struct yhc__pubtimer {
  yhc__timer t;
  uint64_t id;
  yhc_timer_fn fn;
  void *user;
  yhc_loop *loop;
  struct yhc__pubtimer *prev, *next;
} yhc__pubtimer;

struct yhc_loop {
  yhc_clock_fn clock;
  void *clock_user;
  yhc_log_fn log;
  void *log_user;
  yhc_log_level log_level;
  /* watchers: indexed by fd for O(1) dispatch of poll() results */
  yhc__watch **by_fd;
  int by_fd_cap;
  int nwatch;
  uint64_t watch_gen; /* bumped by every watch added */
  uint64_t fds_gen;   /* watch_gen when yhc_loop_fds last listed the fds */
  /* timers */
  yhc__timer **heap;
  size_t nheap, capheap;
  uint64_t timer_seq;
  yhc__pubtimer *pubtimers;
  uint64_t next_pub_id;
  /* scratch for tier 1 */
  struct pollfd *pfd;
  int pfd_cap;
  /* tier 1's epoll set (-1 until the first yhc_loop_poll; -2 when it failed and poll() is
     used), what it holds per fd (sized by_fd_cap) and the fds whose watch changed since */
  int ep;
  unsigned char *ep_held; /* events registered, plus YHC__EP_IN / YHC__EP_DIRTY */
  int *ep_dirty;
  int ep_ndirty;
  /* name resolution: the config (strings copied) and the resolver built from it on first use */
  yhc_resolver_desc rdesc;
  char *rdesc_copy[4];
  struct yhc__resolver *resolver;
  /* wakeup: an eventfd (wake_rd == wake_wr) or a self-pipe, watched in every tier */
  int wake_rd, wake_wr;
  yhc__watch wake;
  int wake_pending; /* the loop thread's own wakeup write is not yet drained */
  /* tier 3: what the user was told per fd (sized by_fd_cap), the fds to tell again */
  yhc_socket_fn on_socket;
  yhc_timeout_fn on_timeout;
  void *t3_user;
  unsigned char *t3_told; /* events told, plus YHC__T3_DIRTY / YHC__T3_ZOMBIE */
  void **t3_data;         /* the user's pointer per fd */
  int *t3_dirty;          /* fds whose told state may differ from the watch */
  int t3_ndirty;
  int t3_depth;           /* inside action/timeout/dispatch: changes are told at the end */
  int t3_flushing;
  uint64_t t3_due;        /* the deadline last told (UINT64_MAX = none) */
  /* yhc_loop_poll/dispatch frames under way: a loop destroyed from a callback (a session
     with a loop of its own destroyed there) is freed when the outermost one returns */
  int busy;
  int doomed;
};

/* Tier 3 bookkeeping lives beside the watchers it follows; the callbacks themselves run only
   from the poll() loop layer's flush. Told events use poll() bits, which fit in the low bits
   (POLLIN 1, POLLOUT 4). */
enum { YHC__T3_EVENTS = POLLIN | POLLOUT, YHC__T3_DIRTY = 0x40, YHC__T3_ZOMBIE = 0x80 };

static void yhc__wake_signal(int fd) {
  /* 8 bytes for an eventfd, any byte for a pipe; a full pipe already wakes the reader */
  uint64_t one = 1;
  ssize_t n = write(fd, &one, sizeof one);
  (void)n;
}

/* fd's watch changed: remember to tell the user; outside a dispatch, wake their loop so it
   calls yhc_loop_action() and hears of it from there. */
static void yhc__t3_mark(yhc_loop *loop, int fd) {
  if (!loop->on_socket || fd < 0 || fd >= loop->by_fd_cap) return;
  if (!(loop->t3_told[fd] & YHC__T3_DIRTY)) {
    loop->t3_told[fd] |= YHC__T3_DIRTY;
    loop->t3_dirty[loop->t3_ndirty++] = fd;
  }
  if (!loop->t3_depth && !loop->wake_pending) {
    loop->wake_pending = 1;
    yhc__wake_signal(loop->wake_wr);
  }
}

/* A new timer came before the deadline the user was told: the same as a changed fd. */
static void yhc__t3_timer_armed(yhc_loop *loop, uint64_t due) {
  if (!loop->on_socket || due >= loop->t3_due || loop->t3_depth || loop->wake_pending) return;
  loop->wake_pending = 1;
  yhc__wake_signal(loop->wake_wr);
}

static uint64_t yhc__monotonic_ms(void *user) {
  struct timespec ts;
  (void)user;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

YHCDEF uint64_t yhc_loop_now(yhc_loop *loop) { return loop->clock(loop->clock_user); }

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4), unused))
#endif
static void yhc__log(yhc_loop *loop, yhc_log_level level, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  if (!loop || !loop->log || level > loop->log_level) return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  loop->log(loop->log_user, level, msg);
}

/* The resolver config outlives the caller's strings: each one is copied into the loop. */
static int yhc__loop_copy_resolver_desc(yhc_loop *loop, const yhc_resolver_desc *d) {
  const char **fields[4];
  int i;
  loop->rdesc = *d;
  fields[0] = &loop->rdesc.nameservers;
  fields[1] = &loop->rdesc.search;
  fields[2] = &loop->rdesc.resolv_conf;
  fields[3] = &loop->rdesc.hosts_file;
  for (i = 0; i < 4; i++) {
    if (!*fields[i]) continue;
    loop->rdesc_copy[i] = yhc__strdup(*fields[i]);
    if (!loop->rdesc_copy[i]) return -1;
    *fields[i] = loop->rdesc_copy[i];
  }
  return 0;
}

static void yhc__loop_free_resolver_desc(yhc_loop *loop) {
  int i;
  for (i = 0; i < 4; i++) YHC_FREE(loop->rdesc_copy[i]);
}

static int yhc__wake_open(yhc_loop *loop);

YHCDEF yhc_loop *yhc_loop_create(const yhc_loop_desc *desc) {
  yhc_loop *loop = YHC__NEW(yhc_loop);
  if (!loop) return NULL;
  loop->clock = yhc__monotonic_ms;
  loop->log_level = YHC_LOG_WARN;
  if (desc) {
    if (desc->clock) {
      loop->clock = desc->clock;
      loop->clock_user = desc->clock_user;
    }
    loop->log = desc->log;
    loop->log_user = desc->log_user;
    if (desc->log_level) loop->log_level = desc->log_level;
    if (yhc__loop_copy_resolver_desc(loop, &desc->resolver) < 0) {
      yhc__loop_free_resolver_desc(loop);
      YHC_FREE(loop);
      return NULL;
    }
  }
  loop->next_pub_id = 1;
  loop->t3_due = UINT64_MAX;
  loop->ep = YHC__EPOLL ? -1 : -2;
  if (yhc__wake_open(loop) < 0) {
    yhc__loop_free_resolver_desc(loop);
    YHC_FREE(loop);
    return NULL;
  }
  return loop;
}

/* ---- timer heap */

static int yhc__timer_less(const yhc__timer *a, const yhc__timer *b) {
  return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void yhc__heap_place(yhc_loop *loop, size_t i, yhc__timer *t) {
  loop->heap[i] = t;
  t->slot = i + 1;
}

static void yhc__heap_up(yhc_loop *loop, size_t i) {
  yhc__timer *t = loop->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!yhc__timer_less(t, loop->heap[parent])) break;
    yhc__heap_place(loop, i, loop->heap[parent]);
    i = parent;
  }
  yhc__heap_place(loop, i, t);
}

static void yhc__heap_down(yhc_loop *loop, size_t i) {
  yhc__timer *t = loop->heap[i];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    yhc__timer *best = t;
    if (l < loop->nheap && yhc__timer_less(loop->heap[l], best)) { m = l; best = loop->heap[l]; }
    if (r < loop->nheap && yhc__timer_less(loop->heap[r], best)) { m = r; best = loop->heap[r]; }
    if (m == i) break;
    yhc__heap_place(loop, i, best);
    i = m;
  }
  yhc__heap_place(loop, i, t);
}

static void yhc__timer_stop(yhc_loop *loop, yhc__timer *t) {
  size_t i;
  if (!t->slot) return;
  i = t->slot - 1;
  t->slot = 0;
  loop->nheap--;
  if (i == loop->nheap) return;
  yhc__heap_place(loop, i, loop->heap[loop->nheap]);
  yhc__heap_up(loop, i);
  yhc__heap_down(loop, loop->heap[i]->slot - 1);
}

/* Arms (or re-arms) `t` to fire `delay_ms` from now. Returns -1 only when out of memory. */
static int yhc__timer_start(yhc_loop *loop, yhc__timer *t, uint64_t delay_ms, yhc__timer_fn fn,
                            void *ctx) {
  yhc__timer_stop(loop, t);
  if (loop->nheap == loop->capheap) {
    size_t cap = loop->capheap ? loop->capheap * 2 : 64;
    yhc__timer **h = YHC__CAST(yhc__timer **, YHC_REALLOC(loop->heap, cap * sizeof *h));
    if (!h) return -1;
    loop->heap = h;
    loop->capheap = cap;
  }
  {
    uint64_t now = yhc_loop_now(loop);
    /* a huge delay means "never", not a sum that wraps to the past */
    t->due = delay_ms > UINT64_MAX - now ? UINT64_MAX : now + delay_ms;
  }
  t->seq = ++loop->timer_seq;
  t->fn = fn;
  t->ctx = ctx;
  yhc__heap_place(loop, loop->nheap++, t);
  yhc__heap_up(loop, loop->nheap - 1);
  yhc__t3_timer_armed(loop, t->due);
  return 0;
}

static int yhc__timer_armed(const yhc__timer *t) { return t->slot != 0; }

/* Milliseconds until the earliest timer, or -1 when none is armed. */
static int yhc__timers_wait(yhc_loop *loop) {
  uint64_t now, due;
  if (!loop->nheap) return -1;
  now = yhc_loop_now(loop);
  due = loop->heap[0]->due;
  if (due <= now) return 0;
  return due - now > INT_MAX ? INT_MAX : (int)(due - now);
}

/* Runs timers that are due. One armed while running with delay 0 runs in the same call, up
   to three rounds deep: a reply passes a couple of such hand-offs (connection -> cluster ->
   the user's callback, whose next request then leaves before the next poll()), while a
   callback that re-arms itself still cannot starve I/O. */
static int yhc__timers_run(yhc_loop *loop) {
  uint64_t now = yhc_loop_now(loop);
  int ran = 0, round;
  for (round = 0; round < 4; round++) {
    uint64_t last_seq = loop->timer_seq;
    int before = ran;
    while (!loop->doomed && loop->nheap && loop->heap[0]->due <= now && loop->heap[0]->seq <= last_seq) {
      yhc__timer *t = loop->heap[0];
      yhc__timer_stop(loop, t);
      t->fn(t->ctx);
      ran++;
    }
    if (ran == before || loop->doomed || !loop->nheap || loop->heap[0]->due > now) break;
  }
  return ran;
}

static void yhc__pubtimer_fire(void *ctx) {
  yhc__pubtimer *pt = YHC__CAST(yhc__pubtimer *, ctx);
  yhc_loop *loop = pt->loop;
  yhc_timer_fn fn = pt->fn;
  void *user = pt->user;
  if (pt->prev) pt->prev->next = pt->next; else loop->pubtimers = pt->next;
  if (pt->next) pt->next->prev = pt->prev;
  YHC_FREE(pt);
  fn(user);
}

YHCDEF uint64_t yhc_timer_add(yhc_loop *loop, uint64_t delay_ms, yhc_timer_fn fn, void *user) {
  yhc__pubtimer *pt = YHC__NEW(yhc__pubtimer);
  if (!pt) return 0;
  pt->id = loop->next_pub_id++;
  pt->fn = fn;
  pt->user = user;
  pt->loop = loop;
  if (yhc__timer_start(loop, &pt->t, delay_ms, yhc__pubtimer_fire, pt)) {
    YHC_FREE(pt);
    return 0;
  }
  pt->next = loop->pubtimers;
  if (pt->next) pt->next->prev = pt;
  loop->pubtimers = pt;
  return pt->id;
}

YHCDEF int yhc_timer_cancel(yhc_loop *loop, uint64_t id) {
  yhc__pubtimer *pt;
  for (pt = loop->pubtimers; pt; pt = pt->next) {
    if (pt->id != id) continue;
    yhc__timer_stop(loop, &pt->t);
    if (pt->prev) pt->prev->next = pt->next; else loop->pubtimers = pt->next;
    if (pt->next) pt->next->prev = pt->prev;
    YHC_FREE(pt);
    return 1;
  }
  return 0;
}

/* ---- fd watchers */

/* The tier-3 arrays follow by_fd's size, so marking an fd never allocates. */
static int yhc__t3_grow(yhc_loop *loop, int cap) {
  int old = loop->by_fd_cap;
  unsigned char *told = YHC__CAST(unsigned char *, YHC_REALLOC(loop->t3_told, (size_t)cap));
  void **data;
  int *dirty;
  if (!told) return -1;
  loop->t3_told = told;
  memset(told + old, 0, (size_t)(cap - old));
  data = YHC__CAST(void **, YHC_REALLOC(loop->t3_data, (size_t)cap * sizeof *data));
  if (!data) return -1;
  loop->t3_data = data;
  memset(data + old, 0, (size_t)(cap - old) * sizeof *data);
  dirty = YHC__CAST(int *, YHC_REALLOC(loop->t3_dirty, (size_t)cap * sizeof *dirty));
  if (!dirty) return -1;
  loop->t3_dirty = dirty;
  told = YHC__CAST(unsigned char *, YHC_REALLOC(loop->ep_held, (size_t)cap));
  if (!told) return -1;
  loop->ep_held = told;
  memset(told + old, 0, (size_t)(cap - old));
  dirty = YHC__CAST(int *, YHC_REALLOC(loop->ep_dirty, (size_t)cap * sizeof *dirty));
  if (!dirty) return -1;
  loop->ep_dirty = dirty;
  return 0;
}

static int yhc__watch_add(yhc_loop *loop, yhc__watch *w, int fd, yhc__io_fn fn, void *ctx) {
  if (fd < 0) return -1;
  if (fd >= loop->by_fd_cap) {
    int cap = loop->by_fd_cap ? loop->by_fd_cap : 64;
    yhc__watch **m;
    while (cap <= fd) cap *= 2;
    if (yhc__t3_grow(loop, cap) < 0) return -1;
    m = YHC__CAST(yhc__watch **, YHC_REALLOC(loop->by_fd, (size_t)cap * sizeof *m));
    if (!m) return -1;
    memset(m + loop->by_fd_cap, 0, (size_t)(cap - loop->by_fd_cap) * sizeof *m);
    loop->by_fd = m;
    loop->by_fd_cap = cap;
  }
  YHC_ASSERT(!loop->by_fd[fd]);
  w->fd = fd;
  w->events = 0;
  w->fn = fn;
  w->ctx = ctx;
  w->born = ++loop->watch_gen;
  w->loop = loop;
  loop->by_fd[fd] = w;
  loop->nwatch++;
  return 0;
}

/* ---- tier 1's epoll set: kept in step with the watches lazily, from a list of changed fds */

enum { YHC__EP_IN = 0x40, YHC__EP_DIRTY = 0x80 };

static void yhc__ep_mark(yhc_loop *loop, int fd) {
  if (loop->ep < 0 || fd < 0 || fd >= loop->by_fd_cap || (loop->ep_held[fd] & YHC__EP_DIRTY)) return;
  loop->ep_held[fd] |= YHC__EP_DIRTY;
  loop->ep_dirty[loop->ep_ndirty++] = fd;
}

/* The fd is about to be closed or handed back: it leaves the set now, while its number still
   names it. After close() the kernel keeps the registration for as long as another descriptor
   (a forked child's) shares the socket, and no later epoll_ctl could reach it. */
static void yhc__ep_forget(yhc_loop *loop, int fd) {
#if YHC__EPOLL
  if (loop->ep >= 0 && (loop->ep_held[fd] & YHC__EP_IN)) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    epoll_ctl(loop->ep, EPOLL_CTL_DEL, fd, &ev);
    loop->ep_held[fd] &= (unsigned char)~(YHC__EP_IN | YHC__T3_EVENTS);
  }
#else
  (void)loop;
  (void)fd;
#endif
}

static void yhc__watch_del(yhc_loop *loop, yhc__watch *w) {
  if (w->fd >= 0 && w->fd < loop->by_fd_cap && loop->by_fd[w->fd] == w) {
    loop->by_fd[w->fd] = NULL;
    loop->nwatch--;
    if (loop->on_socket && (loop->t3_told[w->fd] & YHC__T3_EVENTS)) yhc__t3_mark(loop, w->fd);
    yhc__ep_forget(loop, w->fd);
  }
  w->fd = -1;
}

/* Stops watching and closes the fd. Every watched fd is closed through here: a fd a tier-3
   user was told about stays open until they have been told to remove it (the flush closes
   it then), so its number cannot be reused while their loop still holds it. */
static void yhc__watch_close(yhc_loop *loop, yhc__watch *w) {
  int fd = w->fd;
  if (fd < 0) return;
  yhc__watch_del(loop, w);
  if (loop->on_socket && fd < loop->by_fd_cap && (loop->t3_told[fd] & YHC__T3_EVENTS)) {
    loop->t3_told[fd] |= YHC__T3_ZOMBIE;
    return;
  }
  close(fd);
}

static void yhc__watch_set(yhc__watch *w, int rd, int wr) {
  short ev = (short)((rd ? POLLIN : 0) | (wr ? POLLOUT : 0));
  if (ev == w->events) return;
  w->events = ev;
  if (!w->loop) return;
  if (w->loop->on_socket) yhc__t3_mark(w->loop, w->fd);
  yhc__ep_mark(w->loop, w->fd);
}

/* ---- wakeup */

static int yhc__set_nonblock(int fd);

static void yhc__wake_drain(void *ctx, int revents) {
  yhc_loop *loop = YHC__CAST(yhc_loop *, ctx);
  char buf[64];
  (void)revents;
  while (read(loop->wake_rd, buf, sizeof buf) > 0) {
  }
  loop->wake_pending = 0;
}

static int yhc__wake_open(yhc_loop *loop) {
  int fds[2];
#ifdef __linux__
  fds[0] = fds[1] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fds[0] < 0)
#endif
  {
    if (pipe(fds) < 0) return -1;
    if (yhc__set_nonblock(fds[0]) < 0 || yhc__set_nonblock(fds[1]) < 0) {
      close(fds[0]);
      close(fds[1]);
      return -1;
    }
  }
  loop->wake_rd = fds[0];
  loop->wake_wr = fds[1];
  if (yhc__watch_add(loop, &loop->wake, fds[0], yhc__wake_drain, loop) < 0) {
    close(fds[0]);
    if (fds[1] != fds[0]) close(fds[1]);
    return -1;
  }
  yhc__watch_set(&loop->wake, 1, 0);
  return 0;
}

YHCDEF int yhc_loop_wakeup(yhc_loop *loop) {
  uint64_t one = 1;
  /* only the fd, set before the loop was handed out: nothing another thread could race */
  if (write(loop->wake_wr, &one, sizeof one) < 0 && errno != EAGAIN) return -1;
  return 0;
}

/* ---- byte streams */

enum {
  YHC__EV_READ = 1,     /* bytes (or EOF) can be read */
  YHC__EV_WRITE = 2,    /* write() will accept bytes */
  YHC__EV_CONNECT = 4,  /* the stream is open end to end */
  YHC__EV_ERROR = 8     /* the stream failed; its err says why */
};
enum { YHC__AGAIN = -1, YHC__FAIL = -2 };

typedef struct yhc__stream yhc__stream;
typedef struct yhc__stream_vt {
  /* >0 bytes, 0 EOF, YHC__AGAIN, or YHC__FAIL (s->err set) */
  long (*read)(yhc__stream *s, void *buf, size_t cap);
  long (*write)(yhc__stream *s, const void *buf, size_t len);
  void (*want)(yhc__stream *s, int rd, int wr);
  void (*close)(yhc__stream *s); /* frees the stream; no events after this */
  /* 0 when an idle stream is known dead (the peer closed it, or sent bytes out of turn):
     checked before reusing a kept-alive connection, since the loop may not have turned
     since the peer's FIN arrived. NULL = assume alive. */
  int (*alive)(yhc__stream *s);
} yhc__stream_vt;

struct yhc__stream {
  const yhc__stream_vt *vt;
  void (*on_event)(void *owner, int ev);
  void *owner;
  yhc_error err;
};

static void yhc__stream_emit(yhc__stream *s, int ev) {
  if (s->on_event) s->on_event(s->owner, ev);
}

/* -- TCP */
#define YHC__MAX_ADDRS 16
typedef struct yhc__tcp {
  yhc__stream base;
  yhc_loop *loop;
  yhc__watch w;
  yhc_ip addrs[YHC__MAX_ADDRS]; /* tried in order until one connects */
  int naddrs, next_addr;
  int connected;
  /* a read came back short, so the socket was empty then: the next read waits for poll()
     to say otherwise instead of asking the kernel for an EAGAIN (one syscall per reply) */
  int drained;
  char host[256];
  int port;
  /* a name lookup still running for this stream: dropped if the stream closes first */
  void (*abandon)(void *ctx);
  void *abandon_ctx;
} yhc__tcp;

static void yhc__tcp_close_fd(yhc__tcp *t) { yhc__watch_close(t->loop, &t->w); }

static int yhc__set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL, 0);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
  return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static void yhc__tcp_io(void *ctx, int revents);

/* Fills a socket address for ip:port; returns its length. */
static socklen_t yhc__sockaddr_from_ip(const yhc_ip *ip, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (ip->family == 6) {
    struct sockaddr_in6 *s6 = YHC__PUN(struct sockaddr_in6 *, ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    memcpy(&s6->sin6_addr, ip->addr, 16);
    s6->sin6_scope_id = ip->scope_id;
    return (socklen_t)sizeof *s6;
  } else {
    struct sockaddr_in *s4 = YHC__PUN(struct sockaddr_in *, ss);
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    memcpy(&s4->sin_addr, ip->addr, 4);
    return (socklen_t)sizeof *s4;
  }
}

/* Starts a non-blocking connect to the next address. Returns 0 when one is under way. */
static int yhc__tcp_try_next(yhc__tcp *t) {
  int last_errno = ECONNREFUSED;
  while (t->next_addr < t->naddrs) {
    struct sockaddr_storage ss;
    const yhc_ip *a = &t->addrs[t->next_addr++];
    socklen_t sslen = yhc__sockaddr_from_ip(a, t->port, &ss);
    int fd, one = 1;
    fd = socket(a->family == 6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    if (fd < 0) { last_errno = errno; continue; }
    if (yhc__set_nonblock(fd) < 0) { last_errno = errno; close(fd); continue; }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef SO_NOSIGPIPE
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    if (connect(fd, YHC__PUN(struct sockaddr *, &ss), sslen) < 0 && errno != EINPROGRESS) {
      last_errno = errno;
      close(fd);
      continue;
    }
    if (yhc__watch_add(t->loop, &t->w, fd, yhc__tcp_io, t) < 0) {
      close(fd);
      yhc__error_set(&t->base.err, YHC_ERR_NOMEM, 0, "out of memory registering a socket");
      return -1;
    }
    yhc__watch_set(&t->w, 0, 1);
    return 0;
  }
  yhc__error_set(&t->base.err, YHC_ERR_CONNECT, 0, "cannot connect to %s port %d: %s", t->host,
                 t->port, strerror(last_errno));
  return -1;
}

static void yhc__tcp_io(void *ctx, int revents) {
  yhc__tcp *t = YHC__CAST(yhc__tcp *, ctx);
  if (!t->connected) {
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(t->w.fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) soerr = errno;
    if (soerr == 0 && (revents & (POLLOUT | POLLERR | POLLHUP)) == POLLOUT) {
      t->connected = 1;
      yhc__watch_set(&t->w, 0, 0);
      yhc__stream_emit(&t->base, YHC__EV_CONNECT);
      return;
    }
    if (soerr == 0 && !(revents & (POLLERR | POLLHUP))) return;
    yhc__tcp_close_fd(t);
    if (yhc__tcp_try_next(t) < 0) yhc__stream_emit(&t->base, YHC__EV_ERROR);
    return;
  }
  {
    int ev = 0;
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
      ev |= YHC__EV_READ;
      t->drained = 0;
    }
    if (revents & (POLLOUT | POLLERR)) ev |= YHC__EV_WRITE;
    if (ev) yhc__stream_emit(&t->base, ev);
  }
}

static long yhc__tcp_read(yhc__stream *s, void *buf, size_t cap) {
  yhc__tcp *t = YHC__PUN(yhc__tcp *, s);
  if (t->drained) return YHC__AGAIN;
  for (;;) {
    ssize_t n = recv(t->w.fd, buf, cap, 0);
    if (n >= 0) {
      t->drained = n > 0 && (size_t)n < cap;
      return (long)n;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return YHC__AGAIN;
    yhc__error_set(&s->err, errno == ECONNRESET ? YHC_ERR_CLOSED : YHC_ERR_IO, 0,
                   "receiving from %s port %d: %s", t->host, t->port, strerror(errno));
    return YHC__FAIL;
  }
}

static long yhc__tcp_write(yhc__stream *s, const void *buf, size_t len) {
  yhc__tcp *t = YHC__PUN(yhc__tcp *, s);
#ifdef MSG_NOSIGNAL
  int flags = MSG_NOSIGNAL;
#else
  int flags = 0;
#endif
  for (;;) {
    ssize_t n = send(t->w.fd, buf, len, flags);
    if (n >= 0) return (long)n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return YHC__AGAIN;
    yhc__error_set(&s->err, (errno == EPIPE || errno == ECONNRESET) ? YHC_ERR_CLOSED : YHC_ERR_IO,
                   0, "sending to %s port %d: %s", t->host, t->port, strerror(errno));
    return YHC__FAIL;
  }
}

static void yhc__tcp_want(yhc__stream *s, int rd, int wr) {
  yhc__tcp *t = YHC__PUN(yhc__tcp *, s);
  if (t->connected) yhc__watch_set(&t->w, rd, wr);
}

static void yhc__tcp_close(yhc__stream *s) {
  yhc__tcp *t = YHC__PUN(yhc__tcp *, s);
  if (t->abandon) t->abandon(t->abandon_ctx);
  yhc__tcp_close_fd(t);
  YHC_FREE(t);
}

static int yhc__tcp_alive(yhc__stream *s) {
  yhc__tcp *t = YHC__PUN(yhc__tcp *, s);
  char b;
  ssize_t n;
  if (t->w.fd < 0 || !t->connected) return 0;
  n = recv(t->w.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

static const yhc__stream_vt yhc__tcp_vt = {yhc__tcp_read, yhc__tcp_write, yhc__tcp_want,
                                           yhc__tcp_close, yhc__tcp_alive};

/* A TCP stream to host:port that has no address yet; yhc__tcp_connect() gives it some. */
static yhc__tcp *yhc__tcp_new(yhc_loop *loop, const char *host, int port) {
  yhc__tcp *t = YHC__NEW(yhc__tcp);
  if (!t) return NULL;
  t->base.vt = &yhc__tcp_vt;
  t->loop = loop;
  t->w.fd = -1;
  t->port = port;
  snprintf(t->host, sizeof t->host, "%s", host);
  return t;
}

/* Starts connecting to the first of `n` addresses (the rest are tried when one fails). The
   stream emits CONNECT or ERROR later; -1 = no address could even start (err says why). */
static int yhc__tcp_connect(yhc__tcp *t, const yhc_ip *addrs, size_t n) {
  if (n > YHC__MAX_ADDRS) n = YHC__MAX_ADDRS;
  if (n) memcpy(t->addrs, addrs, n * sizeof *addrs);
  t->naddrs = (int)n;
  t->next_addr = 0;
  return yhc__tcp_try_next(t);
}

/* ==== Name resolution: hosts, resolv.conf, DNS over UDP and TCP ================= */
/* Owns: the loop's resolver (config, hosts file, cache, lookups in flight), the DNS wire
   format, and yhc__tcp_open(), which names a host and connects once it has addresses. Uses
   only the sockets layer: the resolver's UDP and TCP sockets are ordinary loop watchers
   and its deadlines ordinary timers, so every tier of the loop sees them.

   Why not getaddrinfo: it blocks, so one slow nameserver stalls every connection on the
   loop, and an answer found inside the submitting call would run its callback there. Here
   an answer that needs the network always arrives from the loop; one known at once (a
   numeric host, localhost, the hosts file, the cache) connects at once without a round.

   Why the parser is strict: a DNS answer comes from the network unauthenticated, so it is
   accepted only if it echoes our random id and our question, every record fits the packet
   and the counts, and names decompress through pointers that only go backwards (which
   also rules out loops). Only the CNAME chain that starts at our question is followed. */

/* Entropy from the kernel (query ids, source ports, WebSocket keys and masks). */
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

/* ---- DNS wire format (RFC 1035): pure functions over bytes */

enum { YHC__DNS_A = 1, YHC__DNS_CNAME = 5, YHC__DNS_AAAA = 28, YHC__DNS_IN = 1 };
enum { YHC__DNS_NOERROR = 0, YHC__DNS_FORMERR = 1, YHC__DNS_SERVFAIL = 2, YHC__DNS_NXDOMAIN = 3 };
#define YHC__DNS_NAME_MAX 254 /* dotted text, NUL included (255 wire bytes) */
#define YHC__DNS_MAX_RECORDS 256
#define YHC__DNS_MAX_CNAMES 16

typedef struct yhc__dns_answer {
  int rcode;
  int truncated;              /* TC: ask again over TCP */
  size_t naddrs;
  yhc_ip addrs[YHC__MAX_ADDRS];
  uint32_t ttl;               /* the least TTL of the records used */
  int cnames;                 /* CNAME hops followed */
} yhc__dns_answer;

static unsigned yhc__get16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }
static uint32_t yhc__get32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Label bytes we accept: printable ASCII without '.', so the dotted text is unambiguous. */
static int yhc__dns_label_byte_ok(unsigned char c) { return c > 0x20 && c < 0x7f && c != '.'; }

/* Writes the query for `name` (dotted, an optional final dot) into out. Returns its length,
   or 0 when the name cannot be a DNS name or out is too small. */
static size_t yhc__dns_build_query(unsigned char *out, size_t cap, unsigned id, const char *name,
                                   unsigned qtype) {
  size_t pos = 12, nlen = strlen(name);
  const char *p = name, *end = name + nlen;
  if (nlen && name[nlen - 1] == '.') end--;
  if (end == name || (size_t)(end - name) > 253 || cap < 12 + (size_t)(end - name) + 2 + 4) return 0;
  memset(out, 0, 12);
  out[0] = (unsigned char)(id >> 8);
  out[1] = (unsigned char)id;
  out[2] = 0x01; /* RD: the server recurses for us */
  out[5] = 1;    /* one question */
  while (p < end) {
    const char *dot = p;
    while (dot < end && *dot != '.') dot++;
    if (dot == p || dot - p > 63) return 0;
    out[pos++] = (unsigned char)(dot - p);
    for (; p < dot; p++) {
      if (!yhc__dns_label_byte_ok((unsigned char)*p)) return 0;
      out[pos++] = (unsigned char)*p;
    }
    if (p < end) p++; /* the dot */
    if (p == end && end[-1] == '.') return 0; /* "a..": an empty last label */
  }
  out[pos++] = 0;
  out[pos++] = (unsigned char)(qtype >> 8);
  out[pos++] = (unsigned char)qtype;
  out[pos++] = 0;
  out[pos++] = YHC__DNS_IN;
  return pos;
}

/* Reads the (possibly compressed) name at *pos into out as lower-case dotted text ("" for
   the root) and moves *pos past it. Pointers must go strictly backwards, which bounds the
   walk and rules out loops. Returns 0, or -1 with err. */
static int yhc__dns_read_name(const unsigned char *p, size_t n, size_t *pos, char *out,
                              yhc_error *err) {
  size_t at = *pos, olen = 0, wire = 0;
  size_t floor = at; /* every pointer must land below this */
  int jumped = 0;
  for (;;) {
    unsigned len;
    if (at >= n) {
      yhc__error_set(err, YHC_ERR_PROTOCOL, at, "DNS name runs past the end of the packet");
      return -1;
    }
    len = p[at];
    if ((len & 0xc0) == 0xc0) {
      size_t target;
      if (at + 1 >= n) {
        yhc__error_set(err, YHC_ERR_PROTOCOL, at, "DNS compression pointer cut short");
        return -1;
      }
      target = (size_t)(len & 0x3f) << 8 | p[at + 1];
      if (target >= floor) {
        yhc__error_set(err, YHC_ERR_PROTOCOL, at, "DNS compression pointer does not point backwards");
        return -1;
      }
      if (!jumped) *pos = at + 2;
      jumped = 1;
      floor = target;
      at = target;
      continue;
    }
    if (len & 0xc0) {
      yhc__error_set(err, YHC_ERR_PROTOCOL, at, "DNS label type 0x%02x is not supported", len & 0xc0);
      return -1;
    }
    wire += len + 1;
    if (wire > 255) {
      yhc__error_set(err, YHC_ERR_PROTOCOL, at, "DNS name longer than 255 bytes");
      return -1;
    }
    if (len == 0) {
      if (!jumped) *pos = at + 1;
      out[olen] = 0;
      return 0;
    }
    if (at + 1 + len > n) {
      yhc__error_set(err, YHC_ERR_PROTOCOL, at, "DNS label runs past the end of the packet");
      return -1;
    }
    if (olen) out[olen++] = '.';
    {
      unsigned i;
      for (i = 0; i < len; i++) {
        unsigned char c = p[at + 1 + i];
        if (!yhc__dns_label_byte_ok(c)) {
          yhc__error_set(err, YHC_ERR_PROTOCOL, at + 1 + i, "DNS label holds byte 0x%02x", c);
          return -1;
        }
        out[olen++] = (char)yhc__lower(c);
      }
    }
    at += 1 + len;
  }
}

/* Compares a dotted name with an expected one, case-insensitively; a final dot on the
   expected name does not count. */
static int yhc__dns_name_eq(const char *got, const char *want) {
  size_t wl = strlen(want), gl = strlen(got), i;
  if (wl && want[wl - 1] == '.') wl--;
  if (gl && got[gl - 1] == '.') gl--;
  if (gl != wl) return 0;
  for (i = 0; i < wl; i++)
    if (yhc__lower((unsigned char)got[i]) != yhc__lower((unsigned char)want[i])) return 0;
  return 1;
}

typedef struct yhc__dns_rr {
  size_t owner;   /* offset of the owner name */
  unsigned type, klass;
  uint32_t ttl;
  size_t rdata, rdlen;
} yhc__dns_rr;

/* Reads one resource record's fixed part at *pos and checks that it fits. */
static int yhc__dns_read_rr(const unsigned char *p, size_t n, size_t *pos, yhc__dns_rr *rr,
                            char *scratch, yhc_error *err) {
  rr->owner = *pos;
  if (yhc__dns_read_name(p, n, pos, scratch, err) < 0) return -1;
  if (*pos + 10 > n) {
    yhc__error_set(err, YHC_ERR_PROTOCOL, *pos, "DNS record header cut short");
    return -1;
  }
  rr->type = yhc__get16(p + *pos);
  rr->klass = yhc__get16(p + *pos + 2);
  rr->ttl = yhc__get32(p + *pos + 4);
  if (rr->ttl > 0x7fffffffu) rr->ttl = 0; /* RFC 2181 8: a TTL with the top bit set is 0 */
  rr->rdlen = yhc__get16(p + *pos + 8);
  rr->rdata = *pos + 10;
  if (rr->rdata + rr->rdlen > n) {
    yhc__error_set(err, YHC_ERR_PROTOCOL, *pos, "DNS record data runs past the end of the packet");
    return -1;
  }
  *pos = rr->rdata + rr->rdlen;
  return 0;
}

/* Checks the header and the echoed question; leaves *pos after the question. */
static int yhc__dns_check_head(const unsigned char *p, size_t n, unsigned id, const char *qname,
                               unsigned qtype, yhc__dns_answer *out, size_t *pos, yhc_error *err) {
  char name[YHC__DNS_NAME_MAX];
  unsigned flags;
  if (n < 12) {
    yhc__error_set(err, YHC_ERR_PROTOCOL, 0, "DNS answer of %zu bytes is shorter than its header", n);
    return -1;
  }
  if (yhc__get16(p) != id) {
    yhc__error_set(err, YHC_ERR_PROTOCOL, 0, "DNS answer id %u is not ours (%u)", yhc__get16(p), id);
    return -1;
  }
  flags = yhc__get16(p + 2);
  if (!(flags & 0x8000) || (flags >> 11 & 0xf) != 0) {
    yhc__error_set(err, YHC_ERR_PROTOCOL, 2, "DNS packet is not an answer to a standard query");
    return -1;
  }
  out->rcode = (int)(flags & 0xf);
  out->truncated = (flags & 0x0200) != 0;
  if (yhc__get16(p + 4) != 1) {
    yhc__error_set(err, YHC_ERR_PROTOCOL, 4, "DNS answer carries %u questions, not ours",
                   yhc__get16(p + 4));
    return -1;
  }
  *pos = 12;
  if (yhc__dns_read_name(p, n, pos, name, err) < 0) return -1;
  if (*pos + 4 > n) {
    yhc__error_set(err, YHC_ERR_PROTOCOL, *pos, "DNS question cut short");
    return -1;
  }
  if (!yhc__dns_name_eq(name, qname) || yhc__get16(p + *pos) != qtype ||
      yhc__get16(p + *pos + 2) != YHC__DNS_IN) {
    yhc__error_set(err, YHC_ERR_PROTOCOL, 12, "DNS answer is for another question");
    return -1;
  }
  *pos += 4;
  return 0;
}

/* Follows the CNAME chain from qname through the answer records; leaves the chain's end in
   `cur`. Returns 0, or -1 with err (a chain too long, which includes a loop). */
static int yhc__dns_follow_cnames(const unsigned char *p, size_t n, const yhc__dns_rr *rrs,
                                  size_t nrr, char *cur, yhc__dns_answer *out, yhc_error *err) {
  char owner[YHC__DNS_NAME_MAX];
  for (;;) {
    size_t i, at;
    for (i = 0; i < nrr; i++) {
      if (rrs[i].type != YHC__DNS_CNAME || rrs[i].klass != YHC__DNS_IN) continue;
      at = rrs[i].owner;
      if (yhc__dns_read_name(p, n, &at, owner, err) < 0) return -1;
      if (yhc__dns_name_eq(owner, cur)) break;
    }
    if (i == nrr) return 0;
    if (++out->cnames > YHC__DNS_MAX_CNAMES) {
      yhc__error_set(err, YHC_ERR_PROTOCOL, rrs[i].owner, "DNS CNAME chain longer than %d",
                     YHC__DNS_MAX_CNAMES);
      return -1;
    }
    at = rrs[i].rdata;
    if (yhc__dns_read_name(p, n, &at, cur, err) < 0) return -1;
    if (at != rrs[i].rdata + rrs[i].rdlen) {
      yhc__error_set(err, YHC_ERR_PROTOCOL, rrs[i].rdata, "DNS CNAME data has bytes after the name");
      return -1;
    }
    if (rrs[i].ttl < out->ttl) out->ttl = rrs[i].ttl;
  }
}

/* Takes the addresses of type qtype owned by `name` (the end of the CNAME chain). */
static int yhc__dns_collect(const unsigned char *p, size_t n, const yhc__dns_rr *rrs, size_t nrr,
                            const char *name, unsigned qtype, yhc__dns_answer *out, yhc_error *err) {
  char owner[YHC__DNS_NAME_MAX];
  size_t i, want = qtype == YHC__DNS_A ? 4 : 16;
  for (i = 0; i < nrr; i++) {
    size_t at = rrs[i].owner;
    if (rrs[i].type != qtype || rrs[i].klass != YHC__DNS_IN) continue;
    if (rrs[i].rdlen != want) {
      yhc__error_set(err, YHC_ERR_PROTOCOL, rrs[i].rdata, "DNS %s record of %zu bytes",
                     qtype == YHC__DNS_A ? "A" : "AAAA", rrs[i].rdlen);
      return -1;
    }
    if (yhc__dns_read_name(p, n, &at, owner, err) < 0) return -1;
    if (!yhc__dns_name_eq(owner, name) || out->naddrs == YHC__MAX_ADDRS) continue;
    memset(&out->addrs[out->naddrs], 0, sizeof out->addrs[0]);
    out->addrs[out->naddrs].family = qtype == YHC__DNS_A ? 4 : 6;
    memcpy(out->addrs[out->naddrs].addr, p + rrs[i].rdata, want);
    out->naddrs++;
    if (rrs[i].ttl < out->ttl) out->ttl = rrs[i].ttl;
  }
  return 0;
}

/* Parses the answer to query (id, qname, qtype). Returns 0 with out filled (rcode,
   truncated, the addresses at the end of the CNAME chain and their least TTL), or -1 with
   err naming the first thing wrong and its offset. A truncated answer is not read past its
   question: it is asked again over TCP. */
static int yhc__dns_parse(const unsigned char *p, size_t n, unsigned id, const char *qname,
                          unsigned qtype, yhc__dns_answer *out, yhc_error *err) {
  yhc__dns_rr rrs[YHC__DNS_MAX_RECORDS];
  char scratch[YHC__DNS_NAME_MAX], cur[YHC__DNS_NAME_MAX];
  size_t pos, i, ancount, rest;
  memset(out, 0, sizeof *out);
  out->ttl = 0x7fffffffu;
  if (yhc__dns_check_head(p, n, id, qname, qtype, out, &pos, err) < 0) return -1;
  if (out->truncated) {
    out->ttl = 0;
    return 0;
  }
  ancount = yhc__get16(p + 6);
  rest = (size_t)yhc__get16(p + 8) + yhc__get16(p + 10);
  /* a record takes at least 11 bytes: counts that cannot fit are lies, refused up front */
  if ((ancount + rest) * 11 > n - pos) {
    yhc__error_set(err, YHC_ERR_PROTOCOL, 6, "DNS record counts (%zu, %zu) do not fit %zu bytes",
                   ancount, rest, n - pos);
    return -1;
  }
  if (ancount > YHC__DNS_MAX_RECORDS) {
    yhc__error_set(err, YHC_ERR_LIMIT, 6, "DNS answer has %zu records (limit %d)", ancount,
                   YHC__DNS_MAX_RECORDS);
    return -1;
  }
  for (i = 0; i < ancount; i++)
    if (yhc__dns_read_rr(p, n, &pos, &rrs[i], scratch, err) < 0) return -1;
  snprintf(cur, sizeof cur, "%s", qname);
  if (yhc__dns_follow_cnames(p, n, rrs, ancount, cur, out, err) < 0) return -1;
  if (yhc__dns_collect(p, n, rrs, ancount, cur, qtype, out, err) < 0) return -1;
  if (!out->naddrs) out->ttl = 0;
  return 0;
}

/* ---- resolv.conf and hosts: pure parsers over the file's text */

#define YHC__NS_MAX 3
#define YHC__SEARCH_MAX 6

typedef struct yhc__rconf {
  yhc_ip ns[YHC__NS_MAX];
  int ns_port[YHC__NS_MAX];
  int nns;
  char search[YHC__SEARCH_MAX][YHC__DNS_NAME_MAX];
  int nsearch;
  int ndots, timeout_ms, attempts;
} yhc__rconf;

/* Parses a numeric IPv4 or IPv6 address (an IPv6 zone "%eth0" or "%2" included). */
static int yhc__ip_parse(const char *s, yhc_ip *out) {
  struct addrinfo hints, *ai = NULL;
  int ok = -1;
  memset(&hints, 0, sizeof hints);
  hints.ai_flags = AI_NUMERICHOST;
  hints.ai_socktype = SOCK_STREAM;
  /* AI_NUMERICHOST never consults a resolver: this is a parse, never a lookup */
  if (getaddrinfo(s, NULL, &hints, &ai) != 0 || !ai) return -1;
  memset(out, 0, sizeof *out);
  if (ai->ai_family == AF_INET) {
    out->family = 4;
    memcpy(out->addr, &YHC__PUN(struct sockaddr_in *, ai->ai_addr)->sin_addr, 4);
    ok = 0;
  } else if (ai->ai_family == AF_INET6) {
    struct sockaddr_in6 *s6 = YHC__PUN(struct sockaddr_in6 *, ai->ai_addr);
    out->family = 6;
    memcpy(out->addr, &s6->sin6_addr, 16);
    out->scope_id = s6->sin6_scope_id;
    ok = 0;
  }
  freeaddrinfo(ai);
  return ok;
}

/* Copies the next whitespace-separated word of [*p, end) into out (cut to cap). */
static int yhc__next_word(const char **p, const char *end, char *out, size_t cap) {
  size_t n = 0;
  while (*p < end && (**p == ' ' || **p == '\t' || **p == '\r')) (*p)++;
  if (*p >= end) return 0;
  while (*p < end && **p != ' ' && **p != '\t' && **p != '\r') {
    if (n + 1 < cap) out[n++] = **p;
    (*p)++;
  }
  out[n] = 0;
  return 1;
}

/* "1.2.3.4", "1.2.3.4:53", "::1", "[::1]:53". Returns 0 and the port, or -1. */
static int yhc__parse_server(const char *s, yhc_ip *ip, int *port) {
  char host[80];
  const char *colon = strrchr(s, ':');
  *port = 53;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close || (size_t)(close - s - 1) >= sizeof host) return -1;
    memcpy(host, s + 1, (size_t)(close - s - 1));
    host[close - s - 1] = 0;
    if (close[1] == ':') *port = atoi(close + 2);
    else if (close[1]) return -1;
  } else if (colon && strchr(s, ':') == colon) { /* one colon: IPv4 with a port */
    if ((size_t)(colon - s) >= sizeof host) return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    *port = atoi(colon + 1);
  } else {
    snprintf(host, sizeof host, "%s", s);
  }
  if (*port <= 0 || *port > 65535) return -1;
  return yhc__ip_parse(host, ip);
}

static void yhc__rconf_add_server(yhc__rconf *c, const char *word) {
  if (c->nns < YHC__NS_MAX &&
      yhc__parse_server(word, &c->ns[c->nns], &c->ns_port[c->nns]) == 0)
    c->nns++;
}

static void yhc__rconf_set_search(yhc__rconf *c, const char *p, const char *end) {
  char word[YHC__DNS_NAME_MAX];
  c->nsearch = 0;
  while (c->nsearch < YHC__SEARCH_MAX && yhc__next_word(&p, end, word, sizeof word)) {
    size_t l = strlen(word);
    if (l && word[l - 1] == '.') word[--l] = 0;
    if (l) snprintf(c->search[c->nsearch++], sizeof c->search[0], "%s", word);
  }
}

static void yhc__rconf_option(yhc__rconf *c, const char *opt) {
  if (!strncmp(opt, "ndots:", 6)) c->ndots = YHC__MIN(atoi(opt + 6), 15);
  else if (!strncmp(opt, "timeout:", 8)) c->timeout_ms = YHC__MAX(1, YHC__MIN(atoi(opt + 8), 30)) * 1000;
  else if (!strncmp(opt, "attempts:", 9)) c->attempts = YHC__MAX(1, YHC__MIN(atoi(opt + 9), 5));
}

/* Reads resolv.conf(5) text: nameserver (up to 3), search/domain (the last one wins, up to
   6 domains), options ndots/timeout/attempts. Unknown lines are ignored, as libc does. */
static void yhc__rconf_parse(yhc__rconf *c, const char *text, size_t len) {
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *eol = p, *q;
    char word[YHC__DNS_NAME_MAX];
    while (eol < end && *eol != '\n') eol++;
    q = p;
    if (yhc__next_word(&q, eol, word, sizeof word) && word[0] != '#' && word[0] != ';') {
      char arg[YHC__DNS_NAME_MAX];
      if (!strcmp(word, "nameserver")) {
        if (yhc__next_word(&q, eol, arg, sizeof arg)) yhc__rconf_add_server(c, arg);
      } else if (!strcmp(word, "search") || !strcmp(word, "domain")) {
        yhc__rconf_set_search(c, q, eol);
      } else if (!strcmp(word, "options")) {
        while (yhc__next_word(&q, eol, arg, sizeof arg)) yhc__rconf_option(c, arg);
      }
    }
    p = eol < end ? eol + 1 : end;
  }
}

/* Looks `name` up in hosts(5) text: every line naming it (case-insensitively) gives its
   address, IPv4 lines first. Returns how many addresses were written to out. */
static size_t yhc__hosts_lookup(const char *text, size_t len, const char *name, yhc_ip *out,
                                size_t cap) {
  size_t n = 0;
  int pass;
  for (pass = 4; pass <= 6; pass += 2) {
    const char *p = text, *end = text + len;
    while (p < end && n < cap) {
      const char *eol = p, *hash, *q = p;
      char addr[80], word[YHC__DNS_NAME_MAX];
      yhc_ip ip;
      while (eol < end && *eol != '\n') eol++;
      for (hash = p; hash < eol && *hash != '#'; hash++) {}
      p = eol < end ? eol + 1 : end;
      if (!yhc__next_word(&q, hash, addr, sizeof addr) || yhc__ip_parse(addr, &ip) < 0 ||
          ip.family != pass)
        continue;
      while (yhc__next_word(&q, hash, word, sizeof word)) {
        if (yhc__dns_name_eq(word, name)) {
          out[n++] = ip;
          break;
        }
      }
    }
  }
  return n;
}

/* ---- the resolver: one per loop, built on first use */

typedef struct yhc__rwait yhc__rwait;
typedef void (*yhc__rwait_fn)(yhc__rwait *w, yhc_err err, const char *msg, const yhc_ip *addrs,
                              size_t n);
/* Someone waiting for a lookup: a connecting stream or a yhc_resolve() caller. */
struct yhc__rwait {
  yhc__rwait *prev, *next;
  yhc_resolve_query *q;
  yhc__rwait_fn fn;
};

typedef struct yhc__cache_entry {
  char name[YHC__DNS_NAME_MAX];
  yhc_ip addrs[YHC__MAX_ADDRS];
  size_t naddrs;
  uint64_t expires;
} yhc__cache_entry;

/* One question (A or AAAA) of the current try; over UDP, or TCP once truncated. */
enum { YHC__DX_IDLE, YHC__DX_UDP, YHC__DX_TCP, YHC__DX_DONE, YHC__DX_FAILED };
typedef struct yhc__dns_x {
  yhc_resolve_query *q;
  unsigned qtype, id;
  int state;
  yhc__dns_answer ans;
  yhc__watch tcp;
  unsigned char *tbuf; /* TCP: the framed query going out, then the framed answer coming in */
  size_t tlen, tpos;
  int tcp_sent;
} yhc__dns_x;

typedef struct yhc__resolver yhc__resolver;

/* A lookup of one host name, shared by everyone who asks for it while it runs. */
struct yhc_resolve_query {
  yhc__resolver *r;
  yhc_resolve_query *prev, *next;
  char host[YHC__DNS_NAME_MAX];
  yhc__rwait *waiters;
  yhc__timer timer;
  int delivering;
  /* built-in DNS: candidate name (search list), try number (server = try % servers) */
  int cand;
  char name[YHC__DNS_NAME_MAX];
  int try_no;
  yhc__watch udp;
  yhc__dns_x x[2];
  int timeouts, servfails;
  /* a hook's lookup */
  int hook_live;
  /* the result, delivered from the loop */
  int finished;
  yhc_err err;
  char msg[200];
  yhc_ip addrs[YHC__MAX_ADDRS];
  size_t naddrs;
  uint32_t ttl;
};

/* A yhc_resolve() caller. */
typedef struct yhc__pubresolve {
  yhc__rwait w;
  yhc__timer later;  /* delivers an answer known at once from the loop */
  yhc_ip addrs[YHC__MAX_ADDRS];
  size_t naddrs;
  uint64_t id;
  yhc_resolve_fn fn;
  void *user;
  yhc__resolver *r;
  struct yhc__pubresolve *prev, *next;
} yhc__pubresolve;

struct yhc__resolver {
  yhc_loop *loop;
  yhc__rconf conf;
  char *hosts;
  size_t hosts_len;
  yhc_resolver_hook hook;
  int max_cache, max_ttl_s;
  yhc__cache_entry *cache;
  int ncache;
  yhc_resolve_query *queries;
  yhc__pubresolve *pubs;
  uint64_t next_pub_id;
  unsigned char pool[64]; /* kernel entropy, refilled when used up */
  size_t pool_left;
};

static unsigned yhc__resolver_rand16(yhc__resolver *r) {
  unsigned v;
  if (r->pool_left < 2) {
    yhc__entropy(r->pool, sizeof r->pool);
    r->pool_left = sizeof r->pool;
  }
  r->pool_left -= 2;
  v = (unsigned)r->pool[r->pool_left] << 8 | r->pool[r->pool_left + 1];
  return v;
}

/* Reads at most `max` bytes of a file; NULL (and *len 0) when it cannot be read. */
static char *yhc__read_small_file(const char *path, size_t max, size_t *len) {
  char *buf;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  *len = 0;
  if (fd < 0) return NULL;
  buf = YHC__CAST(char *, YHC_MALLOC(max + 1));
  if (buf) {
    for (;;) {
      ssize_t n = read(fd, buf + *len, max - *len);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      *len += (size_t)n;
      if (*len == max) break;
    }
    buf[*len] = 0;
  }
  close(fd);
  return buf;
}

/* resolv.conf first, then what the loop's config overrides. */
static void yhc__resolver_configure(yhc__resolver *r, const yhc_resolver_desc *d) {
  yhc__rconf *c = &r->conf;
  size_t len;
  char *text = yhc__read_small_file(d->resolv_conf ? d->resolv_conf : "/etc/resolv.conf",
                                    65536, &len);
  c->ndots = 1;
  c->timeout_ms = 5000;
  c->attempts = 2;
  if (text) yhc__rconf_parse(c, text, len);
  YHC_FREE(text);
  if (d->nameservers) {
    const char *p = d->nameservers, *end = p + strlen(p);
    char word[80];
    c->nns = 0;
    while (yhc__next_word(&p, end, word, sizeof word)) yhc__rconf_add_server(c, word);
  }
  if (d->search) yhc__rconf_set_search(c, d->search, d->search + strlen(d->search));
  if (d->timeout_ms > 0) c->timeout_ms = d->timeout_ms;
  if (d->attempts > 0) c->attempts = d->attempts;
  if (d->ndots) c->ndots = d->ndots < 0 ? 0 : d->ndots;
  if (!c->nns) { /* resolv.conf(5): no nameserver line means the local one */
    yhc__ip_parse("127.0.0.1", &c->ns[0]);
    c->ns_port[0] = 53;
    c->nns = 1;
  }
  r->max_cache = d->max_cache ? (d->max_cache < 0 ? 0 : d->max_cache) : 256;
  r->max_ttl_s = d->max_ttl_s > 0 ? d->max_ttl_s : 3600;
  r->hook = d->hook;
  if (!d->hosts_file || d->hosts_file[0])
    r->hosts = yhc__read_small_file(d->hosts_file ? d->hosts_file : "/etc/hosts", 1 << 20,
                                    &r->hosts_len);
}

static yhc__resolver *yhc__resolver_get(yhc_loop *loop) {
  yhc__resolver *r = loop->resolver;
  if (r) return r;
  r = YHC__NEW(yhc__resolver);
  if (!r) return NULL;
  r->loop = loop;
  r->next_pub_id = 1;
  yhc__resolver_configure(r, &loop->rdesc);
  loop->resolver = r;
  return r;
}

/* ---- cache */

static int yhc__cache_find(yhc__resolver *r, const char *host) {
  int i;
  for (i = 0; i < r->ncache; i++)
    if (!strcmp(r->cache[i].name, host)) return i;
  return -1;
}

static size_t yhc__cache_get(yhc__resolver *r, const char *host, yhc_ip *out) {
  int i = yhc__cache_find(r, host);
  if (i < 0) return 0;
  if (r->cache[i].expires <= yhc_loop_now(r->loop)) { /* expired: forget it */
    r->cache[i] = r->cache[--r->ncache];
    return 0;
  }
  memcpy(out, r->cache[i].addrs, r->cache[i].naddrs * sizeof *out);
  return r->cache[i].naddrs;
}

/* Keeps an answer for min(ttl, max_ttl_s); when full, replaces the entry expiring first. */
static void yhc__cache_put(yhc__resolver *r, const char *host, const yhc_ip *addrs, size_t n,
                           uint32_t ttl) {
  int i;
  yhc__cache_entry *e;
  if (!ttl || !n || !r->max_cache) return;
  i = yhc__cache_find(r, host);
  if (i < 0 && r->ncache < r->max_cache) {
    if (!r->cache) {
      r->cache = YHC__NEWN(yhc__cache_entry, (size_t)r->max_cache);
      if (!r->cache) return;
    }
    i = r->ncache++;
  } else if (i < 0) {
    int j;
    for (i = 0, j = 1; j < r->ncache; j++)
      if (r->cache[j].expires < r->cache[i].expires) i = j;
  }
  e = &r->cache[i];
  snprintf(e->name, sizeof e->name, "%s", host);
  memcpy(e->addrs, addrs, n * sizeof *addrs);
  e->naddrs = n;
  e->expires = yhc_loop_now(r->loop) + (uint64_t)YHC__MIN(ttl, (uint32_t)r->max_ttl_s) * 1000u;
}

/* ---- answers known without asking anyone */

static int yhc__is_localhost(const char *h) {
  size_t n = strlen(h);
  if (n && h[n - 1] == '.') n--;
  /* RFC 6761 6.3: localhost and every name under it are the loopback */
  return (n == 9 && !strncmp(h, "localhost", 9)) ||
         (n > 10 && !strncmp(h + n - 10, ".localhost", 10));
}

/* Lower-cases host into key (the cache and the shared lookups are keyed on it). */
static int yhc__host_key(const char *host, char *key) {
  size_t i, n = strlen(host);
  if (n >= YHC__DNS_NAME_MAX) return -1;
  for (i = 0; i <= n; i++) key[i] = (char)yhc__lower((unsigned char)host[i]);
  return 0;
}

/* Numeric host, localhost, hosts file or cache: the addresses (>0), or 0 = ask. */
static size_t yhc__resolve_at_once(yhc__resolver *r, const char *key, yhc_ip *out) {
  size_t n;
  if (yhc__ip_parse(key, &out[0]) == 0) return 1;
  if (yhc__is_localhost(key)) {
    yhc__ip_parse("127.0.0.1", &out[0]);
    yhc__ip_parse("::1", &out[1]);
    return 2;
  }
  if (r->hosts && (n = yhc__hosts_lookup(r->hosts, r->hosts_len, key, out, YHC__MAX_ADDRS)) > 0)
    return n;
  return yhc__cache_get(r, key, out);
}

/* ---- lookups */

static void yhc__rq_deliver(void *ctx);

static void yhc__dns_x_close(yhc__resolver *r, yhc__dns_x *x) {
  yhc__watch_close(r->loop, &x->tcp);
  YHC_FREE(x->tbuf);
  x->tbuf = NULL;
  x->tlen = x->tpos = 0;
  x->tcp_sent = 0;
  x->state = YHC__DX_IDLE;
}

/* Closes the sockets of the current try. */
static void yhc__rq_end_try(yhc_resolve_query *q) {
  yhc__resolver *r = q->r;
  yhc__watch_close(r->loop, &q->udp);
  yhc__dns_x_close(r, &q->x[0]);
  yhc__dns_x_close(r, &q->x[1]);
  yhc__timer_stop(r->loop, &q->timer);
}

/* Ends the lookup; the waiters hear of it from the loop (never from inside the call that
   started it), and an answer goes into the cache. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static void yhc__rq_finish(yhc_resolve_query *q, yhc_err err, const char *fmt, ...) {
  yhc__resolver *r = q->r;
  yhc__rq_end_try(q);
  q->finished = 1;
  q->err = err;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->msg, sizeof q->msg, fmt, ap);
    va_end(ap);
  }
  if (!err) yhc__cache_put(r, q->host, q->addrs, q->naddrs, q->ttl);
  /* out of the list at once: whoever asks from now on gets the cache or a fresh lookup */
  if (q->prev) q->prev->next = q->next; else r->queries = q->next;
  if (q->next) q->next->prev = q->prev;
  q->prev = q->next = NULL;
  if (yhc__timer_start(r->loop, &q->timer, 0, yhc__rq_deliver, q) < 0) yhc__rq_deliver(q);
}

static void yhc__rq_free(yhc_resolve_query *q) {
  yhc__resolver *r = q->r;
  yhc__rq_end_try(q);
  if (q->hook_live && r->hook.cancel) r->hook.cancel(r->hook.user, q);
  if (!q->finished) {
    if (q->prev) q->prev->next = q->next; else r->queries = q->next;
    if (q->next) q->next->prev = q->prev;
  }
  YHC_FREE(q);
}

static void yhc__rq_deliver(void *ctx) {
  yhc_resolve_query *q = YHC__CAST(yhc_resolve_query *, ctx);
  const char *msg = q->msg[0] ? q->msg : yhc_strerror(q->err);
  q->delivering = 1;
  /* one at a time from the head: a waiter may make others leave (a destroyed client) */
  while (q->waiters) {
    yhc__rwait *w = q->waiters;
    q->waiters = w->next;
    if (q->waiters) q->waiters->prev = NULL;
    w->q = NULL;
    w->prev = w->next = NULL;
    w->fn(w, q->err, msg, q->naddrs ? q->addrs : NULL, q->naddrs);
  }
  yhc__rq_free(q);
}

static void yhc__rwait_join(yhc_resolve_query *q, yhc__rwait *w, yhc__rwait_fn fn) {
  w->q = q;
  w->fn = fn;
  w->prev = NULL;
  w->next = q->waiters;
  if (w->next) w->next->prev = w;
  q->waiters = w;
}

/* A waiter gives up; the lookup stops when nobody waits for it any more. */
static void yhc__rwait_leave(yhc__rwait *w) {
  yhc_resolve_query *q = w->q;
  if (!q) return;
  if (w->prev) w->prev->next = w->next; else q->waiters = w->next;
  if (w->next) w->next->prev = w->prev;
  w->q = NULL;
  if (!q->waiters && !q->delivering) yhc__rq_free(q);
}

/* The name to ask for candidate i (resolv.conf(5) search and ndots), or -1 when none is left. */
static int yhc__rq_candidate(const yhc_resolve_query *q, int i, char *out) {
  const yhc__rconf *c = &q->r->conf;
  const char *h = q->host, *p;
  size_t len = strlen(h);
  int dots = 0, as_is_first, ns = c->nsearch;
  if (len && h[len - 1] == '.') { /* absolute: the name itself only */
    if (i) return -1;
    snprintf(out, YHC__DNS_NAME_MAX, "%.*s", (int)(len - 1), h);
    return 0;
  }
  for (p = h; *p; p++) dots += *p == '.';
  as_is_first = dots >= c->ndots;
  if (i > ns) return -1;
  if ((as_is_first && i == 0) || (!as_is_first && i == ns)) {
    snprintf(out, YHC__DNS_NAME_MAX, "%s", h);
    return 0;
  }
  {
    const char *dom = c->search[as_is_first ? i - 1 : i];
    size_t dl = strlen(dom);
    if (len + 1 + dl > 253) return -2; /* too long with this domain: skip it */
    memcpy(out, h, len);
    out[len] = '.';
    memcpy(out + len + 1, dom, dl + 1);
  }
  return 0;
}

static void yhc__rq_udp_io(void *ctx, int revents);
static void yhc__rq_timeout(void *ctx);
static void yhc__rq_evaluate(yhc_resolve_query *q);

/* A UDP socket on a random source port, connected to the server so that the kernel drops
   datagrams from anyone else and reports an unreachable port. */
static int yhc__dns_udp_socket(yhc__resolver *r, const yhc_ip *ns, int port) {
  struct sockaddr_storage ss, local;
  socklen_t len = yhc__sockaddr_from_ip(ns, port, &ss), llen;
  yhc_ip any;
  int fd = socket(ns->family == 6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0), i;
  if (fd < 0) return -1;
  if (yhc__set_nonblock(fd) < 0) {
    close(fd);
    return -1;
  }
  memset(&any, 0, sizeof any);
  any.family = ns->family;
  for (i = 0; i < 8; i++) { /* ports below 1024 are privileged; a taken one is tried again */
    llen = yhc__sockaddr_from_ip(&any, 1024 + (int)(yhc__resolver_rand16(r) % (65536 - 1024)), &local);
    if (bind(fd, YHC__PUN(struct sockaddr *, &local), llen) == 0) break;
  }
  if (connect(fd, YHC__PUN(struct sockaddr *, &ss), len) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Starts the try numbered q->try_no for q->name: both questions over UDP to one server. */
static int yhc__rq_send_try(yhc_resolve_query *q) {
  yhc__resolver *r = q->r;
  const yhc__rconf *c = &r->conf;
  int s = q->try_no % c->nns, k, fd;
  fd = yhc__dns_udp_socket(r, &c->ns[s], c->ns_port[s]);
  if (fd < 0) return -1;
  if (yhc__watch_add(r->loop, &q->udp, fd, yhc__rq_udp_io, q) < 0) {
    close(fd);
    return -1;
  }
  yhc__watch_set(&q->udp, 1, 0);
  for (k = 0; k < 2; k++) {
    unsigned char pkt[300];
    size_t n;
    yhc__dns_x *x = &q->x[k];
    x->q = q;
    x->qtype = k == 0 ? YHC__DNS_A : YHC__DNS_AAAA;
    x->id = yhc__resolver_rand16(r);
    n = yhc__dns_build_query(pkt, sizeof pkt, x->id, q->name, x->qtype);
    if (!n || send(fd, pkt, n, 0) != (ssize_t)n) return -1;
    x->state = YHC__DX_UDP;
  }
  return yhc__timer_start(r->loop, &q->timer, (uint64_t)c->timeout_ms, yhc__rq_timeout, q);
}

/* Moves on to the next try (another server, or another round); ends the lookup when the
   tries are used up. */
static void yhc__rq_next_try(yhc_resolve_query *q) {
  const yhc__rconf *c = &q->r->conf;
  for (;;) {
    int budget = c->nns * c->attempts;
    yhc__rq_end_try(q);
    if (q->try_no >= budget) {
      if (q->servfails)
        yhc__rq_finish(q, YHC_ERR_DNS, "cannot resolve host %s: DNS server failure (%d of %d tries "
                       "answered SERVFAIL or REFUSED)", q->host, q->servfails, budget);
      else
        yhc__rq_finish(q, YHC_ERR_DNS, "cannot resolve host %s: no DNS answer after %d tries of "
                       "%d ms", q->host, budget, c->timeout_ms);
      return;
    }
    if (yhc__rq_send_try(q) == 0) return;
    q->try_no++; /* this one could not even start: count it as a timeout */
    q->timeouts++;
  }
}

/* Moves on to the next search candidate; ends the lookup when none is left. */
static void yhc__rq_next_candidate(yhc_resolve_query *q, const char *why) {
  for (;;) {
    int rc = yhc__rq_candidate(q, q->cand++, q->name);
    if (rc == -2) continue;
    if (rc < 0) {
      yhc__rq_finish(q, YHC_ERR_DNS, "cannot resolve host %s: %s", q->host, why);
      return;
    }
    {
      unsigned char probe[300];
      if (!yhc__dns_build_query(probe, sizeof probe, 0, q->name, YHC__DNS_A)) {
        yhc__rq_finish(q, YHC_ERR_DNS, "cannot resolve host %s: not a valid DNS name", q->host);
        return;
      }
    }
    q->try_no = 0;
    yhc__rq_next_try(q);
    return;
  }
}

/* Accepts or refuses one answer for question x. */
static void yhc__dns_x_answer(yhc__dns_x *x, const unsigned char *pkt, size_t n, int over_tcp);

static void yhc__rq_udp_io(void *ctx, int revents) {
  yhc_resolve_query *q = YHC__CAST(yhc_resolve_query *, ctx);
  unsigned char pkt[4096];
  (void)revents;
  for (;;) {
    ssize_t n = recv(q->udp.fd, pkt, sizeof pkt, 0);
    int k;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) { /* ICMP: nobody listens there; the other questions will not fare better */
      for (k = 0; k < 2; k++)
        if (q->x[k].state == YHC__DX_UDP) q->x[k].state = YHC__DX_FAILED;
      q->timeouts++;
      break;
    }
    for (k = 0; k < 2; k++) {
      yhc__dns_x *x = &q->x[k];
      if (x->state == YHC__DX_UDP && n >= 2 && yhc__get16(pkt) == x->id) {
        yhc__dns_x_answer(x, pkt, (size_t)n, 0);
        break;
      }
    }
  }
  yhc__rq_evaluate(q);
}

static void yhc__dns_tcp_io(void *ctx, int revents);

/* A truncated answer: the same question again over TCP, to the same server. */
static void yhc__dns_x_start_tcp(yhc__dns_x *x) {
  yhc_resolve_query *q = x->q;
  yhc__resolver *r = q->r;
  int s = q->try_no % r->conf.nns, fd;
  struct sockaddr_storage ss;
  socklen_t len = yhc__sockaddr_from_ip(&r->conf.ns[s], r->conf.ns_port[s], &ss);
  size_t n;
  x->state = YHC__DX_FAILED;
  x->tbuf = YHC__CAST(unsigned char *, YHC_MALLOC(2 + 300));
  if (!x->tbuf) return;
  n = yhc__dns_build_query(x->tbuf + 2, 300, x->id, q->name, x->qtype);
  x->tbuf[0] = (unsigned char)(n >> 8);
  x->tbuf[1] = (unsigned char)n;
  x->tlen = n + 2;
  x->tpos = 0;
  fd = socket(r->conf.ns[s].family == 6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return;
  if (yhc__set_nonblock(fd) < 0 ||
      (connect(fd, YHC__PUN(struct sockaddr *, &ss), len) < 0 && errno != EINPROGRESS) ||
      yhc__watch_add(r->loop, &x->tcp, fd, yhc__dns_tcp_io, x) < 0) {
    close(fd);
    return;
  }
  yhc__watch_set(&x->tcp, 0, 1);
  x->state = YHC__DX_TCP;
  /* the TCP exchange gets a whole timeout of its own */
  yhc__timer_start(r->loop, &q->timer, (uint64_t)r->conf.timeout_ms, yhc__rq_timeout, q);
}

static void yhc__dns_x_answer(yhc__dns_x *x, const unsigned char *pkt, size_t n, int over_tcp) {
  yhc__dns_answer a;
  yhc_error e;
  if (yhc__dns_parse(pkt, n, x->id, x->q->name, x->qtype, &a, &e) < 0) {
    yhc__log(x->q->r->loop, YHC_LOG_DEBUG, "DNS answer for %s refused: %s", x->q->name, e.msg);
    /* over UDP a bad datagram may be a forgery: keep waiting for the real one */
    if (over_tcp) x->state = YHC__DX_FAILED;
    return;
  }
  if (a.truncated) {
    if (over_tcp) x->state = YHC__DX_FAILED;
    else yhc__dns_x_start_tcp(x);
    return;
  }
  x->ans = a;
  x->state = YHC__DX_DONE;
}

/* Sends the framed query, then reads the two-byte length and the answer it announces. */
static int yhc__dns_tcp_step(yhc__dns_x *x) {
  for (;;) {
    ssize_t n;
    if (!x->tcp_sent) {
      n = send(x->tcp.fd, x->tbuf + x->tpos, x->tlen - x->tpos, 0);
      if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
      x->tpos += (size_t)n;
      if (x->tpos < x->tlen) continue;
      x->tcp_sent = 1;
      x->tpos = 0;
      x->tlen = 2;
      yhc__watch_set(&x->tcp, 1, 0);
      continue;
    }
    n = recv(x->tcp.fd, x->tbuf + x->tpos, x->tlen - x->tpos, 0);
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    if (n == 0) return -1;
    x->tpos += (size_t)n;
    if (x->tpos < x->tlen) continue;
    if (x->tlen == 2) { /* the length is in: room for the answer (at most 64 KiB) */
      size_t want = yhc__get16(x->tbuf);
      unsigned char *b;
      if (want < 12) return -1;
      b = YHC__CAST(unsigned char *, YHC_REALLOC(x->tbuf, 2 + want));
      if (!b) return -1;
      x->tbuf = b;
      x->tlen = 2 + want;
      continue;
    }
    yhc__dns_x_answer(x, x->tbuf + 2, x->tlen - 2, 1);
    if (x->state == YHC__DX_TCP) x->state = YHC__DX_FAILED;
    return 1;
  }
}

static void yhc__dns_tcp_io(void *ctx, int revents) {
  yhc__dns_x *x = YHC__CAST(yhc__dns_x *, ctx);
  yhc_resolve_query *q = x->q;
  int soerr = 0, rc;
  socklen_t len = sizeof soerr;
  if (getsockopt(x->tcp.fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) soerr = errno;
  rc = soerr || ((revents & (POLLERR | POLLNVAL)) && !(revents & POLLIN)) ? -1 : yhc__dns_tcp_step(x);
  if (rc == 0) return;
  if (rc < 0) x->state = YHC__DX_FAILED;
  yhc__watch_close(q->r->loop, &x->tcp);
  yhc__rq_evaluate(q);
}

/* The try's deadline: questions still open count as unanswered. */
static void yhc__rq_timeout(void *ctx) {
  yhc_resolve_query *q = YHC__CAST(yhc_resolve_query *, ctx);
  int k, open = 0;
  for (k = 0; k < 2; k++) {
    if (q->x[k].state == YHC__DX_UDP || q->x[k].state == YHC__DX_TCP) {
      q->x[k].state = YHC__DX_FAILED;
      open = 1;
    }
  }
  if (open) q->timeouts++;
  yhc__rq_evaluate(q);
}

static int yhc__rcode_says_absent(int rcode) {
  return rcode == YHC__DNS_NOERROR || rcode == YHC__DNS_NXDOMAIN;
}

/* Decides once both questions of the try are settled: addresses end the lookup (IPv4
   first); "no such name" from both moves to the next search candidate; anything else
   (SERVFAIL, REFUSED, silence, a broken TCP answer) moves to the next server. */
static void yhc__rq_evaluate(yhc_resolve_query *q) {
  int k, absent = 1, nx = 0, servfail = 0;
  for (k = 0; k < 2; k++)
    if (q->x[k].state == YHC__DX_UDP || q->x[k].state == YHC__DX_TCP) return;
  q->naddrs = 0;
  q->ttl = 0x7fffffffu;
  for (k = 0; k < 2; k++) {
    yhc__dns_x *x = &q->x[k];
    size_t i;
    if (x->state != YHC__DX_DONE) {
      absent = 0;
      continue;
    }
    if (!yhc__rcode_says_absent(x->ans.rcode)) {
      absent = 0;
      servfail |= x->ans.rcode == YHC__DNS_SERVFAIL || x->ans.rcode == 5; /* 5: REFUSED */
      continue;
    }
    nx += x->ans.rcode == YHC__DNS_NXDOMAIN;
    for (i = 0; i < x->ans.naddrs && q->naddrs < YHC__MAX_ADDRS; i++)
      q->addrs[q->naddrs++] = x->ans.addrs[i];
    if (x->ans.naddrs && x->ans.ttl < q->ttl) q->ttl = x->ans.ttl;
  }
  if (q->naddrs) {
    yhc__rq_finish(q, YHC_ERR_OK, NULL);
    return;
  }
  yhc__rq_end_try(q);
  q->servfails += servfail;
  if (absent) {
    yhc__rq_next_candidate(q, nx ? "no such host (NXDOMAIN)" : "the name has no address records");
    return;
  }
  q->try_no++;
  yhc__rq_next_try(q);
}

#ifdef YHC_RESOLVER_GETADDRINFO
/* The compile-time choice: the platform's getaddrinfo(), blocking, answered from the loop. */
static void yhc__rq_start_dns(yhc_resolve_query *q) {
  struct addrinfo hints, *ai = NULL, *a;
  int rc;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  rc = getaddrinfo(q->host, NULL, &hints, &ai);
  if (rc != 0 || !ai) {
    yhc__rq_finish(q, YHC_ERR_DNS, "cannot resolve host %s: %s", q->host, gai_strerror(rc));
    return;
  }
  for (a = ai; a && q->naddrs < YHC__MAX_ADDRS; a = a->ai_next) {
    yhc_ip *ip = &q->addrs[q->naddrs];
    memset(ip, 0, sizeof *ip);
    if (a->ai_family == AF_INET) {
      ip->family = 4;
      memcpy(ip->addr, &YHC__PUN(struct sockaddr_in *, a->ai_addr)->sin_addr, 4);
    } else if (a->ai_family == AF_INET6) {
      ip->family = 6;
      memcpy(ip->addr, &YHC__PUN(struct sockaddr_in6 *, a->ai_addr)->sin6_addr, 16);
      ip->scope_id = YHC__PUN(struct sockaddr_in6 *, a->ai_addr)->sin6_scope_id;
    } else {
      continue;
    }
    q->naddrs++;
  }
  freeaddrinfo(ai);
  q->ttl = 0; /* getaddrinfo does not say; its own cache (nscd) may */
  if (q->naddrs) yhc__rq_finish(q, YHC_ERR_OK, NULL);
  else yhc__rq_finish(q, YHC_ERR_DNS, "cannot resolve host %s: no usable address", q->host);
}
#else
static void yhc__rq_start_dns(yhc_resolve_query *q) {
  q->cand = 0;
  yhc__rq_next_candidate(q, "no such host");
}
#endif

static yhc_resolve_query *yhc__rq_start(yhc__resolver *r, const char *key) {
  yhc_resolve_query *q = YHC__NEW(yhc_resolve_query);
  if (!q) return NULL;
  q->r = r;
  q->udp.fd = q->x[0].tcp.fd = q->x[1].tcp.fd = -1;
  snprintf(q->host, sizeof q->host, "%s", key);
  q->next = r->queries;
  if (q->next) q->next->prev = q;
  r->queries = q;
  {
    unsigned char probe[300];
    if (!yhc__dns_build_query(probe, sizeof probe, 0, q->host, YHC__DNS_A)) {
      yhc__rq_finish(q, YHC_ERR_DNS, "cannot resolve host \"%s\": not a valid host name", q->host);
      return q;
    }
  }
  if (r->hook.start) {
    q->hook_live = 1;
    if (r->hook.start(r->hook.user, q, q->host) != 0) {
      q->hook_live = 0;
      yhc__rq_finish(q, YHC_ERR_DNS, "cannot resolve host %s: the resolver hook refused it", q->host);
    }
  } else {
    yhc__rq_start_dns(q);
  }
  return q;
}

/* Joins the lookup of `key` that is running, or starts one. */
static yhc_resolve_query *yhc__rq_get(yhc__resolver *r, const char *key) {
  yhc_resolve_query *q;
  for (q = r->queries; q; q = q->next)
    if (!strcmp(q->host, key)) return q;
  return yhc__rq_start(r, key);
}

YHCDEF void yhc_resolve_done(yhc_resolve_query *q, yhc_err err, const char *msg,
                             const yhc_ip *addrs, size_t n, uint32_t ttl_s) {
  if (!q || q->finished) return;
  q->hook_live = 0;
  if (!err && (!addrs || !n)) err = YHC_ERR_DNS;
  if (!err) {
    q->naddrs = YHC__MIN(n, (size_t)YHC__MAX_ADDRS);
    memcpy(q->addrs, addrs, q->naddrs * sizeof *addrs);
    q->ttl = ttl_s;
    yhc__rq_finish(q, YHC_ERR_OK, NULL);
  } else {
    yhc__rq_finish(q, err, "cannot resolve host %s: %s", q->host, msg ? msg : "resolver hook failed");
  }
}

/* Frees the resolver with its loop: lookups still running are dropped without answers. */
static void yhc__resolver_free(yhc_loop *loop) {
  yhc__resolver *r = loop->resolver;
  if (!r) return;
  while (r->pubs) yhc_resolve_cancel(loop, r->pubs->id);
  while (r->queries) {
    yhc_resolve_query *q = r->queries;
    while (q->waiters) yhc__rwait_leave(q->waiters); /* frees q with the last one */
    if (r->queries == q) yhc__rq_free(q);
  }
  YHC_FREE(r->cache);
  YHC_FREE(r->hosts);
  YHC_FREE(r);
  loop->resolver = NULL;
}

/* ---- public yhc_resolve() */

static void yhc__pub_unlink(yhc__pubresolve *p) {
  yhc__resolver *r = p->r;
  if (p->prev) p->prev->next = p->next; else r->pubs = p->next;
  if (p->next) p->next->prev = p->prev;
}

static void yhc__pub_answer(yhc__rwait *w, yhc_err err, const char *msg, const yhc_ip *addrs,
                            size_t n) {
  yhc__pubresolve *p = YHC__PUN(yhc__pubresolve *, w);
  yhc_resolve_fn fn = p->fn;
  void *user = p->user;
  yhc__pub_unlink(p);
  YHC_FREE(p);
  fn(user, err, msg, addrs, n);
}

static void yhc__pub_answer_later(void *ctx) {
  yhc__pubresolve *p = YHC__CAST(yhc__pubresolve *, ctx);
  yhc_ip addrs[YHC__MAX_ADDRS];
  size_t n = p->naddrs;
  memcpy(addrs, p->addrs, n * sizeof *addrs);
  yhc__pub_answer(&p->w, YHC_ERR_OK, "ok", addrs, n);
}

YHCDEF uint64_t yhc_resolve(yhc_loop *loop, const char *host, yhc_resolve_fn fn, void *user) {
  yhc__resolver *r = yhc__resolver_get(loop);
  yhc__pubresolve *p;
  char key[YHC__DNS_NAME_MAX];
  if (!r || !fn) return 0;
  p = YHC__NEW(yhc__pubresolve);
  if (!p) return 0;
  p->r = r;
  p->fn = fn;
  p->user = user;
  p->id = r->next_pub_id++;
  p->next = r->pubs;
  if (p->next) p->next->prev = p;
  r->pubs = p;
  if (!host || yhc__host_key(host, key) < 0) key[0] = 0;
  if (key[0] && (p->naddrs = yhc__resolve_at_once(r, key, p->addrs)) > 0) {
    if (yhc__timer_start(loop, &p->later, 0, yhc__pub_answer_later, p) == 0) return p->id;
  } else {
    yhc_resolve_query *q = yhc__rq_get(r, key[0] ? key : "");
    if (q) {
      yhc__rwait_join(q, &p->w, yhc__pub_answer);
      return p->id;
    }
  }
  yhc__pub_unlink(p);
  YHC_FREE(p);
  return 0;
}

YHCDEF int yhc_resolve_cancel(yhc_loop *loop, uint64_t id) {
  yhc__resolver *r = loop->resolver;
  yhc__pubresolve *p;
  for (p = r ? r->pubs : NULL; p; p = p->next) {
    if (p->id != id) continue;
    yhc__timer_stop(loop, &p->later);
    yhc__rwait_leave(&p->w);
    yhc__pub_unlink(p);
    YHC_FREE(p);
    return 1;
  }
  return 0;
}

/* ---- connecting by name */

typedef struct yhc__dial {
  yhc__rwait w;
  yhc__tcp *t;
} yhc__dial;

static void yhc__dial_answer(yhc__rwait *w, yhc_err err, const char *msg, const yhc_ip *addrs,
                             size_t n) {
  yhc__dial *d = YHC__PUN(yhc__dial *, w);
  yhc__tcp *t = d->t;
  t->abandon = NULL;
  YHC_FREE(d);
  if (err) {
    yhc__error_set(&t->base.err, err, 0, "%s", msg);
    yhc__stream_emit(&t->base, YHC__EV_ERROR);
  } else if (yhc__tcp_connect(t, addrs, n) < 0) {
    yhc__stream_emit(&t->base, YHC__EV_ERROR);
  }
}

static void yhc__dial_abandon(void *ctx) {
  yhc__dial *d = YHC__CAST(yhc__dial *, ctx);
  yhc__rwait_leave(&d->w);
  YHC_FREE(d);
}

/* Names host with the loop's resolver and starts a non-blocking connect to its addresses:
   at once when they are known (numeric, localhost, hosts file, cache), else once the
   lookup answers. The stream emits CONNECT or ERROR (a failed lookup is YHC_ERR_DNS) from
   the loop; NULL return = failed now (err says why: CONNECT or NOMEM). */
static yhc__stream *yhc__tcp_open(yhc_loop *loop, const char *host, int port, yhc_error *err) {
  yhc__tcp *t = yhc__tcp_new(loop, host, port);
  yhc__resolver *r = NULL;
  yhc_ip addrs[YHC__MAX_ADDRS];
  char key[YHC__DNS_NAME_MAX];
  size_t n = 0;
  yhc__dial *d;
  yhc_resolve_query *q;
  if (yhc__host_key(host, key) < 0) key[0] = 0;
  /* a numeric host needs no resolver: its files are read only when a name comes */
  if (t && key[0] && yhc__ip_parse(key, &addrs[0]) == 0) n = 1;
  else if (t) r = yhc__resolver_get(loop);
  if (!t || (!n && !r)) {
    if (t) yhc__tcp_close(&t->base);
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory opening a connection");
    return NULL;
  }
  if (n || (key[0] && (n = yhc__resolve_at_once(r, key, addrs)) > 0)) {
    if (yhc__tcp_connect(t, addrs, n) < 0) {
      *err = t->base.err;
      yhc__tcp_close(&t->base);
      return NULL;
    }
    return &t->base;
  }
  d = YHC__NEW(yhc__dial);
  q = d ? yhc__rq_get(r, key) : NULL;
  if (!q) {
    YHC_FREE(d);
    yhc__tcp_close(&t->base);
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory resolving %s", host);
    return NULL;
  }
  d->t = t;
  yhc__rwait_join(q, &d->w, yhc__dial_answer);
  t->abandon = yhc__dial_abandon;
  t->abandon_ctx = d;
  return &t->base;
}

/* ==== TLS streams (mbedTLS, optional) ============================================ */
/* Owns: TLS sessions over TCP streams, exposed as the same byte-stream interface, so HTTP and
   WebSocket code never know whether bytes are encrypted. Compiled in with YHC_MBEDTLS;
   otherwise opening one is a clear YHC_ERR_NO_TLS error. */

/* Configuration, all of it through yhc_http_desc (and the same for wss:// WebSockets):
     YHC_MBEDTLS     compile TLS in; link with -lmbedtls -lmbedx509 -lmbedcrypto.
                     Works with mbedTLS 2.28 (verified) and 3.x (written for it; see below).
     ca_file         PEM bundle of trusted CAs [/etc/ssl/certs/ca-certificates.crt, then the
                     directory /etc/ssl/certs].
     ca_path         directory of PEM CA certificates (loaded in addition to ca_file).
     tls_insecure    1 = no certificate or host name verification. Logged as a WARN once per
                     client, because it makes the connection readable by anyone on the path.
   Verification is on by default: the chain must lead to a trusted CA, be within its validity
   dates, and name the host (SNI is sent for the same name). TLS 1.2 is the minimum version.
   connect_timeout_ms covers the TCP connect and the handshake together. */

typedef struct yhc__tls_conf {
  const char *ca_file;  /* borrowed from the client's desc: must outlive the client */
  const char *ca_path;
  int insecure;
  yhc_loop *log_loop;   /* where the loud "verification off" warning goes */
} yhc__tls_conf;

typedef struct yhc__tls_ctx yhc__tls_ctx;

#ifndef YHC_MBEDTLS

static yhc__stream *yhc__tls_open(yhc_loop *loop, yhc__tls_ctx **ctx, const yhc__tls_conf *conf,
                                  const char *host, int port, yhc_error *err) {
  (void)loop;
  (void)ctx;
  (void)conf;
  yhc__error_set(err, YHC_ERR_NO_TLS, 0,
                 "cannot reach %s port %d over TLS: yhc was built without TLS (define YHC_MBEDTLS)",
                 host, port);
  return NULL;
}

static void yhc__tls_ctx_free(yhc__tls_ctx *ctx) { (void)ctx; }

#else /* YHC_MBEDTLS */

/* How it works, for the next reader:
   The stream owns a TCP stream (it is that stream's owner) and runs mbedTLS over it: the BIO
   callbacks call the inner stream's read/write (recv, and send with MSG_NOSIGNAL, on the
   non-blocking fd), so the same code runs TLS over anything with the stream interface. The handshake is driven from the inner stream's events; CONNECT is
   emitted only after it succeeded. mbedTLS may hold decrypted bytes that poll() cannot see,
   so a read that leaves some behind arms a zero-delay timer that emits READ again.

   EOF: a close_notify alert and a bare TCP FIN both read as EOF (0). A truncation attack on
   a close-delimited HTTP body is therefore not detected: RFC 9112 lets clients accept such
   bodies, and servers commonly close without close_notify.

   Write contract (as for every stream, but it matters here): after write() returned AGAIN,
   call it again with the same bytes first; mbedTLS has already encrypted them.

   mbedTLS 3.x: headers come through mbedtls/build_info.h (pulled in by version.h), struct
   fields are private and not touched, MBEDTLS_SSL_MINOR_VERSION_* are gone (3.x is TLS 1.2+
   anyway, so no minimum is set), TLS 1.3 needs psa_crypto_init() (process-wide state, but
   mbedTLS's own and idempotent; yhc keeps none) and may hand over
   NewSessionTicket messages from read, which are skipped. mbedTLS 4 (PSA-only RNG) is not
   supported. */
#include <mbedtls/version.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_PSA_CRYPTO_C)
#  include <psa/crypto.h>
#endif
#if MBEDTLS_VERSION_NUMBER >= 0x04000000
#  error "yhc supports mbedTLS 2.28 and 3.x; mbedTLS 4 is not supported yet"
#endif
#if MBEDTLS_VERSION_NUMBER < 0x02100000
#  error "yhc needs mbedTLS 2.16 or later (2.28 LTS recommended)"
#endif

#define YHC__TLS_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
#define YHC__TLS_CA_DIR "/etc/ssl/certs"

struct yhc__tls_ctx {
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  mbedtls_x509_crt ca;
  mbedtls_ssl_config conf;
  int insecure;
};

typedef struct yhc__tls {
  yhc__stream base;
  yhc_loop *loop;
  yhc__stream *tcp;          /* owned; we are its owner */
  mbedtls_ssl_context ssl;
  yhc__timer pending;        /* READ for bytes mbedTLS holds that poll() cannot signal */
  int handshaken, eof, failed;
  int bio_failed;            /* the inner stream failed: its err is the cause */
  int want_rd, want_wr;      /* what the owner asked for */
  int rd_needs_write;        /* mbedTLS read wants the socket writable (alerts, renegotiation) */
  int wr_needs_read;         /* mbedTLS write wants the socket readable */
  size_t wpend;              /* length of a write mbedTLS encrypted but could not send yet */
  char host[256];
  int port;
} yhc__tls;

static void yhc__tls_strerror(int ret, char *buf, size_t cap) {
#ifdef MBEDTLS_ERROR_C
  char tmp[160];
  mbedtls_strerror(ret, tmp, sizeof tmp);
  snprintf(buf, cap, "%s (-0x%04x)", tmp, (unsigned)-ret);
#else
  snprintf(buf, cap, "mbedTLS error -0x%04x", (unsigned)-ret);
#endif
}

static void yhc__tls_ctx_free(yhc__tls_ctx *ctx) {
  if (!ctx) return;
  mbedtls_ssl_config_free(&ctx->conf);
  mbedtls_x509_crt_free(&ctx->ca);
  mbedtls_ctr_drbg_free(&ctx->drbg);
  mbedtls_entropy_free(&ctx->entropy);
  YHC_FREE(ctx);
}

/* Loads the CAs the conf names, or the system's. Returns 0 or -1 with err set. */
static int yhc__tls_load_cas(yhc__tls_ctx *ctx, const yhc__tls_conf *conf, yhc_error *err) {
#ifdef MBEDTLS_FS_IO
  char why[200];
  int rc;
  if (conf->ca_file && *conf->ca_file) {
    rc = mbedtls_x509_crt_parse_file(&ctx->ca, conf->ca_file);
    if (rc < 0) {
      yhc__tls_strerror(rc, why, sizeof why);
      yhc__error_set(err, YHC_ERR_TLS, 0, "cannot load CA file %s: %s", conf->ca_file, why);
      return -1;
    }
  }
  if (conf->ca_path && *conf->ca_path) {
    rc = mbedtls_x509_crt_parse_path(&ctx->ca, conf->ca_path);
    if (rc < 0) {
      yhc__tls_strerror(rc, why, sizeof why);
      yhc__error_set(err, YHC_ERR_TLS, 0, "cannot load CA directory %s: %s", conf->ca_path, why);
      return -1;
    }
  }
  if ((conf->ca_file && *conf->ca_file) || (conf->ca_path && *conf->ca_path)) return 0;
  if (mbedtls_x509_crt_parse_file(&ctx->ca, YHC__TLS_CA_FILE) >= 0) return 0;
  if (mbedtls_x509_crt_parse_path(&ctx->ca, YHC__TLS_CA_DIR) >= 0) return 0;
  yhc__error_set(err, YHC_ERR_TLS, 0,
                 "no trusted CA certificates: neither " YHC__TLS_CA_FILE " nor " YHC__TLS_CA_DIR
                 "/ could be loaded; set ca_file or ca_path");
  return -1;
#else
  (void)ctx;
  (void)conf;
  yhc__error_set(err, YHC_ERR_TLS, 0,
                 "mbedTLS was built without MBEDTLS_FS_IO: CA certificates cannot be loaded");
  return -1;
#endif
}

/* The shared part: RNG, CA chain, configuration. Created on the first TLS connection. */
static yhc__tls_ctx *yhc__tls_ctx_new(const yhc__tls_conf *conf, yhc_error *err) {
  static const char pers[] = "yhc";
  char why[200];
  int rc;
  yhc__tls_ctx *ctx = YHC__NEW(yhc__tls_ctx);
  if (!ctx) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory creating the TLS context");
    return NULL;
  }
  mbedtls_entropy_init(&ctx->entropy);
  mbedtls_ctr_drbg_init(&ctx->drbg);
  mbedtls_x509_crt_init(&ctx->ca);
  mbedtls_ssl_config_init(&ctx->conf);
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_PSA_CRYPTO_C)
  /* TLS 1.3 (and MBEDTLS_USE_PSA_CRYPTO) run on PSA; initialising twice is harmless. */
  if (psa_crypto_init() != PSA_SUCCESS) {
    yhc__error_set(err, YHC_ERR_TLS, 0, "TLS setup failed: psa_crypto_init failed");
    yhc__tls_ctx_free(ctx);
    return NULL;
  }
#endif
  rc = mbedtls_ctr_drbg_seed(&ctx->drbg, mbedtls_entropy_func, &ctx->entropy,
                             YHC__PUN(const unsigned char *, pers), sizeof pers - 1);
  if (rc == 0)
    rc = mbedtls_ssl_config_defaults(&ctx->conf, MBEDTLS_SSL_IS_CLIENT,
                                     MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
  if (rc != 0) {
    yhc__tls_strerror(rc, why, sizeof why);
    yhc__error_set(err, YHC_ERR_TLS, 0, "TLS setup failed: %s", why);
    yhc__tls_ctx_free(ctx);
    return NULL;
  }
  mbedtls_ssl_conf_rng(&ctx->conf, mbedtls_ctr_drbg_random, &ctx->drbg);
#if MBEDTLS_VERSION_NUMBER < 0x03000000
  /* 2.x still offers TLS 1.0 and 1.1 when compiled in (Debian's is); 3.x starts at 1.2. */
  mbedtls_ssl_conf_min_version(&ctx->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
#endif
  ctx->insecure = conf->insecure;
  if (conf->insecure) {
    mbedtls_ssl_conf_authmode(&ctx->conf, MBEDTLS_SSL_VERIFY_NONE);
    yhc__log(conf->log_loop, YHC_LOG_WARN,
             "!!! TLS CERTIFICATE VERIFICATION IS OFF (tls_insecure=1): https:// and wss:// "
             "connections accept any certificate for any host, so anyone on the network path "
             "can read and change the traffic. Use this for testing only. !!!");
  } else {
    if (yhc__tls_load_cas(ctx, conf, err) < 0) {
      yhc__tls_ctx_free(ctx);
      return NULL;
    }
    mbedtls_ssl_conf_authmode(&ctx->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&ctx->conf, &ctx->ca, NULL);
  }
  return ctx;
}

/* ---- BIO over the inner stream */

static int yhc__tls_bio_send(void *ctx, const unsigned char *buf, size_t len) {
  yhc__tls *t = YHC__CAST(yhc__tls *, ctx);
  long n = t->tcp->vt->write(t->tcp, buf, YHC__MIN(len, (size_t)INT_MAX));
  if (n == YHC__AGAIN) return MBEDTLS_ERR_SSL_WANT_WRITE;
  if (n < 0) {
    t->bio_failed = 1;
    return MBEDTLS_ERR_NET_SEND_FAILED;
  }
  return (int)n;
}

static int yhc__tls_bio_recv(void *ctx, unsigned char *buf, size_t len) {
  yhc__tls *t = YHC__CAST(yhc__tls *, ctx);
  long n = t->tcp->vt->read(t->tcp, buf, YHC__MIN(len, (size_t)INT_MAX));
  if (n == YHC__AGAIN) return MBEDTLS_ERR_SSL_WANT_READ;
  if (n < 0) {
    t->bio_failed = 1;
    return MBEDTLS_ERR_NET_RECV_FAILED;
  }
  return (int)n; /* 0 = EOF: mbedTLS reports it as CONN_EOF */
}

/* ---- the stream */

static void yhc__tls_update_want(yhc__tls *t) {
  t->tcp->vt->want(t->tcp, t->want_rd || t->wr_needs_read, t->want_wr || t->rd_needs_write);
}

static void yhc__tls_pending_fire(void *ctx) {
  yhc__tls *t = YHC__CAST(yhc__tls *, ctx);
  if (!t->failed) yhc__stream_emit(&t->base, YHC__EV_READ);
}

/* Bytes already inside mbedTLS (decrypted, or a buffered record) never wake poll(). */
static void yhc__tls_check_pending(yhc__tls *t) {
  if ((mbedtls_ssl_get_bytes_avail(&t->ssl) > 0 || mbedtls_ssl_check_pending(&t->ssl)) &&
      !yhc__timer_armed(&t->pending))
    yhc__timer_start(t->loop, &t->pending, 0, yhc__tls_pending_fire, t);
}

/* Why a handshake failed, in words a user can act on. */
static void yhc__tls_handshake_error(yhc__tls *t, int ret) {
  char why[200], cause[200];
  yhc_error *e = &t->base.err;
  if (t->bio_failed) {
    yhc_error inner = t->tcp->err;
    yhc__error_set(e, inner.code ? inner.code : YHC_ERR_IO, 0, "TLS handshake with %s port %d failed: %s",
                   t->host, t->port, inner.msg);
    return;
  }
  yhc__tls_strerror(ret, why, sizeof why);
  if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
    uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
    char info[256];
    char kinds[128];
    size_t i, n;
    static const struct { uint32_t flag; const char *name; } names[] = {
        {MBEDTLS_X509_BADCERT_NOT_TRUSTED, "unknown CA or self-signed certificate"},
        {MBEDTLS_X509_BADCERT_EXPIRED, "expired certificate"},
        {MBEDTLS_X509_BADCERT_FUTURE, "certificate not yet valid"},
        {MBEDTLS_X509_BADCERT_CN_MISMATCH, "hostname mismatch"},
        {MBEDTLS_X509_BADCERT_REVOKED, "revoked certificate"}};
    info[0] = kinds[0] = 0;
    if (mbedtls_x509_crt_verify_info(info, sizeof info, "", flags) < 0) info[0] = 0;
    /* one line per flag: join them */
    n = strlen(info);
    while (n && (info[n - 1] == '\n' || info[n - 1] == ' ')) info[--n] = 0;
    for (i = 0; i < n; i++)
      if (info[i] == '\n') info[i] = ';';
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
      size_t k = strlen(kinds);
      if (flags & names[i].flag)
        snprintf(kinds + k, sizeof kinds - k, "%s%s", k ? ", " : "", names[i].name);
    }
    if (!kinds[0]) snprintf(kinds, sizeof kinds, "certificate rejected");
    yhc__error_set(e, YHC_ERR_TLS, 0,
                   "TLS handshake with %s port %d failed: certificate verification failed: %s [%s]",
                   t->host, t->port, info[0] ? info : why, kinds);
    return;
  }
  if (ret == 0 || ret == MBEDTLS_ERR_SSL_CONN_EOF) {
    snprintf(cause, sizeof cause, "the server closed the connection (not a TLS server, or it "
                                  "rejected the client hello)");
#if defined(MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION)
  } else if (ret == MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION) {
    snprintf(cause, sizeof cause, "protocol version not supported (yhc needs TLS 1.2 or later)");
#endif
#if defined(MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION)
  } else if (ret == MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION) {
    snprintf(cause, sizeof cause, "protocol version not supported (yhc needs TLS 1.2 or later)");
#endif
  } else if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE) {
#if MBEDTLS_VERSION_NUMBER < 0x03000000
    /* 2.x keeps the alert in a public field; 3.x made it private, so only the code is said */
    int alert = t->ssl.in_msg ? t->ssl.in_msg[1] : -1;
    if (alert == MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION)
      snprintf(cause, sizeof cause, "protocol version not supported: the server sent alert "
                                    "protocol_version (yhc needs TLS 1.2 or later)");
    else if (alert == MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE)
      snprintf(cause, sizeof cause, "handshake failure: the server sent alert handshake_failure "
                                    "(no common cipher suite or parameters)");
    else
      snprintf(cause, sizeof cause, "handshake failure: the server sent fatal alert %d", alert);
#else
    snprintf(cause, sizeof cause, "handshake failure: the server sent a fatal alert");
#endif
  } else {
    snprintf(cause, sizeof cause, "handshake failure");
  }
  yhc__error_set(e, YHC_ERR_TLS, 0, "TLS handshake with %s port %d failed: %s: %s", t->host,
                 t->port, cause, why);
}

static void yhc__tls_handshake_step(yhc__tls *t) {
  int ret;
  for (;;) {
    ret = mbedtls_ssl_handshake(&t->ssl);
#ifdef MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
    if (ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) continue;
#endif
    break;
  }
  if (ret == MBEDTLS_ERR_SSL_WANT_READ) {
    t->tcp->vt->want(t->tcp, 1, 0);
    return;
  }
  if (ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
    t->tcp->vt->want(t->tcp, 0, 1);
    return;
  }
  if (ret != 0) {
    yhc__tls_handshake_error(t, ret);
    t->failed = 1;
    t->tcp->vt->want(t->tcp, 0, 0);
    yhc__stream_emit(&t->base, YHC__EV_ERROR);
    return;
  }
  t->handshaken = 1;
  yhc__log(t->loop, YHC_LOG_DEBUG, "TLS with %s port %d: %s, %s", t->host, t->port,
           mbedtls_ssl_get_version(&t->ssl), mbedtls_ssl_get_ciphersuite(&t->ssl));
  yhc__tls_update_want(t);
  yhc__tls_check_pending(t);
  yhc__stream_emit(&t->base, YHC__EV_CONNECT); /* last: the owner may close us */
}

static void yhc__tls_inner_event(void *owner, int ev) {
  yhc__tls *t = YHC__CAST(yhc__tls *, owner);
  int out = 0;
  if (t->failed) return;
  if (ev & YHC__EV_ERROR) {
    t->base.err = t->tcp->err;
    t->failed = 1;
    yhc__stream_emit(&t->base, YHC__EV_ERROR);
    return;
  }
  if (!t->handshaken) {
    /* CONNECT starts the handshake; READ/WRITE continue it */
    yhc__tls_handshake_step(t);
    return;
  }
  if (ev & YHC__EV_READ) out |= YHC__EV_READ | (t->wr_needs_read ? YHC__EV_WRITE : 0);
  if (ev & YHC__EV_WRITE) out |= YHC__EV_WRITE | (t->rd_needs_write ? YHC__EV_READ : 0);
  if (out) yhc__stream_emit(&t->base, out);
}

static long yhc__tls_read(yhc__stream *s, void *buf, size_t cap) {
  yhc__tls *t = YHC__PUN(yhc__tls *, s);
  if (!t->handshaken || t->failed) return t->failed ? YHC__FAIL : YHC__AGAIN;
  if (t->eof) return 0;
  for (;;) {
    int ret = mbedtls_ssl_read(&t->ssl, YHC__CAST(unsigned char *, buf), YHC__MIN(cap, (size_t)INT_MAX));
    if (ret > 0) {
      if (t->rd_needs_write) {
        t->rd_needs_write = 0;
        yhc__tls_update_want(t);
      }
      yhc__tls_check_pending(t);
      return ret;
    }
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
      int need_wr = ret == MBEDTLS_ERR_SSL_WANT_WRITE;
      if (need_wr != t->rd_needs_write) {
        t->rd_needs_write = need_wr;
        yhc__tls_update_want(t);
      }
      yhc__timer_stop(t->loop, &t->pending);
      return YHC__AGAIN;
    }
#ifdef MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
    if (ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) continue; /* TLS 1.3 */
#endif
    if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || ret == MBEDTLS_ERR_SSL_CONN_EOF) {
      t->eof = 1;
      return 0;
    }
    t->failed = 1;
    if (t->bio_failed) {
      s->err = t->tcp->err;
    } else {
      char why[200];
      yhc__tls_strerror(ret, why, sizeof why);
      yhc__error_set(&s->err, YHC_ERR_TLS, 0, "TLS error receiving from %s port %d: %s", t->host,
                     t->port, why);
    }
    return YHC__FAIL;
  }
}

/* Bytes of a record mbedTLS has encrypted but not yet handed to the socket. 2.x keeps the
   count in a public field; 3.x made it private, and no function tells it. */
static size_t yhc__tls_out_left(const yhc__tls *t) {
#if MBEDTLS_VERSION_NUMBER < 0x03000000
  return t->ssl.out_left;
#else
  return t->ssl.MBEDTLS_PRIVATE(out_left);
#endif
}

static long yhc__tls_write(yhc__stream *s, const void *buf, size_t len) {
  yhc__tls *t = YHC__PUN(yhc__tls *, s);
  size_t chunk;
  int ret;
  if (t->failed) return YHC__FAIL;
  if (!t->handshaken) return YHC__AGAIN;
  if (!len) return 0;
  /* mbedTLS answers a retried write with the length it encrypted the first time */
  YHC_ASSERT(!t->wpend || len >= t->wpend);
  /* mbedTLS holds one outgoing record for both directions: an alert the read side writes
     (no_renegotiation, answering a HelloRequest) first flushes a record this side left
     pending, and a record it leaves pending would be taken for the retry of this write.
     Either way the bytes would go twice or not at all (fuzz_tls found it), so: */
  if (t->wpend && !yhc__tls_out_left(t)) { /* ... our record went out meanwhile */
    chunk = t->wpend;
    t->wpend = 0;
    if (t->wr_needs_read) {
      t->wr_needs_read = 0;
      yhc__tls_update_want(t);
    }
    return (long)chunk;
  }
  if (!t->wpend && yhc__tls_out_left(t)) { /* ... theirs goes first: a 0-byte write flushes it */
    ret = mbedtls_ssl_write(&t->ssl, YHC__CAST(const unsigned char *, buf), 0);
    if (ret == MBEDTLS_ERR_SSL_WANT_WRITE || (ret == 0 && yhc__tls_out_left(t))) return YHC__AGAIN;
  }
  chunk = t->wpend ? YHC__MIN(t->wpend, len) : YHC__MIN(len, (size_t)INT_MAX);
  ret = mbedtls_ssl_write(&t->ssl, YHC__CAST(const unsigned char *, buf), chunk);
  if (ret > 0) {
    t->wpend = 0;
    if (t->wr_needs_read) {
      t->wr_needs_read = 0;
      yhc__tls_update_want(t);
    }
    return ret;
  }
  if (ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
    t->wpend = chunk;
    return YHC__AGAIN;
  }
  if (ret == MBEDTLS_ERR_SSL_WANT_READ) {
    if (!t->wr_needs_read) {
      t->wr_needs_read = 1;
      yhc__tls_update_want(t);
    }
    return YHC__AGAIN;
  }
  t->failed = 1;
  if (t->bio_failed) {
    s->err = t->tcp->err;
  } else {
    char why[200];
    yhc__tls_strerror(ret, why, sizeof why);
    yhc__error_set(&s->err, YHC_ERR_TLS, 0, "TLS error sending to %s port %d: %s", t->host,
                   t->port, why);
  }
  return YHC__FAIL;
}

static void yhc__tls_want(yhc__stream *s, int rd, int wr) {
  yhc__tls *t = YHC__PUN(yhc__tls *, s);
  t->want_rd = rd;
  t->want_wr = wr;
  if (t->handshaken && !t->failed) yhc__tls_update_want(t);
}

static void yhc__tls_close(yhc__stream *s) {
  yhc__tls *t = YHC__PUN(yhc__tls *, s);
  yhc__timer_stop(t->loop, &t->pending);
  /* best effort, never waits: a server that wants close_notify gets it when the socket
     has room, and a missing one is no harm to an HTTP client */
  if (t->handshaken && !t->eof && !t->failed && !t->bio_failed) mbedtls_ssl_close_notify(&t->ssl);
  mbedtls_ssl_free(&t->ssl);
  t->tcp->vt->close(t->tcp);
  YHC_FREE(t);
}

/* Alive when the TCP stream is and mbedTLS holds nothing unread (which would be out of turn). */
static int yhc__tls_alive(yhc__stream *s) {
  yhc__tls *t = YHC__PUN(yhc__tls *, s);
  if (t->eof || t->failed || !t->handshaken || mbedtls_ssl_get_bytes_avail(&t->ssl)) return 0;
  return !t->tcp->vt->alive || t->tcp->vt->alive(t->tcp);
}

static const yhc__stream_vt yhc__tls_vt = {yhc__tls_read, yhc__tls_write, yhc__tls_want,
                                           yhc__tls_close, yhc__tls_alive};

/* Opens a TLS stream to host:port (DNS and connect as yhc__tcp_open). *ctx is the shared
   context: created here on first use, freed by the caller with yhc__tls_ctx_free() after
   every stream that used it is closed. conf is read only when creating the context. The
   stream emits CONNECT after the handshake, or ERROR (err names the cause). */
static yhc__stream *yhc__tls_open(yhc_loop *loop, yhc__tls_ctx **ctx, const yhc__tls_conf *conf,
                                  const char *host, int port, yhc_error *err) {
  yhc__tls *t;
  int rc;
  if (!*ctx) {
    *ctx = yhc__tls_ctx_new(conf, err);
    if (!*ctx) return NULL;
  }
  t = YHC__NEW(yhc__tls);
  if (!t) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory opening a TLS connection");
    return NULL;
  }
  t->base.vt = &yhc__tls_vt;
  t->loop = loop;
  t->port = port;
  snprintf(t->host, sizeof t->host, "%s", host);
  mbedtls_ssl_init(&t->ssl);
  rc = mbedtls_ssl_setup(&t->ssl, &(*ctx)->conf);
  /* SNI and the name the certificate must carry (a literal IP is checked against the
     certificate's names too; mbedTLS 2.28 matches only DNS names and the CN) */
  if (rc == 0) rc = mbedtls_ssl_set_hostname(&t->ssl, host);
  if (rc != 0) {
    char why[200];
    yhc__tls_strerror(rc, why, sizeof why);
    yhc__error_set(err, rc == MBEDTLS_ERR_SSL_ALLOC_FAILED ? YHC_ERR_NOMEM : YHC_ERR_TLS, 0,
                   "TLS setup for %s port %d failed: %s", host, port, why);
    mbedtls_ssl_free(&t->ssl);
    YHC_FREE(t);
    return NULL;
  }
  mbedtls_ssl_set_bio(&t->ssl, t, yhc__tls_bio_send, yhc__tls_bio_recv, NULL);
  t->tcp = yhc__tcp_open(loop, host, port, err);
  if (!t->tcp) {
    mbedtls_ssl_free(&t->ssl);
    YHC_FREE(t);
    return NULL;
  }
  t->tcp->owner = t;
  t->tcp->on_event = yhc__tls_inner_event;
  return &t->base;
}

#endif /* YHC_MBEDTLS */

/* ==== HTTP/1.1 client ============================================================= */
/* Owns: URL parsing, the response parsers (head, chunked body), request serialisation,
   connections, the per-origin keep-alive pool and request lifetimes. Uses streams, watchers
   and timers from the layer above; never calls poll().

   The parsers are pure functions over bytes (consumed / need more / error with a reason and
   an offset) so tests and fuzzers drive them directly at any split. A request is serialised
   once at submission; the same bytes can then be sent again (stale keep-alive retry, or the
   cluster layer moving it to another provider) without the caller's buffers. An "origin"
   (yhc__host) is a queue plus connections opened by a pluggable opener: plain TCP for
   http://, a VPN tunnel for a Golem service instance. */

#ifndef YHC_VERSION
#  define YHC_VERSION "0.1.0"
#endif

/* ---- URL */

static int yhc__is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int yhc__is_digit(int c) { return c >= '0' && c <= '9'; }

YHCDEF int yhc_url_parse(const char *url, size_t len, yhc_url *out, yhc_error *err) {
  size_t i = 0, auth_start, auth_end, host_end, p;
  memset(out, 0, sizeof *out);
  if (!url) {
    yhc__error_set(err, YHC_ERR_URL, 0, "URL is NULL");
    return -1;
  }
  while (i < len && (yhc__is_alpha((unsigned char)url[i]) ||
                     (i > 0 && (yhc__is_digit((unsigned char)url[i]) || url[i] == '+' ||
                                url[i] == '-' || url[i] == '.'))))
    i++;
  if (i == 0 || i + 2 >= len + 0 || url[i] != ':' || url[i + 1] != '/' || url[i + 2] != '/') {
    yhc__error_set(err, YHC_ERR_URL, i, "URL must start with scheme:// (got \"%.*s\")",
                   (int)YHC__MIN(len, 64), url);
    return -1;
  }
  out->scheme.ptr = url;
  out->scheme.len = i;
  auth_start = i + 3;
  auth_end = auth_start;
  while (auth_end < len && url[auth_end] != '/' && url[auth_end] != '?' && url[auth_end] != '#')
    auth_end++;
  for (p = auth_start; p < auth_end; p++) {
    unsigned char c = (unsigned char)url[p];
    if (c <= 0x20 || c == 0x7f) {
      yhc__error_set(err, YHC_ERR_URL, p, "URL has a space or control character at offset %zu", p);
      return -1;
    }
  }
  /* userinfo ends at the last '@' of the authority */
  for (p = auth_end; p > auth_start; p--) {
    if (url[p - 1] == '@') {
      out->userinfo.ptr = url + auth_start;
      out->userinfo.len = p - 1 - auth_start;
      auth_start = p;
      break;
    }
  }
  if (auth_start < auth_end && url[auth_start] == '[') {
    size_t close_b = auth_start + 1;
    while (close_b < auth_end && url[close_b] != ']') close_b++;
    if (close_b == auth_end) {
      yhc__error_set(err, YHC_ERR_URL, auth_start, "unterminated [ in URL host");
      return -1;
    }
    out->host.ptr = url + auth_start + 1;
    out->host.len = close_b - auth_start - 1;
    host_end = close_b + 1;
    if (host_end < auth_end && url[host_end] != ':') {
      yhc__error_set(err, YHC_ERR_URL, host_end, "unexpected character after ] in URL");
      return -1;
    }
  } else {
    host_end = auth_start;
    while (host_end < auth_end && url[host_end] != ':') host_end++;
    out->host.ptr = url + auth_start;
    out->host.len = host_end - auth_start;
  }
  if (out->host.len == 0) {
    yhc__error_set(err, YHC_ERR_URL, auth_start, "URL has no host");
    return -1;
  }
  if (host_end < auth_end) { /* ":port" */
    long port = 0;
    size_t d = host_end + 1;
    if (d == auth_end) port = -1;
    for (; d < auth_end; d++) {
      if (!yhc__is_digit((unsigned char)url[d]) || port > 65535) {
        port = -1;
        break;
      }
      port = port * 10 + (url[d] - '0');
    }
    if (port <= 0 || port > 65535) {
      yhc__error_set(err, YHC_ERR_URL, host_end, "invalid port in URL");
      return -1;
    }
    out->port = (int)port;
  } else if (yhc__str_ieq(out->scheme, "http") || yhc__str_ieq(out->scheme, "ws")) {
    out->port = 80;
  } else if (yhc__str_ieq(out->scheme, "https") || yhc__str_ieq(out->scheme, "wss")) {
    out->port = 443;
  } else {
    yhc__error_set(err, YHC_ERR_URL, 0, "unknown URL scheme \"%.*s\" and no port",
                   (int)YHC__MIN(out->scheme.len, 32), url);
    return -1;
  }
  p = auth_end;
  while (p < len && url[p] != '#') {
    unsigned char c = (unsigned char)url[p];
    if (c <= 0x20 || c == 0x7f) {
      yhc__error_set(err, YHC_ERR_URL, p, "URL has a space or control character at offset %zu", p);
      return -1;
    }
    p++;
  }
  if (p == auth_end) {
    out->target.ptr = "/";
    out->target.len = 1;
  } else {
    out->target.ptr = url + auth_end;
    out->target.len = p - auth_end;
  }
  if (p < len) {
    out->fragment.ptr = url + p + 1;
    out->fragment.len = len - p - 1;
  }
  return 0;
}

/* ---- response head */

/* RFC 9110 token characters, for header names. */
/* RFC 9110 5.6.2 tchar: ALPHA, DIGIT and "!#$%&'*+-.^_`|~"; one bit per byte value, since
   every byte of every header name goes through it */
static int yhc__is_tchar(unsigned char c) {
  static const uint32_t bits[8] = {0, 0x03ff6cfa, 0xc7fffffe, 0x57ffffff, 0, 0, 0, 0};
  return (int)((bits[c >> 5] >> (c & 31)) & 1);
}

/* Finds the end of the header section (the byte after its empty line) in p[from..len), or 0.
   Bare LF line ends are accepted, as most clients do. */
static size_t yhc__find_head_end(const char *p, size_t len, size_t from) {
  const char *q = p + from, *end = p + len;
  while (q < end) {
    const char *nl = YHC__CAST(const char *, memchr(q, '\n', (size_t)(end - q)));
    if (!nl) return 0;
    if (nl + 1 < end && nl[1] == '\n') return (size_t)(nl + 2 - p);
    if (nl + 2 < end && nl[1] == '\r' && nl[2] == '\n') return (size_t)(nl + 3 - p);
    q = nl + 1;
  }
  return 0;
}

/* Parses header fields "name: value" up to and including the empty line. Returns bytes
   consumed, 0 when the empty line has not arrived, -1 on error. `base` is added to offsets
   in messages. */
/* Whether any of the 8 bytes at p is below 0x20 (CR, LF, tab, controls) or DEL: field values
   are skipped 8 bytes at a time until one is, then byte by byte. The test is exact about
   whether there is one (bytes from 0x80 up count as none, as they should). */
static int yhc__has_ctl8(const char *p) {
  const uint64_t ones = UINT64_C(0x0101010101010101), high = UINT64_C(0x8080808080808080);
  uint64_t x, d;
  memcpy(&x, p, 8);
  d = x ^ (ones * 0x7f);
  return (((x - ones * 0x20) & ~x) | ((d - ones) & ~d)) & high ? 1 : 0;
}

static long yhc__parse_fields(const char *p, size_t len, size_t base, yhc_header_view *hv,
                              size_t cap, size_t *count, const char *what, yhc_error *err) {
  size_t i = 0, n = 0;
  for (;;) {
    size_t name_start = i, name_end, vs, ve, eol;
    if (i >= len) return 0;
    if (p[i] == '\n') { i += 1; break; }
    if (p[i] == '\r') {
      if (i + 1 >= len) return 0;
      if (p[i + 1] != '\n') goto bad_cr;
      i += 2;
      break;
    }
    if (p[i] == ' ' || p[i] == '\t') {
      yhc__error_set(err, YHC_ERR_PROTOCOL, base + i,
                     "obsolete line folding in %s at offset %zu", what, base + i);
      return -1;
    }
    while (i < len && yhc__is_tchar((unsigned char)p[i])) i++;
    if (i >= len) return 0;
    name_end = i;
    if (p[i] != ':' || name_end == name_start) {
      yhc__error_set(err, YHC_ERR_PROTOCOL, base + i, "invalid character in %s name at offset %zu",
                     what, base + i);
      return -1;
    }
    i++;
    while (i < len && (p[i] == ' ' || p[i] == '\t')) i++;
    vs = i;
    while (len - i >= 8 && !yhc__has_ctl8(p + i)) i += 8;
    while (i < len && p[i] != '\r' && p[i] != '\n') {
      unsigned char c = (unsigned char)p[i];
      if ((c < 0x20 && c != '\t') || c == 0x7f) {
        yhc__error_set(err, YHC_ERR_PROTOCOL, base + i,
                       "control character 0x%02x in %s value at offset %zu", c, what, base + i);
        return -1;
      }
      i++;
    }
    if (i >= len) return 0;
    eol = i;
    if (p[i] == '\r') {
      if (i + 1 >= len) return 0;
      if (p[i + 1] != '\n') goto bad_cr;
      i += 2;
    } else {
      i += 1;
    }
    ve = eol;
    while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t')) ve--;
    if (n >= cap) {
      yhc__error_set(err, YHC_ERR_LIMIT, base + name_start, "%s has more than %zu fields", what, cap);
      return -1;
    }
    hv[n].name.ptr = p + name_start;
    hv[n].name.len = name_end - name_start;
    hv[n].value.ptr = p + vs;
    hv[n].value.len = ve - vs;
    n++;
  }
  *count = n;
  return (long)i;
bad_cr:
  yhc__error_set(err, YHC_ERR_PROTOCOL, base + i, "bare CR in %s at offset %zu", what, base + i);
  return -1;
}

typedef struct yhc__head {
  int status;
  int minor;
  yhc_str reason;
  size_t nheaders;
} yhc__head;

/* Parses a status line and header section. Returns bytes consumed, 0 = need more, -1 = error.
   Header views point into p. */
static long yhc__parse_head(const char *p, size_t len, yhc__head *h, yhc_header_view *hv,
                            size_t cap, yhc_error *err) {
  size_t i, rs;
  long n;
  memset(h, 0, sizeof *h);
  if (len < 5) {
    if (memcmp(p, "HTTP/", len) != 0) goto bad_version;
    return 0;
  }
  if (memcmp(p, "HTTP/1.", 7 <= len ? 7 : len) != 0) goto bad_version;
  if (len < 13) {
    /* not enough for "HTTP/1.x NNN " yet; still reject early if what we have is wrong */
    if (len > 7 && p[7] != '0' && p[7] != '1') goto bad_version;
    return memchr(p, '\n', len) ? (yhc__error_set(err, YHC_ERR_PROTOCOL, 0, "truncated HTTP status line"), -1) : 0;
  }
  if ((p[7] != '0' && p[7] != '1') || p[8] != ' ') goto bad_version;
  h->minor = p[7] - '0';
  if (!yhc__is_digit((unsigned char)p[9]) || !yhc__is_digit((unsigned char)p[10]) ||
      !yhc__is_digit((unsigned char)p[11]) || p[9] == '0') {
    yhc__error_set(err, YHC_ERR_PROTOCOL, 9, "invalid HTTP status code \"%.3s\"", p + 9);
    return -1;
  }
  h->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  i = 12;
  if (p[i] != ' ' && p[i] != '\r' && p[i] != '\n') {
    yhc__error_set(err, YHC_ERR_PROTOCOL, i, "invalid HTTP status line");
    return -1;
  }
  if (p[i] == ' ') i++;
  rs = i;
  while (i < len && p[i] != '\r' && p[i] != '\n') {
    unsigned char c = (unsigned char)p[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      yhc__error_set(err, YHC_ERR_PROTOCOL, i, "control character in HTTP reason phrase");
      return -1;
    }
    i++;
  }
  if (i >= len) return 0;
  h->reason.ptr = p + rs;
  h->reason.len = i - rs;
  if (p[i] == '\r') {
    if (i + 1 >= len) return 0;
    if (p[i + 1] != '\n') {
      yhc__error_set(err, YHC_ERR_PROTOCOL, i, "bare CR in HTTP status line");
      return -1;
    }
    i += 2;
  } else {
    i++;
  }
  n = yhc__parse_fields(p + i, len - i, i, hv, cap, &h->nheaders, "response header", err);
  if (n <= 0) return n;
  return (long)i + n;
bad_version:
  yhc__error_set(err, YHC_ERR_PROTOCOL, 0, "response does not start with HTTP/1.0 or HTTP/1.1");
  return -1;
}

/* ---- chunked body */

enum { YHC__CH_SIZE, YHC__CH_DATA, YHC__CH_DATA_END, YHC__CH_TRAILER, YHC__CH_DONE };

typedef struct yhc__chunked {
  int state;
  uint64_t left;
} yhc__chunked;

typedef struct yhc__chunk_out {
  const char *data;   /* a piece of body, or NULL */
  size_t len;
  const char *trailer;/* the trailer section (without the final empty line), when done */
  size_t trailer_len;
  int done;
} yhc__chunk_out;

static int yhc__hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = yhc__lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* One step of chunked decoding over p[0..len). Returns bytes consumed (0 with nothing in
   `out` = need more), or -1 on error. At most one data piece per call, so the caller can
   stream it out before continuing. `line_max` bounds a size line and the trailer section. */
static long yhc__chunk_step(yhc__chunked *c, const char *p, size_t len, size_t max_digits,
                            size_t line_max, size_t base, yhc__chunk_out *out, yhc_error *err) {
  memset(out, 0, sizeof *out);
  switch (c->state) {
  case YHC__CH_SIZE: {
    const char *nl = YHC__CAST(const char *, memchr(p, '\n', len));
    size_t i = 0, digits = 0, eol;
    uint64_t size = 0;
    if (!nl) {
      if (len > line_max) {
        yhc__error_set(err, YHC_ERR_LIMIT, base, "chunk size line exceeds %zu bytes", line_max);
        return -1;
      }
      /* still reject garbage early so an endless bogus line fails fast */
      if (len > 0 && yhc__hexval((unsigned char)p[0]) < 0) goto bad_size;
      for (i = 0; i < len && yhc__hexval((unsigned char)p[i]) >= 0; i++)
        if (i >= max_digits) goto too_many;
      return 0;
    }
    eol = (size_t)(nl - p);
    for (; i < eol && yhc__hexval((unsigned char)p[i]) >= 0; i++) {
      if (++digits > max_digits) goto too_many;
      if (size >> 60) goto too_many;
      size = (size << 4) | (uint64_t)yhc__hexval((unsigned char)p[i]);
    }
    if (digits == 0) goto bad_size;
    while (i < eol && (p[i] == ' ' || p[i] == '\t')) i++;
    if (i < eol && p[i] == ';') {
      for (; i < eol; i++) {
        unsigned char ch = (unsigned char)p[i];
        if ((ch < 0x20 && ch != '\t' && !(ch == '\r' && i + 1 == eol)) || ch == 0x7f) goto bad_size;
      }
    }
    if (i < eol && !(p[i] == '\r' && i + 1 == eol)) goto bad_size;
    c->left = size;
    c->state = size ? YHC__CH_DATA : YHC__CH_TRAILER;
    return (long)(eol + 1);
  }
  case YHC__CH_DATA: {
    size_t take = len < c->left ? len : (size_t)c->left;
    if (!take) return 0;
    out->data = p;
    out->len = take;
    c->left -= take;
    if (!c->left) c->state = YHC__CH_DATA_END;
    return (long)take;
  }
  case YHC__CH_DATA_END:
    if (len == 0) return 0;
    if (p[0] == '\n') { c->state = YHC__CH_SIZE; return 1; }
    if (p[0] == '\r') {
      if (len < 2) return 0;
      if (p[1] == '\n') { c->state = YHC__CH_SIZE; return 2; }
    }
    yhc__error_set(err, YHC_ERR_PROTOCOL, base, "missing CRLF after chunk data at offset %zu", base);
    return -1;
  case YHC__CH_TRAILER: {
    size_t end;
    if (len == 0) return 0;
    if (p[0] == '\n') { c->state = YHC__CH_DONE; out->done = 1; return 1; }
    if (p[0] == '\r') {
      if (len < 2) return 0;
      if (p[1] == '\n') { c->state = YHC__CH_DONE; out->done = 1; return 2; }
    }
    end = yhc__find_head_end(p, len, 0);
    if (!end) {
      if (len > line_max) {
        yhc__error_set(err, YHC_ERR_LIMIT, base, "response trailer section exceeds %zu bytes", line_max);
        return -1;
      }
      return 0;
    }
    if (end > line_max) {
      yhc__error_set(err, YHC_ERR_LIMIT, base, "response trailer section exceeds %zu bytes", line_max);
      return -1;
    }
    out->trailer = p;
    out->trailer_len = end;
    out->done = 1;
    c->state = YHC__CH_DONE;
    return (long)end;
  }
  default:
    return 0;
  }
too_many:
  yhc__error_set(err, YHC_ERR_LIMIT, base, "chunk size has more than %zu hex digits", max_digits);
  return -1;
bad_size:
  yhc__error_set(err, YHC_ERR_PROTOCOL, base, "invalid chunk size line at offset %zu", base);
  return -1;
}

/* ---- client objects */

/* Where a request is: nowhere yet, in an origin's queue, on a connection, held by an upper
   layer (a cluster's queue), or finished (its answer waits in the client's completion queue
   until the loop delivers it). */
enum { YHC__REQ_NEW, YHC__REQ_QUEUED, YHC__REQ_ACTIVE, YHC__REQ_PARKED, YHC__REQ_DONE };
enum { YHC__BODY_NONE, YHC__BODY_LENGTH, YHC__BODY_CHUNKED, YHC__BODY_CLOSE };
enum { YHC__PH_HEAD, YHC__PH_BODY };

typedef struct yhc__host yhc__host;
typedef struct yhc__conn yhc__conn;
typedef struct yhc__req yhc__req;

/* A FIFO of requests linked through their q_prev/q_next: an origin's queue, a cluster's
   queue, the deferred answers. A request is in at most one at a time. */
typedef struct yhc__reqq {
  yhc__req *head, *tail;
  size_t len;
} yhc__reqq;

/* A response's trailer section: rare, so not carried by every request. */
typedef struct yhc__trailers {
  yhc_buf text;
  yhc_header_view *v;
  size_t n, cap;
} yhc__trailers;

#define YHC__FAILED_ON_MAX 160 /* "prov1, prov2, ..." in a request's final error */

struct yhc__req {
  yhc_http *http;
  uint64_t id;
  yhc__req *all_prev, *all_next;  /* http->live: every request not yet finished */
  yhc__req *q_prev, *q_next;      /* links in the one yhc__reqq it is in */
  yhc__host *host;
  yhc__conn *conn;
  /* what to send */
  yhc_buf wire;
  int (*on_body)(void *user, const void *data, size_t len);
  int (*on_head)(void *user, const yhc_response *head);
  yhc_response_fn cb;
  void *user;
  /* internal completion hook; the default hands the response to cb and recycles */
  void (*on_done)(yhc__req *req);
  void (*unpark)(yhc__req *req);  /* takes a PARKED request out of its owner's queue */
  void *owner;                    /* the upper layer's object (a cluster) */
  void *slot;                     /* where the upper layer sent it (an instance) */
  char *failed_on;                /* providers that failed it, for the final error: allocated
                                     at the first failure, so a queued request does not carry it */
  uint64_t submitted_ms;
  uint64_t dispatched_ms;         /* when the upper layer last handed it to a connection */
  yhc__timer deadline;
  int timeout_ms;
  int attempts;
  /* what came back */
  int status, minor;
  yhc_str reason;
  yhc_buf head;
  yhc_header_view *hv;
  size_t nh, hvcap;
  struct yhc__trailers *tr;       /* allocated by the first response with trailers */
  yhc_buf body;
  uint64_t body_total;
  uint64_t body_left;
  yhc__chunked chunk;
  char *err_msg;                  /* how it failed (err_code), allocated when it fails, so
                                     that a queued request carries no room for a message */
  yhc__req *free_next;
  yhc_err err_code;               /* 0: it has not failed */
  /* small states and flags together, one byte each: a queued request should cost little
     (100,000 of them are a normal backlog) */
  unsigned char where;            /* YHC__REQ_* */
  unsigned char body_mode;        /* YHC__BODY_* */
  unsigned char is_head;
  unsigned char asked_close;      /* the caller sent Connection: close (RFC 9112 9.6) */
  unsigned char retryable;        /* safe to resend on a stale keep-alive connection */
  unsigned char stale_retried;
  unsigned char streamed;         /* the user has seen part of the answer: no retry now */
  unsigned char sent;             /* bytes of it reached a connection */
  unsigned char deadline_hit;
  unsigned char keepalive;
  unsigned char got_bytes;
  unsigned short interim;         /* 1xx responses skipped so far (at most max_interim) */
};

static void yhc__reqq_push(yhc__reqq *q, yhc__req *r, int front) {
  if (front) {
    r->q_prev = NULL;
    r->q_next = q->head;
    if (q->head) q->head->q_prev = r; else q->tail = r;
    q->head = r;
  } else {
    r->q_next = NULL;
    r->q_prev = q->tail;
    if (q->tail) q->tail->q_next = r; else q->head = r;
    q->tail = r;
  }
  q->len++;
}

static void yhc__reqq_remove(yhc__reqq *q, yhc__req *r) {
  if (r->q_prev) r->q_prev->q_next = r->q_next; else q->head = r->q_next;
  if (r->q_next) r->q_next->q_prev = r->q_prev; else q->tail = r->q_prev;
  r->q_prev = r->q_next = NULL;
  q->len--;
}

typedef yhc__stream *(*yhc__open_fn)(yhc__host *h, void *ctx, yhc_error *err);

struct yhc__host {
  yhc_http *http;
  char *key;        /* "scheme://host:port", or a name for external origins */
  char *hostname;
  int port;
  int tls;
  yhc__open_fn open;/* NULL = TCP (or TLS) to hostname:port */
  void *open_ctx;
  int external;     /* owned by another layer (a service instance), not by the client */
  int max_conns;
  yhc__conn *conns;
  int nconns, nidle, nbusy;
  yhc__reqq q;
  yhc_error last_error; /* why the last connection attempt failed */
  yhc__host *next;
  /* optional observer, e.g. the cluster noticing a tunnel that failed */
  void (*on_conn_error)(yhc__host *h, const yhc_error *err);
};

enum { YHC__CONN_CONNECTING, YHC__CONN_IDLE, YHC__CONN_BUSY };

struct yhc__conn {
  yhc__host *host;
  yhc__stream *s;
  yhc__conn *prev, *next;
  int state;
  int served;
  yhc__req *req;
  size_t wpos;
  yhc_buf rbuf;
  size_t rpos;
  size_t scan;
  int phase;
  yhc__timer timer;
  uint64_t last_activity;
  int in_io;
  int dead;
};

struct yhc_http {
  yhc_loop *loop;
  yhc_http_desc d;
  yhc__host *hosts;
  yhc__req *live;
  /* Finished requests whose callbacks have not run yet. Every answer goes through here and
     is delivered by done_timer from the top of the loop's dispatch, never from inside the
     library frame (or public call) that ended the request. */
  yhc__reqq done;
  yhc__timer done_timer;
  int holds;                     /* frames running user code; the last one frees a destroyed client */
  yhc__req *free_reqs;
  int nfree;
  uint64_t next_id;
  int destroying;
  char user_agent[64];
  int bad_user_agent;     /* requests fail with YHC_ERR_INVALID */
  yhc__tls_ctx *tls;      /* created on the first https:// request */
  yhc__tls_conf tls_conf;
};

#define YHC__FREE_REQS_MAX 256

static void yhc__host_pump(yhc__host *h);
static void yhc__conn_close(yhc__conn *c);
static void yhc__req_fail(yhc__req *r, yhc_err code, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- request records (recycled so a warm keep-alive request allocates nothing) */

static void yhc__req_reset_response(yhc__req *r) {
  r->status = r->minor = 0;
  r->reason.ptr = NULL;
  r->reason.len = 0;
  r->head.len = 0;
  if (r->tr) r->tr->text.len = r->tr->n = 0;
  r->body.len = 0;
  r->body_total = 0;
  r->nh = 0;
  r->body_mode = YHC__BODY_NONE;
  r->body_left = 0;
  r->chunk.state = YHC__CH_SIZE;
  r->chunk.left = 0;
  r->keepalive = 0;
  r->got_bytes = 0;
  r->interim = 0;
  r->err_code = YHC_ERR_OK;
  YHC_FREE(r->err_msg);
  r->err_msg = NULL;
}

/* The request fails with `e` (its code and message; the message is copied). */
static void yhc__req_store_error(yhc__req *r, const yhc_error *e) {
  YHC_FREE(r->err_msg);
  r->err_code = e->code;
  r->err_msg = yhc__strdup(e->msg); /* NULL when out of memory: yhc__req_msg says so */
}

static void yhc__req_vset_error(yhc__req *r, yhc_err code, const char *fmt, va_list ap) {
  yhc_error e;
  yhc__error_vset(&e, code, 0, fmt, ap);
  yhc__req_store_error(r, &e);
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static void yhc__req_set_error(yhc__req *r, yhc_err code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  yhc__req_vset_error(r, code, fmt, ap);
  va_end(ap);
}

static const char *yhc__req_msg(const yhc__req *r) {
  if (!r->err_code) return "";
  return r->err_msg ? r->err_msg : "out of memory recording the error";
}

static yhc__req *yhc__req_new(yhc_http *http) {
  yhc__req *r = http->free_reqs;
  if (r) {
    http->free_reqs = r->free_next;
    http->nfree--;
  } else {
    r = YHC__NEW(yhc__req);
    if (!r) return NULL;
  }
  {
    /* keep buffers (their capacity is the point of recycling), clear the rest */
    yhc_buf wire = r->wire, head = r->head, body = r->body;
    yhc_header_view *hv = r->hv;
    yhc__trailers *tr = r->tr;
    size_t hvcap = r->hvcap;
    YHC_FREE(r->failed_on);
    YHC_FREE(r->err_msg);
    memset(r, 0, sizeof *r);
    r->wire = wire; r->wire.len = 0;
    r->head = head; r->body = body; r->tr = tr;
    r->hv = hv; r->hvcap = hvcap;
  }
  r->http = http;
  r->id = ++http->next_id;
  yhc__req_reset_response(r);
  r->all_next = http->live;
  if (r->all_next) r->all_next->all_prev = r;
  http->live = r;
  return r;
}

static void yhc__req_free_mem(yhc__req *r) {
  YHC_FREE(r->failed_on);
  YHC_FREE(r->err_msg);
  yhc_buf_free(&r->wire);
  yhc_buf_free(&r->head);
  if (r->tr) {
    yhc_buf_free(&r->tr->text);
    YHC_FREE(r->tr->v);
    YHC_FREE(r->tr);
  }
  yhc_buf_free(&r->body);
  YHC_FREE(r->hv);
  YHC_FREE(r);
}

/* Returns a finished request's record to the free list. */
static void yhc__req_release(yhc__req *r) {
  yhc_http *http = r->http;
  YHC_ASSERT(r->where == YHC__REQ_DONE);
  /* big buffers are not worth keeping around */
  if (r->body.cap > (size_t)1 << 20) yhc_buf_free(&r->body);
  if (r->wire.cap > (size_t)1 << 20) yhc_buf_free(&r->wire);
  if (http->nfree < YHC__FREE_REQS_MAX && !http->destroying) {
    r->free_next = http->free_reqs;
    http->free_reqs = r;
    http->nfree++;
  } else {
    yhc__req_free_mem(r);
  }
}

static void yhc__req_unlink_live(yhc__req *r) {
  yhc_http *http = r->http;
  if (r->all_prev) r->all_prev->all_next = r->all_next; else if (http->live == r) http->live = r->all_next;
  if (r->all_next) r->all_next->all_prev = r->all_prev;
  r->all_prev = r->all_next = NULL;
}

static void yhc__response_view(const yhc__req *r, yhc_response *resp) {
  memset(resp, 0, sizeof *resp);
  resp->id = r->id;
  resp->err = r->err_code;
  resp->error = yhc__req_msg(r);
  resp->status = r->status;
  resp->http_minor = r->minor;
  resp->reason = r->reason;
  resp->headers = r->hv;
  resp->header_count = r->nh;
  resp->trailers = r->tr ? r->tr->v : NULL;
  resp->trailer_count = r->tr ? r->tr->n : 0;
  resp->body.ptr = r->body.ptr ? r->body.ptr : "";
  resp->body.len = r->body.len;
}

/* Runs the user's callback of a finished request and recycles the record. */
static void yhc__req_run_callback(yhc__req *r) {
  yhc_response resp;
  yhc__response_view(r, &resp);
  if (r->cb) r->cb(&resp, r->user);
  yhc__req_release(r);
}

static void yhc__http_drain(void *ctx);
static void yhc__http_wake(yhc_http *http);

/* Queues r's answer for the loop (the record stays until its callback has run). */
static void yhc__req_deliver_user(yhc__req *r) {
  yhc__reqq_push(&r->http->done, r, 0);
  yhc__http_wake(r->http);
}

/* A frame about to run user code holds the client, so a yhc_http_destroy() from inside that
   code leaves the memory this frame still reads; the last frame to let go frees it. */
static void yhc__http_hold(yhc_http *http) { http->holds++; }
static void yhc__http_free(yhc_http *http);
static void yhc__http_unhold(yhc_http *http) {
  if (--http->holds == 0 && http->destroying) yhc__http_free(http);
}

/* Makes the loop drain the completion queue at its next top level (a zero-delay timer). */
static void yhc__http_wake(yhc_http *http) {
  if (!http->destroying && !yhc__timer_armed(&http->done_timer))
    yhc__timer_start(http->loop, &http->done_timer, 0, yhc__http_drain, http);
}

/* Delivers the answers that were queued when the drain began; answers queued by these
   callbacks wait for the next round, so a callback that resubmits a failing request forever
   cannot starve I/O. */
static void yhc__http_drain(void *ctx) {
  yhc_http *http = YHC__CAST(yhc_http *, ctx);
  size_t n = http->done.len;
  yhc__http_hold(http);
  while (n-- && http->done.head && !http->destroying) {
    yhc__req *r = http->done.head;
    yhc__reqq_remove(&http->done, r);
    yhc__req_run_callback(r);
  }
  if (http->done.head) yhc__http_wake(http);
  yhc__http_unhold(http);
}

/* Detaches r from wherever it waits, runs the upper layer's completion hook (internal code:
   accounting, a retry elsewhere) and queues the answer. No user code runs here, so every
   library frame may end a request and go on using its own objects. */
static void yhc__req_complete(yhc__req *r) {
  yhc_http *http = r->http;
  YHC_ASSERT(r->where != YHC__REQ_DONE);
  yhc__timer_stop(http->loop, &r->deadline);
  if (r->where == YHC__REQ_QUEUED) {
    yhc__reqq_remove(&r->host->q, r);
  } else if (r->where == YHC__REQ_PARKED) {
    if (r->unpark) r->unpark(r);
  } else if (r->where == YHC__REQ_ACTIVE && r->conn) {
    yhc__conn *c = r->conn;
    c->req = NULL;
    r->conn = NULL;
    /* a response cut short leaves the connection in an unknown state */
    if (r->err_code) yhc__conn_close(c);
  }
  r->q_prev = r->q_next = NULL;
  r->where = YHC__REQ_DONE;
  yhc__req_unlink_live(r);
  if (r->on_done) r->on_done(r); else yhc__req_deliver_user(r);
}

static void yhc__req_fail(yhc__req *r, yhc_err code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  yhc__req_vset_error(r, code, fmt, ap);
  va_end(ap);
  yhc__req_complete(r);
}

static void yhc__req_fail_with(yhc__req *r, const yhc_error *e) {
  yhc__req_store_error(r, e);
  if (!r->err_code) r->err_code = YHC_ERR_IO;
  yhc__req_complete(r);
}

static int yhc__token_list_has(yhc_str v, const char *tok);

/* ---- request serialisation */

static int yhc__header_ok(const char *s, int is_name) {
  const unsigned char *p = YHC__PUN(const unsigned char *, s);
  if (!p) return 0;
  if (is_name && !*p) return 0;
  for (; *p; p++) {
    if (*p == '\r' || *p == '\n') return 0;
    if (is_name && !yhc__is_tchar(*p)) return 0;
  }
  return 1;
}

static int yhc__method_ok(const char *m) {
  if (!*m) return 0;
  for (; *m; m++)
    if (!yhc__is_tchar((unsigned char)*m)) return 0;
  return 1;
}

static int yhc__method_idempotent(const char *m) {
  return !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "OPTIONS") ||
         !strcmp(m, "TRACE") || !strcmp(m, "PUT") || !strcmp(m, "DELETE");
}

/* v in decimal, without the formatting machinery of printf (a request head is on the hot path) */
static int yhc__buf_append_dec(yhc_buf *b, uint64_t v) {
  char d[20];
  int n = 0;
  do {
    d[sizeof d - 1 - n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return yhc_buf_append(b, d + sizeof d - n, (size_t)n);
}

static int yhc__hdr_is(const char *name, const char *want) {
  return yhc__str_ieq(yhc__str_c(name), want);
}

/* An upper bound of the serialised request, so its buffer is allocated once and no larger
   than it needs to be (a queued request holds it until it is sent). */
static size_t yhc__req_wire_size(const yhc__req *r, const char *method, yhc_str host, yhc_str target,
                                 const yhc_request *req) {
  /* "M /t HTTP/1.1", "Host: [h]:port", "User-Agent: ", "Content-Length: 20 digits", each
     with CRLF, the blank line: every request carries its wire, so no slack beyond that */
  size_t n = strlen(method) + 2 + target.len + 11 + 6 + 2 + host.len + 6 + 2 + 2 + req->body_len, i;
  if (r->http->user_agent[0]) n += 14 + strlen(r->http->user_agent);
  if (req->body_len || !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH")) n += 38;
  for (i = 0; i < req->header_count; i++) n += strlen(req->headers[i].name) + strlen(req->headers[i].value) + 4;
  return n;
}

/* Writes the request head and body into r->wire. Returns 0, or -1 with the error set. */
static int yhc__req_serialise(yhc__req *r, const char *method, yhc_str host, int port,
                              int default_port, yhc_str target, const yhc_request *req) {
  yhc_buf *w = &r->wire;
  size_t i;
  int have_host = 0, have_ua = 0, have_len = 0, have_te = 0, ok = 0;
  if (r->http->bad_user_agent) {
    yhc__req_set_error(r, YHC_ERR_INVALID,
                   "the client's user_agent has a CR or LF, or exceeds 63 bytes");
    return -1;
  }
  for (i = 0; i < req->header_count; i++) {
    const yhc_header *hd = &req->headers[i];
    if (!yhc__header_ok(hd->name, 1) || !yhc__header_ok(hd->value, 0)) {
      yhc__req_set_error(r, YHC_ERR_INVALID,
                     "request header %zu (\"%.40s\") has an invalid name or a CR/LF in its value",
                     i, hd->name ? hd->name : "(null)");
      return -1;
    }
    have_host |= yhc__hdr_is(hd->name, "host");
    have_ua |= yhc__hdr_is(hd->name, "user-agent");
    have_len |= yhc__hdr_is(hd->name, "content-length");
    have_te |= yhc__hdr_is(hd->name, "transfer-encoding");
    if (yhc__hdr_is(hd->name, "connection") && yhc__token_list_has(yhc__str_c(hd->value), "close"))
      r->asked_close = 1;
  }
  if (yhc_buf_reserve(w, yhc__req_wire_size(r, method, host, target, req))) goto nomem;
  ok |= yhc_buf_appends(w, method);
  ok |= yhc_buf_append(w, target.ptr[0] == '/' ? " " : " /", target.ptr[0] == '/' ? 1 : 2);
  ok |= yhc_buf_append(w, target.ptr, target.len);
  ok |= yhc_buf_append(w, " HTTP/1.1\r\n", 11);
  if (!have_host) {
    int v6 = memchr(host.ptr, ':', host.len) != NULL;
    ok |= yhc_buf_append(w, "Host: ", 6);
    if (v6) ok |= yhc_buf_append(w, "[", 1);
    ok |= yhc_buf_append(w, host.ptr, host.len);
    if (v6) ok |= yhc_buf_append(w, "]", 1);
    if (port != default_port) ok |= yhc_buf_append(w, ":", 1) | yhc__buf_append_dec(w, (uint64_t)port);
    ok |= yhc_buf_append(w, "\r\n", 2);
  }
  if (!have_ua && r->http->user_agent[0]) {
    ok |= yhc_buf_append(w, "User-Agent: ", 12);
    ok |= yhc_buf_appends(w, r->http->user_agent);
    ok |= yhc_buf_append(w, "\r\n", 2);
  }
  for (i = 0; i < req->header_count; i++) {
    ok |= yhc_buf_appends(w, req->headers[i].name);
    ok |= yhc_buf_append(w, ": ", 2);
    ok |= yhc_buf_appends(w, req->headers[i].value);
    ok |= yhc_buf_append(w, "\r\n", 2);
  }
  if (!have_len && !have_te &&
      (req->body_len || !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH")))
    ok |= yhc_buf_append(w, "Content-Length: ", 16) | yhc__buf_append_dec(w, (uint64_t)req->body_len) |
          yhc_buf_append(w, "\r\n", 2);
  ok |= yhc_buf_append(w, "\r\n", 2);
  if (req->body_len) ok |= yhc_buf_append(w, req->body, req->body_len);
  if (ok) goto nomem;
  return 0;
nomem:
  yhc__req_set_error(r, YHC_ERR_NOMEM, "out of memory building the request");
  return -1;
}

/* ---- connections */

static void yhc__conn_event(void *ctx, int ev);
static void yhc__conn_timer(void *ctx);

static int yhc__timeout_or(int v, int def) { return v ? v : def; }

static void yhc__conn_unlink(yhc__conn *c) {
  yhc__host *h = c->host;
  if (c->prev) c->prev->next = c->next; else h->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  h->nconns--;
  if (c->state == YHC__CONN_IDLE) h->nidle--;
  if (c->state == YHC__CONN_BUSY) h->nbusy--;
}

static void yhc__conn_free(yhc__conn *c) {
  yhc_buf_free(&c->rbuf);
  YHC_FREE(c);
}

/* Closes c and frees it, unless we are inside its own I/O handler (then that frees it). The
   request it carried, if any, must have been completed or requeued by the caller. */
static void yhc__conn_close(yhc__conn *c) {
  yhc__host *h = c->host;
  if (c->dead) return;
  c->dead = 1;
  yhc__timer_stop(h->http->loop, &c->timer);
  yhc__conn_unlink(c);
  if (c->s) c->s->vt->close(c->s);
  c->s = NULL;
  if (!c->in_io) yhc__conn_free(c);
}

static void yhc__conn_set_state(yhc__conn *c, int st) {
  yhc__host *h = c->host;
  if (c->state == YHC__CONN_IDLE) h->nidle--;
  if (c->state == YHC__CONN_BUSY) h->nbusy--;
  c->state = st;
  if (st == YHC__CONN_IDLE) h->nidle++;
  if (st == YHC__CONN_BUSY) h->nbusy++;
}

static void yhc__conn_arm(yhc__conn *c, int ms) {
  yhc_loop *loop = c->host->http->loop;
  c->last_activity = yhc_loop_now(loop);
  if (ms > 0) yhc__timer_start(loop, &c->timer, (uint64_t)ms, yhc__conn_timer, c);
  else yhc__timer_stop(loop, &c->timer);
}

static void yhc__conn_go_idle(yhc__conn *c) {
  yhc__conn_set_state(c, YHC__CONN_IDLE);
  c->rbuf.len = c->rpos = c->scan = 0;
  c->phase = YHC__PH_HEAD;
  c->s->vt->want(c->s, 1, 0); /* an idle socket that turns readable was closed (or is rude) */
  yhc__conn_arm(c, c->host->http->d.keepalive_ms);
}

static void yhc__conn_flush(yhc__conn *c);

static void yhc__conn_start(yhc__conn *c, yhc__req *r) {
  yhc_http *http = c->host->http;
  c->req = r;
  r->conn = c;
  r->where = YHC__REQ_ACTIVE;
  c->wpos = 0;
  c->rbuf.len = c->rpos = c->scan = 0;
  c->phase = YHC__PH_HEAD;
  yhc__conn_set_state(c, YHC__CONN_BUSY);
  yhc__conn_arm(c, http->d.idle_timeout_ms);
  yhc__conn_flush(c);
}

/* Takes the next queued request for an idle or freshly connected connection. */
static void yhc__conn_next(yhc__conn *c) {
  yhc__host *h = c->host;
  yhc__req *r = h->q.head;
  if (!r) {
    int keep = h->external ? h->max_conns : h->http->d.max_idle_per_host;
    if (h->nidle >= keep) yhc__conn_close(c); /* enough kept already */
    else yhc__conn_go_idle(c);
    return;
  }
  yhc__reqq_remove(&h->q, r);
  yhc__conn_start(c, r);
}

static yhc__conn *yhc__conn_open(yhc__host *h, yhc_error *err);

static void yhc__host_enqueue(yhc__host *h, yhc__req *r, int front) {
  r->host = h;
  r->where = YHC__REQ_QUEUED;
  yhc__reqq_push(&h->q, r, front);
}

/* Matches queued requests with idle connections, and opens connections for the rest up to
   the cap. A failure to even start a connection fails the request at the queue's head, so a
   dead origin answers each request once instead of retrying forever. */
static void yhc__host_pump(yhc__host *h) {
  while (h->q.head) {
    yhc__conn *c, *idle = NULL;
    int connecting = 0;
    for (c = h->conns; c; c = c->next) {
      if (c->state == YHC__CONN_IDLE && !idle) idle = c;
      if (c->state == YHC__CONN_CONNECTING) connecting++;
    }
    /* Closed by the peer while the loop was not turning? Worth a syscall only for a request
       the stale-connection retry cannot resend (a POST, or one already resent), and only
       when the connection sat idle a while (one freed a moment ago is the chained request) */
    if (idle && idle->s->vt->alive && (!h->q.head->retryable || h->q.head->stale_retried) &&
        yhc_loop_now(h->http->loop) - idle->last_activity >= 2 && !idle->s->vt->alive(idle->s)) {
      yhc__conn_close(idle);
      continue;
    }
    if (idle) {
      yhc__conn_next(idle);
      continue;
    }
    if ((size_t)connecting >= h->q.len || h->nconns >= h->max_conns) return;
    {
      yhc_error err;
      yhc__error_clear(&err);
      if (!yhc__conn_open(h, &err)) {
        h->last_error = err;
        if (h->on_conn_error) h->on_conn_error(h, &err);
        if (h->q.head) yhc__req_fail_with(h->q.head, &err);
      }
    }
  }
}

static void yhc__conn_fail(yhc__conn *c, const yhc_error *e) {
  yhc__host *h = c->host;
  yhc__req *r = c->req;
  int was_connecting = c->state == YHC__CONN_CONNECTING;
  h->last_error = *e;
  if (r) {
    /* A reused connection the server closed before answering anything: resend once when
       the request is safe to repeat. */
    if (c->served > 0 && !r->got_bytes && r->retryable && !r->stale_retried &&
        (e->code == YHC_ERR_CLOSED || e->code == YHC_ERR_IO)) {
      r->stale_retried = 1;
      c->req = NULL;
      r->conn = NULL;
      yhc__req_reset_response(r);
      yhc__conn_close(c);
      yhc__host_enqueue(h, r, 1);
      yhc__host_pump(h);
      return;
    }
    yhc__req_store_error(r, e);
    yhc__req_complete(r); /* closes c */
  } else {
    yhc__conn_close(c);
  }
  if (was_connecting) {
    if (h->on_conn_error) h->on_conn_error(h, e);
    /* the request this connection was opened for takes the error */
    if (h->q.head && h->nconns < (int)h->q.len) yhc__req_fail_with(h->q.head, e);
  }
  yhc__host_pump(h);
}

static void yhc__conn_fail_msg(yhc__conn *c, yhc_err code, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void yhc__conn_fail_msg(yhc__conn *c, yhc_err code, const char *fmt, ...) {
  yhc_error e;
  va_list ap;
  va_start(ap, fmt);
  yhc__error_vset(&e, code, 0, fmt, ap);
  va_end(ap);
  yhc__conn_fail(c, &e);
}

static void yhc__conn_timer(void *ctx) {
  yhc__conn *c = YHC__CAST(yhc__conn *, ctx);
  yhc_http *http = c->host->http;
  uint64_t now = yhc_loop_now(http->loop);
  int limit;
  if (c->state == YHC__CONN_CONNECTING) {
    yhc__conn_fail_msg(c, YHC_ERR_TIMEOUT, "connecting to %s timed out after %d ms", c->host->key,
                       http->d.connect_timeout_ms);
    return;
  }
  limit = c->state == YHC__CONN_IDLE ? http->d.keepalive_ms : http->d.idle_timeout_ms;
  /* activity only stamps last_activity; the timer checks it lazily instead of being
     re-armed on every read */
  if (now < c->last_activity + (uint64_t)limit) {
    yhc__timer_start(http->loop, &c->timer, c->last_activity + (uint64_t)limit - now,
                     yhc__conn_timer, c);
    return;
  }
  if (c->state == YHC__CONN_IDLE) {
    yhc__conn_close(c);
    return;
  }
  yhc__conn_fail_msg(c, YHC_ERR_TIMEOUT, "no data from %s for %d ms", c->host->key, limit);
}

static void yhc__conn_flush(yhc__conn *c) {
  yhc__req *r = c->req;
  while (r && c->wpos < r->wire.len) {
    long n = c->s->vt->write(c->s, r->wire.ptr + c->wpos, r->wire.len - c->wpos);
    if (n == YHC__AGAIN) break;
    if (n < 0) {
      yhc_error e = c->s->err;
      yhc__conn_fail(c, &e);
      return;
    }
    c->wpos += (size_t)n;
    r->sent = 1;
    c->last_activity = yhc_loop_now(c->host->http->loop);
  }
  if (!c->dead) c->s->vt->want(c->s, 1, r && c->wpos < r->wire.len);
}

/* Stores a body piece: streamed to the user, or collected within the limit. */
static int yhc__conn_body(yhc__conn *c, const char *p, size_t n) {
  yhc__req *r = c->req;
  yhc_http *http = c->host->http;
  r->body_total += n;
  if (r->on_body) {
    int stop;
    r->streamed = 1;
    stop = r->on_body(r->user, p, n);
    /* it may have cancelled the request or destroyed the client: then c is only held */
    if (c->dead || c->req != r) return -1;
    if (stop) {
      yhc__conn_fail_msg(c, YHC_ERR_CANCELLED, "body callback aborted the request");
      return -1;
    }
    return 0;
  }
  if (r->body.len + n > http->d.limits.max_body_bytes) {
    yhc__conn_fail_msg(c, YHC_ERR_LIMIT, "response body exceeds %zu bytes",
                       http->d.limits.max_body_bytes);
    return -1;
  }
  if (yhc_buf_append(&r->body, p, n)) {
    yhc__conn_fail_msg(c, YHC_ERR_NOMEM, "out of memory storing the response body");
    return -1;
  }
  return 0;
}

static int yhc__token_list_has(yhc_str v, const char *tok) {
  size_t i = 0, n = strlen(tok);
  while (i < v.len) {
    size_t s, e;
    while (i < v.len && (v.ptr[i] == ' ' || v.ptr[i] == '\t' || v.ptr[i] == ',')) i++;
    s = i;
    while (i < v.len && v.ptr[i] != ',') i++;
    e = i;
    while (e > s && (v.ptr[e - 1] == ' ' || v.ptr[e - 1] == '\t')) e--;
    if (e - s == n) {
      yhc_str t;
      t.ptr = v.ptr + s;
      t.len = n;
      if (yhc__str_ieq(t, tok)) return 1;
    }
  }
  return 0;
}

/* Decides framing from the parsed head (RFC 9112 §6.3). Returns 0 or -1 (error set). */
static int yhc__req_framing(yhc__req *r, yhc_error *err) {
  size_t i;
  int have_cl = 0, chunked = 0, te = 0, conn_close = 0, conn_keep = 0;
  uint64_t cl = 0;
  for (i = 0; i < r->nh; i++) {
    yhc_str n = r->hv[i].name, v = r->hv[i].value;
    if (yhc__str_ieq(n, "content-length")) {
      /* "5, 5" and repeated equal values are one length; anything else is an attack, and so
         is a value with no number at all ("" or ",") */
      size_t j = 0;
      int numbers = 0;
      while (j < v.len) {
        uint64_t x = 0;
        size_t digits = 0;
        while (j < v.len && (v.ptr[j] == ' ' || v.ptr[j] == ',')) j++;
        if (j >= v.len) break;
        while (j < v.len && yhc__is_digit((unsigned char)v.ptr[j])) {
          if (x > (UINT64_MAX - 9) / 10) goto bad_cl;
          x = x * 10 + (uint64_t)(v.ptr[j] - '0');
          j++;
          digits++;
        }
        if (!digits || (j < v.len && v.ptr[j] != ',' && v.ptr[j] != ' ')) goto bad_cl;
        if (have_cl && x != cl) {
          yhc__error_set(err, YHC_ERR_PROTOCOL, 0, "conflicting Content-Length values");
          return -1;
        }
        cl = x;
        have_cl = 1;
        numbers++;
      }
      if (!numbers) goto bad_cl;
    } else if (yhc__str_ieq(n, "transfer-encoding")) {
      te = 1;
      /* chunked must be the final coding to frame the body */
      {
        size_t e = v.len;
        while (e > 0 && (v.ptr[e - 1] == ' ' || v.ptr[e - 1] == '\t')) e--;
        chunked = e >= 7 && yhc__lower((unsigned char)v.ptr[e - 7]) == 'c' &&
                  (e == 7 || v.ptr[e - 8] == ',' || v.ptr[e - 8] == ' ');
        if (chunked) {
          yhc_str last;
          last.ptr = v.ptr + e - 7;
          last.len = 7;
          chunked = yhc__str_ieq(last, "chunked");
        }
      }
    } else if (yhc__str_ieq(n, "connection")) {
      conn_close |= yhc__token_list_has(v, "close");
      conn_keep |= yhc__token_list_has(v, "keep-alive");
    }
  }
  r->keepalive = (r->minor >= 1 ? !conn_close : (conn_keep && !conn_close)) && !r->asked_close;
  if (te && have_cl) { /* RFC 9112 6.3: a smuggling attempt, whatever the order */
    yhc__error_set(err, YHC_ERR_PROTOCOL, 0, "response has both Content-Length and Transfer-Encoding");
    return -1;
  }
  if (te && r->minor == 0) r->keepalive = 0; /* RFC 9112 6.1: chunked from HTTP/1.0 ends it */
  if (r->is_head || r->status == 204 || r->status == 304 || (r->status >= 100 && r->status < 200)) {
    r->body_mode = YHC__BODY_NONE;
  } else if (te) {
    r->body_mode = chunked ? YHC__BODY_CHUNKED : YHC__BODY_CLOSE;
    if (!chunked) r->keepalive = 0; /* RFC 9112: close after such a message */
  } else if (have_cl) {
    r->body_mode = cl ? YHC__BODY_LENGTH : YHC__BODY_NONE;
    r->body_left = cl;
  } else {
    r->body_mode = YHC__BODY_CLOSE;
    r->keepalive = 0;
  }
  return 0;
bad_cl:
  yhc__error_set(err, YHC_ERR_PROTOCOL, 0, "invalid Content-Length value");
  return -1;
}

static int yhc__grow_views(yhc_header_view **v, size_t *cap, size_t want) {
  yhc_header_view *nv;
  if (*cap >= want) return 0;
  nv = YHC__CAST(yhc_header_view *, YHC_REALLOC(*v, want * sizeof *nv));
  if (!nv) return -1;
  *v = nv;
  *cap = want;
  return 0;
}

/* The response is complete: settle the connection first (idle or closed), then answer. */
static void yhc__conn_finish_response(yhc__conn *c) {
  yhc__req *r = c->req;
  int reuse = r->keepalive && c->wpos == r->wire.len && c->rpos == c->rbuf.len;
  c->req = NULL;
  r->conn = NULL; /* still ACTIVE, but attached to nothing: completing touches no connection */
  c->served++;
  if (reuse) {
    yhc__conn_next(c);
  } else {
    yhc__conn_close(c);
  }
  yhc__req_complete(r);
}

/* RFC 9112 5.2: a user agent replaces obsolete line folding (a line end followed by SP or
   HT inside the field section) with SP. Done on the client's copy of the head, compacting
   the run of line end and whitespace into one SP; a fold right after the status line is left
   for the parser to refuse. Returns the new length. */
static size_t yhc__unfold(char *p, size_t len) {
  size_t i, o, first_nl;
  const char *nl = YHC__CAST(const char *, memchr(p, '\n', len));
  if (!nl) return len;
  first_nl = (size_t)(nl - p);
  {
    /* almost no server folds: find a line end followed by SP or HT before copying anything */
    const char *q = nl + 1, *end = p + len;
    while (q < end && (nl = YHC__CAST(const char *, memchr(q, '\n', (size_t)(end - q)))) != NULL &&
           (nl + 1 >= end || (nl[1] != ' ' && nl[1] != '\t')))
      q = nl + 1;
    if (q >= end || !nl) return len;
  }
  for (i = o = first_nl + 1; i < len;) {
    size_t k = i;
    if (p[k] == '\r' && k + 1 < len && p[k + 1] == '\n') k++;
    if (p[k] == '\n' && o > first_nl + 1 && p[o - 1] != '\n' && k + 1 < len &&
        (p[k + 1] == ' ' || p[k + 1] == '\t')) {
      k++;
      while (k < len && (p[k] == ' ' || p[k] == '\t')) k++;
      while (o > 0 && (p[o - 1] == ' ' || p[o - 1] == '\t')) o--;
      p[o++] = ' ';
      i = k;
      continue;
    }
    p[o++] = p[i++];
  }
  return o;
}

/* Parses what is buffered. Returns 1 when the connection is still usable for more input. */
static int yhc__conn_parse(yhc__conn *c) {
  yhc_http *http = c->host->http;
  const yhc_limits *lim = &http->d.limits;
  while (c->req && !c->dead) {
    yhc__req *r = c->req;
    const char *p = c->rbuf.ptr + c->rpos;
    size_t avail = c->rbuf.len - c->rpos;
    if (c->phase == YHC__PH_HEAD) {
      size_t end, hlen;
      long n;
      yhc__head h;
      yhc_error e;
      if (!avail) return 1;
      end = yhc__find_head_end(p, avail, c->scan > 3 ? c->scan - 3 : 0);
      if (!end) {
        c->scan = avail;
        if (avail > lim->max_header_bytes) {
          yhc__conn_fail_msg(c, YHC_ERR_LIMIT, "response header section exceeds %zu bytes",
                             lim->max_header_bytes);
          return 0;
        }
        /* a wrong first line fails now rather than after a whole header section */
        if (avail >= 8 && memcmp(p, "HTTP/1.", 7) != 0) {
          yhc__conn_fail_msg(c, YHC_ERR_PROTOCOL, "response does not start with HTTP/1.0 or HTTP/1.1");
          return 0;
        }
        return 1;
      }
      if (end > lim->max_header_bytes) {
        yhc__conn_fail_msg(c, YHC_ERR_LIMIT, "response header section exceeds %zu bytes",
                           lim->max_header_bytes);
        return 0;
      }
      r->head.len = 0;
      if (yhc_buf_append(&r->head, p, end) ||
          yhc__grow_views(&r->hv, &r->hvcap, YHC__MIN(lim->max_header_count, 32))) {
        yhc__conn_fail_msg(c, YHC_ERR_NOMEM, "out of memory storing response headers");
        return 0;
      }
      yhc__error_clear(&e);
      hlen = yhc__unfold(r->head.ptr, end);
      for (;;) {
        n = yhc__parse_head(r->head.ptr, hlen, &h, r->hv, r->hvcap, &e);
        if (n >= 0 || e.code != YHC_ERR_LIMIT || r->hvcap >= lim->max_header_count) break;
        if (yhc__grow_views(&r->hv, &r->hvcap, YHC__MIN(r->hvcap * 4, lim->max_header_count))) {
          yhc__conn_fail_msg(c, YHC_ERR_NOMEM, "out of memory storing response headers");
          return 0;
        }
        yhc__error_clear(&e);
      }
      if (n <= 0) {
        if (n == 0) yhc__error_set(&e, YHC_ERR_PROTOCOL, 0, "malformed response header section");
        if (e.code == YHC_ERR_LIMIT)
          yhc__error_set(&e, YHC_ERR_LIMIT, e.offset, "response has more than %zu header fields",
                         lim->max_header_count);
        yhc__conn_fail(c, &e);
        return 0;
      }
      c->rpos += end;
      c->scan = 0;
      r->got_bytes = 1;
      r->status = h.status;
      r->minor = h.minor;
      r->reason = h.reason;
      r->nh = h.nheaders;
      if (h.status >= 100 && h.status < 200) {
        if (h.status == 101) {
          yhc__conn_fail_msg(c, YHC_ERR_PROTOCOL, "unexpected 101 Switching Protocols");
          return 0;
        }
        if (++r->interim > lim->max_interim || r->interim == 0xffffu) {
          yhc__conn_fail_msg(c, YHC_ERR_LIMIT, "more than %zu interim (1xx) responses", lim->max_interim);
          return 0;
        }
        r->nh = 0; /* interim response: skip it and read the final one */
        continue;
      }
      if (yhc__req_framing(r, &e)) {
        yhc__conn_fail(c, &e);
        return 0;
      }
      if (r->body_mode == YHC__BODY_LENGTH && !r->on_body &&
          r->body_left > lim->max_body_bytes) {
        yhc__conn_fail_msg(c, YHC_ERR_LIMIT, "response body exceeds %zu bytes (Content-Length %llu)",
                           lim->max_body_bytes, (unsigned long long)r->body_left);
        return 0;
      }
      if (r->on_head) {
        /* streaming callers get the head before the body; they may cancel from inside */
        yhc_response head;
        int stop;
        yhc__response_view(r, &head);
        head.body.len = 0;
        r->streamed = 1;
        stop = r->on_head(r->user, &head);
        if (c->dead || c->req != r) return 0;
        if (stop) {
          yhc__conn_fail_msg(c, YHC_ERR_CANCELLED, "head callback aborted the request");
          return 0;
        }
      }
      if (r->body_mode == YHC__BODY_NONE) {
        yhc__conn_finish_response(c);
        return 0;
      }
      c->phase = YHC__PH_BODY;
      continue;
    }
    /* body */
    if (r->body_mode == YHC__BODY_LENGTH) {
      size_t take = avail < r->body_left ? avail : (size_t)r->body_left;
      if (!take) return 1;
      if (yhc__conn_body(c, p, take)) return 0;
      c->rpos += take;
      r->body_left -= take;
      if (!r->body_left) {
        yhc__conn_finish_response(c);
        return 0;
      }
      return 1;
    }
    if (r->body_mode == YHC__BODY_CLOSE) {
      if (!avail) return 1;
      if (yhc__conn_body(c, p, avail)) return 0;
      c->rpos += avail;
      return 1;
    }
    { /* chunked */
      yhc__chunk_out out;
      yhc_error e;
      long n = yhc__chunk_step(&r->chunk, p, avail, lim->max_chunk_digits, lim->max_header_bytes,
                               c->rpos, &out, &e);
      if (n < 0) {
        yhc__conn_fail(c, &e);
        return 0;
      }
      if (n == 0 && !out.done) return 1;
      c->rpos += (size_t)n;
      /* a chunk that cannot fit fails now, not after its bytes have been waited for */
      if (!r->on_body && r->chunk.state == YHC__CH_DATA && !out.data &&
          r->chunk.left > lim->max_body_bytes - r->body.len) {
        yhc__conn_fail_msg(c, YHC_ERR_LIMIT, "response body exceeds %zu bytes (a chunk of %llu)",
                           lim->max_body_bytes, (unsigned long long)r->chunk.left);
        return 0;
      }
      if (out.data && yhc__conn_body(c, out.data, out.len)) return 0;
      if (out.done) {
        if (out.trailer_len) {
          long tn;
          size_t cnt = 0;
          if (!r->tr) r->tr = YHC__NEW(yhc__trailers);
          if (r->tr) r->tr->text.len = 0;
          if (!r->tr || yhc_buf_append(&r->tr->text, out.trailer, out.trailer_len) ||
              yhc__grow_views(&r->tr->v, &r->tr->cap, lim->max_header_count)) {
            yhc__conn_fail_msg(c, YHC_ERR_NOMEM, "out of memory storing trailers");
            return 0;
          }
          tn = yhc__parse_fields(r->tr->text.ptr, r->tr->text.len, 0, r->tr->v, lim->max_header_count, &cnt,
                                 "response trailer", &e);
          if (tn <= 0) {
            if (tn == 0) yhc__error_set(&e, YHC_ERR_PROTOCOL, 0, "malformed trailer section");
            yhc__conn_fail(c, &e);
            return 0;
          }
          r->tr->n = cnt;
        }
        yhc__conn_finish_response(c);
        return 0;
      }
    }
  }
  return !c->dead;
}

static void yhc__conn_eof(yhc__conn *c) {
  yhc__req *r = c->req;
  if (!r) {
    yhc__conn_close(c); /* an idle keep-alive connection the server closed */
    return;
  }
  if (c->phase == YHC__PH_BODY && r->body_mode == YHC__BODY_CLOSE) {
    r->keepalive = 0;
    yhc__conn_finish_response(c);
    return;
  }
  if (c->phase == YHC__PH_BODY && r->body_mode == YHC__BODY_LENGTH) {
    yhc__conn_fail_msg(c, YHC_ERR_CLOSED,
                       "connection closed by %s after %llu of %llu body bytes", c->host->key,
                       (unsigned long long)r->body_total,
                       (unsigned long long)(r->body_total + r->body_left));
    return;
  }
  if (c->phase == YHC__PH_BODY) {
    yhc__conn_fail_msg(c, YHC_ERR_CLOSED, "connection closed by %s in the middle of a chunked body",
                       c->host->key);
    return;
  }
  if (c->rbuf.len > c->rpos) r->got_bytes = 1;
  yhc__conn_fail_msg(c, YHC_ERR_CLOSED, "connection closed by %s before the response %s",
                     c->host->key, r->got_bytes ? "headers were complete" : "started");
}

static void yhc__conn_readable(yhc__conn *c) {
  yhc_http *http = c->host->http;
  int rounds;
  for (rounds = 0; rounds < 8 && !c->dead; rounds++) {
    yhc__req *r = c->req;
    char *dst;
    size_t cap;
    long n;
    if (!r) {
      /* idle: any event means the peer closed or talks out of turn; both end it */
      char b;
      n = c->s->vt->read(c->s, &b, 1);
      if (n == YHC__AGAIN) return;
      yhc__conn_close(c);
      return;
    }
    if (c->rpos == c->rbuf.len) c->rbuf.len = c->rpos = c->scan = 0;
    /* Body with a known length and nothing buffered: read straight into the body. */
    if (c->phase == YHC__PH_BODY && r->body_mode == YHC__BODY_LENGTH && !r->on_body &&
        c->rpos == c->rbuf.len) {
      size_t want = r->body_left < (uint64_t)(1u << 20) ? (size_t)r->body_left : (size_t)1 << 20;
      if (yhc_buf_reserve(&r->body, want)) {
        yhc__conn_fail_msg(c, YHC_ERR_NOMEM, "out of memory storing the response body");
        return;
      }
      n = c->s->vt->read(c->s, r->body.ptr + r->body.len, want);
      if (n > 0) {
        r->body.len += (size_t)n;
        r->body.ptr[r->body.len] = 0;
        r->body_total += (uint64_t)n;
        r->body_left -= (uint64_t)n;
        c->last_activity = yhc_loop_now(http->loop);
        if (!r->body_left) {
          yhc__conn_finish_response(c);
          return;
        }
        /* a short read drained the socket: the next read would only say EAGAIN */
        if ((size_t)n < want) return;
        continue;
      }
    } else {
      /* Unparsed bytes (a partial head or chunk line) move to the front, so the buffer stays
         at recv_buffer while streaming; it grows only for a head larger than that. */
      if (c->rpos > 0) {
        yhc__buf_consume(&c->rbuf, c->rpos);
        c->rpos = 0;
      }
      if (yhc_buf_reserve(&c->rbuf, c->rbuf.len + 1024 <= http->d.recv_buffer
                                        ? http->d.recv_buffer - c->rbuf.len
                                        : 4096)) {
        yhc__conn_fail_msg(c, YHC_ERR_NOMEM, "out of memory growing the receive buffer");
        return;
      }
      dst = c->rbuf.ptr + c->rbuf.len;
      cap = c->rbuf.cap - c->rbuf.len - 1;
      n = c->s->vt->read(c->s, dst, cap);
      if (n > 0) {
        c->rbuf.len += (size_t)n;
        c->last_activity = yhc_loop_now(http->loop);
        if (!yhc__conn_parse(c)) return;
        if ((size_t)n < cap) return; /* drained: wait for poll rather than read EAGAIN */
        continue;
      }
    }
    if (n == YHC__AGAIN) return;
    if (n == 0) {
      yhc__conn_eof(c);
      return;
    }
    {
      yhc_error e = c->s->err;
      yhc__conn_fail(c, &e);
      return;
    }
  }
}

static void yhc__conn_event(void *ctx, int ev) {
  yhc__conn *c = YHC__CAST(yhc__conn *, ctx);
  yhc_http *http = c->host->http;
  /* A nested loop turn from inside this connection's streaming callback (a blocking fetch in
     on_body) must not read it again underneath that callback; poll() reports it again. */
  if (c->in_io) return;
  yhc__http_hold(http);
  c->in_io++;
  if (ev & YHC__EV_ERROR) {
    yhc_error e = c->s->err;
    if (!e.code) yhc__error_set(&e, YHC_ERR_IO, 0, "connection to %s failed", c->host->key);
    yhc__conn_fail(c, &e);
  } else {
    if (ev & YHC__EV_CONNECT) {
      yhc__host *h = c->host;
      yhc__error_clear(&h->last_error);
      yhc__conn_set_state(c, YHC__CONN_IDLE);
      yhc__conn_next(c);
    }
    if (!c->dead && (ev & YHC__EV_WRITE) && c->req) yhc__conn_flush(c);
    if (!c->dead && (ev & YHC__EV_READ)) yhc__conn_readable(c);
  }
  c->in_io--;
  if (c->dead && !c->in_io) yhc__conn_free(c);
  yhc__http_unhold(http);
}

static yhc__conn *yhc__conn_open(yhc__host *h, yhc_error *err) {
  yhc_http *http = h->http;
  yhc__stream *s;
  yhc__conn *c = YHC__NEW(yhc__conn);
  if (!c) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory opening a connection");
    return NULL;
  }
  if (h->open) s = h->open(h, h->open_ctx, err);
  else if (h->tls) s = yhc__tls_open(http->loop, &http->tls, &http->tls_conf, h->hostname, h->port, err);
  else s = yhc__tcp_open(http->loop, h->hostname, h->port, err);
  if (!s) {
    YHC_FREE(c);
    return NULL;
  }
  c->host = h;
  c->s = s;
  s->owner = c;
  s->on_event = yhc__conn_event;
  c->state = YHC__CONN_CONNECTING;
  c->next = h->conns;
  if (c->next) c->next->prev = c;
  h->conns = c;
  h->nconns++;
  yhc__conn_arm(c, http->d.connect_timeout_ms);
  return c;
}

/* ---- origins */

static yhc__host *yhc__host_new(yhc_http *http, const char *key, const char *hostname, int port,
                                int tls, int max_conns) {
  yhc__host *h = YHC__NEW(yhc__host);
  if (!h) return NULL;
  h->http = http;
  h->key = yhc__strdup(key);
  h->hostname = yhc__strdup(hostname);
  h->port = port;
  h->tls = tls;
  h->max_conns = max_conns > 0 ? max_conns : 1;
  if (!h->key || !h->hostname) {
    YHC_FREE(h->key);
    YHC_FREE(h->hostname);
    YHC_FREE(h);
    return NULL;
  }
  h->next = http->hosts;
  http->hosts = h;
  return h;
}

/* Fails every request waiting on or running at h and closes its connections. */
static void yhc__host_abort(yhc__host *h, yhc_err code, const char *msg) {
  while (h->q.head) yhc__req_fail(h->q.head, code, "%s", msg);
  while (h->conns) {
    yhc__conn *c = h->conns;
    if (c->req) yhc__req_fail(c->req, code, "%s", msg); /* closes c */
    else yhc__conn_close(c);
  }
}

static void yhc__host_free(yhc__host *h) {
  yhc_http *http = h->http;
  yhc__host **pp;
  yhc__host_abort(h, YHC_ERR_CANCELLED, "request cancelled: origin closed");
  for (pp = &http->hosts; *pp; pp = &(*pp)->next) {
    if (*pp == h) {
      *pp = h->next;
      break;
    }
  }
  YHC_FREE(h->key);
  YHC_FREE(h->hostname);
  YHC_FREE(h);
}

static void yhc__host_submit(yhc__host *h, yhc__req *r, int front) {
  if (h->http->destroying) { /* an upper layer retrying from a callback destroy runs */
    yhc__req_fail(r, YHC_ERR_CANCELLED, "request cancelled: client destroyed");
    return;
  }
  yhc__host_enqueue(h, r, front);
  yhc__host_pump(h);
}

/* ---- public client */

static void yhc__req_deadline(void *ctx) {
  yhc__req *r = YHC__CAST(yhc__req *, ctx);
  r->deadline_hit = 1;
  yhc__req_fail(r, YHC_ERR_TIMEOUT, "request timed out after %d ms", r->timeout_ms);
}

YHCDEF yhc_http *yhc_http_create(yhc_loop *loop, const yhc_http_desc *desc) {
  yhc_http *http = YHC__NEW(yhc_http);
  yhc_http_desc *d;
  if (!http) return NULL;
  http->loop = loop;
  if (desc) http->d = *desc;
  d = &http->d;
  if (!d->limits.max_header_bytes) d->limits.max_header_bytes = 16384;
  if (!d->limits.max_header_count) d->limits.max_header_count = 100;
  if (!d->limits.max_body_bytes) d->limits.max_body_bytes = (size_t)64 << 20;
  if (!d->limits.max_chunk_digits) d->limits.max_chunk_digits = 16;
  if (!d->limits.max_interim) d->limits.max_interim = 16;
  if (d->max_conns_per_host <= 0) d->max_conns_per_host = 16;
  if (d->max_idle_per_host <= 0) d->max_idle_per_host = d->max_conns_per_host;
  d->connect_timeout_ms = yhc__timeout_or(d->connect_timeout_ms, 10000);
  d->idle_timeout_ms = yhc__timeout_or(d->idle_timeout_ms, 30000);
  d->keepalive_ms = yhc__timeout_or(d->keepalive_ms, 30000);
  d->request_timeout_ms = yhc__timeout_or(d->request_timeout_ms, 120000);
  if (!d->recv_buffer) d->recv_buffer = 16384;
  snprintf(http->user_agent, sizeof http->user_agent, "%s",
           d->user_agent ? d->user_agent : "yhc/" YHC_VERSION);
  /* validated like every header value: a CR or LF would inject a header into every request */
  http->bad_user_agent = !yhc__header_ok(http->user_agent, 0) ||
                         (d->user_agent && strlen(d->user_agent) >= sizeof http->user_agent);
  d->user_agent = NULL; /* not kept: the copy above is what is used */
  http->tls_conf.ca_file = d->ca_file;
  http->tls_conf.ca_path = d->ca_path;
  http->tls_conf.insecure = d->tls_insecure;
  http->tls_conf.log_loop = loop;
  return http;
}

static yhc__host *yhc__host_find_or_add(yhc_http *http, const yhc_url *u, int tls) {
  char key[320], hostname[256];
  yhc__host *h;
  if (u->host.len >= sizeof hostname) return NULL;
  memcpy(hostname, u->host.ptr, u->host.len);
  hostname[u->host.len] = 0;
  /* every request looks its origin up: compare the parts rather than format a key */
  for (h = http->hosts; h; h = h->next)
    if (!h->external && h->tls == tls && h->port == u->port && !strcmp(h->hostname, hostname)) return h;
  snprintf(key, sizeof key, "%s://%s:%d", tls ? "https" : "http", hostname, u->port);
  return yhc__host_new(http, key, hostname, u->port, tls, http->d.max_conns_per_host);
}

/* Builds a request record from the public description. Invalid input leaves the error set
   (the caller defers the answer). */
static void yhc__req_fill(yhc__req *r, const yhc_request *req, yhc_url *u, int *tls) {
  const char *method = req->method ? req->method : "GET";
  yhc_error e;
  *tls = 0;
  if (!req->url || yhc_url_parse(req->url, strlen(req->url), u, &e) < 0) {
    if (!req->url) yhc__error_set(&e, YHC_ERR_URL, 0, "request has no URL");
    yhc__req_store_error(r, &e);
    return;
  }
  if (yhc__str_ieq(u->scheme, "https")) {
    *tls = 1;
#ifndef YHC_MBEDTLS
    yhc__req_set_error(r, YHC_ERR_NO_TLS,
                   "https:// needs TLS, but yhc was built without TLS (define YHC_MBEDTLS)");
    return;
#endif
  } else if (!yhc__str_ieq(u->scheme, "http")) {
    yhc__req_set_error(r, YHC_ERR_URL, "unsupported URL scheme \"%.*s\"",
                   (int)YHC__MIN(u->scheme.len, 32), u->scheme.ptr);
    return;
  }
  if (!yhc__method_ok(method)) {
    yhc__req_set_error(r, YHC_ERR_INVALID, "invalid request method \"%.32s\"", method);
    return;
  }
  r->is_head = !strcmp(method, "HEAD");
  r->retryable = yhc__method_idempotent(method) || req->retry_unsafe;
  r->on_body = req->on_body;
  r->on_head = req->on_head;
  yhc__req_serialise(r, method, u->host, u->port, *tls ? 443 : 80, u->target, req);
}

YHCDEF uint64_t yhc_http_request(yhc_http *http, const yhc_request *req, yhc_response_fn cb,
                                 void *user) {
  yhc__req *r;
  yhc_url u;
  int tls = 0, timeout;
  uint64_t id;
  yhc__host *h;
  if (http->destroying) return 0; /* from a callback that yhc_http_destroy() runs */
  r = yhc__req_new(http);
  if (!r) return 0;
  r->cb = cb;
  r->user = user;
  if (!req) {
    yhc__req_set_error(r, YHC_ERR_INVALID, "request is NULL");
    yhc__req_complete(r);
    return r->id;
  }
  yhc__req_fill(r, req, &u, &tls);
  if (r->err_code) {
    yhc__req_complete(r);
    return r->id;
  }
  h = yhc__host_find_or_add(http, &u, tls);
  if (!h) {
    yhc__req_set_error(r, YHC_ERR_NOMEM, "out of memory (or host name too long)");
    yhc__req_complete(r);
    return r->id;
  }
  timeout = req->timeout_ms ? req->timeout_ms : http->d.request_timeout_ms;
  r->timeout_ms = timeout;
  if (timeout > 0) yhc__timer_start(http->loop, &r->deadline, (uint64_t)timeout, yhc__req_deadline, r);
  id = r->id;
  yhc__host_submit(h, r, 0);
  return id;
}

/* An unfinished request by id; with `answered`, also one whose answer is still queued. */
static yhc__req *yhc__http_find(yhc_http *http, uint64_t id, int answered) {
  yhc__req *r;
  for (r = http->live; r; r = r->all_next)
    if (r->id == id) return r;
  if (answered)
    for (r = http->done.head; r; r = r->q_next)
      if (r->id == id) return r;
  return NULL;
}

/* Ends r (unless already answered) without running its callback: for an owner that is going
   away, since the answer is delivered from the loop when the owner may be gone. */
static void yhc__req_abandon(yhc__req *r) {
  r->cb = NULL;
  if (r->where != YHC__REQ_DONE) yhc__req_fail(r, YHC_ERR_CANCELLED, "request cancelled");
}

YHCDEF int yhc_http_cancel(yhc_http *http, uint64_t id) {
  yhc__req *r = yhc__http_find(http, id, 0);
  if (!r) return -1;
  yhc__req_fail(r, YHC_ERR_CANCELLED, "request cancelled");
  return 0;
}

static void yhc__http_abandon(yhc_http *http, uint64_t id) {
  yhc__req *r = yhc__http_find(http, id, 1);
  if (r) yhc__req_abandon(r);
}

static void yhc__http_free(yhc_http *http) {
  while (http->free_reqs) {
    yhc__req *r = http->free_reqs;
    http->free_reqs = r->free_next;
    yhc__req_free_mem(r);
  }
  yhc__tls_ctx_free(http->tls);
  YHC_FREE(http);
}

/* Every unfinished request ends with CANCELLED and its callback runs here: the loop may
   never turn for this client again. Safe from any callback: the frames that are running user
   code hold the client, and the last of them frees it. */
YHCDEF void yhc_http_destroy(yhc_http *http) {
  if (!http || http->destroying) return;
  http->destroying = 1;
  yhc__http_hold(http);
  yhc__timer_stop(http->loop, &http->done_timer);
  while (http->hosts) yhc__host_free(http->hosts);
  while (http->live) yhc__req_fail(http->live, YHC_ERR_CANCELLED, "request cancelled: client destroyed");
  while (http->done.head) {
    yhc__req *r = http->done.head;
    yhc__reqq_remove(&http->done, r);
    yhc__req_run_callback(r);
  }
  yhc__http_unhold(http);
}

YHCDEF yhc_str yhc_response_header(const yhc_response *resp, const char *name) {
  size_t i;
  yhc_str none;
  none.ptr = NULL;
  none.len = 0;
  if (!resp) return none;
  for (i = 0; i < resp->header_count; i++)
    if (yhc__str_ieq(resp->headers[i].name, name)) return resp->headers[i].value;
  return none;
}

static int yhc__has_header(const yhc_request *r, const char *name) {
  size_t k;
  for (k = 0; k < r->header_count; k++)
    if (r->headers[k].name && yhc__str_ieq(yhc__str_c(r->headers[k].name), name)) return 1;
  return 0;
}

YHCDEF int yhc_json_request(yhc_json_req *out, const yhc_request *base, const char *json, size_t len,
                            yhc_error *err) {
  size_t k, n = 0;
  yhc__error_clear(err);
  memset(out, 0, sizeof *out);
  if (base) out->req = *base;
  if (out->req.header_count > YHC_JSON_REQ_MAX_HEADERS) {
    yhc__error_set(err, YHC_ERR_INVALID, 0, "a JSON request takes at most %d headers of its own",
                   YHC_JSON_REQ_MAX_HEADERS);
    return -1;
  }
  for (k = 0; k < out->req.header_count; k++) out->headers[n++] = out->req.headers[k];
  if (!yhc__has_header(&out->req, "content-type")) {
    out->headers[n].name = "Content-Type";
    out->headers[n++].value = "application/json";
  }
  if (!yhc__has_header(&out->req, "accept")) {
    out->headers[n].name = "Accept";
    out->headers[n++].value = "application/json";
  }
  out->req.headers = out->headers;
  out->req.header_count = n;
  out->req.body = json;
  out->req.body_len = json ? len : 0;
  if (!out->req.method) out->req.method = "POST";
  return 0;
}

YHCDEF yhc_json_doc *yhc_response_json(const yhc_response *resp, yhc_error *err) {
  yhc__error_clear(err);
  if (!resp) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "no response (out of memory)");
    return NULL;
  }
  if (resp->err) {
    yhc__error_set(err, resp->err, 0, "%s", resp->error ? resp->error : yhc_strerror(resp->err));
    return NULL;
  }
  return yhc_json_parse(resp->body.ptr ? resp->body.ptr : "", resp->body.len, NULL, err);
}

YHCDEF int yhc_response_header_next(const yhc_response *resp, const char *name, size_t *iter,
                                    yhc_str *value) {
  size_t i;
  if (!resp) return 0;
  for (i = *iter; i < resp->header_count; i++) {
    if (yhc__str_ieq(resp->headers[i].name, name)) {
      *value = resp->headers[i].value;
      *iter = i + 1;
      return 1;
    }
  }
  *iter = resp->header_count;
  return 0;
}

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

/* Judges the sequence at the start of `s` (n >= 1 bytes present): its length when it is
   complete and valid, 0 when the n bytes are a valid start cut short, -1 when it is invalid,
   with *fault (if not NULL) naming why in words for an error message. Valid means shortest
   form only, no surrogates (U+D800..DFFF), nothing above U+10FFFF. A byte is looked at only
   if the ones before it were right, so a cut is told from a fault by the bytes present. */
static int yhc__utf8_seq(const unsigned char *s, size_t n, const char **fault) {
  unsigned c = s[0];
  unsigned lo = 0x80, hi = 0xBF; /* allowed range of the first continuation byte */
  size_t need, j;
  const char *why;
  if (c < 0x80) return 1;
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
    why = c < 0xC0   ? "a continuation byte where a character should start"
          : c < 0xC2 ? "an overlong encoding"
          : c < 0xF8 ? "a code point above U+10FFFF"
                     : "a byte that never occurs in UTF-8";
    goto bad;
  }
  for (j = 1; j <= need && j < n; j++) {
    if (s[j] < 0x80 || s[j] > 0xBF) {
      why = "a sequence cut short by a byte that is not a continuation";
      goto bad;
    }
    if (j == 1 && (s[1] < lo || s[1] > hi)) {
      why = c == 0xED ? "a UTF-16 surrogate (U+D800..U+DFFF)"
            : c == 0xF4 ? "a code point above U+10FFFF"
                        : "an overlong encoding";
      goto bad;
    }
  }
  return n > need ? (int)need + 1 : 0;
bad:
  if (fault) *fault = why;
  return -1;
}

/* Length of the longest prefix of `s` made of complete, valid UTF-8 sequences (see
   yhc__utf8_seq). Equals `len` exactly when all of `s` is valid; otherwise it is the offset
   of the sequence that is bad or cut off, which is what an error message and a streaming
   validator both need. */
static size_t yhc__utf8_scan(const unsigned char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    int k;
    if (s[i] < 0x80) {
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
    k = yhc__utf8_seq(s + i, len - i, NULL);
    if (k <= 0) return i;
    i += (size_t)k;
  }
  return i;
}

/* 1 when all `len` bytes are strict UTF-8 (see yhc__utf8_scan), else 0. */
static YHC__UNUSED int yhc__utf8_valid(const unsigned char *s, size_t len) {
  return yhc__utf8_scan(s, len) == len;
}

/* A text checked as it arrives in pieces cut anywhere, even inside a character (a
   fragmented WebSocket message): only the cut sequence is carried over, at most 3 bytes, so
   memory stays fixed however long the text. Zero it to start a text. */
typedef struct yhc__utf8_stream {
  unsigned char part[4]; /* the start of a sequence the last piece cut */
  size_t part_len;
  uint64_t seen;         /* bytes fed so far, part included */
} yhc__utf8_stream;

/* Feeds the next `len` bytes. 0 while all is valid so far; -1 at the first fault, with *at =
   the offset in the whole text where the bad sequence starts and *fault naming it. */
static int yhc__utf8_feed(yhc__utf8_stream *u, const unsigned char *s, size_t len, uint64_t *at,
                          const char **fault) {
  size_t i = 0, good;
  int k;
  if (!len) return 0;
  if (u->part_len) {
    unsigned char seq[4];
    size_t take = YHC__MIN(len, sizeof seq - u->part_len);
    memcpy(seq, u->part, u->part_len);
    memcpy(seq + u->part_len, s, take);
    k = yhc__utf8_seq(seq, u->part_len + take, fault);
    if (k < 0) {
      *at = u->seen - u->part_len;
      return -1;
    }
    if (k == 0) { /* still cut: the piece was shorter than the rest of the sequence */
      memcpy(u->part + u->part_len, s, take);
      u->part_len += take;
      u->seen += take;
      return 0;
    }
    i = (size_t)k - u->part_len;
    u->part_len = 0;
  }
  good = i + yhc__utf8_scan(s + i, len - i);
  if (good < len) {
    if (yhc__utf8_seq(s + good, len - good, fault) < 0) {
      *at = u->seen + good;
      return -1;
    }
    memcpy(u->part, s + good, len - good); /* a valid start the piece cut: at most 3 bytes */
    u->part_len = len - good;
  }
  u->seen += len;
  return 0;
}

/* Ends the text: -1 (as yhc__utf8_feed) when it stops inside a sequence, else 0. */
static int yhc__utf8_finish(const yhc__utf8_stream *u, uint64_t *at, const char **fault) {
  if (!u->part_len) return 0;
  *at = u->seen - u->part_len;
  *fault = "a sequence cut short by the end of the text";
  return -1;
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

/* Appends one complete masked frame to `out`. 0 on success; -1 when memory ran out, -2 when
   it would be a whole text message (TEXT with fin) that is not valid UTF-8, which a peer
   must fail with 1007 (RFC 6455 8.1); `out` is left as it was either way. The fragments of
   a text message cannot be judged one by one: whoever fragments text checks it whole. */
static YHC__UNUSED int yhc__ws_encode(yhc_buf *out, int opcode, int fin, const void *payload, size_t len,
                                      const unsigned char mask[4]) {
  unsigned char hdr[YHC__WS_MAX_HEADER];
  size_t hlen = yhc__ws_frame_header(hdr, fin, opcode, (uint64_t)len, mask);
  size_t start;
  if (opcode == YHC__WS_OP_TEXT && fin && !yhc__utf8_valid(YHC__CAST(const unsigned char *, payload), len))
    return -2;
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
   RFC 6455 calls that 1005). Returns 0, or the status to fail the connection with (err set):
   1002 for a malformed payload or a code no peer may send, 1007 for a reason that is not
   UTF-8 (RFC 6455 5.5.1, 7.4.1). */
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
    return 1002;
  }
  c = payload[0] << 8 | payload[1];
  if (!yhc__ws_close_code_valid(c)) {
    yhc__error_set(err, YHC_ERR_WEBSOCKET, base, "invalid close code %d", c);
    return 1002;
  }
  good = yhc__utf8_scan(payload + 2, len - 2);
  if (good != len - 2) {
    yhc__error_set(err, YHC_ERR_WEBSOCKET, base + 2 + good, "close reason is not valid UTF-8 (byte %lu of the reason)",
                   (unsigned long)good);
    return 1007;
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
  int close_status;   /* after an error, the status to close with: 1002 protocol error, 1007
                         text that is not UTF-8, 1009 too big (RFC 6455 7.4.1) */
  int text_open;      /* the payload being delivered belongs to a TEXT message */
  int text_fin;       /* ... and its frame ends that message */
  yhc__utf8_stream text; /* that message's UTF-8, checked as its bytes come (8.1) */
} yhc__ws_parser;

/* The status for an error of the parser's own checks. */
static int yhc__ws_status_for(yhc_err code) { return code == YHC_ERR_LIMIT ? 1009 : 1002; }

/* Marks the parser failed and the status to close with; -1, for the caller to return. */
static int yhc__ws_parser_fail(yhc__ws_parser *p, int status) {
  p->failed = 1;
  p->close_status = status;
  return -1;
}

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
  if (h->opcode == YHC__WS_OP_TEXT) memset(&p->text, 0, sizeof p->text);
  p->text_open = msg_op == YHC__WS_OP_TEXT;
  p->text_fin = h->fin;
  if (h->fin) {
    p->msg_opcode = 0;
    p->msg_len = 0;
  } else {
    p->msg_opcode = msg_op;
    p->msg_len += (size_t)h->payload_len; /* fits: checked against max_message */
  }
  return msg_op;
}

/* Checks the next `n` payload bytes of the data frame last recorded, in order: the UTF-8 of
   a text message, piece by piece, so a character may straddle reads and fragments and a
   fault is found as its bytes come, never after the whole message. `frame_done` says they are
   the frame's last bytes (a final frame's end must not cut a character). `base` is added to
   error offsets, as in yhc__ws_parse. 0, or -1 with `err` set and close_status 1007. */
static int yhc__ws_parser_text(yhc__ws_parser *p, const unsigned char *data, size_t n, int frame_done,
                               size_t base, yhc_error *err) {
  uint64_t start = p->text.seen, at = 0;
  const char *fault = "";
  if (!p->text_open) return 0;
  if (yhc__utf8_feed(&p->text, data, n, &at, &fault) == 0) {
    if (!frame_done || !p->text_fin) return 0;
    p->text_open = 0;
    if (yhc__utf8_finish(&p->text, &at, &fault) == 0) return 0;
  }
  yhc__error_set(err, YHC_ERR_WEBSOCKET, base + (size_t)(at > start ? at - start : 0),
                 "text message is not valid UTF-8: %s at byte %llu of the message", fault,
                 (unsigned long long)at);
  return yhc__ws_parser_fail(p, 1007);
}

/* For callers that stream payload instead of buffering whole frames: after
   yhc__ws_parse_header succeeds, checks sequencing and limits and, if they pass, records the
   frame. The caller then owns `h->payload_len` payload bytes, to be passed through
   yhc__ws_parser_text as they are taken; a CLOSE payload should be checked with
   yhc__ws_close_parse once it is complete. 0, or -1 with `err` set and close_status the
   status to close with. */
static YHC__UNUSED int yhc__ws_parser_begin(yhc__ws_parser *p, const yhc__ws_header *h, int *message_opcode,
                                            yhc_error *err) {
  int op;
  if (yhc__ws_parser_check(p, h, err)) return yhc__ws_parser_fail(p, yhc__ws_status_for(err->code));
  op = yhc__ws_parser_commit(p, h);
  if (message_opcode) *message_opcode = op;
  /* an empty final frame ends its text message here: no payload will come to check */
  if (op < YHC__WS_OP_CLOSE && !h->payload_len && yhc__ws_parser_text(p, NULL, 0, 1, h->header_len, err)) return -1;
  return 0;
}

/* Parses one whole server frame at the start of `buf`. Returns the bytes it spans (>0) and
   fills `out`, 0 when `buf` does not hold all of it yet (nothing changes: call again with the
   same start and more bytes), or -1 with `err` set (YHC_ERR_WEBSOCKET, or YHC_ERR_LIMIT for
   a limit; offset relative to `buf`) and close_status the status to close with. A text
   message's UTF-8 is checked frame by frame (yhc__ws_parser_text). After an error every later
   call fails too. Limit errors
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
  if (r <= 0) return r < 0 ? yhc__ws_parser_fail(p, 1002) : 0;
  if (yhc__ws_parser_check(p, &h, err)) return yhc__ws_parser_fail(p, yhc__ws_status_for(err->code));
  if (h.payload_len > (uint64_t)(INT_MAX - (int)h.header_len)) {
    yhc__error_set(err, YHC_ERR_LIMIT, 1, "frame payload of %llu bytes too large to parse whole",
                   (unsigned long long)h.payload_len);
    return yhc__ws_parser_fail(p, 1009);
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
  if (h.opcode == YHC__WS_OP_CLOSE) {
    int status = yhc__ws_close_parse(out->payload, out->len, &out->close_code, &out->close_reason, h.header_len, err);
    if (status) return yhc__ws_parser_fail(p, status);
  }
  out->message_opcode = yhc__ws_parser_commit(p, &h);
  if (h.opcode < YHC__WS_OP_CLOSE && yhc__ws_parser_text(p, out->payload, out->len, 1, h.header_len, err)) return -1;
  return (int)total;
}
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
  int close_ms;        /* after a protocol error: how long to wait for the server to end the
                          connection once our Close is sent [1000] */
} yhc__ws_conf;

/* CLOSING: a protocol error was found and our Close (1002, 1007, 1009) sent; the error is
   told once the server has closed the connection, or close_ms passed (RFC 6455 7.1.1: the
   server closes first, so its side does not linger in TIME_WAIT). */
enum { YHC__WS_CONNECTING, YHC__WS_HANDSHAKE, YHC__WS_OPEN, YHC__WS_CLOSING, YHC__WS_CLOSED };

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
  unsigned char pong[125]; /* the latest ping's payload, answered once there is room */
  size_t pong_len;
  int pong_due;
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
/* Tells the owner the failure already in base.err; the stream is done. */
static void yhc__ws_end_failed(yhc__ws *w) {
  w->failed = 1;
  w->state = YHC__WS_CLOSED;
  yhc__timer_stop(w->loop, &w->keepalive);
  yhc__ws_kick(w, YHC__EV_ERROR);
}

/* Fails the stream at once. While CLOSING, the protocol error stays the one told: whatever
   ends the wait (the server's FIN, a reset, the timer) is only how it ended. */
static void yhc__ws_fail(yhc__ws *w, yhc_err code, const char *fmt, ...) {
  va_list ap;
  if (w->failed) return;
  if (w->state != YHC__WS_CLOSING) {
    va_start(ap, fmt);
    yhc__error_vset(&w->base.err, code, 0, fmt, ap);
    va_end(ap);
  }
  yhc__ws_end_failed(w);
}

/* Reads from inner only while the reader keeps up, so a stalled reader cannot make us buffer
   without bound (and a level-triggered poll cannot spin on data we will not take). */
static void yhc__ws_interest(yhc__ws *w) {
  int rd = w->state != YHC__WS_CLOSED && !w->eof && !w->inner_eof &&
           w->rbuf.len - w->rpos <= w->conf.max_frame + 64 + 65536;
  w->inner->vt->want(w->inner, rd, w->wpos < w->wbuf.len);
}

static int yhc__ws_send_frame(yhc__ws *w, int opcode, const void *data, size_t len);

/* Pongs answer the latest ping only (RFC 6455 5.5.3), and only while the send buffer has
   room: a peer that floods pings and reads nothing cannot grow it past max_wbuf. */
static void yhc__ws_queue_pong(yhc__ws *w) {
  if (!w->pong_due || w->state != YHC__WS_OPEN || w->eof || w->wbuf.len - w->wpos >= w->conf.max_wbuf) return;
  w->pong_due = 0;
  yhc__ws_send_frame(w, YHC__WS_OP_PONG, w->pong, w->pong_len);
}

static void yhc__ws_flush(yhc__ws *w) {
  yhc__ws_queue_pong(w);
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
    if (w->pong_due) yhc__ws_queue_pong(w); /* writing made room */
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

static int yhc__ws_fill(yhc__ws *w);

static void yhc__ws_close_wait_over(void *ctx) {
  yhc__ws *w = YHC__CAST(yhc__ws *, ctx);
  if (!w->failed) yhc__ws_end_failed(w);
}

/* Fails the connection for a protocol error the server made (RFC 6455 7.1.7): our Close
   with `status` goes out first and the error is told when the close ends (CLOSING). Bytes
   still unread are dropped: after the fault nothing from the server is data. */
static void yhc__ws_fail_close(yhc__ws *w, int status, yhc_err code, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static void yhc__ws_fail_close(yhc__ws *w, int status, yhc_err code, const char *fmt, ...) {
  unsigned char pl[YHC__WS_MAX_CONTROL];
  int n = yhc__ws_close_payload(pl, status, NULL);
  va_list ap;
  if (w->failed || w->state == YHC__WS_CLOSING) return;
  va_start(ap, fmt);
  yhc__error_vset(&w->base.err, code, 0, fmt, ap);
  va_end(ap);
  /* a Close of ours went out already (we answered the server's): nothing more to say */
  if (w->state != YHC__WS_OPEN || w->eof || w->inner_eof || n < 0) {
    yhc__ws_end_failed(w);
    return;
  }
  w->state = YHC__WS_CLOSING;
  w->pong_due = 0;
  w->cur_left = 0;
  w->rbuf.len = w->rpos = 0;
  yhc__timer_start(w->loop, &w->keepalive, (uint64_t)w->conf.close_ms, yhc__ws_close_wait_over, w);
  if (yhc__ws_send_frame(w, YHC__WS_OP_CLOSE, pl, (size_t)n) == 0) yhc__ws_flush(w);
}

/* Events while CLOSING: our Close is flushed, and what comes is read and dropped until the
   server ends the connection. */
static void yhc__ws_closing_event(yhc__ws *w, int ev) {
  if (ev & YHC__EV_ERROR) {
    yhc__ws_end_failed(w);
    return;
  }
  if (ev & YHC__EV_WRITE) {
    yhc__ws_flush(w);
    if (w->failed) return;
  }
  if (ev & YHC__EV_READ) {
    int r, rounds = 0;
    do {
      w->rbuf.len = w->rpos = 0;
      r = yhc__ws_fill(w);
    } while (r == 2 && ++rounds < 4); /* a FIN behind the bytes shows on the next fill */
    if (r < 0) return;
    if (r == 1) {
      yhc__ws_end_failed(w);
      return;
    }
  }
  yhc__ws_interest(w);
}

/* Handles one complete control frame from the server. */
static void yhc__ws_control(yhc__ws *w, const yhc__ws_frame *f) {
  if (f->opcode == YHC__WS_OP_PING) {
    w->pong_len = YHC__MIN(f->len, sizeof w->pong);
    if (w->pong_len) memcpy(w->pong, f->payload, w->pong_len);
    w->pong_due = 1; /* queued by the flush that follows the frames read */
  } else if (f->opcode == YHC__WS_OP_CLOSE) {
    unsigned char pl[YHC__WS_MAX_CONTROL];
    int n = yhc__ws_close_payload(pl, f->close_code ? 1000 : 0, NULL);
    yhc__ws_queue_pong(w); /* a pong owed goes before the close: nothing may follow it */
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
      yhc__ws_fail_close(w, yhc__ws_status_for(e.code), e.code, "tunnel %s: %s", w->target_desc, e.msg);
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
        yhc__ws_fail_close(w, w->parser.close_status, e.code, "tunnel %s: %s", w->target_desc, e.msg);
        return -1;
      }
      w->rpos += (size_t)n;
      yhc__ws_control(w, &f);
      continue;
    }
    /* data: its payload is streamed out by read(), so only the header is consumed here */
    if (yhc__ws_parser_begin(&w->parser, &h, NULL, &e)) {
      yhc__ws_fail_close(w, w->parser.close_status, e.code, "tunnel %s: %s", w->target_desc, e.msg);
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
    /* we offer neither: a server that accepts one anyway speaks a protocol we do not (RFC 6455
       4.1, the client's checks 5 and 6) */
    if (yhc__str_ieq(hv[i].name, "sec-websocket-extensions") || yhc__str_ieq(hv[i].name, "sec-websocket-protocol")) {
      yhc__ws_fail(w, YHC_ERR_WEBSOCKET, "tunnel %s: handshake answer accepts %s \"%.*s\" that was not offered",
                   w->target_desc, yhc__str_ieq(hv[i].name, "sec-websocket-protocol") ? "a subprotocol" : "an extension",
                   (int)YHC__MIN(hv[i].value.len, 60), hv[i].value.ptr);
      return;
    }
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
  if (w->state == YHC__WS_CLOSING) {
    yhc__ws_closing_event(w, ev);
    return;
  }
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
      if (w->pong_due || w->wpos < w->wbuf.len) yhc__ws_flush(w); /* pongs, close replies */
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
    if (a < 0) break;
    if (w->cur_left && w->rpos < w->rbuf.len) {
      size_t take = YHC__MIN(w->rbuf.len - w->rpos, cap - got);
      yhc_error e;
      if (take > w->cur_left) take = (size_t)w->cur_left;
      /* text is checked as it is taken, so no byte past a fault reaches the reader */
      if (yhc__ws_parser_text(&w->parser, YHC__PUN(const unsigned char *, w->rbuf.ptr) + w->rpos, take,
                              take == w->cur_left, 0, &e)) {
        yhc__ws_fail_close(w, w->parser.close_status, e.code, "tunnel %s: %s", w->target_desc, e.msg);
        break;
      }
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
  if (w->failed) return YHC__FAIL;
  if (w->state == YHC__WS_CLOSING) return got ? (long)got : (long)YHC__AGAIN; /* the error comes as ERROR */
  if (w->pong_due || w->wpos < w->wbuf.len) yhc__ws_flush(w); /* pongs and close replies met on the way */
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
  if (!w->conf.close_ms) w->conf.close_ms = 1000;
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

/* ==== poll() loop ================================================================== */
/* Owns: the calls to poll(), the embeddable tier (fds out, results in), and the blocking
   conveniences built on them. Everything below the loop is driven from here or from the
   user's own loop through yhc_loop_fds()/yhc_loop_dispatch(); nothing else blocks. */

/* ---- tier 3: telling the user's loop what to watch */

/* Tells the user what fd needs now, if that differs from what they were told; a zombie (its
   watch closed while they held it) is removed, then really closed. */
static void yhc__t3_tell_fd(yhc_loop *loop, int fd) {
  unsigned char st = loop->t3_told[fd];
  yhc__watch *w = loop->by_fd[fd];
  int want = w && !(st & YHC__T3_ZOMBIE) ? (w->events & YHC__T3_EVENTS) : 0;
  int told = st & YHC__T3_EVENTS;
  loop->t3_told[fd] = (unsigned char)((st & YHC__T3_ZOMBIE) | want);
  if (want != told) {
    void **data = &loop->t3_data[fd];
    loop->on_socket(loop->t3_user, fd, want, told, data);
    if (!want) loop->t3_data[fd] = NULL;
  }
  if (st & YHC__T3_ZOMBIE) {
    loop->t3_told[fd] &= (unsigned char)~(YHC__T3_ZOMBIE | YHC__T3_EVENTS);
    close(fd);
  }
}

static int yhc__t3_timeout_ms(yhc_loop *loop, uint64_t due) {
  uint64_t now = yhc_loop_now(loop);
  if (due <= now) return 0;
  return due - now > INT_MAX ? INT_MAX : (int)(due - now);
}

/* Runs at the end of every action, timeout and dispatch: the only place tier-3 callbacks
   run from (besides set_callbacks and destroy), so they meet no half-done state. */
static void yhc__t3_flush(yhc_loop *loop) {
  uint64_t due;
  if (!loop->on_socket || loop->t3_flushing || loop->t3_depth) return;
  loop->t3_flushing = 1;
  loop->t3_depth++; /* what the callbacks change is told in this same flush */
  while (loop->on_socket && loop->t3_ndirty) yhc__t3_tell_fd(loop, loop->t3_dirty[--loop->t3_ndirty]);
  due = loop->nheap ? loop->heap[0]->due : UINT64_MAX;
  if (loop->on_socket && due != loop->t3_due) {
    loop->t3_due = due;
    loop->on_timeout(loop->t3_user, due == UINT64_MAX ? -1 : yhc__t3_timeout_ms(loop, due));
  }
  loop->t3_depth--;
  loop->t3_flushing = 0;
}

/* Every fd the user holds is removed (zombies then closed) and their timer cancelled. */
static void yhc__t3_off(yhc_loop *loop) {
  int fd;
  yhc_socket_fn on_socket = loop->on_socket;
  if (!on_socket) return;
  loop->on_socket = NULL;
  for (fd = 0; fd < loop->by_fd_cap; fd++) {
    unsigned char st = loop->t3_told[fd];
    loop->t3_told[fd] = 0;
    if (st & YHC__T3_EVENTS) on_socket(loop->t3_user, fd, 0, st & YHC__T3_EVENTS, &loop->t3_data[fd]);
    loop->t3_data[fd] = NULL;
    if (st & YHC__T3_ZOMBIE) close(fd);
  }
  loop->t3_ndirty = 0;
  if (loop->t3_due != UINT64_MAX) loop->on_timeout(loop->t3_user, -1);
  loop->t3_due = UINT64_MAX;
  loop->on_timeout = NULL;
}

YHCDEF void yhc_loop_set_callbacks(yhc_loop *loop, yhc_socket_fn on_socket,
                                   yhc_timeout_fn on_timeout, void *user) {
  int fd;
  yhc__t3_off(loop);
  if (!on_socket || !on_timeout) return;
  loop->on_socket = on_socket;
  loop->on_timeout = on_timeout;
  loop->t3_user = user;
  loop->t3_depth++; /* no wakeup for these: the flush below tells them at once */
  for (fd = 0; fd < loop->by_fd_cap; fd++)
    if (loop->by_fd[fd] && loop->by_fd[fd]->events) yhc__t3_mark(loop, fd);
  loop->t3_depth--;
  yhc__t3_flush(loop);
}

YHCDEF int yhc_loop_action(yhc_loop *loop, int fd, int events) {
  int ours = 0;
  loop->t3_depth++;
  if (fd >= 0 && fd < loop->by_fd_cap && loop->by_fd[fd]) {
    yhc__watch *w = loop->by_fd[fd];
    short rev = (short)(events & (w->events | POLLERR | POLLHUP | POLLNVAL));
    ours = 1;
    if (w->events && rev) w->fn(w->ctx, rev);
  }
  yhc__timers_run(loop);
  loop->t3_depth--;
  yhc__t3_flush(loop);
  return ours;
}

YHCDEF void yhc_loop_timeout(yhc_loop *loop) {
  loop->t3_depth++;
  loop->t3_due = UINT64_MAX; /* the timer told has fired: the next one is news */
  yhc__timers_run(loop);
  loop->t3_depth--;
  yhc__t3_flush(loop);
}

YHCDEF void yhc_loop_destroy(yhc_loop *loop) {
  if (!loop) return;
  while (loop->pubtimers) yhc_timer_cancel(loop, loop->pubtimers->id);
  if (loop->busy) {
    loop->doomed = 1;
    return;
  }
  yhc__resolver_free(loop);
  yhc__loop_free_resolver_desc(loop);
  yhc__t3_off(loop);
  yhc__watch_del(loop, &loop->wake);
  close(loop->wake_rd);
  if (loop->wake_wr != loop->wake_rd) close(loop->wake_wr);
  if (loop->ep >= 0) close(loop->ep);
  YHC_FREE(loop->ep_held);
  YHC_FREE(loop->ep_dirty);
  YHC_FREE(loop->t3_told);
  YHC_FREE(loop->t3_data);
  YHC_FREE(loop->t3_dirty);
  YHC_FREE(loop->by_fd);
  YHC_FREE(loop->heap);
  YHC_FREE(loop->pfd);
  YHC_FREE(loop);
}

YHCDEF int yhc_loop_fds(yhc_loop *loop, struct pollfd *fds, int cap, int *timeout_ms) {
  int fd, n = 0;
  for (fd = 0; fd < loop->by_fd_cap; fd++) {
    yhc__watch *w = loop->by_fd[fd];
    if (!w || !w->events) continue;
    if (n < cap) {
      fds[n].fd = fd;
      fds[n].events = w->events;
      fds[n].revents = 0;
    }
    n++;
  }
  if (timeout_ms) *timeout_ms = yhc__timers_wait(loop);
  loop->fds_gen = loop->watch_gen;
  return n;
}

static void yhc__loop_unbusy(yhc_loop *loop) {
  if (--loop->busy == 0 && loop->doomed) yhc_loop_destroy(loop);
}

YHCDEF void yhc_loop_dispatch(yhc_loop *loop, const struct pollfd *fds, int nfds) {
  int i;
  /* a local copy: a callback may list fds again for a nested poll */
  uint64_t listed = loop->fds_gen;
  loop->t3_depth++;
  loop->busy++;
  for (i = 0; i < nfds && !loop->doomed; i++) {
    int fd = fds[i].fd;
    short rev = fds[i].revents;
    yhc__watch *w;
    if (!rev || fd < 0 || fd >= loop->by_fd_cap) continue;
    w = loop->by_fd[fd];
    /* a watch added after the fds were listed reuses the fd of a closed socket: the
       results belong to that one */
    if (!w || w->born > listed) continue;
    rev &= (short)(w->events | POLLERR | POLLHUP | POLLNVAL);
    if (!w->events || !rev) continue;
    w->fn(w->ctx, rev);
  }
  if (!loop->doomed) yhc__timers_run(loop);
  loop->t3_depth--;
  if (!loop->doomed) yhc__t3_flush(loop);
  yhc__loop_unbusy(loop);
}

/* The scratch pollfd array is taken out of the loop for the whole call: a callback may turn
   the loop again (a nested blocking fetch), and that inner call must not reallocate the array
   this one is still reading. The larger of the two is kept afterwards. */
static void yhc__loop_give_back_pfd(yhc_loop *loop, struct pollfd *pfd, int cap) {
  if (loop->pfd && loop->pfd_cap >= cap) {
    YHC_FREE(pfd);
    return;
  }
  YHC_FREE(loop->pfd);
  loop->pfd = pfd;
  loop->pfd_cap = cap;
}

#if YHC__EPOLL
enum { YHC__EP_BATCH = 64 };

/* Creates the set on first use and lists every watch to be registered; -1 when there is no
   epoll to be had (the loop polls then). */
static int yhc__ep_open(yhc_loop *loop) {
  int fd;
  if (loop->ep >= 0) return 0;
  if (loop->ep == -2) return -1;
  loop->ep = epoll_create1(EPOLL_CLOEXEC);
  if (loop->ep < 0) {
    loop->ep = -2;
    return -1;
  }
  loop->ep_ndirty = 0;
  for (fd = 0; fd < loop->by_fd_cap; fd++) {
    loop->ep_held[fd] = 0;
    if (loop->by_fd[fd]) yhc__ep_mark(loop, fd);
  }
  return 0;
}

/* Makes the set hold `want` (poll bits, 0 = out) for fd. A registration that is out of step
   (the fd closed and its number reused behind the loop's back) is mended, not fatal. */
static int yhc__ep_ctl(yhc_loop *loop, int fd, int want) {
  struct epoll_event ev;
  int in = loop->ep_held[fd] & YHC__EP_IN;
  int op = !want ? EPOLL_CTL_DEL : in ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  memset(&ev, 0, sizeof ev);
  ev.events = 0;
  if (want & POLLIN) ev.events |= EPOLLIN;
  if (want & POLLOUT) ev.events |= EPOLLOUT;
  ev.data.fd = fd;
  if (epoll_ctl(loop->ep, op, fd, &ev) < 0) {
    if (op == EPOLL_CTL_MOD && errno == ENOENT) op = EPOLL_CTL_ADD;
    else if (op == EPOLL_CTL_ADD && errno == EEXIST) op = EPOLL_CTL_MOD;
    else if (op == EPOLL_CTL_DEL && (errno == ENOENT || errno == EBADF)) op = -1;
    else return -1;
    if (op >= 0 && epoll_ctl(loop->ep, op, fd, &ev) < 0) return -1;
  }
  loop->ep_held[fd] = (unsigned char)((loop->ep_held[fd] & YHC__EP_DIRTY) | (want ? YHC__EP_IN | want : 0));
  return 0;
}

/* Brings the set in step with the watches that changed since the last wait. */
static int yhc__ep_sync(yhc_loop *loop) {
  while (loop->ep_ndirty) {
    int fd = loop->ep_dirty[--loop->ep_ndirty];
    yhc__watch *w = loop->by_fd[fd];
    int held, want = w ? (w->events & YHC__T3_EVENTS) : 0;
    loop->ep_held[fd] &= (unsigned char)~YHC__EP_DIRTY;
    held = loop->ep_held[fd];
    if ((held & YHC__EP_IN) ? want == (held & YHC__T3_EVENTS) : !want) continue;
    if (yhc__ep_ctl(loop, fd, want) < 0) return -1;
  }
  return 0;
}

/* Tier 1 on epoll: dispatches as yhc_loop_dispatch() does poll()'s results. Returns the fds
   reported, -1 with errno when the wait failed, -2 when the set cannot be used (the caller
   polls, and the loop keeps polling). */
static int yhc__loop_epoll(yhc_loop *loop, int timeout_ms) {
  struct epoll_event evs[YHC__EP_BATCH];
  struct pollfd pfd[YHC__EP_BATCH];
  int n, i;
  if (yhc__ep_open(loop) < 0) return -2;
  if (yhc__ep_sync(loop) < 0) {
    close(loop->ep);
    loop->ep = -2;
    return -2;
  }
  loop->fds_gen = loop->watch_gen;
  n = epoll_wait(loop->ep, evs, YHC__EP_BATCH, timeout_ms);
  if (n < 0) {
    if (errno != EINTR) return -1;
    n = 0;
  }
  for (i = 0; i < n; i++) {
    uint32_t e = evs[i].events;
    int fd = evs[i].data.fd;
    pfd[i].fd = fd;
    pfd[i].events = 0;
    pfd[i].revents = 0;
    if (e & EPOLLIN) pfd[i].revents |= POLLIN;
    if (e & EPOLLOUT) pfd[i].revents |= POLLOUT;
    if (e & EPOLLERR) pfd[i].revents |= POLLERR;
    if (e & EPOLLHUP) pfd[i].revents |= POLLHUP;
    /* nothing watches it any more: a level-triggered report would come back on every wait */
    if (fd >= 0 && fd < loop->by_fd_cap && !loop->by_fd[fd]) yhc__ep_ctl(loop, fd, 0);
  }
  yhc_loop_dispatch(loop, pfd, n); /* may free the loop (destroyed from a callback) */
  return n;
}
#endif

YHCDEF int yhc_loop_poll(yhc_loop *loop, int timeout_ms) {
  int n, tw, rc, ran = 0, i, cap = loop->pfd_cap;
  struct pollfd *pfd;
#if YHC__EPOLL
  /* a tier-3 user's loop owns the waiting; a blocking call made there polls the fds itself */
  if (!loop->on_socket && loop->ep != -2) {
    tw = yhc__timers_wait(loop);
    if (tw >= 0 && (timeout_ms < 0 || tw < timeout_ms)) timeout_ms = tw;
    rc = yhc__loop_epoll(loop, timeout_ms);
    if (rc != -2) return rc;
  }
#endif
  pfd = loop->pfd;
  loop->pfd = NULL;
  loop->pfd_cap = 0;
  n = yhc_loop_fds(loop, pfd, cap, &tw);
  if (n > cap) {
    struct pollfd *p = YHC__CAST(struct pollfd *, YHC_REALLOC(pfd, (size_t)n * sizeof *p));
    if (!p) {
      yhc__loop_give_back_pfd(loop, pfd, cap);
      errno = ENOMEM;
      return -1;
    }
    pfd = p;
    cap = n;
    n = yhc_loop_fds(loop, pfd, cap, &tw);
  }
  if (tw >= 0 && (timeout_ms < 0 || tw < timeout_ms)) timeout_ms = tw;
  rc = poll(pfd, (nfds_t)n, timeout_ms);
  if (rc < 0 && errno != EINTR) {
    int e = errno;
    yhc__loop_give_back_pfd(loop, pfd, cap);
    errno = e;
    return -1;
  }
  if (rc > 0)
    for (i = 0; i < n; i++) ran += pfd[i].revents != 0;
  loop->busy++;
  yhc_loop_dispatch(loop, pfd, rc > 0 ? n : 0);
  yhc__loop_give_back_pfd(loop, pfd, cap);
  yhc__loop_unbusy(loop);
  return ran;
}

static int yhc__loop_idle(yhc_loop *loop) {
  int fd;
  if (loop->nheap) return 0;
  for (fd = 0; fd < loop->by_fd_cap; fd++) /* the wakeup fd alone is nothing to wait for */
    if (loop->by_fd[fd] && loop->by_fd[fd]->events && loop->by_fd[fd] != &loop->wake) return 0;
  return 1;
}

YHCDEF int yhc_loop_run(yhc_loop *loop, const volatile int *done) {
  while (!*done) {
    if (yhc__loop_idle(loop)) return -1;
    if (yhc_loop_poll(loop, -1) < 0) return -1;
  }
  return 0;
}

/* ---- blocking fetch */

typedef struct yhc__fetch {
  yhc_response *out;
  int done;
} yhc__fetch;

static size_t yhc__views_bytes(const yhc_header_view *v, size_t n) {
  size_t i, total = 0;
  for (i = 0; i < n; i++) total += v[i].name.len + v[i].value.len + 2;
  return total;
}

static char *yhc__copy_str(char *dst, yhc_str src, yhc_str *out) {
  if (src.len) memcpy(dst, src.ptr, src.len);
  dst[src.len] = 0;
  out->ptr = dst;
  out->len = src.len;
  return dst + src.len + 1;
}

/* One allocation holds the response, its views and all their bytes, so one free releases it. */
static yhc_response *yhc__response_clone(const yhc_response *r) {
  size_t nviews = r->header_count + r->trailer_count;
  size_t errlen = strlen(r->error ? r->error : "");
  size_t bytes = sizeof(yhc_response) + nviews * sizeof(yhc_header_view) +
                 yhc__views_bytes(r->headers, r->header_count) +
                 yhc__views_bytes(r->trailers, r->trailer_count) + r->reason.len + 1 +
                 r->body.len + 1 + errlen + 1;
  yhc_response *c = YHC__CAST(yhc_response *, YHC_MALLOC(bytes));
  yhc_header_view *views;
  char *p;
  size_t i;
  yhc_str tmp;
  if (!c) return NULL;
  *c = *r;
  views = YHC__CAST(yhc_header_view *, YHC__CAST(void *, c + 1));
  p = YHC__CAST(char *, YHC__CAST(void *, views + nviews));
  for (i = 0; i < r->header_count; i++) {
    p = yhc__copy_str(p, r->headers[i].name, &views[i].name);
    p = yhc__copy_str(p, r->headers[i].value, &views[i].value);
  }
  for (i = 0; i < r->trailer_count; i++) {
    p = yhc__copy_str(p, r->trailers[i].name, &views[r->header_count + i].name);
    p = yhc__copy_str(p, r->trailers[i].value, &views[r->header_count + i].value);
  }
  c->headers = views;
  c->trailers = views + r->header_count;
  p = yhc__copy_str(p, r->reason, &c->reason);
  p = yhc__copy_str(p, r->body, &c->body);
  tmp.ptr = r->error ? r->error : "";
  tmp.len = errlen;
  yhc__copy_str(p, tmp, &tmp);
  c->error = tmp.ptr;
  return c;
}

static void yhc__fetch_done(const yhc_response *resp, void *user) {
  yhc__fetch *f = YHC__CAST(yhc__fetch *, user);
  f->out = yhc__response_clone(resp);
  f->done = 1;
}

YHCDEF yhc_response *yhc_http_fetch(yhc_http *http, const yhc_request *req) {
  yhc__fetch f;
  f.out = NULL;
  f.done = 0;
  if (!yhc_http_request(http, req, yhc__fetch_done, &f)) return NULL;
  while (!f.done)
    if (yhc_loop_poll(http->loop, -1) < 0 && errno != EINTR) break;
  return f.out;
}

YHCDEF void yhc_response_free(yhc_response *resp) { YHC_FREE(resp); }

static void yhc__json_fetch_req(yhc_json_req *jr, const char *method, const char *url, const char *json) {
  yhc_request base;
  memset(&base, 0, sizeof base);
  base.method = method ? method : json ? "POST" : "GET";
  base.url = url;
  yhc_json_request(jr, &base, json, json ? strlen(json) : 0, NULL); /* no headers: cannot fail */
}

YHCDEF yhc_response *yhc_http_fetch_json(yhc_http *http, const char *method, const char *url, const char *json) {
  yhc_json_req jr;
  yhc__json_fetch_req(&jr, method, url, json);
  return yhc_http_fetch(http, &jr.req);
}

/* ==== yagna REST calls: identity, payment, market, activity, net =================== */
/* Owns: the daemon connection (base URL, app key), JSON calls with defensive answers, the
   shared Golem context (identity, allocation, VPN, agreements we pay for) and payments:
   debit notes and invoices are accepted only for our agreements and only within the budget
   and what the agreed price allows for the time elapsed.

   Call sequences follow ../shared/yagna-api/PROTOCOL.md (yapapi's behaviour): long-polls with
   server-side timeouts, never sleep loops; every id that goes back into a URL is checked
   first, since it came from the daemon or a provider. */

#define YHC__ID_MAX 160

/* A double as JSON writes it (shortest, '.' whatever the locale), for text sent to the daemon. */
static const char *yhc__num_text(double v, char out[32]) {
  yhc_buf b;
  yhc_jw w;
  memset(&b, 0, sizeof b);
  yhc_jw_init(&w, &b);
  yhc_jw_num(&w, v);
  if (yhc_jw_finish(&w) || b.len >= 32) snprintf(out, 32, "0");
  else memcpy(out, b.ptr, b.len + 1);
  yhc_buf_free(&b);
  return out;
}

/* ---- exact money: GLM as fixed-point decimals, 18 fractional digits (wei), no double

   yagna writes amounts as decimal strings with up to 18 fractional digits; a double cannot
   hold them (0.1 + 0.2 != 0.3, and a budget compared in doubles leaks). Four base-1e9 limbs
   hold 36 digits: 18 integer and 18 fractional, far above any real balance, so every sum,
   comparison and product below is exact or a clear overflow. The process locale never
   enters: nothing here calls printf or strtod. */

#define YHC__GLM_BASE 1000000000u
#define YHC__GLM_TEXT 48 /* 18 + '.' + 18 + NUL, with room */
enum { YHC__GLM_OK = 0, YHC__GLM_MALFORMED = -1, YHC__GLM_OVERFLOW = -2 };

typedef struct yhc__glm {
  uint32_t l[4]; /* least significant first; value = sum l[i] * 1e9^i * 1e-18 */
} yhc__glm;

static int yhc__glm_is_zero(const yhc__glm *a) { return !(a->l[0] | a->l[1] | a->l[2] | a->l[3]); }

static int yhc__glm_cmp(const yhc__glm *a, const yhc__glm *b) {
  int i;
  for (i = 3; i >= 0; i--)
    if (a->l[i] != b->l[i]) return a->l[i] < b->l[i] ? -1 : 1;
  return 0;
}

/* a += b; on overflow a saturates at the largest value and -2 comes back */
static int yhc__glm_add(yhc__glm *a, const yhc__glm *b) {
  uint32_t carry = 0;
  int i;
  for (i = 0; i < 4; i++) {
    uint32_t s = a->l[i] + b->l[i] + carry; /* < 2e9 + 1: fits */
    carry = s >= YHC__GLM_BASE;
    a->l[i] = carry ? s - YHC__GLM_BASE : s;
  }
  if (carry) {
    for (i = 0; i < 4; i++) a->l[i] = YHC__GLM_BASE - 1;
    return YHC__GLM_OVERFLOW;
  }
  return YHC__GLM_OK;
}

/* a -= b, floored at zero: returns -1 when b was larger (a becomes 0) */
static int yhc__glm_sub(yhc__glm *a, const yhc__glm *b) {
  uint32_t borrow = 0;
  int i;
  if (yhc__glm_cmp(a, b) < 0) {
    memset(a, 0, sizeof *a);
    return -1;
  }
  for (i = 0; i < 4; i++) {
    uint32_t sub = b->l[i] + borrow;
    borrow = a->l[i] < sub;
    a->l[i] = borrow ? a->l[i] + YHC__GLM_BASE - sub : a->l[i] - sub;
  }
  return 0;
}

/* a = a * mul / div, rounded down; -2 on overflow (a saturates) */
static int yhc__glm_muldiv(yhc__glm *a, uint32_t mul, uint32_t div) {
  uint64_t carry = 0, rem = 0;
  int i;
  for (i = 0; i < 4; i++) {
    uint64_t t = (uint64_t)a->l[i] * mul + carry; /* < 1e9 * 2^32 + 2^32: fits */
    a->l[i] = (uint32_t)(t % YHC__GLM_BASE);
    carry = t / YHC__GLM_BASE;
  }
  if (carry) {
    for (i = 0; i < 4; i++) a->l[i] = YHC__GLM_BASE - 1;
    return YHC__GLM_OVERFLOW;
  }
  if (div > 1) {
    for (i = 3; i >= 0; i--) {
      uint64_t t = rem * YHC__GLM_BASE + a->l[i]; /* rem < div < 2^32: fits */
      a->l[i] = (uint32_t)(t / div);
      rem = t % div;
    }
  }
  return YHC__GLM_OK;
}

/* a price per second times a duration in milliseconds */
static int yhc__glm_times_ms(yhc__glm *a, uint64_t ms) {
  if (ms <= 0xffffffffu) return yhc__glm_muldiv(a, (uint32_t)ms, 1000);
  if (ms / 1000 > 0xffffffffu) {
    yhc__glm_muldiv(a, 0xffffffffu, 1);
    return YHC__GLM_OVERFLOW;
  }
  return yhc__glm_muldiv(a, (uint32_t)(ms / 1000), 1);
}

/* 36 digit characters (18 integer, 18 fractional) into limbs */
static void yhc__glm_from_digits(yhc__glm *a, const char d[36]) {
  int i, k;
  for (i = 0; i < 4; i++) {
    uint32_t v = 0;
    for (k = 0; k < 9; k++) v = v * 10u + (uint32_t)(d[36 - 9 * (i + 1) + k] - '0');
    a->l[i] = v;
  }
}

static void yhc__glm_to_digits(const yhc__glm *a, char d[36]) {
  int i, k;
  for (i = 0; i < 4; i++) {
    uint32_t v = a->l[i];
    for (k = 8; k >= 0; k--) {
      d[36 - 9 * (i + 1) + k] = (char)('0' + v % 10u);
      v /= 10u;
    }
  }
}

/* Decimal text to an amount. strict (amounts from the daemon): digits, optionally '.' and
   digits, nothing else, at most 18 fractional digits (more would be a precision yagna does
   not have). Otherwise (JSON numbers: prices in offers) also an exponent, with digits past
   the 18th decimal dropped. YHC__GLM_MALFORMED, YHC__GLM_OVERFLOW (>= 1e18 GLM) or 0. */
static int yhc__glm_parse(const char *s, size_t len, int strict, yhc__glm *out) {
  char d[36];
  const char *mant = s;
  size_t i = 0, int_n = 0, frac_n = 0, mlen;
  long exp10 = 0, pos;
  int nonzero_dropped = 0;
  memset(out, 0, sizeof *out);
  if (!s || !len || len > 400) return YHC__GLM_MALFORMED;
  while (i < len && yhc__is_digit((unsigned char)s[i])) i++, int_n++;
  if (i < len && s[i] == '.') {
    i++;
    while (i < len && yhc__is_digit((unsigned char)s[i])) i++, frac_n++;
  }
  mlen = i;
  if (!int_n && !frac_n) return YHC__GLM_MALFORMED;
  if (i < len) {
    int neg = 0;
    long e = 0;
    if (strict || (s[i] != 'e' && s[i] != 'E')) return YHC__GLM_MALFORMED;
    i++;
    if (i < len && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    if (i >= len) return YHC__GLM_MALFORMED;
    for (; i < len; i++) {
      if (!yhc__is_digit((unsigned char)s[i])) return YHC__GLM_MALFORMED;
      if (e < 100000) e = e * 10 + (s[i] - '0');
    }
    exp10 = neg ? -e : e;
  }
  /* place each mantissa digit: the units digit of the integer part lands at index 17 */
  memset(d, '0', sizeof d);
  pos = 18 - (long)int_n - exp10; /* index of the first mantissa digit */
  for (i = 0; i < mlen; i++) {
    char c = mant[i];
    if (c == '.') continue;
    if (pos < 0) {
      if (c != '0') return YHC__GLM_OVERFLOW;
    } else if (pos < 36) {
      d[pos] = c;
    } else if (c != '0') {
      nonzero_dropped = 1;
    }
    pos++;
  }
  if (nonzero_dropped && strict) return YHC__GLM_MALFORMED;
  yhc__glm_from_digits(out, d);
  return YHC__GLM_OK;
}

static int yhc__glm_parse_str(yhc_str s, yhc__glm *out) { return yhc__glm_parse(s.ptr, s.len, 1, out); }

/* "0.000453" (trailing zeros trimmed) or, full = 1, always 18 decimals as yagna writes them */
static const char *yhc__glm_format(const yhc__glm *a, int full, char out[YHC__GLM_TEXT]) {
  char d[36];
  size_t k = 0;
  int i = 0, end = 36;
  yhc__glm_to_digits(a, d);
  while (i < 17 && d[i] == '0') i++;
  for (; i < 18; i++) out[k++] = d[i];
  if (!full)
    while (end > 18 && d[end - 1] == '0') end--;
  if (end > 18) {
    out[k++] = '.';
    for (i = 18; i < end; i++) out[k++] = d[i];
  }
  out[k] = 0;
  return out;
}

/* For display only (events, stats): the nearest double is good enough to print. */
static double yhc__glm_to_double(const yhc__glm *a) {
  return ((double)a->l[3] * 1e9 + (double)a->l[2]) + ((double)a->l[1] * 1e-9 + (double)a->l[0] * 1e-18);
}

/* A double from the config (the legacy `budget` field), read to 12 decimals, which is all a
   double typed as "0.0005" really says. -1 for negative, NaN or 1e6 GLM and more. */
static int yhc__glm_from_config_double(double v, yhc__glm *out) {
  uint64_t pico, rest;
  memset(out, 0, sizeof *out);
  if (!(v >= 0) || v >= 1e6) return -1;
  pico = (uint64_t)(v * 1e12 + 0.5);
  out->l[0] = (uint32_t)(pico % 1000u) * 1000000u;
  rest = pico / 1000u;
  out->l[1] = (uint32_t)(rest % YHC__GLM_BASE);
  out->l[2] = (uint32_t)(rest / YHC__GLM_BASE % YHC__GLM_BASE);
  out->l[3] = (uint32_t)(rest / YHC__GLM_BASE / YHC__GLM_BASE);
  return 0;
}


typedef struct yhc__golem yhc__golem;

/* What an agreement allows us to pay, kept until its invoice is settled. */
typedef struct yhc__agreement {
  char id[YHC__ID_MAX];
  char provider_id[64];
  char provider_name[64];
  char service[128];
  yhc__glm coeff_duration, coeff_cpu, coeff_start; /* GLM per second / per cpu-second / once */
  int threads;
  int interval_s, payment_timeout_s; /* agreed debit-note interval and payment timeout, 0 = none */
  int notes, payable_notes;   /* debit notes seen */
  uint64_t approved_ms;   /* wall clock */
  uint64_t ended_ms;      /* 0 while running */
  yhc__glm accepted;      /* through debit notes and the invoice */
  int invoice_done;       /* 0 waiting, 1 accepted, 2 rejected, 3 failed or malformed */
  int terminated;
  int refused;            /* we end it: a note refused or the budget spent */
  int budget_stop;
  uint64_t last_note_ms;  /* wall clock of the last debit note accepted */
  char term_reason[400];  /* the termination reason JSON when we refused, else empty */
  void *owner;            /* the instance, while it lives */
  yhc__glm *spent_sink;   /* the cluster's counter */
  struct yhc__agreement *next;
} yhc__agreement;

typedef struct yhc__reply {
  yhc_err err;
  const char *error;     /* names the call, e.g. "POST /payment-api/v1/allocations answered 400: ..." */
  int status;
  const yhc_json *json;  /* parsed body of a 2xx answer, or NULL */
  yhc_str body;
} yhc__reply;

typedef void (*yhc__reply_fn)(void *ctx, const yhc__reply *r);

enum { YHC__G_INIT, YHC__G_STARTING, YHC__G_READY, YHC__G_FAILED, YHC__G_CLOSING, YHC__G_CLOSED };

/* Instances of several services may share a provider, hence its VPN node: the node goes only
   when the last of them leaves. */
typedef struct yhc__node_ref {
  char id[64];
  int users;
  struct yhc__node_ref *next;
} yhc__node_ref;

#ifndef YHC__SEEN_N /* tests/test_golem.c shrinks it to overflow it */
#define YHC__SEEN_N 512 /* agreement events remembered, to drop the window's repeats */
#endif

struct yhc__golem {
  yhc_loop *loop;
  yhc_http *api;            /* the daemon client: many long-polls in parallel */
  char base[256];
  char auth[300];           /* "Bearer <key>" */
  char appkey[200];
  char subnet[64];
  char platform[96];        /* driver-network-token */
  char identity[64];
  char allocation_id[YHC__ID_MAX];
  char network_id[YHC__ID_MAX];
  char network_ip[32];      /* "192.168.0.0" */
  yhc_json_doc *decorations;/* demandDecorations answer */
  int state;
  yhc__glm budget;
  yhc__glm spent;
  yhc__glm burn_cap_hour;   /* GLM/hour across the session, zero = none */
  yhc__glm max_cpu_hour, max_env_hour, max_start; /* offer price limits, exact */
  int cover_min;            /* minutes of the agreed rates the budget must cover before signing */
  int time_scale;           /* providers' clock factor (a stand-in compressing time) */
  int invoices_accepted, invoices_rejected, refused; /* counts for yhc_session_money() */
  int budget_exhausted;     /* an agreement was ended because the budget ran out */
  /* payments */
  char debit_after[40], invoice_after[40], agreement_after[40];
  uint64_t debit_call, invoice_call, agreement_call;
  yhc__timer debit_retry, invoice_retry, agreement_retry;
  int payment_polls;        /* 1 while the event feeds should run */
  int accepting;            /* accept calls in flight */
  yhc__agreement *agreements;
  /* agreement events: the window overlaps clock_skew_ms behind the newest event (providers
     stamp theirs with their own clocks), so repeats are recognised by a hash of each event */
  uint64_t seen[YHC__SEEN_N];
  size_t seen_pos;
  uint64_t newest_event_ms;  /* wall clock, capped at now */
  int clock_skew_ms;
  /* VPN addresses .2 .. .254, and the nodes they belong to */
  unsigned char ip_used[256];
  yhc__node_ref *nodes;
  /* daemon outages: every call that cannot reach the daemon marks it down, any answer up */
  uint64_t down_since;       /* loop ms; 0 while it answers */
  char down_why[200];
  uint64_t net_check_call;
  uint64_t probe_call;       /* asking whether the daemon is there, after a tunnel broke */
  uint64_t teardown_call;
  int abandoning;            /* close ran out of time: the teardown stops where it is */
  char left[600];            /* what the close could not clean up, for its last event */
  /* events: copied into a queue and handed to on_event from the top of the loop's dispatch
     (ev_timer), never from inside the library frame that noticed them */
  yhc_event_fn on_event;
  void *event_user;
  int log_events;
  struct yhc__evq *ev_head, *ev_tail;
  yhc__timer ev_timer;
  /* frames running user code (events, size and startup functions, request callbacks): a
     session destroyed from inside one is freed by the last of them (free_owner) */
  int holds;
  int destroyed;
  void (*free_owner)(yhc__golem *g);
  /* hooks the upper layers set */
  void (*on_ready)(yhc__golem *g);
  /* routine: an expected end (the agreement's expiration), not a failure of the instance */
  void (*on_agreement_ended)(yhc__golem *g, yhc__agreement *a, const char *why, int routine);
  void (*on_daemon_back)(yhc__golem *g, int network_lost);
  void (*on_probed)(yhc__golem *g); /* the probe answered: down_since says how */
  void *owner;
  yhc_error error;          /* why start-up failed */
  yhc_error last_error;     /* the last error event, for yhc_session_state() */
};

/* ---- small helpers */

static uint64_t yhc__wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* RFC 3339 UTC with milliseconds and Z, as the daemon expects. */
static void yhc__rfc3339(uint64_t ms, char out[40]) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  /* the modulos bound each field, so the compiler can see the text fits */
  snprintf(out, 40, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", (unsigned)(tm.tm_year + 1900) % 10000u,
           (unsigned)tm.tm_mon % 12u + 1u, (unsigned)tm.tm_mday % 32u, (unsigned)tm.tm_hour % 24u,
           (unsigned)tm.tm_min % 60u, (unsigned)tm.tm_sec % 61u, (unsigned)(ms % 1000));
}

/* Ids go back into URLs: allow only what yagna's ids are made of. */
static int yhc__id_ok(yhc_str s) {
  size_t i;
  if (!s.ptr || !s.len || s.len >= YHC__ID_MAX) return 0;
  for (i = 0; i < s.len; i++) {
    unsigned char c = (unsigned char)s.ptr[i];
    if (!(yhc__is_alpha(c) || yhc__is_digit(c) || c == '-' || c == '_')) return 0;
  }
  return 1;
}

static void yhc__copy_id(char *dst, size_t cap, yhc_str s) {
  size_t n = YHC__MIN(s.len, cap - 1);
  if (n) memcpy(dst, s.ptr, n);
  dst[n] = 0;
}

/* ---- events */

/* which = 0: the stable name; 1: the short tag of log_events lines. */
static const char *yhc__event_text(yhc_event_kind kind, int which, const char *unknown) {
  static const char *const texts[][2] = {
#define YHC__EV_TEXTS(name, text, tag) {text, tag},
      YHC_EVENTS(YHC__EV_TEXTS)
#undef YHC__EV_TEXTS
  };
  int k = (int)kind - 1;
  return (k >= 0 && k < (int)(sizeof texts / sizeof *texts)) ? texts[k][which] : unknown;
}

YHCDEF const char *yhc_event_name(yhc_event_kind kind) { return yhc__event_text(kind, 0, "unknown"); }

/* One queued event: the event and copies of every string it points to, in one block. */
typedef struct yhc__evq {
  struct yhc__evq *next;
  yhc_event ev;
} yhc__evq;

static void yhc__golem_hold(yhc__golem *g) { g->holds++; }
/* Returns 1 when the session went away while held: the caller touches nothing more. */
static int yhc__golem_unhold(yhc__golem *g) {
  int gone = g->destroyed;
  if (--g->holds == 0 && gone && g->free_owner) g->free_owner(g);
  return gone;
}

/* Delivers one queued event. 1 when the session was destroyed from the callback. */
static int yhc__event_deliver(yhc__golem *g, yhc__evq *q) {
  yhc__golem_hold(g);
  if (g->on_event) g->on_event(&q->ev, g->event_user);
  YHC_FREE(q);
  return yhc__golem_unhold(g);
}

/* Delivers the events queued when it began; later ones wait a round (no starvation). */
static void yhc__events_run(void *ctx) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  yhc__evq *last = g->ev_tail;
  while (g->ev_head) {
    yhc__evq *q = g->ev_head;
    g->ev_head = q->next;
    if (!g->ev_head) g->ev_tail = NULL;
    if (yhc__event_deliver(g, q)) return;
    if (q == last) break;
  }
  if (g->ev_head) yhc__timer_start(g->loop, &g->ev_timer, 0, yhc__events_run, g);
}

/* Delivers every queued event now (a destroy answers what is pending) or drops them. */
static void yhc__events_flush(yhc__golem *g, int deliver) {
  yhc__timer_stop(g->loop, &g->ev_timer);
  while (g->ev_head) {
    yhc__evq *q = g->ev_head;
    g->ev_head = q->next;
    if (!g->ev_head) g->ev_tail = NULL;
    if (deliver) yhc__event_deliver(g, q); else YHC_FREE(q);
  }
}

static size_t yhc__evstr_len(const char *p) { return p ? strlen(p) + 1 : 0; }
static const char *yhc__evstr_copy(char **dst, const char *src) {
  char *at = *dst;
  size_t n;
  if (!src) return NULL;
  n = strlen(src) + 1;
  memcpy(at, src, n);
  *dst += n;
  return at;
}

static void yhc__emit(yhc__golem *g, yhc_event *ev) {
  yhc__evq *q;
  char *p;
  size_t extra;
  if (ev->kind == YHC_EV_ERROR || ev->kind == YHC_EV_SERVICE_FAILED || ev->kind == YHC_EV_CLUSTER_FAILED) {
    yhc_err code = ev->err ? ev->err : ev->kind == YHC_EV_ERROR ? YHC_ERR_YAGNA : YHC_ERR_SERVICE_FAILED;
    yhc__error_set(&g->last_error, code, 0, "%s", ev->message ? ev->message : "");
  }
  /* one line per forwarded request is too chatty for log_events = 1 */
  if (g->log_events > (ev->kind == YHC_EV_REQUEST_FORWARDED ? 1 : 0))
    fprintf(stderr, "[yhc %-9s] %s\n", yhc__event_text(ev->kind, 1, "event"), ev->message ? ev->message : "");
  if (!g->on_event || g->destroyed) return;
  extra = yhc__evstr_len(ev->service) + yhc__evstr_len(ev->provider_id) +
          yhc__evstr_len(ev->provider_name) + yhc__evstr_len(ev->agreement_id) +
          yhc__evstr_len(ev->activity_id) + yhc__evstr_len(ev->amount) + yhc__evstr_len(ev->message);
  q = YHC__CAST(yhc__evq *, YHC_MALLOC(sizeof *q + extra));
  if (!q) {
    yhc__log(g->loop, YHC_LOG_ERROR, "out of memory queueing an event: %s", ev->message ? ev->message : "");
    return;
  }
  q->next = NULL;
  q->ev = *ev;
  p = YHC__CAST(char *, YHC__CAST(void *, q + 1));
  q->ev.service = yhc__evstr_copy(&p, ev->service);
  q->ev.provider_id = yhc__evstr_copy(&p, ev->provider_id);
  q->ev.provider_name = yhc__evstr_copy(&p, ev->provider_name);
  q->ev.agreement_id = yhc__evstr_copy(&p, ev->agreement_id);
  q->ev.activity_id = yhc__evstr_copy(&p, ev->activity_id);
  q->ev.amount = yhc__evstr_copy(&p, ev->amount);
  q->ev.message = yhc__evstr_copy(&p, ev->message);
  if (g->ev_tail) g->ev_tail->next = q; else g->ev_head = q;
  g->ev_tail = q;
  if (!yhc__timer_armed(&g->ev_timer)) yhc__timer_start(g->loop, &g->ev_timer, 0, yhc__events_run, g);
}

/* A message is one line: trailing line breaks (a provider's stderr often ends with one) are
   cut, inner ones become spaces. */
static void yhc__one_line(char *msg) {
  size_t n = strlen(msg), k;
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r' || msg[n - 1] == ' ')) msg[--n] = 0;
  for (k = 0; k < n; k++)
    if (msg[k] == '\n' || msg[k] == '\r') msg[k] = ' ';
}

/* Formats the message of `ev` and emits it, as one line. */
/* Whether an event of this kind reaches anyone: the user's callback, the stderr log, or the
   session's last error. One is formatted per forwarded request, so none is formatted for
   nobody. */
static int yhc__event_wanted(const yhc__golem *g, yhc_event_kind kind) {
  if (kind == YHC_EV_ERROR || kind == YHC_EV_SERVICE_FAILED || kind == YHC_EV_CLUSTER_FAILED) return 1;
  if (g->log_events > (kind == YHC_EV_REQUEST_FORWARDED ? 1 : 0)) return 1;
  return g->on_event && !g->destroyed;
}

static void yhc__emitv(yhc__golem *g, yhc_event *ev, const char *fmt, va_list ap) {
  char msg[512];
  if (!yhc__event_wanted(g, ev->kind)) return;
  vsnprintf(msg, sizeof msg, fmt, ap);
  yhc__one_line(msg);
  ev->message = msg;
  yhc__emit(g, ev);
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 4, 5)))
#endif
static void yhc__emitf(yhc__golem *g, yhc_event_kind kind, const char *service, const char *fmt, ...) {
  yhc_event ev;
  va_list ap;
  memset(&ev, 0, sizeof ev);
  ev.kind = kind;
  ev.service = service;
  va_start(ap, fmt);
  yhc__emitv(g, &ev, fmt, ap);
  va_end(ap);
}

/* An event about one provider, and optionally one request. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 7, 8)))
#endif
static void yhc__emit_provider(yhc__golem *g, yhc_event_kind kind, const char *service, const char *provider_id,
                               const char *provider_name, uint64_t request_id, const char *fmt, ...) {
  yhc_event ev;
  va_list ap;
  memset(&ev, 0, sizeof ev);
  ev.kind = kind;
  ev.service = service;
  ev.provider_id = provider_id;
  ev.provider_name = provider_name;
  ev.request_id = request_id;
  va_start(ap, fmt);
  yhc__emitv(g, &ev, fmt, ap);
  va_end(ap);
}

/* ---- JSON calls */

typedef struct yhc__call {
  yhc__golem *g;
  yhc__reply_fn fn;
  void *ctx;
  char what[200]; /* "METHOD /path" without the query, for messages */
} yhc__call;

static void yhc__golem_reached(yhc__golem *g);

/* A call that could not reach the daemon at all (refused, reset, unresolvable): the daemon is
   down until any answer comes back. A timeout is not counted: it may be a slow provider
   behind the daemon, which answers 408 on its own. */
static void yhc__golem_unreachable(yhc__golem *g, const char *why) {
  if (g->down_since) return;
  g->down_since = yhc_loop_now(g->loop);
  if (!g->down_since) g->down_since = 1;
  snprintf(g->down_why, sizeof g->down_why, "%.199s", why);
  yhc__emitf(g, YHC_EV_DAEMON_LOST, NULL, "the yagna daemon at %s is unreachable: %s", g->base, why);
}

/* How long to wait before asking the daemon again after a failed call: a second normally,
   growing with an outage up to 10 s, so a dead daemon is not hammered. */
static uint64_t yhc__golem_retry_ms(const yhc__golem *g) {
  uint64_t down;
  if (!g->down_since) return 1000;
  down = yhc_loop_now(g->loop) - g->down_since;
  return down < 1000 ? 1000 : down > 10000 ? 10000 : down;
}

static void yhc__call_done(const yhc_response *resp, void *user) {
  yhc__call *call = YHC__CAST(yhc__call *, user);
  yhc__reply r;
  yhc_json_doc *doc = NULL;
  char msg[YHC_ERROR_MSG_MAX + 240];
  memset(&r, 0, sizeof r);
  r.status = resp->status;
  r.body = resp->body;
  r.error = "";
  if (resp->status > 0) yhc__golem_reached(call->g);
  else if (resp->err == YHC_ERR_CONNECT || resp->err == YHC_ERR_DNS || resp->err == YHC_ERR_IO ||
           resp->err == YHC_ERR_CLOSED)
    yhc__golem_unreachable(call->g, resp->error);
  if (resp->err) {
    r.err = resp->err;
    snprintf(msg, sizeof msg, "%s: %s", call->what, resp->error);
    r.error = msg;
  } else {
    const char *ctype = NULL;
    yhc_str ct = yhc_response_header(resp, "content-type");
    (void)ctype;
    if (resp->body.len && (ct.len == 0 || memchr(ct.ptr, 'j', ct.len) || resp->body.ptr[0] == '{' ||
                           resp->body.ptr[0] == '[' || resp->body.ptr[0] == '"')) {
      yhc_error e;
      yhc_json_opts o;
      memset(&o, 0, sizeof o);
      o.max_depth = 64;
      o.max_bytes = (size_t)16 << 20;
      doc = yhc_json_parse(resp->body.ptr, resp->body.len, &o, &e);
      if (!doc && resp->status >= 200 && resp->status < 300) {
        r.err = YHC_ERR_YAGNA;
        snprintf(msg, sizeof msg, "%s: invalid JSON in the answer: %s", call->what, e.msg);
        r.error = msg;
      }
    }
    if (!r.err && (resp->status < 200 || resp->status >= 300)) {
      /* the daemon's message, from {"message": ...} or a plain-text body */
      const char *m = doc ? yhc_json_cstr(yhc_json_get(yhc_json_root(doc), "message"), NULL) : NULL;
      r.err = YHC_ERR_YAGNA;
      if (m) snprintf(msg, sizeof msg, "%s answered %d: %.200s", call->what, resp->status, m);
      else snprintf(msg, sizeof msg, "%s answered %d%s%.*s", call->what, resp->status,
                    resp->body.len ? ": " : "", (int)YHC__MIN(resp->body.len, 200), resp->body.ptr);
      r.error = msg;
    }
    if (doc && !r.err) r.json = yhc_json_root(doc);
  }
  if (call->fn) call->fn(call->ctx, &r); /* fire-and-forget calls (rejections) have none */
  yhc_json_free(doc);
  YHC_FREE(call);
}

/* Sends one JSON call to the daemon. `path` starts with "/"; `body` is JSON text or NULL.
   The callback runs exactly once (also when cancelled, with YHC_ERR_CANCELLED). Returns the
   request id for cancelling. */
static uint64_t yhc__api(yhc__golem *g, const char *method, const char *path, const char *body,
                         int timeout_ms, yhc__reply_fn fn, void *ctx) {
  yhc__call *call = YHC__NEW(yhc__call);
  yhc_request rq;
  yhc_header hd[3];
  yhc_buf url;
  size_t nh = 0;
  uint64_t id;
  const char *q;
  if (!call) return 0;
  call->g = g;
  call->fn = fn;
  call->ctx = ctx;
  q = strchr(path, '?');
  snprintf(call->what, sizeof call->what, "%s %.*s", method, (int)(q ? (size_t)(q - path) : strlen(path)), path);
  memset(&url, 0, sizeof url);
  if (yhc_buf_appends(&url, g->base) || yhc_buf_appends(&url, path)) {
    yhc_buf_free(&url);
    YHC_FREE(call);
    return 0;
  }
  hd[nh].name = "Authorization";
  hd[nh++].value = g->auth;
  hd[nh].name = "Accept";
  hd[nh++].value = "application/json";
  if (body) {
    hd[nh].name = "Content-Type";
    hd[nh++].value = "application/json";
  }
  memset(&rq, 0, sizeof rq);
  rq.method = method;
  rq.url = url.ptr;
  rq.headers = hd;
  rq.header_count = nh;
  rq.body = body;
  rq.body_len = body ? strlen(body) : 0;
  rq.timeout_ms = timeout_ms;
  id = yhc_http_request(g->api, &rq, yhc__call_done, call);
  yhc_buf_free(&url);
  if (!id) YHC_FREE(call);
  return id;
}

/* Ends a daemon call whose owner stops caring (and may be freed before the answer is
   delivered): the call's context is told to forget the owner. */
static void yhc__api_cancel(yhc__golem *g, uint64_t *id) {
  yhc__req *r;
  if (!*id) return;
  r = yhc__http_find(g->api, *id, 1);
  *id = 0;
  if (!r) return;
  YHC__CAST(yhc__call *, r->user)->fn = NULL;
  if (r->where != YHC__REQ_DONE) yhc__req_fail(r, YHC_ERR_CANCELLED, "request cancelled");
}

/* A definite "no such thing": 404 (the spec), 403 (not ours), or yagna's 500 "DAO error: Not
   found" for an unknown activity. A service-bus "endpoint address not found" is not one: it
   is what a provider that is only unreachable for now gives too. */
/* 1 when `needle` occurs in s (ASCII, exact). */
static int yhc__str_has(yhc_str s, const char *needle) {
  size_t n = strlen(needle), k;
  for (k = 0; n && k + n <= s.len; k++)
    if (!memcmp(s.ptr + k, needle, n)) return 1;
  return 0;
}

static int yhc__reply_not_found(const yhc__reply *r) {
  return r->status == 404 || r->status == 403 ||
         (r->status == 500 && r->error && strstr(r->error, "Not found") && !strstr(r->error, "GSB error"));
}

/* A required string field of an answer; names the call and field when absent. */
static int yhc__need_str(const yhc_json *obj, const char *field, const char *call, yhc_str *out,
                         yhc_error *err) {
  const yhc_json *v = yhc_json_get(obj, field);
  if (yhc_json_typeof(v) != YHC_JSON_STRING) {
    yhc__error_set(err, YHC_ERR_YAGNA, 0, "%s: answer field \"%s\" is %s", call, field,
                   v ? "not a string" : "missing");
    return -1;
  }
  *out = yhc_json_str(v, *out);
  return 0;
}

/* ---- agreements we pay for */

static yhc__agreement *yhc__agreement_find(yhc__golem *g, yhc_str id) {
  yhc__agreement *a;
  for (a = g->agreements; a; a = a->next)
    if (yhc__str_eq(id, a->id)) return a;
  return NULL;
}

static void yhc__agreement_forget(yhc__golem *g, yhc__agreement *a) {
  yhc__agreement **pp;
  for (pp = &g->agreements; *pp; pp = &(*pp)->next) {
    if (*pp == a) {
      *pp = a->next;
      YHC_FREE(a);
      return;
    }
  }
}

/* ---- what an agreement allows, and the budget */

/* Milliseconds on the providers' clock: the wall clock, times time_scale for a stand-in
   that compresses time (yagna-sim timeScale). */
static uint64_t yhc__pay_elapsed_ms(const yhc__golem *g, uint64_t from_wall_ms, uint64_t to_wall_ms) {
  uint64_t d = to_wall_ms > from_wall_ms ? to_wall_ms - from_wall_ms : 0;
  return d * (uint64_t)(g->time_scale > 0 ? g->time_scale : 1);
}

/* GLM per second while running: duration price plus CPU price times the threads */
static yhc__glm yhc__agreement_rate(const yhc__agreement *a) {
  yhc__glm r = a->coeff_cpu;
  yhc__glm_muldiv(&r, (uint32_t)(a->threads > 0 ? a->threads : 1), 1);
  yhc__glm_add(&r, &a->coeff_duration);
  return r;
}

/* start + rate * ms */
static yhc__glm yhc__agreement_cost(const yhc__agreement *a, uint64_t ms) {
  yhc__glm v = yhc__agreement_rate(a);
  yhc__glm_times_ms(&v, ms);
  yhc__glm_add(&v, &a->coeff_start);
  return v;
}

/* The most a provider may ask by now under the agreed linear price, with slack for clock
   skew and the provider's rounding: the cost of the time since approval plus a minute, and
   5% on top. */
static yhc__glm yhc__agreement_allowed(const yhc__golem *g, const yhc__agreement *a, uint64_t now_wall_ms) {
  uint64_t end = a->ended_ms ? a->ended_ms : now_wall_ms;
  yhc__glm v = yhc__agreement_cost(a, yhc__pay_elapsed_ms(g, a->approved_ms, end) + 60000u);
  yhc__glm_muldiv(&v, 105, 100);
  return v;
}

/* Owed but not invoiced yet: for each agreement without a decided invoice, what its price
   gives for the time so far (no slack) beyond what was accepted. */
static yhc__glm yhc__golem_committed(const yhc__golem *g) {
  yhc__glm sum;
  const yhc__agreement *a;
  uint64_t now = yhc__wall_ms();
  memset(&sum, 0, sizeof sum);
  for (a = g->agreements; a; a = a->next) {
    yhc__glm v;
    if (a->invoice_done) continue;
    v = yhc__agreement_cost(a, yhc__pay_elapsed_ms(g, a->approved_ms, a->ended_ms ? a->ended_ms : now));
    yhc__glm_sub(&v, &a->accepted);
    yhc__glm_add(&sum, &v);
  }
  return sum;
}

static yhc__glm yhc__golem_remaining(const yhc__golem *g) {
  yhc__glm r = g->budget, c = yhc__golem_committed(g);
  yhc__glm_sub(&r, &g->spent);
  yhc__glm_sub(&r, &c);
  return r;
}

/* Before signing: can the budget pay the start price plus cover_min minutes at these rates,
   and does the burn-rate cap leave room? 0 = yes, else `why` says which. */
static int yhc__golem_can_afford(const yhc__golem *g, const yhc__agreement *terms, char *why, size_t cap) {
  yhc__glm need = yhc__agreement_cost(terms, (uint64_t)g->cover_min * 60000u), rem = yhc__golem_remaining(g);
  char t1[YHC__GLM_TEXT], t2[YHC__GLM_TEXT];
  if (yhc__glm_cmp(&need, &rem) > 0) {
    snprintf(why, cap, "the remaining budget of %s GLM does not cover %s GLM (start price and %d min at the agreed rates)",
             yhc__glm_format(&rem, 0, t1), yhc__glm_format(&need, 0, t2), g->cover_min);
    return 1;
  }
  if (!yhc__glm_is_zero(&g->burn_cap_hour)) {
    yhc__glm burn = yhc__agreement_rate(terms);
    const yhc__agreement *a;
    yhc__glm_muldiv(&burn, 3600, 1);
    for (a = g->agreements; a; a = a->next) {
      yhc__glm r;
      if (a->ended_ms || a->terminated) continue;
      r = yhc__agreement_rate(a);
      yhc__glm_muldiv(&r, 3600, 1);
      yhc__glm_add(&burn, &r);
    }
    if (yhc__glm_cmp(&burn, &g->burn_cap_hour) > 0) {
      snprintf(why, cap, "%s GLM/h with this agreement would exceed the burn-rate cap of %s GLM/h",
               yhc__glm_format(&burn, 0, t1), yhc__glm_format(&g->burn_cap_hour, 0, t2));
      return 2;
    }
  }
  return 0;
}

/* ---- debit notes and invoices */

typedef struct yhc__payment {
  yhc__golem *g;
  int invoice;                 /* 0 = debit note */
  int tries;
  int rejecting;               /* the call under way is an invoice rejection */
  char id[YHC__ID_MAX];
  char amount_str[64];
  char agreement_id[YHC__ID_MAX];
  yhc__glm amount;
  yhc__glm accept_amount;      /* what a rejection says we accept */
} yhc__payment;

static void yhc__payment_poll(yhc__golem *g, int invoice);
static void yhc__debit_retry(void *ctx) { yhc__payment_poll(YHC__CAST(yhc__golem *, ctx), 0); }
static void yhc__invoice_retry(void *ctx) { yhc__payment_poll(YHC__CAST(yhc__golem *, ctx), 1); }

static int yhc__payment_send_accept(yhc__golem *g, yhc__payment *p);
static int yhc__payment_send_reject(yhc__golem *g, yhc__payment *p, const char *why);

static void yhc__payment_event_init(yhc_event *ev, const yhc__payment *p, const yhc__agreement *a) {
  memset(ev, 0, sizeof *ev);
  ev->agreement_id = p->agreement_id;
  ev->amount = p->amount_str;
  if (a) {
    ev->provider_id = a->provider_id;
    ev->provider_name = a->provider_name;
    ev->service = a->service;
  }
}

static void yhc__payment_accepted(void *ctx, const yhc__reply *r) {
  yhc__payment *p = YHC__CAST(yhc__payment *, ctx);
  yhc__golem *g = p->g;
  yhc_str aid;
  yhc__agreement *a;
  yhc_event ev;
  char msg[500], t1[YHC__GLM_TEXT];
  g->accepting--;
  if (r->err == YHC_ERR_CANCELLED) {
    YHC_FREE(p);
    return;
  }
  /* delivery to the provider not confirmed in time (408/504) or a daemon hiccup: yapapi
     tries again, and so do we, a few times; accept and reject are idempotent */
  if (r->err && p->tries < 4 &&
      (r->status == 408 || r->status >= 500 || r->err == YHC_ERR_TIMEOUT || r->err == YHC_ERR_CLOSED ||
       r->err == YHC_ERR_IO)) {
    p->tries++;
    if ((p->rejecting ? yhc__payment_send_reject(g, p, NULL) : yhc__payment_send_accept(g, p)) == 0) return;
  }
  aid.ptr = p->agreement_id;
  aid.len = strlen(p->agreement_id);
  a = yhc__agreement_find(g, aid);
  yhc__payment_event_init(&ev, p, a);
  if (p->rejecting) {
    ev.kind = YHC_EV_INVOICE_REJECTED;
    ev.err = r->err ? r->err : YHC_ERR_BUDGET;
    if (a) a->invoice_done = r->err ? 3 : 2;
    if (!r->err) g->invoices_rejected++;
    snprintf(msg, sizeof msg, "invoice %s of %s GLM %s (we accept %s GLM)%s%s", p->id, p->amount_str,
             r->err ? "could not be rejected" : "rejected", yhc__glm_format(&p->accept_amount, 0, t1),
             r->err ? ": " : "", r->err ? r->error : "");
  } else if (r->err) {
    ev.kind = p->invoice ? YHC_EV_INVOICE_REJECTED : YHC_EV_DEBIT_NOTE_REJECTED;
    ev.err = r->err;
    if (p->invoice && a) a->invoice_done = 3;
    snprintf(msg, sizeof msg, "accepting %s %s failed: %s", p->invoice ? "invoice" : "debit note",
             p->id, r->error);
  } else {
    yhc__glm delta = p->amount;
    if (a) {
      /* amounts are cumulative per agreement: spend only the growth */
      yhc__glm_sub(&delta, &a->accepted);
      if (yhc__glm_cmp(&p->amount, &a->accepted) > 0) a->accepted = p->amount;
      if (p->invoice) a->invoice_done = 1;
      if (p->invoice) g->invoices_accepted++;
      if (a->spent_sink) yhc__glm_add(a->spent_sink, &delta);
    } else {
      memset(&delta, 0, sizeof delta);
    }
    yhc__glm_add(&g->spent, &delta);
    ev.kind = p->invoice ? YHC_EV_INVOICE_ACCEPTED : YHC_EV_DEBIT_NOTE_ACCEPTED;
    snprintf(msg, sizeof msg, "%s %s GLM accepted for %s (%s), total spent %s GLM",
             p->invoice ? "invoice of" : "debit note of", p->amount_str,
             a ? a->provider_name : "?", a ? a->service : "?", yhc__glm_format(&g->spent, 0, t1));
  }
  ev.message = msg;
  yhc__emit(g, &ev);
  /* a settled agreement whose instance is gone needs no more memory: long sessions churn
     through providers */
  if (a && a->invoice_done == 1 && !a->owner) yhc__agreement_forget(g, a);
  YHC_FREE(p);
}

/* Something from the daemon or a provider we do not pay: said by event, with the numbers. */
static void yhc__payment_refuse_event(yhc__golem *g, const yhc__payment *p, const yhc__agreement *a, yhc_err err,
                                      const char *why) {
  yhc_event ev;
  char msg[600];
  yhc__payment_event_init(&ev, p, a);
  ev.kind = p->invoice ? YHC_EV_INVOICE_REJECTED : YHC_EV_DEBIT_NOTE_REJECTED;
  ev.err = err;
  snprintf(msg, sizeof msg, "not accepting %s %s of %s GLM: %s", p->invoice ? "invoice" : "debit note", p->id,
           p->amount_str[0] ? p->amount_str : "(malformed)", why);
  ev.message = msg;
  g->refused++;
  yhc__log(g->loop, YHC_LOG_WARN, "%s", msg);
  yhc__emit(g, &ev);
}

/* A debit note we will not accept: rejecting one is not implemented in yagna (501), so the
   agreement ends, with a reason the daemon passes on; the instance goes with it. */
static void yhc__agreement_refuse(yhc__golem *g, yhc__agreement *a, const char *code, const char *why) {
  yhc_buf body;
  yhc_jw w;
  if (a->refused) return;
  a->refused = 1;
  memset(&body, 0, sizeof body);
  yhc_jw_init(&w, &body);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "message");
  yhc_jw_str(&w, why);
  yhc_jw_key(&w, "golem.requestor.code");
  yhc_jw_str(&w, code);
  yhc_jw_obj_end(&w);
  if (!yhc_jw_finish(&w) && body.len < sizeof a->term_reason) memcpy(a->term_reason, body.ptr, body.len + 1);
  yhc_buf_free(&body);
  if (g->on_agreement_ended) g->on_agreement_ended(g, a, why, 0);
}

/* Sends an accept or reject call for `p`: the body in w (its buffer `body`), to `path` when
   path_ok; frees both. 0 when the call is under way. */
static int yhc__payment_post(yhc__golem *g, yhc__payment *p, yhc_jw *w, yhc_buf *body, yhc_buf *path, int path_ok) {
  int rc = -1;
  if (!yhc_jw_finish(w) && path_ok && yhc__api(g, "POST", path->ptr, body->ptr, 30000, yhc__payment_accepted, p)) {
    g->accepting++;
    rc = 0;
  }
  yhc_buf_free(body);
  yhc_buf_free(path);
  return rc;
}

/* Accepts the full amount from our allocation. 0 when the call is under way. */
static int yhc__payment_send_accept(yhc__golem *g, yhc__payment *p) {
  yhc_buf body, path;
  yhc_jw w;
  memset(&body, 0, sizeof body);
  memset(&path, 0, sizeof path);
  yhc_jw_init(&w, &body);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "totalAmountAccepted");
  yhc_jw_str(&w, p->amount_str);
  yhc_jw_key(&w, "allocationId");
  yhc_jw_str(&w, g->allocation_id);
  yhc_jw_obj_end(&w);
  return yhc__payment_post(g, p, &w, &body, &path,
                           !yhc_buf_printf(&path, "/payment-api/v1/%s/%s/accept?timeout=15",
                                           p->invoice ? "invoices" : "debitNotes", p->id));
}

/* POST /invoices/{id}/reject with the amount we accept (PROTOCOL.md §3.6); `why` NULL on a
   retry (the message was sent the first time and the call is idempotent). */
static int yhc__payment_send_reject(yhc__golem *g, yhc__payment *p, const char *why) {
  yhc_buf body, path;
  yhc_jw w;
  char t[YHC__GLM_TEXT];
  memset(&body, 0, sizeof body);
  memset(&path, 0, sizeof path);
  p->rejecting = 1;
  yhc_jw_init(&w, &body);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "rejectionReason");
  yhc_jw_str(&w, "INCORRECT_AMOUNT");
  yhc_jw_key(&w, "totalAmountAccepted");
  yhc_jw_str(&w, yhc__glm_format(&p->accept_amount, 1, t));
  yhc_jw_key(&w, "message");
  yhc_jw_str(&w, why ? why : "amount above what the agreement allows");
  yhc_jw_obj_end(&w);
  return yhc__payment_post(g, p, &w, &body, &path,
                           !yhc_buf_printf(&path, "/payment-api/v1/invoices/%s/reject?timeout=15", p->id));
}

/* yapapi's "too many debit notes" rule: more notes than the agreed interval allows since
   the agreement began, with its 30 s grace. NULL, or the termination code. */
static const char *yhc__debit_note_too_frequent(const yhc__golem *g, const yhc__agreement *a, int payable,
                                                char *why, size_t cap) {
  uint64_t secs = yhc__pay_elapsed_ms(g, a->approved_ms, yhc__wall_ms()) / 1000u;
  if (payable && !a->payment_timeout_s) {
    snprintf(why, cap, "payable debit note received when mid-agreement payments are inactive");
    return "TooManyPayableDebitNotes";
  }
  if (a->interval_s && secs + 30u < (uint64_t)(a->notes - 1) * (uint64_t)a->interval_s) {
    snprintf(why, cap, "too many debit notes: %d notes/%us, the agreed interval is %ds", a->notes, (unsigned)secs,
             a->interval_s);
    return "TooManyDebitNotes";
  }
  if (payable && secs + 30u < (uint64_t)(a->payable_notes - 1) * (uint64_t)a->payment_timeout_s) {
    snprintf(why, cap, "too many payable debit notes: %d notes/%us, the agreed payment timeout is %ds",
             a->payable_notes, (unsigned)secs, a->payment_timeout_s);
    return "TooManyPayableDebitNotes";
  }
  return NULL;
}

/* A debit note: refuse (terminating) or accept; when accepting leaves too little for the
   next interval, end the agreement now so its invoice still fits the budget. */
static void yhc__debit_note_decide(yhc__golem *g, yhc__payment *p, yhc__agreement *a, int payable) {
  char why[400], t1[YHC__GLM_TEXT], t2[YHC__GLM_TEXT];
  const char *code;
  yhc__glm allowed = yhc__agreement_allowed(g, a, yhc__wall_ms()), after = g->spent, growth = p->amount;
  a->notes++;
  a->payable_notes += payable;
  if (a->refused || a->invoice_done) { /* ending already, or paid through the invoice */
    YHC_FREE(p);
    return;
  }
  if (yhc__glm_cmp(&p->amount, &allowed) > 0) {
    snprintf(why, sizeof why, "debit note of %s GLM is above the %s GLM the agreed price allows for the time elapsed",
             p->amount_str, yhc__glm_format(&allowed, 0, t1));
    yhc__payment_refuse_event(g, p, a, YHC_ERR_BUDGET, why);
    yhc__agreement_refuse(g, a, "DebitNoteAboveAgreedPrice", why);
    YHC_FREE(p);
    return;
  }
  code = yhc__debit_note_too_frequent(g, a, payable, why, sizeof why);
  if (code) {
    yhc__payment_refuse_event(g, p, a, YHC_ERR_BUDGET, why);
    yhc__agreement_refuse(g, a, code, why);
    YHC_FREE(p);
    return;
  }
  yhc__glm_sub(&growth, &a->accepted);
  yhc__glm_add(&after, &growth);
  if (yhc__glm_cmp(&after, &g->budget) > 0) {
    snprintf(why, sizeof why, "it would bring the spending to %s GLM, above the budget of %s GLM",
             yhc__glm_format(&after, 0, t1), yhc__glm_format(&g->budget, 0, t2));
    yhc__payment_refuse_event(g, p, a, YHC_ERR_BUDGET, why);
    g->budget_exhausted = 1;
    yhc__agreement_refuse(g, a, "BudgetExceeded", why);
    YHC_FREE(p);
    return;
  }
  {
    /* what the next interval costs, twice over for slack: the agreed one, else the gap
       since the previous note (or since approval) */
    yhc__glm next = yhc__agreement_rate(a), left = g->budget;
    uint64_t now = yhc__wall_ms();
    uint64_t gap = a->interval_s ? (uint64_t)a->interval_s * 1000u
                                 : yhc__pay_elapsed_ms(g, a->last_note_ms ? a->last_note_ms : a->approved_ms, now);
    a->last_note_ms = now;
    yhc__glm_times_ms(&next, 2 * (gap ? gap : 1000u));
    yhc__glm_sub(&left, &after);
    if (yhc__glm_cmp(&left, &next) < 0) {
      snprintf(why, sizeof why, "budget of %s GLM nearly spent (%s GLM left, the next interval costs about %s GLM)",
               yhc__glm_format(&g->budget, 0, t1), yhc__glm_format(&left, 0, t2), yhc__glm_format(&next, 0, why + 300));
      a->budget_stop = 1;
    }
  }
  if (yhc__payment_send_accept(g, p)) {
    yhc__log(g->loop, YHC_LOG_ERROR, "out of memory accepting a payment");
    YHC_FREE(p);
    return;
  }
  if (a->budget_stop) {
    g->budget_exhausted = 1;
    yhc__agreement_refuse(g, a, "BudgetExhausted", why);
  }
}

/* The invoice: accept it when the agreement and the budget allow it, else reject it with
   the amount we do accept. */
static void yhc__invoice_decide(yhc__golem *g, yhc__payment *p, yhc__agreement *a) {
  char why[400], t1[YHC__GLM_TEXT], t2[YHC__GLM_TEXT];
  yhc__glm allowed = yhc__agreement_allowed(g, a, yhc__wall_ms()), cap = g->budget, growth = p->amount;
  /* what the budget still allows for this agreement: what it accepted plus what is left */
  yhc__glm_sub(&cap, &g->spent);
  yhc__glm_add(&cap, &a->accepted);
  yhc__glm_sub(&growth, &a->accepted);
  why[0] = 0;
  if (yhc__glm_cmp(&p->amount, &allowed) > 0)
    snprintf(why, sizeof why, "invoice of %s GLM is above the %s GLM the agreed price allows", p->amount_str,
             yhc__glm_format(&allowed, 0, t1));
  else if (yhc__glm_cmp(&p->amount, &cap) > 0)
    snprintf(why, sizeof why, "invoice of %s GLM is above the %s GLM the budget allows for this agreement",
             p->amount_str, yhc__glm_format(&cap, 0, t1));
  if (why[0]) {
    p->accept_amount = yhc__glm_cmp(&allowed, &cap) < 0 ? allowed : cap;
    if (yhc__glm_cmp(&p->accept_amount, &a->accepted) < 0) p->accept_amount = a->accepted;
    yhc__payment_refuse_event(g, p, a, YHC_ERR_BUDGET, why);
    (void)t2;
    if (yhc__payment_send_reject(g, p, why)) {
      a->invoice_done = 3;
      YHC_FREE(p);
    }
    return;
  }
  if (yhc__payment_send_accept(g, p)) {
    yhc__log(g->loop, YHC_LOG_ERROR, "out of memory accepting a payment");
    YHC_FREE(p);
  }
}

/* A debit note or invoice has been fetched: check it, then decide. */
static void yhc__payment_got(void *ctx, const yhc__reply *r) {
  yhc__payment *p = YHC__CAST(yhc__payment *, ctx);
  yhc__golem *g = p->g;
  yhc_str aid, amount, status;
  yhc__agreement *a;
  yhc_error e;
  const char *what = p->invoice ? "GET /payment-api/v1/invoices/{id}" : "GET /payment-api/v1/debitNotes/{id}";
  int prc;
  aid.ptr = amount.ptr = status.ptr = NULL;
  aid.len = amount.len = status.len = 0;
  if (r->err) {
    if (r->err != YHC_ERR_CANCELLED) yhc__log(g->loop, YHC_LOG_WARN, "%s", r->error);
    YHC_FREE(p);
    return;
  }
  if (yhc__need_str(r->json, "agreementId", what, &aid, &e)) {
    yhc__log(g->loop, YHC_LOG_WARN, "%s", e.msg);
    YHC_FREE(p);
    return;
  }
  a = yhc__agreement_find(g, aid);
  if (!a) { /* not ours (another requestor app on this daemon): leave it alone */
    YHC_FREE(p);
    return;
  }
  yhc__copy_id(p->agreement_id, sizeof p->agreement_id, aid);
  status = yhc_json_str(yhc_json_get(r->json, "status"), status);
  if (yhc__str_eq(status, "ACCEPTED") || yhc__str_eq(status, "SETTLED") || yhc__str_eq(status, "CANCELLED")) {
    YHC_FREE(p);
    return;
  }
  amount = yhc_json_str(yhc_json_get(r->json, p->invoice ? "amount" : "totalAmountDue"), amount);
  prc = yhc__glm_parse_str(amount, &p->amount);
  if (amount.len < sizeof p->amount_str && prc == YHC__GLM_OK) yhc__copy_id(p->amount_str, sizeof p->amount_str, amount);
  if (!amount.ptr || amount.len >= sizeof p->amount_str || prc != YHC__GLM_OK) {
    char why[200];
    snprintf(why, sizeof why, "%s: %s \"%.40s%s\"", what, prc == YHC__GLM_OVERFLOW || amount.len >= sizeof p->amount_str
             ? "amount out of range" : "amount is not a decimal number", amount.ptr ? amount.ptr : "(missing)",
             amount.len > 40 ? "..." : "");
    yhc__payment_refuse_event(g, p, a, YHC_ERR_YAGNA, why);
    if (p->invoice) a->invoice_done = 3;
    YHC_FREE(p);
    return;
  }
  if (p->invoice) yhc__invoice_decide(g, p, a);
  else yhc__debit_note_decide(g, p, a, yhc_json_typeof(yhc_json_get(r->json, "paymentDueDate")) == YHC_JSON_STRING);
}

static void yhc__payment_events(void *ctx, const yhc__reply *r, int invoice) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  const yhc_json *ev;
  char *after = invoice ? g->invoice_after : g->debit_after;
  if (invoice) g->invoice_call = 0; else g->debit_call = 0;
  if (r->err == YHC_ERR_CANCELLED) return;
  if (r->err) {
    yhc__log(g->loop, YHC_LOG_WARN, "%s", r->error);
  } else if (yhc_json_typeof(r->json) == YHC_JSON_ARRAY) {
    /* no more than we asked for (maxEvents): the rest come next time, the window only moved past these */
    size_t seen = 0;
    for (ev = yhc_json_first(r->json); ev && seen < 100; ev = yhc_json_next(ev), seen++) {
      yhc_str type, date, id;
      type.ptr = date.ptr = id.ptr = NULL;
      type.len = date.len = id.len = 0;
      type = yhc_json_str(yhc_json_get(ev, "eventType"), type);
      date = yhc_json_str(yhc_json_get(ev, "eventDate"), date);
      id = yhc_json_str(yhc_json_get(ev, invoice ? "invoiceId" : "debitNoteId"), id);
      /* the feed is not consumed: move our window to the newest event seen */
      if (date.len && date.len < 40) yhc__copy_id(after, 40, date);
      if (!yhc__str_eq(type, invoice ? "InvoiceReceivedEvent" : "DebitNoteReceivedEvent")) continue;
      if (!yhc__id_ok(id)) {
        yhc__log(g->loop, YHC_LOG_WARN, "payment event with a malformed id ignored");
        continue;
      }
      {
        yhc__payment *p = YHC__NEW(yhc__payment);
        char path[256];
        if (!p) continue;
        p->g = g;
        p->invoice = invoice;
        yhc__copy_id(p->id, sizeof p->id, id);
        snprintf(path, sizeof path, "/payment-api/v1/%s/%s", invoice ? "invoices" : "debitNotes", p->id);
        if (!yhc__api(g, "GET", path, NULL, 30000, yhc__payment_got, p)) YHC_FREE(p);
      }
    }
  }
  if (!g->payment_polls) return;
  if (r->err && r->err != YHC_ERR_TIMEOUT) {
    /* the daemon had a problem: ask again in a second, not in a tight loop */
    yhc__timer_start(g->loop, invoice ? &g->invoice_retry : &g->debit_retry, yhc__golem_retry_ms(g),
                     invoice ? yhc__invoice_retry : yhc__debit_retry, g);
    return;
  }
  yhc__payment_poll(g, invoice);
}

static void yhc__debit_events(void *ctx, const yhc__reply *r) { yhc__payment_events(ctx, r, 0); }
static void yhc__invoice_events(void *ctx, const yhc__reply *r) { yhc__payment_events(ctx, r, 1); }

static void yhc__payment_poll(yhc__golem *g, int invoice) {
  char path[200];
  uint64_t *slot = invoice ? &g->invoice_call : &g->debit_call;
  if (*slot || !g->payment_polls) return;
  snprintf(path, sizeof path, "/payment-api/v1/%s?afterTimestamp=%s&timeout=5&maxEvents=100",
           invoice ? "invoiceEvents" : "debitNoteEvents", invoice ? g->invoice_after : g->debit_after);
  *slot = yhc__api(g, "GET", path, NULL, 20000, invoice ? yhc__invoice_events : yhc__debit_events, g);
}

/* ---- agreement events: how a provider's termination is noticed at once

   The feed is not consumed and is selected by eventDate, which for provider terminations is
   the provider's clock: a cursor moved to the newest event would hide a termination stamped
   by a provider whose clock lags. So every query starts clock_skew_ms before the newest event
   seen (never past our own now, against clocks running ahead), repeats are recognised by a
   hash of the event and skipped, a full page continues from its last event at once, and a
   page with nothing new waits a second before the next query. */

static void yhc__agreement_poll(yhc__golem *g);
static void yhc__agreement_retry(void *ctx) { yhc__agreement_poll(YHC__CAST(yhc__golem *, ctx)); }

#define YHC__AGREEMENT_PAGE 100

/* Parses "2025-11-29T08:01:02.123456Z" (the fraction and zone optional, UTC assumed) into ms
   since the epoch; 0 when it is not such a date. */
static uint64_t yhc__parse_rfc3339(yhc_str d) {
  int f[6] = {0, 0, 0, 0, 0, 0};
  static const int len[6] = {4, 2, 2, 2, 2, 2};
  static const char sep[6] = {'-', '-', 'T', ':', ':', 0};
  size_t p = 0;
  int k, ms = 0, y, m;
  int64_t days;
  for (k = 0; k < 6; k++) {
    int n;
    for (n = 0; n < len[k]; n++, p++) {
      if (p >= d.len || !yhc__is_digit((unsigned char)d.ptr[p])) return 0;
      f[k] = f[k] * 10 + (d.ptr[p] - '0');
    }
    if (sep[k]) {
      if (p >= d.len || (d.ptr[p] != sep[k] && !(k == 2 && d.ptr[p] == ' '))) return 0;
      p++;
    }
  }
  if (p < d.len && d.ptr[p] == '.') {
    int n = 0;
    for (p++; p < d.len && yhc__is_digit((unsigned char)d.ptr[p]); p++, n++)
      if (n < 3) ms = ms * 10 + (d.ptr[p] - '0');
    for (; n < 3; n++) ms *= 10;
  }
  if (f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 || f[4] > 59 || f[5] > 60) return 0;
  /* days from the civil date (proleptic Gregorian), as in H. Hinnant's algorithm */
  y = f[0] - (f[1] <= 2);
  m = f[1];
  {
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + f[2] - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    days = era * 146097 + doe - 719468;
  }
  if (days < 0) return 0;
  return ((uint64_t)days * 86400u + (uint64_t)f[3] * 3600u + (uint64_t)f[4] * 60u + (uint64_t)f[5]) * 1000u +
         (uint64_t)ms;
}

static uint64_t yhc__event_hash(const yhc_json *ev) {
  static const char *const keys[] = {"eventType", "eventDate", "agreementId"};
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  size_t k, j;
  for (k = 0; k < 3; k++) {
    yhc_str v;
    v.ptr = NULL;
    v.len = 0;
    v = yhc_json_str(yhc_json_get(ev, keys[k]), v);
    for (j = 0; j < v.len; j++) h = (h ^ (unsigned char)v.ptr[j]) * 1099511628211ull;
    h = (h ^ 0xffu) * 1099511628211ull;
  }
  return h ? h : 1;
}

/* 1 the first time an event is seen. */
static int yhc__event_new(yhc__golem *g, uint64_t h) {
  size_t k;
  for (k = 0; k < YHC__SEEN_N; k++)
    if (g->seen[k] == h) return 0;
  g->seen[g->seen_pos] = h;
  g->seen_pos = (g->seen_pos + 1) % YHC__SEEN_N;
  return 1;
}

static void yhc__agreement_event(yhc__golem *g, const yhc_json *ev) {
  yhc_str type, id, reason, code;
  yhc__agreement *a;
  char why[200];
  type.ptr = id.ptr = reason.ptr = code.ptr = NULL;
  type.len = id.len = reason.len = code.len = 0;
  type = yhc_json_str(yhc_json_get(ev, "eventType"), type);
  id = yhc_json_str(yhc_json_get(ev, "agreementId"), id);
  if (!yhc__str_eq(type, "AgreementTerminatedEvent")) return;
  a = yhc__agreement_find(g, id);
  if (!a || a->terminated) return;
  reason = yhc_json_str(yhc_json_get(yhc_json_get(ev, "reason"), "message"), reason);
  code = yhc_json_str(yhc_json_get(yhc_json_get(ev, "reason"), "golem.provider.code"), code);
  a->terminated = 1;
  if (!a->ended_ms) a->ended_ms = yhc__wall_ms();
  if (!g->on_agreement_ended) return;
  snprintf(why, sizeof why, "agreement terminated by the %s%s%.*s",
           yhc__str_eq(yhc_json_str(yhc_json_get(ev, "terminator"), reason), "Requestor") ? "requestor" : "provider",
           reason.len ? ": " : "", (int)YHC__MIN(reason.len, 120), reason.ptr);
  /* the provider ends every agreement at the expiration we agreed: routine, not a failure */
  g->on_agreement_ended(g, a, why, yhc__str_eq(code, "Expired"));
}

static void yhc__agreement_events(void *ctx, const yhc__reply *r) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  const yhc_json *ev;
  size_t n = 0, advanced = 0;
  uint64_t last = 0, now = yhc__wall_ms(), newest_before = g->newest_event_ms;
  g->agreement_call = 0;
  if (r->err == YHC_ERR_CANCELLED) return;
  if (r->err) {
    if (r->err != YHC_ERR_TIMEOUT) {
      yhc__log(g->loop, YHC_LOG_DEBUG, "%s", r->error);
      if (g->payment_polls)
        yhc__timer_start(g->loop, &g->agreement_retry, yhc__golem_retry_ms(g), yhc__agreement_retry, g);
      return;
    }
    yhc__agreement_poll(g);
    return;
  }
  for (ev = yhc_json_first(r->json); ev && n < YHC__AGREEMENT_PAGE; ev = yhc_json_next(ev), n++) {
    yhc_str date;
    uint64_t t;
    date.ptr = NULL;
    date.len = 0;
    t = yhc__parse_rfc3339(yhc_json_str(yhc_json_get(ev, "eventDate"), date));
    if (t > last) last = t;
    if (t && t <= now && t > g->newest_event_ms) g->newest_event_ms = t;
    if (!yhc__event_new(g, yhc__event_hash(ev))) continue;
    if (t > newest_before) advanced++;
    yhc__agreement_event(g, ev);
  }
  if (n >= YHC__AGREEMENT_PAGE && last) {
    /* a full page: the rest follow its last event */
    char after[40];
    yhc__rfc3339(last - 1, after);
    memcpy(g->agreement_after, after, sizeof after);
    yhc__agreement_poll(g);
    return;
  }
  {
    uint64_t from = g->newest_event_ms > (uint64_t)g->clock_skew_ms ? g->newest_event_ms - (uint64_t)g->clock_skew_ms : 0;
    char after[40];
    yhc__rfc3339(from, after);
    memcpy(g->agreement_after, after, sizeof after);
  }
  /* Nothing newer than before: the daemon answers a window of repeats at once, so pace it.
     Newer, not merely unseen: when the window holds more events than the seen-list (back to
     back sessions with hundreds of agreements), evicted repeats look unseen every time and
     the polls would spin; they are harmless to apply again (each handler checks the
     agreement's state), and a late event older than the newest waits at most a second. */
  if (n && !advanced && g->payment_polls) {
    yhc__timer_start(g->loop, &g->agreement_retry, 1000, yhc__agreement_retry, g);
    return;
  }
  yhc__agreement_poll(g);
}

static void yhc__agreement_poll(yhc__golem *g) {
  char path[200];
  if (g->agreement_call || !g->payment_polls) return;
  snprintf(path, sizeof path, "/market-api/v1/agreementEvents?afterTimestamp=%s&timeout=5&maxEvents=%d",
           g->agreement_after, YHC__AGREEMENT_PAGE);
  g->agreement_call = yhc__api(g, "GET", path, NULL, 20000, yhc__agreement_events, g);
}

/* ---- start-up: identity, allocation, decorations, VPN (PROTOCOL.md §7) */

static void yhc__golem_fail(yhc__golem *g, const char *msg) {
  yhc__error_set(&g->error, YHC_ERR_YAGNA, 0, "%s", msg);
  g->state = YHC__G_FAILED;
  yhc__emitf(g, YHC_EV_ERROR, NULL, "session start failed: %s", msg);
  if (g->on_ready) g->on_ready(g);
}

static void yhc__golem_fail_reply(yhc__golem *g, const yhc__reply *r) {
  yhc__error_set(&g->error, r->err == YHC_ERR_YAGNA ? YHC_ERR_YAGNA : r->err, 0, "%s", r->error);
  g->state = YHC__G_FAILED;
  yhc__emitf(g, YHC_EV_ERROR, NULL, "session start failed: %s", r->error);
  if (g->on_ready) g->on_ready(g);
}

static void yhc__start_payment_feeds(yhc__golem *g) {
  char now[40];
  yhc__rfc3339(yhc__wall_ms() - 1000, now);
  memcpy(g->debit_after, now, sizeof now);
  memcpy(g->invoice_after, now, sizeof now);
  g->newest_event_ms = yhc__wall_ms() - 1000;
  yhc__rfc3339(g->newest_event_ms - (uint64_t)g->clock_skew_ms, now);
  memcpy(g->agreement_after, now, sizeof now);
  g->payment_polls = 1;
  yhc__payment_poll(g, 0);
  yhc__payment_poll(g, 1);
  yhc__agreement_poll(g);
}

static void yhc__net_address_done(void *ctx, const yhc__reply *r) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  if (r->err && r->status != 409) { /* 409: already ours */
    if (r->err != YHC_ERR_CANCELLED) yhc__golem_fail_reply(g, r);
    return;
  }
  g->state = YHC__G_READY;
  {
    char t[YHC__GLM_TEXT];
    yhc__emitf(g, YHC_EV_SESSION_READY, NULL, "session ready: identity %s, allocation %s (%s GLM on %s), network %s",
               g->identity, g->allocation_id, yhc__glm_format(&g->budget, 0, t), g->platform, g->network_id);
  }
  if (g->on_ready) g->on_ready(g);
}

/* Each start-up step needs one id from its answer: take it, or end the start-up with a
   message naming the call and the field. */
static int yhc__startup_id(yhc__golem *g, const yhc__reply *r, const char *call, const char *field,
                           char *dst, size_t cap) {
  yhc_str id;
  yhc_error e;
  if (r->err) {
    if (r->err != YHC_ERR_CANCELLED) yhc__golem_fail_reply(g, r);
    return -1;
  }
  id.ptr = NULL;
  id.len = 0;
  if (yhc__need_str(r->json, field, call, &id, &e)) {
    yhc__golem_fail(g, e.msg);
    return -1;
  }
  if (!yhc__id_ok(id) || id.len >= cap) {
    yhc__error_set(&e, YHC_ERR_YAGNA, 0, "%s: answer field \"%s\" is not a valid id", call, field);
    yhc__golem_fail(g, e.msg);
    return -1;
  }
  yhc__copy_id(dst, cap, id);
  return 0;
}

static void yhc__net_created(void *ctx, const yhc__reply *r) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  char path[256];
  if (yhc__startup_id(g, r, "POST /net-api/v1/net", "id", g->network_id, sizeof g->network_id)) return;
  snprintf(path, sizeof path, "/net-api/v1/net/%s/addresses", g->network_id);
  yhc__api(g, "POST", path, "{\"ip\":\"192.168.0.1\"}", 30000, yhc__net_address_done, g);
}

static void yhc__decorations_done(void *ctx, const yhc__reply *r) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  yhc_buf copy;
  yhc_jw w;
  yhc_error e;
  if (r->err) {
    if (r->err != YHC_ERR_CANCELLED) yhc__golem_fail_reply(g, r);
    return;
  }
  if (yhc_json_typeof(yhc_json_get(r->json, "properties")) != YHC_JSON_ARRAY ||
      yhc_json_typeof(yhc_json_get(r->json, "constraints")) != YHC_JSON_ARRAY) {
    yhc__golem_fail(g, "GET /payment-api/v1/demandDecorations: answer lacks \"properties\" or \"constraints\" arrays");
    return;
  }
  /* keep our own copy: the reply's document is freed when this callback returns */
  memset(&copy, 0, sizeof copy);
  yhc_jw_init(&w, &copy);
  yhc_jw_value(&w, r->json);
  g->decorations = yhc_jw_finish(&w) ? NULL : yhc_json_parse(copy.ptr, copy.len, NULL, &e);
  yhc_buf_free(&copy);
  if (!g->decorations) {
    yhc__golem_fail(g, "out of memory keeping the demand decorations");
    return;
  }
  yhc__start_payment_feeds(g);
  g->network_ip[0] = 0;
  snprintf(g->network_ip, sizeof g->network_ip, "192.168.0.0");
  yhc__api(g, "POST", "/net-api/v1/net", "{\"ip\":\"192.168.0.0\",\"mask\":\"255.255.255.0\"}", 30000,
           yhc__net_created, g);
}

static void yhc__allocation_done(void *ctx, const yhc__reply *r) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  char path[300];
  if (yhc__startup_id(g, r, "POST /payment-api/v1/allocations", "allocationId", g->allocation_id,
                      sizeof g->allocation_id))
    return;
  snprintf(path, sizeof path, "/payment-api/v1/demandDecorations?allocationIds=%s", g->allocation_id);
  yhc__api(g, "GET", path, NULL, 30000, yhc__decorations_done, g);
}

static void yhc__identity_done(void *ctx, const yhc__reply *r) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  yhc_buf body;
  yhc_jw w;
  char timeout[40];
  if (yhc__startup_id(g, r, "GET /me", "identity", g->identity, sizeof g->identity)) return;
  /* yapapi asks for a 10-year allocation timeout; yagna releases it when it expires */
  yhc__rfc3339(yhc__wall_ms() + (uint64_t)10 * 365 * 24 * 3600 * 1000, timeout);
  memset(&body, 0, sizeof body);
  yhc_jw_init(&w, &body);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "address");
  yhc_jw_str(&w, g->identity);
  yhc_jw_key(&w, "paymentPlatform");
  yhc_jw_str(&w, g->platform);
  yhc_jw_key(&w, "totalAmount");
  {
    char amount[YHC__GLM_TEXT]; /* exact, and never the locale's decimal comma */
    yhc_jw_str(&w, yhc__glm_format(&g->budget, 0, amount));
  }
  yhc_jw_key(&w, "timeout");
  yhc_jw_str(&w, timeout);
  yhc_jw_key(&w, "makeDeposit");
  yhc_jw_bool(&w, 0);
  yhc_jw_obj_end(&w);
  if (yhc_jw_finish(&w) == 0)
    yhc__api(g, "POST", "/payment-api/v1/allocations", body.ptr, 30000, yhc__allocation_done, g);
  else
    yhc__golem_fail(g, "out of memory building the allocation");
  yhc_buf_free(&body);
}

static void yhc__golem_start(yhc__golem *g) {
  if (g->state != YHC__G_INIT) return;
  g->state = YHC__G_STARTING;
  if (!yhc__api(g, "GET", "/me", NULL, 30000, yhc__identity_done, g))
    yhc__golem_fail(g, "out of memory starting the session");
}

/* VPN addresses for providers: .2 upward, reused after an instance leaves. */
static int yhc__golem_take_ip(yhc__golem *g) {
  int i;
  for (i = 2; i < 255; i++) {
    if (!g->ip_used[i]) {
      g->ip_used[i] = 1;
      return i;
    }
  }
  return -1;
}

static void yhc__golem_release_ip(yhc__golem *g, int host) {
  if (host > 1 && host < 255) g->ip_used[host] = 0;
}

/* One more instance on the provider's VPN node. Returns -1 when out of memory. */
static int yhc__golem_node_hold(yhc__golem *g, const char *provider_id) {
  yhc__node_ref *n;
  for (n = g->nodes; n; n = n->next) {
    if (!strcmp(n->id, provider_id)) {
      n->users++;
      return 0;
    }
  }
  n = YHC__NEW(yhc__node_ref);
  if (!n) return -1;
  snprintf(n->id, sizeof n->id, "%s", provider_id);
  n->users = 1;
  n->next = g->nodes;
  g->nodes = n;
  return 0;
}

/* One instance fewer on it; 1 when it was the last, so the node may be removed. */
static int yhc__golem_node_release(yhc__golem *g, const char *provider_id) {
  yhc__node_ref **pp, *n;
  for (pp = &g->nodes; (n = *pp) != NULL; pp = &n->next) {
    if (strcmp(n->id, provider_id)) continue;
    if (--n->users > 0) return 0;
    *pp = n->next;
    YHC_FREE(n);
    return 1;
  }
  return 0;
}

/* ---- the daemon coming back after an outage: it may have restarted, and a restarted
   daemon keeps agreements, activities and payments but not its VPN networks (PROTOCOL.md
   §9.7), so the network is checked and made again when it is gone. */

static void yhc__golem_back_done(yhc__golem *g, int network_lost) {
  if (g->on_daemon_back) g->on_daemon_back(g, network_lost);
}

static void yhc__net_remade_address(void *ctx, const yhc__reply *r) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  g->net_check_call = 0;
  if (r->err == YHC_ERR_CANCELLED) return;
  if (r->err) yhc__log(g->loop, YHC_LOG_WARN, "re-creating the VPN: %s", r->error);
  yhc__golem_back_done(g, 1);
}

static void yhc__net_remade(void *ctx, const yhc__reply *r) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  yhc_str id;
  char path[256];
  g->net_check_call = 0;
  if (r->err == YHC_ERR_CANCELLED) return;
  id.ptr = NULL;
  id.len = 0;
  id = yhc_json_str(yhc_json_get(r->json, "id"), id);
  if (r->err || !yhc__id_ok(id) || id.len >= sizeof g->network_id) {
    yhc__log(g->loop, YHC_LOG_WARN, "re-creating the VPN: %s", r->err ? r->error : "answer has no valid id");
    g->network_id[0] = 0;
    yhc__golem_back_done(g, 1);
    return;
  }
  yhc__copy_id(g->network_id, sizeof g->network_id, id);
  yhc__log(g->loop, YHC_LOG_WARN, "the VPN network was gone after the outage; new network %s", g->network_id);
  snprintf(path, sizeof path, "/net-api/v1/net/%s/addresses", g->network_id);
  g->net_check_call = yhc__api(g, "POST", path, "{\"ip\":\"192.168.0.1\"}", 30000, yhc__net_remade_address, g);
}

static void yhc__net_checked(void *ctx, const yhc__reply *r) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  g->net_check_call = 0;
  if (r->err == YHC_ERR_CANCELLED) return;
  if (r->status == 404 || r->status == 403) {
    g->net_check_call = yhc__api(g, "POST", "/net-api/v1/net", "{\"ip\":\"192.168.0.0\",\"mask\":\"255.255.255.0\"}",
                                 30000, yhc__net_remade, g);
    return;
  }
  yhc__golem_back_done(g, 0);
}

/* Any answer from the daemon: the end of an outage, if there was one. */
static void yhc__golem_reached(yhc__golem *g) {
  char path[256];
  uint64_t lasted;
  if (!g->down_since) return;
  lasted = yhc_loop_now(g->loop) - g->down_since;
  g->down_since = 0;
  yhc__emitf(g, YHC_EV_DAEMON_BACK, NULL, "the yagna daemon answers again after %llu ms",
             (unsigned long long)lasted);
  if (g->state != YHC__G_READY || !g->network_id[0] || g->net_check_call) {
    yhc__golem_back_done(g, 0);
    return;
  }
  snprintf(path, sizeof path, "/net-api/v1/net/%s", g->network_id);
  g->net_check_call = yhc__api(g, "GET", path, NULL, 15000, yhc__net_checked, g);
}

/* A tunnel's own socket to the daemon broke (reset or closed, not a refusal the daemon
   answered): the daemon going away does that to every tunnel at once, and a provider's end
   does it to one. Nobody is judged from that one reading: a cheap call asks the daemon
   first, and while it is out requests wait instead of spending their attempts. */
static void yhc__golem_probed(void *ctx, const yhc__reply *r) {
  yhc__golem *g = YHC__CAST(yhc__golem *, ctx);
  g->probe_call = 0;
  if (r->err == YHC_ERR_CANCELLED) return;
  if (g->on_probed) g->on_probed(g);
}

static void yhc__golem_probe(yhc__golem *g) {
  if (g->probe_call || g->down_since || g->state != YHC__G_READY) return;
  g->probe_call = yhc__api(g, "GET", "/me", NULL, 5000, yhc__golem_probed, g);
}

/* ---- shutdown: the network goes last (after tunnels and nodes), then the allocation */

typedef struct yhc__golem_closer {
  yhc__golem *g;
  void (*done)(void *ctx);
  void *ctx;
} yhc__golem_closer;

static void yhc__golem_finish_close(yhc__golem *g) {
  g->payment_polls = 0;
  yhc__api_cancel(g, &g->net_check_call);
  yhc__api_cancel(g, &g->probe_call);
  yhc__timer_stop(g->loop, &g->debit_retry);
  yhc__timer_stop(g->loop, &g->invoice_retry);
  yhc__timer_stop(g->loop, &g->agreement_retry);
  yhc__api_cancel(g, &g->debit_call);
  yhc__api_cancel(g, &g->invoice_call);
  yhc__api_cancel(g, &g->agreement_call);
  g->state = YHC__G_CLOSED;
}

/* Notes something the close could not clean up. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static void yhc__golem_left(yhc__golem *g, const char *fmt, ...) {
  size_t n = strlen(g->left);
  va_list ap;
  if (n + 4 >= sizeof g->left) return;
  if (n) {
    memcpy(g->left + n, "; ", 3);
    n += 2;
  }
  va_start(ap, fmt);
  vsnprintf(g->left + n, sizeof g->left - n, fmt, ap);
  va_end(ap);
}

static void yhc__allocation_released(void *ctx, const yhc__reply *r) {
  yhc__golem_closer *c = YHC__CAST(yhc__golem_closer *, ctx);
  c->g->teardown_call = 0;
  if (r->err) yhc__golem_left(c->g, "allocation not released (%.150s)", r->err == YHC_ERR_CANCELLED ? "close_timeout_ms passed" : r->error);
  yhc__golem_finish_close(c->g);
  c->done(c->ctx);
  YHC_FREE(c);
}

static void yhc__network_removed(void *ctx, const yhc__reply *r) {
  yhc__golem_closer *c = YHC__CAST(yhc__golem_closer *, ctx);
  yhc__golem *g = c->g;
  char path[256];
  g->teardown_call = 0;
  if (r->err && (r->status != 404 || r->err == YHC_ERR_CANCELLED))
    yhc__golem_left(g, "network %s not removed (%.150s)", g->network_id,
                    r->err == YHC_ERR_CANCELLED ? "close_timeout_ms passed" : r->error);
  g->network_id[0] = 0;
  if (g->abandoning && g->allocation_id[0]) {
    yhc__golem_left(g, "allocation %s not released (close_timeout_ms passed)", g->allocation_id);
    g->allocation_id[0] = 0;
  }
  if (!g->allocation_id[0]) {
    yhc__reply none;
    memset(&none, 0, sizeof none);
    none.error = "";
    yhc__allocation_released(c, &none);
    return;
  }
  snprintf(path, sizeof path, "/payment-api/v1/allocations/%s", g->allocation_id);
  g->allocation_id[0] = 0;
  if (!(g->teardown_call = yhc__api(g, "DELETE", path, NULL, 15000, yhc__allocation_released, c))) {
    yhc__reply none;
    memset(&none, 0, sizeof none);
    none.error = "";
    yhc__allocation_released(c, &none);
  }
}

/* Removes the network and releases the allocation, then calls done(ctx). Call once every
   tunnel is closed and every invoice we wait for is handled. */
static void yhc__golem_teardown(yhc__golem *g, void (*done)(void *ctx), void *ctx) {
  yhc__golem_closer *c = YHC__NEW(yhc__golem_closer);
  yhc__reply none;
  char path[256];
  if (!c) {
    yhc__golem_finish_close(g);
    done(ctx);
    return;
  }
  c->g = g;
  c->done = done;
  c->ctx = ctx;
  g->state = YHC__G_CLOSING;
  memset(&none, 0, sizeof none);
  none.error = "";
  if (g->abandoning && g->network_id[0]) {
    yhc__golem_left(g, "network %s not removed (close_timeout_ms passed)", g->network_id);
    g->network_id[0] = 0;
  }
  if (!g->network_id[0]) {
    yhc__network_removed(c, &none);
    return;
  }
  snprintf(path, sizeof path, "/net-api/v1/net/%s", g->network_id);
  if (!(g->teardown_call = yhc__api(g, "DELETE", path, NULL, 15000, yhc__network_removed, c)))
    yhc__network_removed(c, &none);
}

/* The close ran out of time: what is still being torn down stays as it is (and is noted). */
static void yhc__golem_abandon(yhc__golem *g) {
  g->abandoning = 1;
  yhc__api_cancel(g, &g->teardown_call);
}

/* Invoices still expected: agreements that ended and were not invoiced yet. */
static int yhc__golem_invoices_pending(yhc__golem *g) {
  yhc__agreement *a;
  int n = 0;
  for (a = g->agreements; a; a = a->next)
    if (a->ended_ms && !a->invoice_done) n++;
  return n + g->accepting;
}

/* ==== Service instance lifecycle ================================================== */
/* Owns: one provider running one copy of a service, from a signed draft to a terminated,
   paid agreement: agreement create/confirm/wait, activity, VPN node, deploy/start and the
   startup commands (results read until each batch finishes), then the tunnel origin that
   requests use, health checks, and the stop sequence. It reports to its cluster through two
   hooks (ready, ended) and knows nothing of queues or sizes.

   One daemon call is outstanding per instance at a time (`call`), plus the periodic state
   check (`poll_call`); both are cancelled before the instance is freed, so no callback ever
   sees a freed instance.

   Every wait is bounded (approval, then a cancel; deploy to ready as one startup deadline;
   each results poll) and failures are counted, never decided from one reading: state checks
   and results polls fail the instance after 3 transient failures in a row (408, 5xx,
   Unresponsive, no answer), at once on Terminated or a definite not-found. How it ended is
   classified for the cluster: a routine end (the provider's expiration, a non-final refusal,
   an approval that did not come) is not a failure; a failure is marked as one at startup
   (before READY) or in service. */

typedef struct yhc__instance yhc__instance;

enum {
  YHC__I_AGREEING, YHC__I_ACTIVATING, YHC__I_JOINING, YHC__I_DEPLOYING, YHC__I_STARTING,
  YHC__I_PROBING, YHC__I_READY, YHC__I_STOPPING, YHC__I_STOPPED
};

struct yhc_ctx {
  yhc_buf cmds; /* JSON array text being built: "[{...},{...}" */
  int count;
  int failed;
};

typedef struct yhc__instance_hooks {
  void (*ready)(yhc__instance *i);
  void (*ended)(yhc__instance *i); /* stopped or failed; the cluster frees it */
} yhc__instance_hooks;

/* A latency histogram with fixed bounds, as monitoring tools read them (cumulative at
   export). Durations are kept in microseconds so sums stay exact integers. */
#define YHC__HIST_BOUNDS(X) X(5) X(10) X(25) X(50) X(100) X(250) X(500) X(1000) X(2500) X(5000) X(10000) X(30000) X(60000)
#define YHC__HIST_COUNT_ONE(ms) +1
enum { YHC__HIST_N = 0 YHC__HIST_BOUNDS(YHC__HIST_COUNT_ONE) };
typedef struct yhc__hist {
  uint64_t bucket[YHC__HIST_N + 1]; /* the last one is +Inf */
  uint64_t count;
  uint64_t sum_us;
} yhc__hist;

static const unsigned yhc__hist_bound_ms[YHC__HIST_N] = {
#define YHC__HIST_BOUND(ms) ms,
    YHC__HIST_BOUNDS(YHC__HIST_BOUND)
#undef YHC__HIST_BOUND
};

static void yhc__hist_add(yhc__hist *h, uint64_t us) {
  int k = 0;
  while (k < YHC__HIST_N && us > (uint64_t)yhc__hist_bound_ms[k] * 1000u) k++;
  h->bucket[k]++;
  h->count++;
  h->sum_us += us;
}

struct yhc__instance {
  /* what yhc__cluster_pick() reads of every instance, for each request: one cache line */
  yhc__instance *next;
  int state;
  int draining;                 /* no new requests; stops when in_flight reaches 0 */
  int tunnel_broken;            /* failing: no new requests; ends from fail_timer */
  int in_flight;
  int concurrency;
  yhc__golem *g;
  void *cluster;
  const yhc__instance_hooks *hooks;
  const char *service;          /* the cluster's URL, for events */
  int failed;                   /* ended by a failure (not a requested stop) */
  int expiring;                 /* agreement near its end: replace before it stops */
  int cut_by_close;             /* stopped by the session's close: requests end with SHUTDOWN */
  int routine;                  /* ended for an expected reason, not a failure (see above) */
  int reached_ready;
  int failed_state;             /* the state it failed in */
  int confirmed, approved;      /* the agreement was confirmed / approved */
  int health_fails;             /* failed state checks (or results polls) in a row */
  uint64_t last_good_ms;        /* loop ms of the last good state reading */
  int vanish_ms, startup_ms, approval_ms;
  uint64_t wait_since;
  yhc__timer startup_timer;
  yhc__timer vanish_timer;      /* armed vanish_ms after each good state reading */
  char health_why[200];         /* the last failed reading */
  yhc__timer retry_timer;       /* the next results poll after a transient failure */
  uint64_t expires_ms;          /* wall clock: the expiration in our counter-proposal, which
                                   the provider enforces */
  uint64_t probe_req;           /* the readiness probe's request id */
  int node_held;                /* counted among the users of the provider's VPN node */
  int port;
  int ip_host;                  /* x in 192.168.0.x */
  char ip[32];
  char proposal_id[YHC__ID_MAX];
  char agreement_id[YHC__ID_MAX];
  char activity_id[YHC__ID_MAX];
  char batch_id[YHC__ID_MAX];
  char provider_id[64];
  char provider_name[64];
  yhc__glm coeff_duration, coeff_cpu, coeff_start; /* exact, from the offer's text */
  int threads;
  int interval_s, payment_timeout_s; /* what we countered with (the provider adopts it) */
  yhc__agreement *agreement;
  uint64_t call, poll_call;
  size_t results_seen;
  int batch_no;                 /* 0 = deploy+start, 1 = startup commands */
  char *startup_cmds;           /* JSON array text, owned */
  int need_startup;             /* the user's startup function has not run for it yet */
  int startup_waiting;          /* deployed before that: continues once it has */
  yhc__timer poll_timer;
  yhc__timer stall_timer;       /* requests out and no answer for a while: check the state early */
  yhc__stream *live;            /* the liveness probe's own tunnel, while one runs */
  yhc__timer live_timer;        /* its bound, or the pause before the next try */
  int live_sent;                /* its request is written */
  int stall_read;               /* the state reading under way was prompted by a stall */
  uint64_t last_answer_ms;
  int stall_ms;
  yhc__timer drain_timer;
  yhc__timer expiry_timer;
  uint64_t valid_to_ms;
  int lifetime_s;
  int renew_s;                  /* marked expiring this long before valid_to */
  int state_poll_ms;
  int drain_ms;
  int tunnel_dead_ms;
  yhc__glm *spent_sink;         /* the cluster's spent counter, handed to the agreement */
  int conn_failures;            /* tunnels that failed to open in a row */
  int conn_suspects;            /* ... that broke before the daemon answered: judged when
                                   the daemon probe says it is there (yhc__golem_probe) */
  char suspect_why[200];
  char tunnel_why[200];
  yhc__timer fail_timer;
  yhc__host *origin;            /* tunnel connections for requests (and the probe) */
  yhc__timer probe_timer;
  int probe_tries;
  char probe_why[200];
  char why[300];                /* why it ended, when it failed */
  /* what it served, for yhc_cluster_instances() and the metrics */
  uint64_t served, failed_n;
  uint64_t ready_at_ms;
  unsigned char counted_lost;   /* the cluster took it off its size (on_stop = ignore) */
  yhc__hist service_hist;
};

static void yhc__instance_stop(yhc__instance *i);

/* Every instance event carries the same identification; only the kind and text differ. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 4, 5)))
#endif
static void yhc__instance_emit(yhc__instance *i, yhc_event_kind kind, double price_hour, const char *fmt, ...) {
  yhc_event ev;
  va_list ap;
  memset(&ev, 0, sizeof ev);
  ev.kind = kind;
  ev.service = i->service;
  ev.provider_id = i->provider_id[0] ? i->provider_id : NULL;
  ev.provider_name = i->provider_name[0] ? i->provider_name : NULL;
  ev.agreement_id = i->agreement_id[0] ? i->agreement_id : NULL;
  ev.activity_id = i->activity_id[0] ? i->activity_id : NULL;
  ev.price_hour = price_hour;
  ev.err = kind == YHC_EV_SERVICE_FAILED ? YHC_ERR_SERVICE_FAILED : YHC_ERR_OK;
  va_start(ap, fmt);
  yhc__emitv(i->g, &ev, fmt, ap);
  va_end(ap);
}

/* Why the instance ends, on one line: it becomes requests' error messages. */
static void yhc__instance_set_why(yhc__instance *i, const char *fmt, va_list ap) {
  vsnprintf(i->why, sizeof i->why, fmt, ap);
  yhc__one_line(i->why);
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static void yhc__instance_fail(yhc__instance *i, const char *fmt, ...) {
  va_list ap;
  if (i->state >= YHC__I_STOPPING) return;
  va_start(ap, fmt);
  yhc__instance_set_why(i, fmt, ap);
  va_end(ap);
  i->failed = 1;
  i->failed_state = i->state;
  yhc__instance_emit(i, YHC_EV_SERVICE_FAILED, 0, "%s on %s failed%s: %s", i->service,
                     i->provider_name[0] ? i->provider_name : "(provider)", i->reached_ready ? "" : " at startup",
                     i->why);
  yhc__instance_stop(i);
}

/* An expected end that is nobody's failure: the agreement expired, the provider was busy or
   refused for now, the daemon lost the network. The cluster replaces it without counting. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static void yhc__instance_end_routine(yhc__instance *i, const char *fmt, ...) {
  va_list ap;
  if (i->state >= YHC__I_STOPPING) return;
  va_start(ap, fmt);
  yhc__instance_set_why(i, fmt, ap);
  va_end(ap);
  i->routine = 1;
  yhc__instance_stop(i);
}

static void yhc__instance_fail_reply(yhc__instance *i, const yhc__reply *r) {
  if (r->err == YHC_ERR_CANCELLED) return;
  if (!r->status && i->g->down_since) { /* the call never reached the daemon: its outage */
    yhc__instance_end_routine(i, "the daemon was unreachable: %s", r->error);
    return;
  }
  yhc__instance_fail(i, "%s", r->error);
}

/* Answers that say "not now" rather than "gone": the daemon's own 408 (the provider did not
   answer in time), a 5xx (service-bus errors included, transient ones too), no answer. */
static int yhc__reply_transient(const yhc__reply *r) {
  if (r->status == 408 || (r->status >= 500 && !yhc__reply_not_found(r))) return 1;
  return !r->status && (r->err == YHC_ERR_TIMEOUT || r->err == YHC_ERR_CONNECT || r->err == YHC_ERR_IO ||
                        r->err == YHC_ERR_CLOSED || r->err == YHC_ERR_DNS);
}

/* ---- tunnel origin */

static yhc__stream *yhc__instance_tunnel(yhc__host *h, void *ctx, yhc_error *err) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  yhc__golem *g = i->g;
  char url[600];
  yhc_header hd[1];
  yhc__ws_conf conf;
  const char *rest = g->base;
  (void)h;
  /* the daemon's http(s) base becomes ws(s) */
  if (!strncmp(rest, "https://", 8)) snprintf(url, sizeof url, "wss://%s", rest + 8);
  else if (!strncmp(rest, "http://", 7)) snprintf(url, sizeof url, "ws://%s", rest + 7);
  else snprintf(url, sizeof url, "%s", rest);
  snprintf(url + strlen(url), sizeof url - strlen(url), "/net-api/v1/net/%s/tcp/%s/%d", g->network_id,
           i->ip, i->port);
  hd[0].name = "Authorization";
  hd[0].value = g->auth;
  memset(&conf, 0, sizeof conf);
  conf.dead_ms = i->tunnel_dead_ms;
  return yhc__ws_open(g->loop, &g->api->tls, &g->api->tls_conf, url, hd, 1, &conf, err);
}

static void yhc__instance_tunnel_fail(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  yhc__instance_fail(i, "tunnels fail: %s", i->tunnel_why);
}

/* A tunnel that cannot be opened means the service or the VM is gone. The HTTP layer calls
   this in the middle of handling the failed connection and uses the origin afterwards, so
   the instance (which frees the origin when it stops) fails from the loop instead; until
   then the cluster sends it nothing new. */
/* The status of a tunnel handshake the daemon refused (the WebSocket layer names it in its
   message), or 0. */
static int yhc__tunnel_refusal_status(const yhc_error *err) {
  const char *p = err->code == YHC_ERR_HTTP_STATUS ? strstr(err->msg, "refused: HTTP ") : NULL;
  return p ? atoi(p + 14) : 0;
}

/* Handshake answers are counted like connection failures: the daemon answers 504 whenever
   the connect inside the VPN takes more than 5 s, and 400 "Socket closed" while the server
   restarts; 3 in a row end the instance. Only a 404 (the network is gone) ends it at once. */
/* One more tunnel that would not open; `status` is the daemon's refusal (0: the socket broke). */
static void yhc__instance_count_conn_failure(yhc__instance *i, int status, const char *why) {
  if (i->state != YHC__I_READY) return; /* the readiness probe has its own bound */
  if (i->tunnel_broken || !(++i->conn_failures >= 3 || status == 404)) return;
  i->tunnel_broken = 1;
  if (status)
    snprintf(i->tunnel_why, sizeof i->tunnel_why, "handshake answered HTTP %d, %d in a row (to %s:%d)", status,
             i->conn_failures, i->ip, i->port);
  else
    snprintf(i->tunnel_why, sizeof i->tunnel_why, "%.199s", why);
  yhc__timer_start(i->g->loop, &i->fail_timer, 0, yhc__instance_tunnel_fail, i);
}

static void yhc__instance_conn_error(yhc__host *h, const yhc_error *err) {
  yhc__instance *i = YHC__CAST(yhc__instance *, h->open_ctx);
  int status = yhc__tunnel_refusal_status(err);
  if (err->code == YHC_ERR_CONNECT || err->code == YHC_ERR_DNS) {
    /* the daemon itself did not answer: its outage, not the provider's failure */
    yhc__golem_unreachable(i->g, err->msg);
    return;
  }
  if (i->g->down_since || i->state != YHC__I_READY) return;
  if (!status) {
    i->conn_suspects++;
    snprintf(i->suspect_why, sizeof i->suspect_why, "%.199s", err->msg);
    yhc__golem_probe(i->g);
    if (i->g->probe_call) return;
    i->conn_suspects = 0; /* no probe could be sent: judged as it is */
  }
  yhc__instance_count_conn_failure(i, status, err->msg);
}

/* The daemon probe answered: tunnels that broke meanwhile count against their provider only
   if the daemon is there. */
static void yhc__instance_judge_suspects(yhc__instance *i) {
  int n = i->conn_suspects;
  i->conn_suspects = 0;
  while (n-- > 0 && !i->g->down_since) yhc__instance_count_conn_failure(i, 0, i->suspect_why);
}

/* ---- health */

static void yhc__instance_poll_state(void *ctx);

/* No good state reading for vanish_ms, whatever the calls in flight: a provider that
   vanished leaves its calls hanging (the daemon answers 408 only after 6 s) and its tunnels
   open (the daemon pings them itself), so this is what bounds its detection. */
static void yhc__instance_vanished(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  if (i->state != YHC__I_READY) return;
  if (i->g->down_since) { /* nothing can be read while the daemon is away: not the provider's doing */
    yhc__timer_start(i->g->loop, &i->vanish_timer, (uint64_t)i->vanish_ms, yhc__instance_vanished, i);
    return;
  }
  yhc__instance_fail(i, "no good state reading for %d ms (vanish_timeout_ms): the provider is gone%s%.150s", i->vanish_ms,
                     i->health_why[0] ? "; the last: " : "", i->health_why);
}

static void yhc__instance_healthy(yhc__instance *i) {
  i->health_fails = 0;
  i->health_why[0] = 0;
  i->last_good_ms = yhc_loop_now(i->g->loop);
  yhc__timer_start(i->g->loop, &i->vanish_timer, (uint64_t)i->vanish_ms, yhc__instance_vanished, i);
}

/* One failed reading: 3 in a row, or none good for vanish_timeout_ms, end the instance;
   otherwise check again soon rather than at the next tick. */
static void yhc__instance_health_miss(yhc__instance *i, const char *what) {
  uint64_t now = yhc_loop_now(i->g->loop);
  i->health_fails++;
  snprintf(i->health_why, sizeof i->health_why, "%.199s", what);
  if (i->g->down_since) i->health_fails = 0; /* the daemon is away: the provider is not judged by it */
  else if (i->health_fails >= 3 || now - i->last_good_ms >= (uint64_t)i->vanish_ms) {
    yhc__instance_fail(i, "%d state checks in a row failed (none good for %llu ms), the last: %s", i->health_fails,
                       (unsigned long long)(now - i->last_good_ms), what);
    return;
  }
  yhc__timer_start(i->g->loop, &i->poll_timer, (uint64_t)YHC__MIN(i->state_poll_ms, 1000), yhc__instance_poll_state, i);
}

static void yhc__instance_terminated(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  yhc__instance_fail(i, "%s", i->health_why);
}

static void yhc__instance_live_probe(yhc__instance *i);

static void yhc__instance_state_done(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  const yhc_json *st;
  yhc_str cur;
  i->poll_call = 0;
  if (r->err == YHC_ERR_CANCELLED || i->state >= YHC__I_STOPPING) return;
  if (r->err) {
    if (yhc__reply_not_found(r)) {
      yhc__instance_fail(i, "activity is gone: %s", r->error);
      return;
    }
    yhc__instance_health_miss(i, r->error);
    return;
  }
  st = yhc_json_at(yhc_json_get(r->json, "state"), 0);
  cur.ptr = NULL;
  cur.len = 0;
  cur = yhc_json_str(st, cur);
  if (yhc__str_eq(cur, "Terminated")) {
    yhc_str reason;
    reason.ptr = NULL;
    reason.len = 0;
    reason = yhc_json_str(yhc_json_get(r->json, "reason"), reason);
    /* the provider stops the activity first when it ends the agreement at its expiration
       (the termination event may come a moment later): routine, not a failure */
    if (yhc__str_has(reason, "expired")) {
      yhc__instance_end_routine(i, "activity terminated by the provider: %.*s", (int)YHC__MIN(reason.len, 150), reason.ptr);
      return;
    }
    /* the exe-unit died (ya-provider's reasons for a killed or failed process): a failure,
       and a multi-activity agreement is kept, so no termination event will say more */
    if (yhc__str_has(reason, "execution aborted") || yhc__str_has(reason, "execution error")) {
      yhc_str msg;
      msg.ptr = NULL;
      msg.len = 0;
      msg = yhc_json_str(yhc_json_get(r->json, "errorMessage"), msg);
      yhc__instance_fail(i, "activity terminated by the provider: %.*s%s%.*s%s", (int)YHC__MIN(reason.len, 100),
                         reason.ptr, msg.len ? " (" : "", (int)YHC__MIN(msg.len, 100), msg.len ? msg.ptr : "", msg.len ? ")" : "");
      return;
    }
    /* the agreement's termination event, which says whether this was routine, may follow a
       moment later: no new requests meanwhile, and a failure if it does not come */
    snprintf(i->health_why, sizeof i->health_why, "activity state is Terminated%s%.*s", reason.len ? ": " : "",
             (int)YHC__MIN(reason.len, 150), reason.ptr);
    i->tunnel_broken = 1;
    yhc__timer_start(i->g->loop, &i->retry_timer, 2000, yhc__instance_terminated, i);
    return;
  }
  if (!yhc__str_eq(cur, "Ready")) {
    char what[120];
    snprintf(what, sizeof what, "activity state is %.*s", (int)YHC__MIN(cur.len, 40), cur.len ? cur.ptr : "missing");
    yhc__instance_health_miss(i, what);
    return;
  }
  yhc__instance_healthy(i);
  if (i->stall_read && i->in_flight) yhc__instance_live_probe(i);
  i->stall_read = 0;
  yhc__timer_start(i->g->loop, &i->poll_timer, (uint64_t)i->state_poll_ms, yhc__instance_poll_state, i);
}

static void yhc__instance_poll_state(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  char path[256];
  /* the daemon answers 408 itself after 6 s; a check may not take a big part of the bound */
  int limit = YHC__MAX(YHC__MIN(8000, i->vanish_ms / 3), 500);
  if (i->poll_call || i->state >= YHC__I_STOPPING || !i->activity_id[0]) return;
  snprintf(path, sizeof path, "/activity-api/v1/activity/%s/state", i->activity_id);
  i->poll_call = yhc__api(i->g, "GET", path, NULL, limit, yhc__instance_state_done, i);
}

/* Something suggests trouble (a request failed): check now instead of at the next tick. */
static void yhc__instance_check_soon(yhc__instance *i) {
  if (i->state == YHC__I_READY && !i->poll_call)
    yhc__timer_start(i->g->loop, &i->poll_timer, 0, yhc__instance_poll_state, i);
}

/* A VM that died takes its requests with it silently: nothing answers, and the tunnels end
   only by the TCP timeout. Requests out and no answer for twice the gap expected between
   answers (the mean service time over the requests out; within 500 ms and state_poll_ms)
   are reason to read its state at once, rather than up to state_poll_ms later: with 1 s
   requests four to an instance that is 500 ms, so their resend is answered within 2 s of
   the crash. While it stays silent the wait doubles, so a service that is merely slow (or
   answers in bursts) costs at most one extra reading per gap, never a failure. */
static int yhc__instance_stall_base(const yhc__instance *i) {
  uint64_t ms = i->service_hist.count
                    ? i->service_hist.sum_us / i->service_hist.count / 1000u * 2u / (uint64_t)YHC__MAX(i->in_flight, 1)
                    : (uint64_t)i->state_poll_ms;
  if (ms < 500) ms = 500;
  if (ms > (uint64_t)i->state_poll_ms) ms = (uint64_t)i->state_poll_ms;
  return (int)ms;
}

/* The timer is due when the silence reaches stall_ms, counted from the last answer: armed
   for a whole period instead, a check that came just early would wait almost two. */
static void yhc__instance_stall_check(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  uint64_t now = yhc_loop_now(i->g->loop), due;
  if (i->state != YHC__I_READY || !i->in_flight) return; /* the next request arms it again */
  if (now - i->last_answer_ms >= (uint64_t)i->stall_ms) {
    i->stall_read = 1;
    yhc__instance_check_soon(i);
    i->last_answer_ms = now;
    i->stall_ms = YHC__MIN(2 * i->stall_ms, i->state_poll_ms);
  }
  due = i->last_answer_ms + (uint64_t)i->stall_ms;
  yhc__timer_start(i->g->loop, &i->stall_timer, due > now ? due - now : 0, yhc__instance_stall_check, i);
}

/* The cluster's word that a request went to the instance (in_flight already counts it). */
static void yhc__instance_request_sent(yhc__instance *i) {
  if (i->in_flight == 1) i->last_answer_ms = yhc_loop_now(i->g->loop);
  if (!yhc__timer_armed(&i->stall_timer)) {
    i->stall_ms = yhc__instance_stall_base(i);
    yhc__timer_start(i->g->loop, &i->stall_timer, (uint64_t)i->stall_ms, yhc__instance_stall_check, i);
  }
}

/* ... and that one was answered: the instance is talking. */
static void yhc__instance_request_answered(yhc__instance *i) {
  uint64_t now = yhc_loop_now(i->g->loop);
  i->last_answer_ms = now;
  i->stall_ms = yhc__instance_stall_base(i);
  /* armed before there was a mean to go by (or while it was slower): bring the check closer */
  if (i->in_flight && (!yhc__timer_armed(&i->stall_timer) || i->stall_timer.due > now + (uint64_t)i->stall_ms))
    yhc__timer_start(i->g->loop, &i->stall_timer, (uint64_t)i->stall_ms, yhc__instance_stall_check, i);
}

/* ---- liveness probe. Requests out, no answers, and the activity reads Ready: the service
   may have died mid-request. Its connections are then half-closed, and the daemon reports no
   bare FIN (ya-relay ends a tunnel only once its socket is Closed, which needs our side to
   close too), so those requests would wait out their whole timeout. A fresh tunnel tells: a
   handshake refused with 400 (nothing listens) counts as a tunnel failure, and the probe
   tries again 25 ms later, so three in a row (some 0.1 s) fail the instance and move its requests
   through the rule every tunnel obeys; any answer, or a probe that merely takes long, proves
   nothing wrong. The request is written the moment the tunnel opens and asks the server to
   close, so a probe given up on still leaves a whole request behind in the VM, never a bare
   accepted connection: a server serving one connection at a time answers it when its turn
   comes and moves on (an empty one would block it). */

static void yhc__instance_live_close(yhc__instance *i) {
  if (i->live) {
    yhc__stream *ws = i->live;
    i->live = NULL;
    ws->vt->close(ws);
  }
  yhc__timer_stop(i->g->loop, &i->live_timer);
}

static void yhc__instance_live_again(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  yhc__instance_live_probe(i);
}

static void yhc__instance_live_timeout(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  yhc__instance_live_close(i); /* slow is not dead: the stall check goes on watching */
}

static void yhc__instance_live_event(void *owner, int ev) {
  yhc__instance *i = YHC__CAST(yhc__instance *, owner);
  yhc__stream *ws = i->live;
  static const char head[] = "HEAD / HTTP/1.1\r\nHost: yhc-probe\r\nConnection: close\r\n\r\n";
  char buf[64];
  long n;
  if (!ws) return;
  if (ev & YHC__EV_ERROR) {
    int status = yhc__tunnel_refusal_status(&ws->err);
    char why[200];
    snprintf(why, sizeof why, "%.199s", ws->err.msg);
    yhc__instance_live_close(i);
    if (status == 400 || status == 504) {
      yhc__instance_count_conn_failure(i, status, why);
      if (!i->tunnel_broken && i->state == YHC__I_READY)
        yhc__timer_start(i->g->loop, &i->live_timer, 25, yhc__instance_live_again, i);
    }
    return;
  }
  if (ev & YHC__EV_CONNECT) i->conn_failures = 0; /* something accepted the connection */
  if (!i->live_sent && (ev & (YHC__EV_CONNECT | YHC__EV_WRITE))) {
    n = ws->vt->write(ws, head, sizeof head - 1);
    if (n == (long)(sizeof head - 1)) i->live_sent = 1;
    else if (n != YHC__AGAIN) {
      yhc__instance_live_close(i);
      return;
    }
  }
  n = ws->vt->read(ws, buf, sizeof buf);
  if (n != YHC__AGAIN) { /* an answer (the server lives) or the end: either way, done */
    yhc__instance_live_close(i);
    return;
  }
  ws->vt->want(ws, 1, !i->live_sent);
}

static void yhc__instance_live_probe(yhc__instance *i) {
  yhc_error err;
  if (i->live || i->state != YHC__I_READY || i->tunnel_broken || !i->ip[0]) return;
  yhc__timer_stop(i->g->loop, &i->live_timer);
  yhc__error_clear(&err);
  i->live = yhc__instance_tunnel(NULL, i, &err);
  if (!i->live) return;
  i->live_sent = 0;
  i->live->owner = i;
  i->live->on_event = yhc__instance_live_event;
  i->live->vt->want(i->live, 1, 1);
  yhc__timer_start(i->g->loop, &i->live_timer, (uint64_t)YHC__MAX(i->stall_ms, 2000), yhc__instance_live_timeout, i);
}

static void yhc__instance_expiry(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  i->expiring = 1;
  if (i->hooks->ready) i->hooks->ready(i); /* lets the cluster start the replacement */
}

/* ---- readiness probe: a server started in the background may need a moment to listen.
   The probe is a real HTTP exchange (HEAD /) over the origin that requests will use: any
   answer proves requests can flow, and its connection stays in the pool. A tunnel opened and
   closed without a request would leave a dead accepted connection inside the VM (closing the
   WebSocket does not close it there), which blocks a server that serves one connection at a
   time. Attempts back off and are bounded by the startup deadline. */

static void yhc__instance_became_ready(yhc__instance *i);
static void yhc__instance_probe(void *ctx);

static void yhc__instance_probe_close(yhc__instance *i) {
  if (i->probe_req) {
    uint64_t id = i->probe_req;
    i->probe_req = 0;
    yhc_http_cancel(i->g->api, id);
  }
  yhc__timer_stop(i->g->loop, &i->probe_timer);
}

static void yhc__instance_probe_done(yhc__req *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, r->owner);
  int answered = !r->err_code && r->status > 0;
  if (i && i->probe_req == r->id) {
    i->probe_req = 0;
    if (!answered) snprintf(i->probe_why, sizeof i->probe_why, "%.199s", yhc__req_msg(r));
  } else {
    i = NULL; /* cancelled: the instance is stopping */
  }
  r->owner = NULL;
  yhc__req_deliver_user(r); /* no callback: just recycles the record */
  if (!i || i->state != YHC__I_PROBING) return;
  if (answered) {
    yhc__instance_became_ready(i);
    return;
  }
  /* back off gently: 100 ms, 200 ms, ... up to a second */
  i->probe_tries++;
  yhc__timer_start(i->g->loop, &i->probe_timer, (uint64_t)YHC__MIN(100 * i->probe_tries, 1000), yhc__instance_probe, i);
}

static void yhc__instance_probe(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  yhc_request rq;
  yhc__req *r;
  yhc_url u;
  char url[160];
  int tls;
  if (i->state != YHC__I_PROBING || i->probe_req) return;
  r = yhc__req_new(i->g->api);
  if (!r) {
    yhc__instance_fail(i, "out of memory probing the service");
    return;
  }
  snprintf(url, sizeof url, "%s/", i->service);
  memset(&rq, 0, sizeof rq);
  rq.method = "HEAD";
  rq.url = url;
  yhc__req_fill(r, &rq, &u, &tls);
  r->on_done = yhc__instance_probe_done;
  r->owner = i;
  r->timeout_ms = YHC__MAX(YHC__MIN(i->startup_ms / 4, 10000), 1000);
  i->probe_req = r->id;
  if (r->err_code) { /* the service URL was validated at registration: cannot happen */
    yhc__req_complete(r);
    return;
  }
  yhc__timer_start(i->g->loop, &r->deadline, (uint64_t)r->timeout_ms, yhc__req_deadline, r);
  yhc__host_submit(i->origin, r, 0);
}

static void yhc__instance_start_probe(yhc__instance *i) {
  char key[200];
  i->state = YHC__I_PROBING;
  i->probe_tries = 0;
  snprintf(key, sizeof key, "tunnel:%s", i->activity_id);
  i->origin = yhc__host_new(i->g->api, key, i->ip, i->port, 0, i->concurrency);
  if (!i->origin) {
    yhc__instance_fail(i, "out of memory creating the tunnel origin");
    return;
  }
  i->origin->external = 1;
  i->origin->open = yhc__instance_tunnel;
  i->origin->open_ctx = i;
  i->origin->on_conn_error = yhc__instance_conn_error;
  yhc__instance_probe(i);
}

/* The startup deadline: deploy, start, the startup commands and the probe, together. */
static void yhc__instance_startup_late(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  static const char *const step[] = {"", "", "", "deploy/start", "the startup commands", "the readiness probe"};
  int k = i->state >= YHC__I_DEPLOYING && i->state <= YHC__I_PROBING ? i->state : 0;
  if (i->state == YHC__I_PROBING)
    yhc__instance_fail(i, "the service did not answer on port %d within startup_timeout_ms (%d ms): %s", i->port,
                       i->startup_ms, i->probe_why[0] ? i->probe_why : "no answer");
  else
    yhc__instance_fail(i, "%s did not finish within startup_timeout_ms (%d ms)", step[k], i->startup_ms);
}

/* ---- exec batches */

static void yhc__instance_batch_poll(yhc__instance *i);
static void yhc__instance_batch_poll_again(void *ctx);
static void yhc__instance_exec(yhc__instance *i, const char *commands_json);

static void yhc__instance_became_ready(yhc__instance *i) {
  yhc__golem *g = i->g;
  if (i->state != YHC__I_PROBING) return;
  yhc__timer_stop(g->loop, &i->startup_timer);
  i->state = YHC__I_READY;
  i->ready_at_ms = yhc_loop_now(i->g->loop);
  i->reached_ready = 1;
  i->conn_failures = 0;
  yhc__instance_healthy(i);
  yhc__instance_emit(i, YHC_EV_SERVICE_READY, 0, "%s is ready on %s (%s, VPN %s)", i->service,
                     i->provider_name, i->provider_id, i->ip);
  yhc__timer_start(g->loop, &i->poll_timer, (uint64_t)i->state_poll_ms, yhc__instance_poll_state, i);
  /* the provider ends the agreement at the expiration of our counter-proposal (validTo only
     bounds the approval), so the replacement starts renew_s before that */
  {
    uint64_t end = i->expires_ms ? i->expires_ms : i->valid_to_ms;
    uint64_t now = yhc__wall_ms(), margin = (uint64_t)i->renew_s * 1000u;
    uint64_t at = end > now + margin ? end - margin - now : 0;
    if (end) yhc__timer_start(g->loop, &i->expiry_timer, at, yhc__instance_expiry, i);
  }
  i->hooks->ready(i);
}

/* After deploy and start: the user's startup commands, if any, then the readiness probe. */
static void yhc__instance_run_startup(yhc__instance *i) {
  if (i->startup_cmds && strcmp(i->startup_cmds, "[]") != 0) {
    i->state = YHC__I_STARTING;
    yhc__instance_exec(i, i->startup_cmds);
    return;
  }
  yhc__instance_start_probe(i);
}

static void yhc__instance_batch_results(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  const yhc_json *res;
  size_t n, k;
  int finished = 0;
  i->call = 0;
  if (r->err) {
    if (r->err == YHC_ERR_CANCELLED) return;
    /* without commandIndex a 408 is the daemon's own limit: the provider did not answer */
    if (yhc__reply_transient(r) && ++i->health_fails < 3) {
      yhc__timer_start(i->g->loop, &i->retry_timer, 1000, yhc__instance_batch_poll_again, i);
      return;
    }
    yhc__instance_fail(i, "%s%s", r->error, i->health_fails >= 3 ? " (3 results polls in a row)" : "");
    return;
  }
  i->health_fails = 0;
  if (yhc_json_typeof(r->json) != YHC_JSON_ARRAY) {
    yhc__instance_fail(i, "GET /activity-api/v1/activity/{id}/exec/{batch}: answer is not an array");
    return;
  }
  n = yhc_json_len(r->json);
  for (k = i->results_seen; k < n; k++) {
    yhc_str result, msg, err_text;
    res = yhc_json_at(r->json, k);
    result.ptr = msg.ptr = err_text.ptr = NULL;
    result.len = msg.len = err_text.len = 0;
    result = yhc_json_str(yhc_json_get(res, "result"), result);
    msg = yhc_json_str(yhc_json_get(res, "message"), msg);
    err_text = yhc_json_str(yhc_json_get(res, "stderr"), err_text);
    if (yhc__str_eq(result, "Error")) {
      yhc__instance_fail(i, "%s command %zu failed: %.*s%s%.*s", i->batch_no ? "startup" : "deploy/start",
                         k, (int)YHC__MIN(msg.len, 120), msg.ptr, err_text.len ? " / stderr: " : "",
                         (int)YHC__MIN(err_text.len, 120), err_text.ptr);
      return;
    }
    if (yhc_json_bool(yhc_json_get(res, "isBatchFinished"), 0)) finished = 1;
  }
  i->results_seen = n;
  if (!finished) {
    yhc__instance_batch_poll(i);
    return;
  }
  if (i->batch_no == 0) {
    yhc__instance_emit(i, YHC_EV_ACTIVITY_STARTED, 0, "activity %s started on %s", i->activity_id,
                       i->provider_name);
    i->batch_no = 1;
    if (i->need_startup) { /* the startup function runs from the loop; it continues us */
      i->startup_waiting = 1;
      return;
    }
    yhc__instance_run_startup(i);
    return;
  }
  yhc__instance_start_probe(i);
}

/* Each poll is bounded: the daemon waits up to 5 s for the batch, and answers 408 itself a
   second after that when the provider is silent. */
static void yhc__instance_batch_poll(yhc__instance *i) {
  char path[400];
  snprintf(path, sizeof path, "/activity-api/v1/activity/%s/exec/%s?timeout=5", i->activity_id, i->batch_id);
  i->call = yhc__api(i->g, "GET", path, NULL, 8000, yhc__instance_batch_results, i);
}

static void yhc__instance_batch_poll_again(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  if (i->state == YHC__I_DEPLOYING || i->state == YHC__I_STARTING) yhc__instance_batch_poll(i);
}

/* Most steps need one id from their answer (a bare JSON string, or a field of an object):
   take it, or end the instance with a message naming the call. */
static int yhc__instance_take_id(yhc__instance *i, const yhc__reply *r, const yhc_json *v,
                                 const char *call, char *dst, size_t cap) {
  yhc_str id;
  i->call = 0;
  if (r->err) {
    yhc__instance_fail_reply(i, r);
    return -1;
  }
  id.ptr = NULL;
  id.len = 0;
  id = yhc_json_str(v, id);
  if (!yhc__id_ok(id) || id.len >= cap) {
    yhc__instance_fail(i, "%s: answer has no valid id", call);
    return -1;
  }
  yhc__copy_id(dst, cap, id);
  return 0;
}

static void yhc__instance_exec_started(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  if (yhc__instance_take_id(i, r, r->json, "POST /activity-api/v1/activity/{id}/exec", i->batch_id,
                            sizeof i->batch_id))
    return;
  i->results_seen = 0;
  yhc__instance_batch_poll(i);
}

static void yhc__instance_exec(yhc__instance *i, const char *commands_json) {
  yhc_buf body;
  yhc_jw w;
  char path[256];
  memset(&body, 0, sizeof body);
  yhc_jw_init(&w, &body);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "text");
  yhc_jw_str(&w, commands_json);
  yhc_jw_obj_end(&w);
  snprintf(path, sizeof path, "/activity-api/v1/activity/%s/exec", i->activity_id);
  if (yhc_jw_finish(&w)) yhc__instance_fail(i, "out of memory building an exec batch");
  else i->call = yhc__api(i->g, "POST", path, body.ptr, 30000, yhc__instance_exec_started, i);
  yhc_buf_free(&body);
}

static void yhc__instance_deploy(yhc__instance *i) {
  yhc__golem *g = i->g;
  yhc_buf cmds;
  yhc_jw w;
  memset(&cmds, 0, sizeof cmds);
  yhc_jw_init(&w, &cmds);
  yhc_jw_arr_begin(&w);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "deploy");
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "net");
  yhc_jw_arr_begin(&w);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "id");
  yhc_jw_str(&w, g->network_id);
  yhc_jw_key(&w, "ip");
  yhc_jw_str(&w, g->network_ip);
  yhc_jw_key(&w, "mask");
  yhc_jw_str(&w, "255.255.255.0");
  yhc_jw_key(&w, "nodeIp");
  yhc_jw_str(&w, i->ip);
  yhc_jw_key(&w, "nodes");
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "192.168.0.1");
  yhc_jw_str(&w, g->identity);
  yhc_jw_key(&w, i->ip);
  yhc_jw_str(&w, i->provider_id);
  yhc_jw_obj_end(&w);
  yhc_jw_obj_end(&w);
  yhc_jw_arr_end(&w);
  yhc_jw_obj_end(&w);
  yhc_jw_obj_end(&w);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "start");
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "args");
  yhc_jw_arr_begin(&w);
  yhc_jw_arr_end(&w);
  yhc_jw_obj_end(&w);
  yhc_jw_obj_end(&w);
  yhc_jw_arr_end(&w);
  i->state = YHC__I_DEPLOYING;
  i->batch_no = 0;
  i->health_fails = 0;
  yhc__timer_start(g->loop, &i->startup_timer, (uint64_t)i->startup_ms, yhc__instance_startup_late, i);
  if (yhc_jw_finish(&w)) yhc__instance_fail(i, "out of memory building the deploy batch");
  else yhc__instance_exec(i, cmds.ptr);
  yhc_buf_free(&cmds);
}

/* ---- agreement, activity, VPN node */

static void yhc__instance_node_added(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  i->call = 0;
  if (r->err && r->status != 409) {
    yhc__instance_fail_reply(i, r);
    return;
  }
  if (yhc__golem_node_hold(i->g, i->provider_id)) {
    yhc__instance_fail(i, "out of memory counting VPN nodes");
    return;
  }
  i->node_held = 1;
  yhc__instance_deploy(i);
}

static void yhc__instance_activity_created(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  yhc_buf body;
  yhc_jw w;
  char path[256];
  /* the answer mirrors the request: {"activityId"} for the object form, a string otherwise */
  if (yhc__instance_take_id(i, r,
                            yhc_json_typeof(r->json) == YHC_JSON_OBJECT ? yhc_json_get(r->json, "activityId")
                                                                        : r->json,
                            "POST /activity-api/v1/activity", i->activity_id, sizeof i->activity_id))
    return;
  i->state = YHC__I_JOINING;
  memset(&body, 0, sizeof body);
  yhc_jw_init(&w, &body);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "id");
  yhc_jw_str(&w, i->provider_id);
  yhc_jw_key(&w, "ip");
  yhc_jw_str(&w, i->ip);
  yhc_jw_obj_end(&w);
  snprintf(path, sizeof path, "/net-api/v1/net/%s/nodes", i->g->network_id);
  if (yhc_jw_finish(&w)) yhc__instance_fail(i, "out of memory adding the VPN node");
  else i->call = yhc__api(i->g, "POST", path, body.ptr, 30000, yhc__instance_node_added, i);
  yhc_buf_free(&body);
}

static void yhc__instance_create_activity(yhc__instance *i) {
  char body[YHC__ID_MAX + 32];
  i->state = YHC__I_ACTIVATING;
  snprintf(body, sizeof body, "{\"agreementId\":\"%s\"}", i->agreement_id);
  /* the daemon answers once the exe-unit is Initialized, waiting `timeout` (5 s by default)
     for it: a VM that needs longer to start is not a failed provider */
  i->call = yhc__api(i->g, "POST", "/activity-api/v1/activity?timeout=30", body, 45000, yhc__instance_activity_created, i);
}

static void yhc__instance_register_agreement(yhc__instance *i) {
  yhc__golem *g = i->g;
  yhc__agreement *a = YHC__NEW(yhc__agreement);
  double hour;
  if (a) {
    snprintf(a->id, sizeof a->id, "%s", i->agreement_id);
    snprintf(a->provider_id, sizeof a->provider_id, "%s", i->provider_id);
    snprintf(a->provider_name, sizeof a->provider_name, "%s", i->provider_name);
    snprintf(a->service, sizeof a->service, "%s", i->service);
    a->coeff_duration = i->coeff_duration;
    a->coeff_cpu = i->coeff_cpu;
    a->coeff_start = i->coeff_start;
    a->threads = i->threads;
    a->interval_s = i->interval_s;
    a->payment_timeout_s = i->payment_timeout_s;
    a->approved_ms = yhc__wall_ms();
    a->spent_sink = i->spent_sink;
    a->owner = i;
    a->next = g->agreements;
    g->agreements = a;
  }
  i->agreement = a;
  {
    yhc__agreement t;
    yhc__glm h;
    char t1[YHC__GLM_TEXT], t2[YHC__GLM_TEXT];
    memset(&t, 0, sizeof t);
    t.coeff_duration = i->coeff_duration;
    t.coeff_cpu = i->coeff_cpu;
    t.coeff_start = i->coeff_start;
    t.threads = i->threads;
    h = yhc__agreement_cost(&t, 3600000u);
    hour = yhc__glm_to_double(&h);
    yhc__instance_emit(i, YHC_EV_AGREEMENT_SIGNED, hour, "agreement with %s (%s) for %s: %s GLM/h expected (start %s)",
                       i->provider_name, i->provider_id, i->service, yhc__glm_format(&h, 0, t1),
                       yhc__glm_format(&i->coeff_start, 0, t2));
  }
}

static void yhc__instance_wait(yhc__instance *i);
static void yhc__instance_wait_again(void *ctx);

/* The approval wait is bounded by approval_timeout_ms; after it the agreement is cancelled
   (by the stop) and the cluster takes the next draft. A 410 (rejected, for now or for good;
   expired; cancelled) is the provider's answer, not a failure of ours. */
static void yhc__instance_waited(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  i->call = 0;
  if (r->err == YHC_ERR_CANCELLED) return;
  if (r->err) {
    uint64_t waited = yhc_loop_now(i->g->loop) - i->wait_since;
    if (r->status == 410) {
      yhc__instance_end_routine(i, "%s did not approve the agreement: %s", i->provider_name, r->error);
      return;
    }
    if (waited >= (uint64_t)i->approval_ms) {
      yhc__instance_end_routine(i, "%s did not approve the agreement within approval_timeout_ms (%d ms)",
                                i->provider_name, i->approval_ms);
      return;
    }
    if (r->status == 408 || yhc__reply_transient(r)) { /* not yet: wait again */
      if (r->status == 408) yhc__instance_wait(i);
      else yhc__timer_start(i->g->loop, &i->retry_timer, 1000, yhc__instance_wait_again, i);
      return;
    }
    yhc__instance_fail_reply(i, r);
    return;
  }
  i->approved = 1;
  yhc__instance_register_agreement(i);
  yhc__instance_create_activity(i);
}

static void yhc__instance_wait(yhc__instance *i) {
  char path[256];
  uint64_t waited = yhc_loop_now(i->g->loop) - i->wait_since;
  uint64_t left = waited < (uint64_t)i->approval_ms ? (uint64_t)i->approval_ms - waited : 0;
  int secs = (int)YHC__MAX(YHC__MIN((left + 999) / 1000, 15), 1);
  snprintf(path, sizeof path, "/market-api/v1/agreements/%s/wait?timeout=%d", i->agreement_id, secs);
  i->call = yhc__api(i->g, "POST", path, NULL, secs * 1000 + 5000, yhc__instance_waited, i);
}

static void yhc__instance_wait_again(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  if (i->state == YHC__I_AGREEING && !i->call) yhc__instance_wait(i);
}

static void yhc__instance_confirmed(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  i->call = 0;
  if (r->err) {
    yhc__instance_fail_reply(i, r);
    return;
  }
  i->confirmed = 1;
  i->wait_since = yhc_loop_now(i->g->loop);
  yhc__instance_wait(i);
}

static void yhc__instance_agreement_created(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  char path[256];
  if (r->status == 404) { /* the draft is gone (expired, or a restarted daemon lost it): nobody's failure */
    i->call = 0;
    yhc__instance_end_routine(i, "%s", r->error);
    return;
  }
  if (yhc__instance_take_id(i, r, r->json, "POST /market-api/v1/agreements", i->agreement_id,
                            sizeof i->agreement_id))
    return;
  snprintf(path, sizeof path, "/market-api/v1/agreements/%s/confirm", i->agreement_id);
  i->call = yhc__api(i->g, "POST", path, NULL, 30000, yhc__instance_confirmed, i);
}

/* Starts an instance from a provider's draft proposal. */
static void yhc__instance_begin(yhc__instance *i) {
  char body[YHC__ID_MAX + 96], valid_to[40];
  i->valid_to_ms = yhc__wall_ms() + (uint64_t)i->lifetime_s * 1000u;
  yhc__rfc3339(i->valid_to_ms, valid_to);
  i->ip_host = yhc__golem_take_ip(i->g);
  if (i->ip_host < 0) {
    yhc__instance_fail(i, "no free address left in the VPN");
    return;
  }
  snprintf(i->ip, sizeof i->ip, "192.168.0.%d", i->ip_host);
  i->state = YHC__I_AGREEING;
  snprintf(body, sizeof body, "{\"proposalId\":\"%s\",\"validTo\":\"%s\"}", i->proposal_id, valid_to);
  i->call = yhc__api(i->g, "POST", "/market-api/v1/agreements", body, 30000, yhc__instance_agreement_created, i);
}

/* ---- stop: tunnels first, then activity, node, agreement (PROTOCOL.md §7) */

static void yhc__instance_stop_step(yhc__instance *i);

static void yhc__instance_stop_reply(void *ctx, const yhc__reply *r) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  i->call = 0;
  if (r->err == YHC_ERR_CANCELLED) return;
  if (r->err) yhc__log(i->g->loop, YHC_LOG_DEBUG, "stopping %s: %s", i->service, r->error);
  yhc__instance_stop_step(i);
}

static void yhc__instance_stop_step(yhc__instance *i) {
  yhc__golem *g = i->g;
  char path[300];
  if (i->activity_id[0]) {
    snprintf(path, sizeof path, "/activity-api/v1/activity/%s?timeout=10", i->activity_id);
    i->activity_id[0] = 0;
    i->call = yhc__api(g, "DELETE", path, NULL, 20000, yhc__instance_stop_reply, i);
    return;
  }
  if (i->node_held) {
    /* another service's instance may live on the same provider: its node stays */
    i->node_held = 0;
    if (yhc__golem_node_release(g, i->provider_id) && g->network_id[0]) {
      snprintf(path, sizeof path, "/net-api/v1/net/%s/nodes/%s", g->network_id, i->provider_id);
      i->call = yhc__api(g, "DELETE", path, NULL, 20000, yhc__instance_stop_reply, i);
      return;
    }
  }
  if (i->confirmed && !i->approved && i->agreement_id[0]) {
    /* a pending agreement would otherwise stay on the daemon (and hold the provider) until
       its validTo */
    i->confirmed = 0;
    snprintf(path, sizeof path, "/market-api/v1/agreements/%s/cancel", i->agreement_id);
    i->call = yhc__api(g, "POST", path, "{\"message\":\"No longer needed\"}", 20000, yhc__instance_stop_reply, i);
    return;
  }
  if (i->agreement_id[0] && i->agreement && !i->agreement->terminated) {
    char body[200];
    i->agreement->terminated = 1;
    snprintf(path, sizeof path, "/market-api/v1/agreements/%s/terminate", i->agreement_id);
    if (i->agreement->term_reason[0]) /* we refused a debit note or the budget ran out: say so */
      i->call = yhc__api(g, "POST", path, i->agreement->term_reason, 20000, yhc__instance_stop_reply, i);
    if (i->call) return;
    snprintf(body, sizeof body, "{\"message\":\"%s\",\"golem.requestor.code\":\"%s\"}",
             i->failed ? "Service failed" : "Work cancelled", i->failed ? "ServiceFailed" : "Cancelled");
    i->call = yhc__api(g, "POST", path, body, 20000, yhc__instance_stop_reply, i);
    return;
  }
  if (i->agreement) {
    if (!i->agreement->ended_ms) i->agreement->ended_ms = yhc__wall_ms();
    i->agreement->owner = NULL;
  } else if (i->agreement_id[0] && i->state == YHC__I_STOPPING && !i->failed) {
    /* an agreement created but never approved needs no invoice */
  }
  if (i->ip_host > 0) {
    yhc__golem_release_ip(g, i->ip_host);
    i->ip_host = 0;
  }
  i->state = YHC__I_STOPPED;
  if (!i->failed)
    yhc__instance_emit(i, YHC_EV_SERVICE_STOPPED, 0, "%s on %s stopped%s%s", i->service,
                       i->provider_name[0] ? i->provider_name : "(provider)", i->routine ? ": " : "",
                       i->routine ? i->why : "");
  i->hooks->ended(i);
}

/* Ends the instance: requests still on its tunnels were already moved (by the cluster, which
   drains first) or are failed here and retried elsewhere by their completion hook. */
static void yhc__instance_stop(yhc__instance *i) {
  yhc__golem *g = i->g;
  if (i->state >= YHC__I_STOPPING) return;
  i->state = YHC__I_STOPPING;
  yhc__api_cancel(g, &i->call);
  yhc__api_cancel(g, &i->poll_call);
  yhc__timer_stop(g->loop, &i->poll_timer);
  yhc__timer_stop(g->loop, &i->stall_timer);
  yhc__instance_live_close(i);
  yhc__timer_stop(g->loop, &i->drain_timer);
  yhc__timer_stop(g->loop, &i->expiry_timer);
  yhc__timer_stop(g->loop, &i->fail_timer);
  yhc__timer_stop(g->loop, &i->startup_timer);
  yhc__timer_stop(g->loop, &i->retry_timer);
  yhc__timer_stop(g->loop, &i->vanish_timer);
  yhc__instance_probe_close(i);
  if (i->origin) {
    yhc__host *h = i->origin;
    i->origin = NULL;
    if (i->cut_by_close)
      yhc__host_abort(h, YHC_ERR_SHUTDOWN, "the session closed before the request finished (close_timeout_ms)");
    else
      yhc__host_abort(h, YHC_ERR_SERVICE_FAILED, i->failed ? i->why : "the service instance was stopped");
    yhc__host_free(h);
  }
  if (i->agreement && i->agreement_id[0] && i->agreement->terminated && !i->agreement->ended_ms)
    i->agreement->ended_ms = yhc__wall_ms();
  yhc__instance_stop_step(i);
}

/* The session's close ran out of time: the stop sequence ends where it is, and what it left
   on the daemon is named. Ends the instance (the cluster frees it). */
static void yhc__instance_abandon(yhc__instance *i) {
  yhc__golem *g = i->g;
  if (i->state < YHC__I_STOPPING) {
    i->cut_by_close = 1;
    yhc__instance_stop(i);
    if (i->state == YHC__I_STOPPED) return; /* the stop needed no daemon call: already ended */
  }
  yhc__api_cancel(g, &i->call);
  if (i->state == YHC__I_STOPPED) return;
  if (i->agreement && i->agreement_id[0])
    yhc__golem_left(g, "agreement %.64s with %.40s: stop cut short (%s)", i->agreement_id, i->provider_name,
                    i->activity_id[0] ? "activity not destroyed, agreement not terminated"
                    : !i->agreement->terminated ? "agreement not terminated" : "termination not confirmed");
  else if (i->confirmed && !i->approved)
    yhc__golem_left(g, "pending agreement %.64s with %.40s not cancelled", i->agreement_id, i->provider_name);
  if (i->node_held) {
    i->node_held = 0;
    if (yhc__golem_node_release(g, i->provider_id)) yhc__golem_left(g, "VPN node %.42s not removed", i->provider_id);
  }
  if (i->agreement) {
    if (!i->agreement->ended_ms) i->agreement->ended_ms = yhc__wall_ms();
    i->agreement->invoice_done = 1; /* not waited for any more */
    i->agreement->owner = NULL;
  }
  if (i->ip_host > 0) {
    yhc__golem_release_ip(g, i->ip_host);
    i->ip_host = 0;
  }
  i->state = YHC__I_STOPPED;
  i->hooks->ended(i);
}

static void yhc__instance_free(yhc__instance *i) {
  yhc__instance_probe_close(i);
  yhc__api_cancel(i->g, &i->call);
  yhc__api_cancel(i->g, &i->poll_call);
  yhc__timer_stop(i->g->loop, &i->poll_timer);
  yhc__timer_stop(i->g->loop, &i->stall_timer);
  yhc__instance_live_close(i);
  yhc__timer_stop(i->g->loop, &i->drain_timer);
  yhc__timer_stop(i->g->loop, &i->expiry_timer);
  yhc__timer_stop(i->g->loop, &i->fail_timer);
  yhc__timer_stop(i->g->loop, &i->startup_timer);
  yhc__timer_stop(i->g->loop, &i->retry_timer);
  yhc__timer_stop(i->g->loop, &i->vanish_timer);
  if (i->agreement) i->agreement->owner = NULL;
  YHC_FREE(i->startup_cmds);
  YHC_FREE(i);
}

/* ---- the startup context the user's callback fills */

static int yhc__ctx_append(yhc_ctx *ctx, const char *json, size_t len) {
  if (ctx->failed) return -1;
  if (yhc_buf_append(&ctx->cmds, ctx->count ? "," : "[", 1) || yhc_buf_append(&ctx->cmds, json, len)) {
    ctx->failed = 1;
    return -1;
  }
  ctx->count++;
  return 0;
}

YHCDEF int yhc_ctx_command(yhc_ctx *ctx, const char *command_json) {
  yhc_json_doc *d;
  yhc_error e;
  int rc;
  if (!ctx || !command_json) return -1;
  d = yhc_json_parse(command_json, strlen(command_json), NULL, &e);
  if (!d || yhc_json_typeof(yhc_json_root(d)) != YHC_JSON_OBJECT) {
    yhc_json_free(d);
    return -1;
  }
  yhc_json_free(d);
  rc = yhc__ctx_append(ctx, command_json, strlen(command_json));
  return rc;
}

YHCDEF int yhc_ctx_run(yhc_ctx *ctx, const char *const *argv) {
  yhc_buf b;
  yhc_jw w;
  int rc, k;
  if (!ctx || !argv || !argv[0]) return -1;
  memset(&b, 0, sizeof b);
  yhc_jw_init(&w, &b);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "run");
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "entry_point");
  yhc_jw_str(&w, argv[0]);
  yhc_jw_key(&w, "args");
  yhc_jw_arr_begin(&w);
  for (k = 1; argv[k]; k++) yhc_jw_str(&w, argv[k]);
  yhc_jw_arr_end(&w);
  yhc_jw_key(&w, "capture");
  {
    static const char capture[] = "{\"stdout\":{\"atEnd\":{}},\"stderr\":{\"atEnd\":{}}}";
    yhc_jw_raw(&w, capture, sizeof capture - 1);
  }
  yhc_jw_obj_end(&w);
  yhc_jw_obj_end(&w);
  rc = yhc_jw_finish(&w) ? -1 : yhc__ctx_append(ctx, b.ptr, b.len);
  yhc_buf_free(&b);
  return rc;
}

/* ==== Cluster scheduler =========================================================== */
/* Owns: everything behind one service URL -- its demand and negotiation (offers scored,
   countered, drafts pooled, the cheapest chosen), its instances, its bounded FIFO of
   requests, dispatch to the ready instance with the least in flight, the size (a number, a
   function, or the auto-balancer), scale up/down without cutting requests, and failover:
   a failed instance's requests go back to the front of the queue and its provider is
   avoided. Every request ends exactly once.

   Dispatch runs on events (a request queued, an instance ready, a request done), never on a
   tick; the one-second timer only re-evaluates size functions and the balancer. */

typedef struct yhc__offer {
  char provider_id[64];
  char provider_name[64];
  char offer_id[YHC__ID_MAX];   /* the provider's Initial proposal */
  char counter_id[YHC__ID_MAX]; /* ours */
  char draft_id[YHC__ID_MAX];   /* the provider's answer: what an agreement is made from */
  yhc__glm coeff_duration, coeff_cpu, coeff_start; /* exact, from the offer's text */
  int threads;
  int interval_s, payment_timeout_s; /* mid-agreement payment terms we countered with, 0 = none */
  yhc__glm score;               /* expected GLM for an hour: ranking only, never paid from */
  int state;                    /* 0 countering, 1 countered, 2 draft */
  uint64_t at_ms;
  uint64_t expires_ms;          /* wall clock: golem.srv.comp.expiration in our counter */
  int64_t accept_timeout;       /* the debit-note accept timeout we counter with */
  int busy;                     /* refused for now (not final): the provider may answer later */
  struct yhc__offer *next;
} yhc__offer;

enum { YHC__SIZE_INT, YHC__SIZE_FN, YHC__SIZE_AUTO };

#define YHC__MAX_NEGOTIATIONS 64 /* offers countered or held as drafts, per cluster */

#define YHC__LAT_N 1024

struct yhc_cluster {
  yhc__golem *g;
  int full;                     /* the last pick found no instance with room; only a request
                                   ending or an instance turning ready makes room, so until then
                                   a new request need not walk every instance to learn it */
  yhc_http *plain;              /* for the image registry */
  char url[128];
  char host[128];
  int port;
  yhc_service_desc d;           /* strings below are our copies */
  char *image_hash, *image_url, *extra_props, *extra_cons;
  char task_package[600];
  int image_state;              /* 0 none, 1 resolving, 2 ok, 3 failed */
  uint64_t image_call;
  const char *repo;             /* the session's image_repo */
  yhc__timer image_timer;
  /* session settings */
  int lifetime_s, renew_s, offer_window_ms, drain_ms, state_poll_ms, tunnel_dead_ms, concurrency;
  int offer_window_strict;
  int mid_payments;             /* negotiate debit-note interval and payment timeout */
  int budget_blocked;           /* the last draft was not signed for the budget: requests end */
  int max_retries, idempotent_only, timeout_ms;
  int vanish_ms, startup_ms, approval_ms, max_startup_failures;
  size_t max_queue;
  yhc__glm max_cpu_hour, max_env_hour, max_start; /* price limits, exact */
  /* market */
  char sub_id[YHC__ID_MAX];
  int demand_state;             /* 0 none, 1 subscribing, 2 active, 3 unsubscribing */
  uint64_t demand_call, collect_call;
  uint64_t subscribed_ms, last_progress_ms;
  uint64_t subscribe_at;        /* loop ms: not before (after a failed subscribe) */
  int subscribe_failed;
  yhc__offer *offers;
  char **avoid;
  size_t navoid;
  /* instances */
  yhc__instance *instances;
  yhc__instance_hooks hooks;
  int lost;                     /* instances not replaced (on_stop = ignore) */
  int failed_cluster;
  char fail_msg[420];
  char last_failure[320];       /* the last instance failure, for timeouts' messages */
  int startup_failures;         /* instances that failed at startup in a row */
  int renting_stopped;          /* max_startup_failures reached: no renting until set_size */
  char startup_error[440];
  uint64_t image_failed_ms;     /* when the image lookup failed (retried later) */
  int image_tries;
  /* size */
  int size_mode, size_int;
  yhc_size_fn size_fn;
  void *size_user;
  yhc_autoscale_desc auto_d;
  int auto_size;
  uint64_t auto_changed_ms, auto_idle_since_ms;
  yhc__timer tick;
  /* user code of the cluster runs from these, at the top of the loop's dispatch: the size
     function (the scheduler uses its last answer) and the startup functions */
  yhc__timer rethink, startup_timer;
  int size_fn_value, rethinking;
  yhc__timer collect_retry;
  /* requests */
  yhc__reqq q;
  size_t in_flight;
  uint64_t completed, failed_n, retried;
  double lat[YHC__LAT_N];
  size_t nlat, lat_pos;
  /* where the time went: waiting in the queue, then on a provider; and the bytes */
  yhc__hist total_hist, queue_hist, service_hist;
  uint64_t queue_us_sum, service_us_sum, timed_n;
  uint64_t bytes_out, bytes_in;
  yhc__glm spent;
  int instances_failed;
  int closing;
  void (*on_idle)(yhc_cluster *c);   /* the session's close watcher */
  yhc_cluster *next;
};

static void yhc__cluster_dispatch(yhc_cluster *c);
static void yhc__cluster_reconcile(yhc_cluster *c);
static void yhc__demand_subscribe(yhc_cluster *c);

/* ---- request queue */

static void yhc__cluster_unpark(yhc__req *r) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, r->owner);
  yhc__reqq_remove(&c->q, r);
}

static void yhc__cluster_park(yhc_cluster *c, yhc__req *r, int front) {
  r->where = YHC__REQ_PARKED;
  r->owner = c;
  r->unpark = yhc__cluster_unpark;
  yhc__reqq_push(&c->q, r, front);
}

static int yhc__cluster_target(yhc_cluster *c);

static void yhc__cluster_record_latency(yhc_cluster *c, double ms) {
  c->lat[c->lat_pos] = ms;
  c->lat_pos = (c->lat_pos + 1) % YHC__LAT_N;
  if (c->nlat < YHC__LAT_N) c->nlat++;
}

/* Counts an answered request: result, latency split into queue wait and service time (the
   last attempt's; earlier attempts count as waiting), bytes each way. */
static void yhc__cluster_account(yhc_cluster *c, yhc__instance *i, const yhc__req *r) {
  uint64_t now = yhc_loop_now(c->g->loop);
  uint64_t total = now - r->submitted_ms;
  uint64_t service = r->dispatched_ms >= r->submitted_ms && r->dispatched_ms ? now - r->dispatched_ms : 0;
  if (service > total) service = total;
  c->bytes_out += r->wire.len;
  c->bytes_in += r->head.len + r->body_total;
  if (r->err_code) {
    c->failed_n++;
    return;
  }
  c->completed++;
  yhc__cluster_record_latency(c, (double)total);
  yhc__hist_add(&c->total_hist, total * 1000u);
  yhc__hist_add(&c->queue_hist, (total - service) * 1000u);
  yhc__hist_add(&c->service_hist, service * 1000u);
  c->queue_us_sum += (total - service) * 1000u;
  c->service_us_sum += service * 1000u;
  c->timed_n++;
  if (i) {
    i->served++;
    yhc__hist_add(&i->service_hist, service * 1000u);
  }
}

/* Errors that say "this provider could not serve it", as opposed to the request's own
   deadline or a cancellation: those move the request elsewhere. */
static int yhc__retryable_error(const yhc__req *r) {
  if (r->deadline_hit || r->streamed) return 0; /* a streamed answer cannot be taken back */
  switch (r->err_code) {
  case YHC_ERR_CLOSED: case YHC_ERR_IO: case YHC_ERR_CONNECT: case YHC_ERR_TIMEOUT:
  case YHC_ERR_WEBSOCKET: case YHC_ERR_HTTP_STATUS: case YHC_ERR_PROTOCOL:
  case YHC_ERR_SERVICE_FAILED: case YHC_ERR_TLS:
    return 1;
  default:
    return 0;
  }
}

/* A request's deadline runs from its submission to its one answer, through the queue,
   retries and failover. Its answer names where it was and what went wrong last. */
static void yhc__cluster_req_deadline(void *ctx) {
  yhc__req *r = YHC__CAST(yhc__req *, ctx);
  yhc_cluster *c = YHC__CAST(yhc_cluster *, r->owner);
  yhc__instance *i = YHC__CAST(yhc__instance *, r->slot), *it;
  char where[400], daemon[300];
  int ready = 0, starting = 0;
  r->deadline_hit = 1;
  if (!c) {
    yhc__req_fail(r, YHC_ERR_TIMEOUT, "request timed out after %d ms", r->timeout_ms);
    return;
  }
  for (it = c->instances; it; it = it->next) {
    if (it->state == YHC__I_READY && !it->draining) ready++;
    else if (it->state < YHC__I_READY) starting++;
  }
  if (i)
    snprintf(where, sizeof where, "in flight on %s (%s)", i->provider_name, i->provider_id);
  else
    snprintf(where, sizeof where, "queued in %s (%d ready, %d starting)", c->url, ready, starting);
  daemon[0] = 0;
  if (c->g->down_since)
    snprintf(daemon, sizeof daemon, "; the yagna daemon is unreachable since %llu ms: %.200s",
             (unsigned long long)(yhc_loop_now(c->g->loop) - c->g->down_since), c->g->down_why);
  yhc__req_fail(r, c->g->down_since ? YHC_ERR_YAGNA : YHC_ERR_TIMEOUT, "request timed out after %d ms, %s%s%s%.200s",
                r->timeout_ms, where, daemon, c->last_failure[0] ? "; last instance failure: " : "", c->last_failure);
}

/* Completing a request stops its timer; one going back to the queue gets what is left. */
static void yhc__cluster_rearm_deadline(yhc_cluster *c, yhc__req *r) {
  uint64_t now = yhc_loop_now(c->g->loop), end;
  if (r->timeout_ms <= 0) return;
  end = r->submitted_ms + (uint64_t)r->timeout_ms;
  yhc__timer_start(c->g->loop, &r->deadline, end > now ? end - now : 0, yhc__cluster_req_deadline, r);
}

static int yhc__method_of_wire_idempotent(const yhc__req *r) {
  static const char *const safe[] = {"GET ", "HEAD ", "OPTIONS ", "TRACE ", "PUT ", "DELETE "};
  size_t k;
  for (k = 0; k < sizeof safe / sizeof *safe; k++)
    if (r->wire.len > strlen(safe[k]) && !memcmp(r->wire.ptr, safe[k], strlen(safe[k]))) return 1;
  return 0;
}

/* The request's tunnel socket broke under it (not an answer, not its deadline). */
static int yhc__tunnel_broke(const yhc__req *r) {
  return r->err_code == YHC_ERR_IO || r->err_code == YHC_ERR_CLOSED;
}

/* Completion hook of every request a cluster owns. */
static void yhc__cluster_req_done(yhc__req *r) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, r->owner);
  yhc__instance *i = YHC__CAST(yhc__instance *, r->slot);
  if (i) {
    i->in_flight--;
    c->in_flight--;
    c->full = 0;
    r->slot = NULL;
    if (!r->err_code) yhc__instance_request_answered(i); /* a failed tunnel is no sign of life */
    if (!r->err_code) i->conn_failures = 0;
    else i->failed_n++;
  }
  /* a broken tunnel: is the daemon there? (dispatch waits for the answer, so that an outage
     does not spend every request's attempts on tunnels that cannot work) */
  if (r->err_code && i && yhc__tunnel_broke(r)) yhc__golem_probe(c->g);
  if (r->err_code && i && yhc__retryable_error(r) && !c->failed_cluster && !c->closing) {
    int safe = !c->idempotent_only || !r->sent || yhc__method_of_wire_idempotent(r);
    int may = r->attempts < c->max_retries && safe;
    if (c->g->down_since && safe) {
      /* the daemon is away: the request waits for it (or its deadline), no attempt counted */
      yhc__req_reset_response(r);
      r->sent = 0;
      yhc__cluster_park(c, r, 1);
      yhc__cluster_rearm_deadline(c, r);
      return;
    }
    if (!r->failed_on && (r->failed_on = YHC__CAST(char *, yhc__calloc(YHC__FAILED_ON_MAX))) == NULL)
      yhc__emitf(c->g, YHC_EV_ERROR, c->url, "out of memory noting a failed provider");
    if (r->failed_on) {
      size_t fl = strlen(r->failed_on);
      if (fl + strlen(i->provider_name) + 3 < YHC__FAILED_ON_MAX)
        snprintf(r->failed_on + fl, YHC__FAILED_ON_MAX - fl, "%s%s", fl ? ", " : "", i->provider_name);
    }
    if (r->err_code != YHC_ERR_SERVICE_FAILED) yhc__instance_check_soon(i);
    if (may) {
      /* back to the FRONT: it has waited longest */
      r->attempts++;
      c->retried++;
      yhc__emit_provider(c->g, YHC_EV_REQUEST_RETRIED, c->url, i->provider_id, i->provider_name, r->id,
                         "request %llu moved off %s (%s), attempt %d", (unsigned long long)r->id,
                         i->provider_name, yhc__req_msg(r), r->attempts + 1);
      yhc__req_reset_response(r);
      r->sent = 0;
      yhc__cluster_park(c, r, 1);
      yhc__cluster_rearm_deadline(c, r);
      yhc__cluster_reconcile(c);
      yhc__cluster_dispatch(c);
      return;
    }
    {
      char msg[YHC_ERROR_MSG_MAX + 200];
      snprintf(msg, sizeof msg, "request failed on %d provider%s (%.150s): %.200s", r->attempts + 1,
               r->attempts ? "s" : "", r->failed_on ? r->failed_on : "", yhc__req_msg(r));
      yhc__req_set_error(r, r->attempts >= c->max_retries ? YHC_ERR_RETRIES : r->err_code, "%s", msg);
    }
  }
  yhc__cluster_account(c, i, r);
  r->owner = NULL;
  r->unpark = NULL;
  yhc__req_deliver_user(r);
  if (i && i->draining && !i->in_flight && i->state == YHC__I_READY) yhc__instance_stop(i);
  yhc__cluster_dispatch(c);
  if (c->closing && c->on_idle) c->on_idle(c);
}

/* The least busy ready instance with room (the first of them). */
static yhc__instance *yhc__cluster_pick(yhc_cluster *c) {
  yhc__instance *i, *best = NULL;
  if (c->full) return NULL;
  for (i = c->instances; i; i = i->next) {
    if (i->state != YHC__I_READY || i->draining || i->tunnel_broken || i->in_flight >= i->concurrency) continue;
    if (!best || i->in_flight < best->in_flight) best = i;
    if (!best->in_flight) break; /* none can be less busy */
  }
  c->full = !best;
  return best;
}

static void yhc__cluster_dispatch(yhc_cluster *c) {
  /* during an outage (or while asking whether there is one) requests wait: every tunnel goes
     through the daemon */
  if (c->g->down_since || c->g->probe_call) return;
  while (c->q.head) {
    yhc__instance *i = yhc__cluster_pick(c);
    yhc__req *r = c->q.head;
    if (!i) return;
    yhc__cluster_unpark(r);
    r->where = YHC__REQ_NEW;
    r->slot = i;
    r->dispatched_ms = yhc_loop_now(c->g->loop);
    i->in_flight++;
    c->in_flight++;
    yhc__instance_request_sent(i);
    if (c->g->log_events > 1 || c->g->on_event)
      yhc__emit_provider(c->g, YHC_EV_REQUEST_FORWARDED, c->url, i->provider_id, i->provider_name, r->id,
                         "request %llu forwarded to %s", (unsigned long long)r->id, i->provider_name);
    yhc__host_submit(i->origin, r, 0);
  }
}

/* ---- offers, negotiation, demand */


static void yhc__cluster_reject(yhc_cluster *c, yhc_str proposal_id, const char *provider_id, const char *provider,
                                const char *why) {
  char path[400], body[300];
  yhc_buf b;
  yhc_jw w;
  (void)body;
  if (!yhc__id_ok(proposal_id)) return;
  memset(&b, 0, sizeof b);
  yhc_jw_init(&w, &b);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "message");
  yhc_jw_str(&w, why);
  yhc_jw_obj_end(&w);
  snprintf(path, sizeof path, "/market-api/v1/demands/%s/proposals/%.*s/reject", c->sub_id,
           (int)proposal_id.len, proposal_id.ptr);
  if (!yhc_jw_finish(&w)) yhc__api(c->g, "POST", path, b.ptr, 15000, NULL, NULL);
  yhc_buf_free(&b);
  yhc__emit_provider(c->g, YHC_EV_OFFER_REJECTED, c->url, provider_id, provider, 0, "offer from %s rejected: %s",
                     provider, why);
}

static int yhc__cluster_avoids(const yhc_cluster *c, const char *provider_id) {
  size_t k;
  yhc__instance *i;
  for (k = 0; k < c->navoid; k++)
    if (!strcmp(c->avoid[k], provider_id)) return 1;
  for (i = c->instances; i; i = i->next)
    if (i->state < YHC__I_STOPPING && !strcmp(i->provider_id, provider_id)) return 1;
  return 0;
}

static void yhc__cluster_avoid(yhc_cluster *c, const char *provider_id) {
  char **n;
  if (yhc__cluster_avoids(c, provider_id) && c->navoid) {
    size_t k;
    for (k = 0; k < c->navoid; k++)
      if (!strcmp(c->avoid[k], provider_id)) return;
  }
  n = YHC__CAST(char **, YHC_REALLOC(c->avoid, (c->navoid + 1) * sizeof *n));
  if (!n) return;
  c->avoid = n;
  c->avoid[c->navoid] = yhc__strdup(provider_id);
  if (c->avoid[c->navoid]) c->navoid++;
}

/* Demand properties: ours + the payment decorations + the service's extras. */
static int yhc__cluster_write_props(yhc_cluster *c, yhc_jw *w, const yhc__offer *counter_for,
                                    const yhc_json *offer_props) {
  yhc__golem *g = c->g;
  const yhc_json *p;
  yhc_jw_obj_begin(w);
  yhc_jw_key(w, "golem.srv.comp.expiration");
  /* a counter carries the expiration its offer records: the provider enforces exactly it */
  yhc_jw_int(w, (int64_t)(counter_for ? counter_for->expires_ms : yhc__wall_ms() + (uint64_t)c->lifetime_s * 1000u));
  yhc_jw_key(w, "golem.srv.caps.multi-activity");
  yhc_jw_bool(w, 1);
  yhc_jw_key(w, "golem.node.debug.subnet");
  yhc_jw_str(w, g->subnet);
  for (p = yhc_json_first(yhc_json_get(yhc_json_root(g->decorations), "properties")); p; p = yhc_json_next(p)) {
    yhc_str k;
    const yhc_json *v = yhc_json_get(p, "value");
    k.ptr = NULL;
    k.len = 0;
    k = yhc_json_str(yhc_json_get(p, "key"), k);
    if (!k.len || !v) continue;
    yhc_jw_keyn(w, k.ptr, k.len);
    yhc_jw_value(w, v);
  }
  yhc_jw_key(w, "golem.srv.comp.task_package");
  yhc_jw_str(w, c->task_package);
  yhc_jw_key(w, "golem.srv.comp.vm.package_format");
  yhc_jw_str(w, "gvmkit-squash");
  yhc_jw_key(w, "golem.com.payment.debit-notes.accept-timeout?");
  yhc_jw_int(w, counter_for ? counter_for->accept_timeout : 240);
  (void)offer_props;
  if (counter_for) {
    yhc_jw_key(w, "golem.com.payment.chosen-platform");
    yhc_jw_str(w, g->platform);
    if (counter_for->interval_s) {
      yhc_jw_key(w, "golem.com.scheme.payu.debit-note.interval-sec?");
      yhc_jw_int(w, counter_for->interval_s);
    }
    if (counter_for->payment_timeout_s) {
      yhc_jw_key(w, "golem.com.scheme.payu.payment-timeout-sec?");
      yhc_jw_int(w, counter_for->payment_timeout_s);
    }
  }
  if (c->extra_props) {
    yhc_error e;
    yhc_json_doc *x = yhc_json_parse(c->extra_props, strlen(c->extra_props), NULL, &e);
    for (p = yhc_json_first(yhc_json_root(x)); p; p = yhc_json_next(p)) {
      yhc_str k = yhc_json_key(p);
      yhc_jw_keyn(w, k.ptr, k.len);
      yhc_jw_value(w, p);
    }
    yhc_json_free(x);
  }
  yhc_jw_obj_end(w);
  return 0;
}

static void yhc__cluster_write_constraints(yhc_cluster *c, yhc_buf *b) {
  yhc__golem *g = c->g;
  const yhc_json *k;
  yhc_buf_printf(b, "(&(golem.node.debug.subnet=%s)", g->subnet);
  for (k = yhc_json_first(yhc_json_get(yhc_json_root(g->decorations), "constraints")); k; k = yhc_json_next(k)) {
    yhc_str s;
    s.ptr = NULL;
    s.len = 0;
    s = yhc_json_str(k, s);
    if (!s.len) continue;
    yhc_buf_appends(b, "\n\t");
    yhc_buf_append(b, s.ptr, s.len);
  }
  {
    char mem[32], storage[32]; /* %g would write the locale's decimal comma */
    yhc_buf_printf(b, "\n\t(golem.com.pricing.model=linear)\n\t(golem.inf.mem.gib>=%s)\n\t(golem.inf.storage.gib>=%s)"
                      "\n\t(golem.inf.cpu.threads>=%d)\n\t(golem.runtime.capabilities=vpn)\n\t(golem.runtime.name=vm)",
                   yhc__num_text(c->d.min_mem_gib, mem), yhc__num_text(c->d.min_storage_gib, storage), c->d.min_threads);
  }
  if (c->extra_cons && *c->extra_cons) {
    yhc_buf_appends(b, "\n\t");
    yhc_buf_appends(b, c->extra_cons);
  }
  yhc_buf_appends(b, ")");
}

static int yhc__cluster_demand_body(yhc_cluster *c, yhc_buf *out, const yhc__offer *counter_for,
                                    const yhc_json *offer_props) {
  yhc_jw w;
  yhc_buf cons;
  int rc;
  memset(&cons, 0, sizeof cons);
  yhc__cluster_write_constraints(c, &cons);
  yhc_jw_init(&w, out);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "properties");
  yhc__cluster_write_props(c, &w, counter_for, offer_props);
  yhc_jw_key(&w, "constraints");
  yhc_jw_strn(&w, cons.ptr ? cons.ptr : "", cons.len);
  yhc_jw_obj_end(&w);
  rc = yhc_jw_finish(&w);
  yhc_buf_free(&cons);
  return rc;
}

static void yhc__offer_unlink(yhc_cluster *c, yhc__offer *o) {
  yhc__offer **pp;
  for (pp = &c->offers; *pp; pp = &(*pp)->next) {
    if (*pp == o) {
      *pp = o->next;
      YHC_FREE(o);
      return;
    }
  }
}

typedef struct yhc__counter_ctx {
  yhc_cluster *c;
  yhc__offer *o;
} yhc__counter_ctx;

static void yhc__cluster_countered(void *ctx, const yhc__reply *r) {
  yhc__counter_ctx *cc = YHC__CAST(yhc__counter_ctx *, ctx);
  yhc_cluster *c = cc->c;
  yhc__offer *o = cc->o, *it;
  YHC_FREE(cc);
  for (it = c->offers; it && it != o; it = it->next) {}
  if (!it) return; /* dropped meanwhile */
  if (r->err) {
    if (r->err != YHC_ERR_CANCELLED) yhc__log(c->g->loop, YHC_LOG_INFO, "%s", r->error);
    yhc__offer_unlink(c, o);
    return;
  }
  {
    yhc_str id;
    id.ptr = NULL;
    id.len = 0;
    id = yhc_json_str(r->json, id);
    if (!yhc__id_ok(id)) {
      yhc__offer_unlink(c, o);
      return;
    }
    yhc__copy_id(o->counter_id, sizeof o->counter_id, id);
    o->state = 1;
  }
}

/* Counters `proposal_id` (the provider's Initial offer, or a draft grown old) with a fresh
   expiration, which the offer keeps: it is what the provider will enforce. */
static void yhc__cluster_counter(yhc_cluster *c, yhc__offer *o, const char *proposal_id) {
  yhc_buf body;
  char path[400];
  o->state = 0;
  o->busy = 0;
  o->expires_ms = yhc__wall_ms() + (uint64_t)c->lifetime_s * 1000u;
  memset(&body, 0, sizeof body);
  snprintf(path, sizeof path, "/market-api/v1/demands/%s/proposals/%s", c->sub_id, proposal_id);
  if (yhc__cluster_demand_body(c, &body, o, NULL) == 0) {
    yhc__counter_ctx *cc = YHC__NEW(yhc__counter_ctx);
    if (cc) {
      cc->c = c;
      cc->o = o;
      if (!yhc__api(c->g, "POST", path, body.ptr, 30000, yhc__cluster_countered, cc)) YHC_FREE(cc);
    }
  }
  yhc_buf_free(&body);
}

/* Providers refuse (finally) an agreement whose expiration is under 5 minutes away: a draft
   nearing that (5 minutes plus half of what the lifetime leaves beyond them, at most 2) is
   countered again with a fresh expiration, and a counter still unanswered that old is
   dropped. */
static int yhc__offer_aged(const yhc_cluster *c, const yhc__offer *o, uint64_t wall_now) {
  uint64_t floor_ms = 300000, beyond = (uint64_t)c->lifetime_s * 1000u;
  uint64_t need;
  beyond = beyond > floor_ms ? (beyond - floor_ms) / 2 : 0;
  need = floor_ms + YHC__MIN(beyond, 120000);
  /* an instance from it would be replaced at once (renew_s before the expiration) */
  if (need < (uint64_t)c->renew_s * 1000u + 2000u) need = (uint64_t)c->renew_s * 1000u + 2000u;
  return o->expires_ms && o->expires_ms < wall_now + need;
}

static void yhc__cluster_age_offers(yhc_cluster *c) {
  uint64_t now = yhc__wall_ms();
  yhc__offer *o, *next;
  if (c->demand_state != 2) return;
  for (o = c->offers; o; o = next) {
    next = o->next;
    if (o->state == 0 || !yhc__offer_aged(c, o, now)) continue;
    if (o->state == 2) {
      char draft[YHC__ID_MAX];
      snprintf(draft, sizeof draft, "%s", o->draft_id);
      yhc__cluster_counter(c, o, draft);
    } else {
      yhc__offer_unlink(c, o);
    }
  }
}

/* The offer's prices against the limits, exactly (18 decimals); why[] gets the reason, which
   goes to the daemon, so its numbers are written by yhc__glm_format, not the locale. */
static void yhc__offer_price_check(yhc_cluster *c, const yhc__glm *dur, const yhc__glm *cpu, const yhc__glm *start,
                                   char *why, size_t cap) {
  yhc__glm cpu_h = *cpu, dur_h = *dur;
  char n1[YHC__GLM_TEXT], n2[YHC__GLM_TEXT];
  int over_cpu = yhc__glm_muldiv(&cpu_h, 3600, 1) != YHC__GLM_OK || yhc__glm_cmp(&cpu_h, &c->max_cpu_hour) > 0;
  int over_dur = yhc__glm_muldiv(&dur_h, 3600, 1) != YHC__GLM_OK || yhc__glm_cmp(&dur_h, &c->max_env_hour) > 0;
  if (over_cpu)
    snprintf(why, cap, "CPU price %s GLM/h above the limit %s", yhc__glm_format(&cpu_h, 0, n1), yhc__glm_format(&c->max_cpu_hour, 0, n2));
  else if (over_dur)
    snprintf(why, cap, "price %s GLM/h above the limit %s", yhc__glm_format(&dur_h, 0, n1), yhc__glm_format(&c->max_env_hour, 0, n2));
  else if (yhc__glm_cmp(start, &c->max_start) > 0)
    snprintf(why, cap, "start price %s GLM above the limit %s", yhc__glm_format(start, 0, n1), yhc__glm_format(&c->max_start, 0, n2));
}

/* What an hour on the offer costs at full use of its threads: start + 3600 (dur + cpu threads),
   saturating (a saturated score only ranks last). */
static yhc__glm yhc__offer_score(const yhc__glm *dur, const yhc__glm *cpu, const yhc__glm *start, int threads) {
  yhc__glm score = *cpu, per_s = *dur;
  yhc__glm_muldiv(&score, (uint32_t)(threads > 0 ? threads : 1), 1);
  yhc__glm_add(&per_s, &score);
  yhc__glm_muldiv(&per_s, 3600, 1);
  score = *start;
  yhc__glm_add(&score, &per_s);
  return score;
}

/* Scores and answers an Initial offer: reject it with a reason, or counter it. */
static void yhc__cluster_offer(yhc_cluster *c, const yhc_json *proposal) {
  const yhc_json *props = yhc_json_get(proposal, "properties");
  const yhc_json *coeffs = yhc_json_get(props, "golem.com.pricing.model.linear.coeffs");
  const yhc_json *usage = yhc_json_get(props, "golem.com.usage.vector");
  yhc_str pid, issuer, name, scheme;
  char provider[64], pname[64], key[160], why[200];
  double mem, storage;
  yhc__glm gdur, gcpu, gstart;
  int threads, interval_s = 0, payment_timeout_s = 0;
  size_t k, nc;
  yhc__offer *o;
  yhc_buf body;
  pid.ptr = issuer.ptr = name.ptr = scheme.ptr = NULL;
  pid.len = issuer.len = name.len = scheme.len = 0;
  memset(&gdur, 0, sizeof gdur);
  gcpu = gstart = gdur;
  pid = yhc_json_str(yhc_json_get(proposal, "proposalId"), pid);
  issuer = yhc_json_str(yhc_json_get(proposal, "issuerId"), issuer);
  name = yhc_json_str(yhc_json_get(props, "golem.node.id.name"), name);
  if (!yhc__id_ok(pid) || !yhc__id_ok(issuer) || issuer.len >= sizeof provider) return;
  yhc__copy_id(provider, sizeof provider, issuer);
  snprintf(pname, sizeof pname, "%.*s", (int)YHC__MIN(name.len, 60), name.len ? name.ptr : provider);
  yhc__emit_provider(c->g, YHC_EV_OFFER_RECEIVED, c->url, provider, pname, 0, "offer from %s (%s)", pname,
                     provider);
  /* the checks yapapi's strategy makes, plus our price limits */
  scheme = yhc_json_str(yhc_json_get(props, "golem.com.scheme"), scheme);
  snprintf(key, sizeof key, "golem.com.payment.platform.%s.address", c->g->platform);
  nc = yhc_json_len(coeffs);
  why[0] = 0;
  if (c->failed_cluster || c->closing) snprintf(why, sizeof why, "no longer needed");
  else if (yhc__cluster_avoids(c, provider)) snprintf(why, sizeof why, "provider already used or failed in this session");
  else if (yhc_json_typeof(yhc_json_get(props, key)) != YHC_JSON_STRING) snprintf(why, sizeof why, "No common payment platform");
  else if (scheme.len && !yhc__str_eq(scheme, "payu")) snprintf(why, sizeof why, "payment scheme is not payu");
  else if (yhc_json_typeof(coeffs) != YHC_JSON_ARRAY || yhc_json_typeof(usage) != YHC_JSON_ARRAY ||
           nc != yhc_json_len(usage) + 1)
    snprintf(why, sizeof why, "no linear price over a usage vector");
  if (!why[0]) {
    for (k = 0; k + 1 < nc; k++) {
      yhc_str u, raw = yhc_json_raw_number(yhc_json_at(coeffs, k));
      yhc__glm exact;
      u.ptr = NULL;
      u.len = 0;
      u = yhc_json_str(yhc_json_at(usage, k), u);
      if (yhc__glm_parse(raw.ptr, raw.len, 0, &exact)) { snprintf(why, sizeof why, "negative or non-numeric price"); break; }
      if (yhc__str_eq(u, "golem.usage.duration_sec")) gdur = exact;
      else if (yhc__str_eq(u, "golem.usage.cpu_sec")) gcpu = exact;
      else if (!yhc__glm_is_zero(&exact)) { snprintf(why, sizeof why, "priced usage counter %.*s is unknown", (int)YHC__MIN(u.len, 60), u.ptr); break; }
    }
  }
  if (!why[0]) {
    yhc_str raw = yhc_json_raw_number(yhc_json_at(coeffs, nc ? nc - 1 : 0));
    if (yhc__glm_parse(raw.ptr, raw.len, 0, &gstart)) snprintf(why, sizeof why, "negative or non-numeric start price");
  }
  mem = yhc_json_num(yhc_json_get(props, "golem.inf.mem.gib"), -1);
  storage = yhc_json_num(yhc_json_get(props, "golem.inf.storage.gib"), -1);
  threads = (int)yhc_json_int(yhc_json_get(props, "golem.inf.cpu.threads"), 1);
  if (!why[0]) yhc__offer_price_check(c, &gdur, &gcpu, &gstart, why, sizeof why);
  if (!why[0]) {
    if ((mem >= 0 && mem + 1e-9 < c->d.min_mem_gib) || (storage >= 0 && storage + 1e-9 < c->d.min_storage_gib) ||
             threads < c->d.min_threads)
      snprintf(why, sizeof why, "not enough memory, storage or threads");
  }
  if (!why[0]) {
    /* the market is untrusted too: a flood of offers must not become a flood of
       negotiations (each one holds memory and a daemon call) */
    size_t open_n = 0;
    for (o = c->offers; o; o = o->next) open_n += strcmp(o->provider_id, provider) != 0;
    if (open_n >= YHC__MAX_NEGOTIATIONS) snprintf(why, sizeof why, "too many negotiations in progress");
  }
  if (!why[0]) {
    /* mid-agreement payments as yapapi negotiates them: for lifetimes of 5 h or more, with a
       provider that offers the interval key, its values clamped to at least 60 s and 5 h */
    const yhc_json *iv = yhc_json_get(props, "golem.com.scheme.payu.debit-note.interval-sec?");
    const yhc_json *pt = yhc_json_get(props, "golem.com.scheme.payu.payment-timeout-sec?");
    if (c->mid_payments && iv) {
      int64_t v = yhc_json_int(iv, 0), t = yhc_json_int(pt, 0);
      interval_s = (int)(v < 60 ? 60 : v > 86400 ? 86400 : v);
      if (pt) payment_timeout_s = (int)(t < 18000 ? 18000 : t > 86400 ? 86400 : t);
    }
    if (c->lifetime_s >= 36000 && !payment_timeout_s)
      snprintf(why, sizeof why, "no mid-agreement payments, which a lifetime of 10 h or more needs");
  }
  if (why[0]) {
    yhc__cluster_reject(c, pid, provider, pname, why);
    return;
  }
  o = YHC__NEW(yhc__offer);
  if (!o) return;
  snprintf(o->provider_id, sizeof o->provider_id, "%s", provider);
  snprintf(o->provider_name, sizeof o->provider_name, "%s", pname);
  yhc__copy_id(o->offer_id, sizeof o->offer_id, pid);
  o->coeff_duration = gdur;
  o->coeff_cpu = gcpu;
  o->coeff_start = gstart;
  o->threads = threads > 0 ? threads : 1;
  o->interval_s = interval_s;
  o->payment_timeout_s = payment_timeout_s;
  o->score = yhc__offer_score(&gdur, &gcpu, &gstart, o->threads);
  o->at_ms = yhc_loop_now(c->g->loop);
  {
    int64_t offered = yhc_json_int(yhc_json_get(props, "golem.com.payment.debit-notes.accept-timeout?"), 240);
    o->accept_timeout = offered < 30 ? 30 : offered;
  }
  /* one negotiation per provider: a newer offer replaces an older one */
  {
    yhc__offer *it = c->offers, *nx;
    for (; it; it = nx) {
      nx = it->next;
      if (!strcmp(it->provider_id, provider)) yhc__offer_unlink(c, it);
    }
  }
  o->next = c->offers;
  c->offers = o;
  (void)body;
  yhc__cluster_counter(c, o, o->offer_id);
}

static void yhc__cluster_draft(yhc_cluster *c, const yhc_json *proposal) {
  yhc_str prev, id;
  yhc__offer *o;
  prev.ptr = id.ptr = NULL;
  prev.len = id.len = 0;
  prev = yhc_json_str(yhc_json_get(proposal, "prevProposalId"), prev);
  id = yhc_json_str(yhc_json_get(proposal, "proposalId"), id);
  if (!yhc__id_ok(id)) return;
  for (o = c->offers; o; o = o->next) {
    if (o->state == 1 && yhc__str_eq(prev, o->counter_id)) {
      yhc__copy_id(o->draft_id, sizeof o->draft_id, id);
      o->state = 2;
      o->at_ms = yhc_loop_now(c->g->loop);
      c->last_progress_ms = o->at_ms;
      yhc__cluster_reconcile(c);
      return;
    }
  }
}

static void yhc__cluster_rejected(yhc_cluster *c, const yhc_json *ev) {
  yhc_str id, msg;
  yhc__offer *o;
  id.ptr = msg.ptr = NULL;
  id.len = msg.len = 0;
  id = yhc_json_str(yhc_json_get(ev, "proposalId"), id);
  msg = yhc_json_str(yhc_json_get(yhc_json_get(ev, "reason"), "message"), msg);
  for (o = c->offers; o; o = o->next) {
    if (yhc__str_eq(id, o->counter_id) || yhc__str_eq(id, o->offer_id) || yhc__str_eq(id, o->draft_id)) {
      /* a refusal that is not final (capacity, mostly) is kept by the provider, which answers
         it again once one of its agreements ends: the offer waits for that */
      int final = yhc_json_bool(yhc_json_get(yhc_json_get(ev, "reason"), "golem.proposal.rejection.is-final"), 1);
      yhc__emit_provider(c->g, YHC_EV_PROPOSAL_REJECTED, c->url, o->provider_id, o->provider_name, 0,
                         "%s rejected our proposal%s%s%.*s", o->provider_name,
                         final ? "" : " (not final: it may answer later)", msg.len ? ": " : "",
                         (int)YHC__MIN(msg.len, 120), msg.ptr);
      if (final || o->state != 1) yhc__offer_unlink(c, o);
      else o->busy = 1;
      return;
    }
  }
}

static void yhc__collect(yhc_cluster *c);
static void yhc__collect_again(void *ctx) { yhc__collect(YHC__CAST(yhc_cluster *, ctx)); }

static void yhc__collected(void *ctx, const yhc__reply *r) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, ctx);
  const yhc_json *ev;
  c->collect_call = 0;
  if (r->err == YHC_ERR_CANCELLED) return;
  if (r->err) {
    if (r->status == 404 || r->status == 410) {
      /* the subscription expired or vanished (a daemon restart too): its offers and drafts
         went with it; subscribe again (yapapi does the same) */
      yhc__offer *o;
      while ((o = c->offers) != NULL) yhc__offer_unlink(c, o);
      c->demand_state = 0;
      c->sub_id[0] = 0;
      yhc__cluster_reconcile(c);
      return;
    }
    /* a daemon hiccup or outage: ask again later rather than spinning */
    if (!c->g->down_since) yhc__log(c->g->loop, YHC_LOG_WARN, "%s", r->error);
    yhc__timer_start(c->g->loop, &c->collect_retry, yhc__golem_retry_ms(c->g), yhc__collect_again, c);
    return;
  } else {
    /* no more than we asked for (maxEvents): a daemon ignoring it cannot make us flood it with calls */
    size_t seen = 0;
    for (ev = yhc_json_first(r->json); ev && seen < 20; ev = yhc_json_next(ev), seen++) {
      yhc_str type, state;
      const yhc_json *p = yhc_json_get(ev, "proposal");
      type.ptr = state.ptr = NULL;
      type.len = state.len = 0;
      type = yhc_json_str(yhc_json_get(ev, "eventType"), type);
      if (yhc__str_eq(type, "ProposalEvent")) {
        state = yhc_json_str(yhc_json_get(p, "state"), state);
        if (yhc__str_eq(state, "Initial")) yhc__cluster_offer(c, p);
        else if (yhc__str_eq(state, "Draft")) yhc__cluster_draft(c, p);
      } else if (yhc__str_eq(type, "ProposalRejectedEvent")) {
        yhc__cluster_rejected(c, ev);
      }
    }
  }
  yhc__collect(c);
}

static void yhc__collect(yhc_cluster *c) {
  char path[300];
  if (c->collect_call || c->demand_state != 2) return;
  snprintf(path, sizeof path, "/market-api/v1/demands/%s/events?timeout=5&maxEvents=20", c->sub_id);
  c->collect_call = yhc__api(c->g, "GET", path, NULL, 20000, yhc__collected, c);
}

static void yhc__demand_subscribed(void *ctx, const yhc__reply *r) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, ctx);
  yhc_str id;
  c->demand_call = 0;
  if (r->err) {
    if (r->err == YHC_ERR_CANCELLED) return;
    c->demand_state = 0;
    /* during an outage the daemon-lost event said it all: one line, not one per try */
    if (!c->g->down_since || !c->subscribe_failed)
      yhc__emitf(c->g, YHC_EV_ERROR, c->url, "publishing the demand failed: %s", r->error);
    c->subscribe_failed = 1;
    c->subscribed_ms = yhc_loop_now(c->g->loop);
    c->subscribe_at = c->subscribed_ms + yhc__golem_retry_ms(c->g); /* retried by the tick, backing off */
    return;
  }
  c->subscribe_failed = 0;
  id.ptr = NULL;
  id.len = 0;
  id = yhc_json_str(r->json, id);
  if (!yhc__id_ok(id)) {
    c->demand_state = 0;
    yhc__emitf(c->g, YHC_EV_ERROR, c->url, "POST /market-api/v1/demands: answer is not a subscription id");
    return;
  }
  yhc__copy_id(c->sub_id, sizeof c->sub_id, id);
  c->demand_state = 2;
  c->subscribed_ms = c->last_progress_ms = yhc_loop_now(c->g->loop);
  yhc__emitf(c->g, YHC_EV_DEMAND_PUBLISHED, c->url, "demand %s published for %s", c->sub_id, c->url);
  yhc__collect(c);
}

static void yhc__demand_subscribe(yhc_cluster *c) {
  yhc_buf body;
  if (c->demand_state != 0 || c->g->state != YHC__G_READY || c->image_state != 2) return;
  if (yhc_loop_now(c->g->loop) < c->subscribe_at) return;
  memset(&body, 0, sizeof body);
  if (yhc__cluster_demand_body(c, &body, NULL, NULL) == 0) {
    c->demand_state = 1;
    c->demand_call = yhc__api(c->g, "POST", "/market-api/v1/demands", body.ptr, 30000, yhc__demand_subscribed, c);
  }
  yhc_buf_free(&body);
}

static void yhc__demand_unsubscribe(yhc_cluster *c) {
  char path[300];
  yhc__offer *o;
  yhc__api_cancel(c->g, &c->collect_call);
  yhc__api_cancel(c->g, &c->demand_call);
  while ((o = c->offers) != NULL) yhc__offer_unlink(c, o);
  if (c->demand_state == 2 && c->sub_id[0]) {
    snprintf(path, sizeof path, "/market-api/v1/demands/%s", c->sub_id);
    yhc__api(c->g, "DELETE", path, NULL, 15000, NULL, NULL);
  }
  c->demand_state = 0;
  c->sub_id[0] = 0;
}

/* ---- image */

/* Image lookup at the registry. A transient failure (no connection, a timeout, a 5xx) is
   tried again with a growing pause, up to 5 times; anything else, and the last try, ends the
   queued requests with the real cause. The lookup runs again on the next set_size, or a
   minute later (the tick). */
#define YHC__IMAGE_TRIES 5

static void yhc__image_resolve(yhc_cluster *c);

static void yhc__image_failed(yhc_cluster *c) {
  c->image_state = 3;
  c->image_failed_ms = yhc_loop_now(c->g->loop);
  yhc__emitf(c->g, YHC_EV_ERROR, c->url, "%s", c->fail_msg);
  while (c->q.head) yhc__req_fail(c->q.head, YHC_ERR_SERVICE_FAILED, "%s", c->fail_msg);
}

static void yhc__image_retry(void *ctx) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, ctx);
  if (c->image_state == 0 && !c->closing) yhc__image_resolve(c);
}

static void yhc__image_resolved(const yhc_response *resp, void *user) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, user);
  yhc_json_doc *d;
  yhc_error e;
  yhc_str url;
  int transient;
  c->image_call = 0;
  if (resp->err == YHC_ERR_CANCELLED) return;
  url.ptr = NULL;
  url.len = 0;
  transient = (resp->err && resp->err != YHC_ERR_NO_TLS && resp->err != YHC_ERR_URL && resp->err != YHC_ERR_TLS) ||
              resp->status >= 500 || resp->status == 408 || resp->status == 429;
  if (transient && ++c->image_tries < YHC__IMAGE_TRIES) {
    c->image_state = 0;
    yhc__log(c->g->loop, YHC_LOG_WARN, "image lookup for %s: %s (HTTP %d), trying again", c->url,
             resp->err ? resp->error : "", resp->status);
    yhc__timer_start(c->g->loop, &c->image_timer, (uint64_t)1000 << c->image_tries, yhc__image_retry, c);
    return;
  }
  if (resp->err == YHC_ERR_NO_TLS) {
    snprintf(c->fail_msg, sizeof c->fail_msg,
             "the image repository %.100s needs TLS, but yhc was built without it: build with -DYHC_MBEDTLS "
             "(link -lmbedtls -lmbedx509 -lmbedcrypto), or give the service an image_url", c->repo);
  } else if (resp->err) {
    snprintf(c->fail_msg, sizeof c->fail_msg, "looking up image %.60s at %.100s failed after %d tries: %.200s",
             c->image_hash, c->repo, c->image_tries, resp->error);
  } else if (resp->status == 404) {
    snprintf(c->fail_msg, sizeof c->fail_msg, "image %.60s not found at the repository %.100s (HTTP 404)",
             c->image_hash, c->repo);
  } else if (resp->status != 200) {
    snprintf(c->fail_msg, sizeof c->fail_msg, "the image repository %.100s answered HTTP %d for image %.60s%s",
             c->repo, resp->status, c->image_hash, transient ? " on every try" : "");
  } else if (!(d = yhc_json_parse(resp->body.ptr, resp->body.len, NULL, &e))) {
    snprintf(c->fail_msg, sizeof c->fail_msg, "image repository answer is not JSON: %s", e.msg);
  } else {
    url = yhc_json_str(yhc_json_get(yhc_json_root(d), "http"), url);
    if (!url.len || url.len > 400 || memchr(url.ptr, '\n', url.len)) {
      snprintf(c->fail_msg, sizeof c->fail_msg, "image repository answer for %s has no \"http\" URL", c->image_hash);
    } else {
      snprintf(c->task_package, sizeof c->task_package, "hash:sha3:%s:%.*s", c->image_hash, (int)url.len, url.ptr);
      c->image_state = 2;
    }
    yhc_json_free(d);
  }
  if (c->image_state != 2) {
    yhc__image_failed(c);
    return;
  }
  yhc__cluster_reconcile(c);
}

static void yhc__image_resolve(yhc_cluster *c) {
  yhc_request rq;
  char url[600];
  if (c->image_state) return;
  if (c->image_url) {
    snprintf(c->task_package, sizeof c->task_package, "hash:sha3:%s:%s", c->image_hash, c->image_url);
    c->image_state = 2;
    return;
  }
  snprintf(url, sizeof url, "%s/v1/image/info?hash=%s&count=true", c->repo, c->image_hash);
  memset(&rq, 0, sizeof rq);
  rq.url = url;
  rq.timeout_ms = 30000;
  c->image_state = 1;
  c->image_call = yhc_http_request(c->plain, &rq, yhc__image_resolved, c);
}

/* ---- instances */

static void yhc__cluster_instance_ready(yhc__instance *i) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, i->cluster);
  if (i->state == YHC__I_READY) c->startup_failures = 0;
  c->full = 0;
  yhc__cluster_reconcile(c);
  yhc__cluster_dispatch(c);
}

static void yhc__cluster_fail(yhc_cluster *c, const char *why) {
  yhc__instance *i;
  if (c->failed_cluster) return;
  c->failed_cluster = 1;
  snprintf(c->fail_msg, sizeof c->fail_msg, "%.299s", why);
  yhc__emitf(c->g, YHC_EV_CLUSTER_FAILED, c->url, "cluster %s failed: %s", c->url, why);
  while (c->q.head) yhc__req_fail(c->q.head, YHC_ERR_SERVICE_FAILED, "cluster %s failed: %s", c->url, why);
  /* a stop can end (and free) instances at once, this one or others through the cluster's
     hooks, so walk again from the head after each */
  for (;;) {
    for (i = c->instances; i && i->state >= YHC__I_STOPPING; i = i->next) {
    }
    if (!i) break;
    yhc__instance_stop(i);
  }
  yhc__demand_unsubscribe(c);
}

/* Instances failed at startup max_startup_failures times in a row: the service cannot start
   (its command exits, its server never answers), so renting more providers only costs money.
   The queue ends with the last failure, which carries the exit code and stderr. */
static void yhc__cluster_stop_renting(yhc_cluster *c, const yhc__instance *i) {
  c->renting_stopped = 1;
  snprintf(c->startup_error, sizeof c->startup_error, "%.100s failed to start on %d providers in a row, the last (%.60s): %.200s",
           c->url, c->startup_failures, i->provider_name, i->why);
  yhc__emitf(c->g, YHC_EV_CLUSTER_FAILED, c->url, "%s; no more providers are rented until the size is set again",
             c->startup_error);
  while (c->q.head) yhc__req_fail(c->q.head, YHC_ERR_SERVICE_FAILED, "%s", c->startup_error);
  yhc__demand_unsubscribe(c);
}

static void yhc__cluster_instance_ended(yhc__instance *i) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, i->cluster);
  yhc__instance **pp;
  for (pp = &c->instances; *pp; pp = &(*pp)->next) {
    if (*pp == i) {
      *pp = i->next;
      break;
    }
  }
  if (i->failed && !i->reached_ready) {
    /* a startup failure: on_stop does not apply (nothing was served); the provider is avoided
       when the failure was its own (agreement, activity, VPN, deploy), not the service's
       (its startup commands or its server); enough in a row stop the renting */
    c->instances_failed++;
    snprintf(c->last_failure, sizeof c->last_failure, "%.60s at startup: %.230s", i->provider_name, i->why);
    if (i->provider_id[0] && i->failed_state < YHC__I_STARTING) yhc__cluster_avoid(c, i->provider_id);
    if (i->failed_state >= YHC__I_DEPLOYING && !c->closing &&
        ++c->startup_failures >= c->max_startup_failures && !c->renting_stopped)
      yhc__cluster_stop_renting(c, i);
  } else if (i->failed) {
    c->instances_failed++;
    snprintf(c->last_failure, sizeof c->last_failure, "%.60s: %.230s", i->provider_name, i->why);
    if (i->provider_id[0]) yhc__cluster_avoid(c, i->provider_id);
    if (!c->closing) {
      if (c->d.on_stop == YHC_ON_STOP_RAISE) {
        char why[600];
        snprintf(why, sizeof why, "%.120s on %.60s: %.300s", c->url, i->provider_name, i->why);
        yhc__instance_free(i);
        yhc__cluster_fail(c, why);
        if (c->on_idle) c->on_idle(c);
        return;
      }
      if (c->d.on_stop == YHC_ON_STOP_IGNORE && !i->counted_lost) c->lost++;
    }
  }
  yhc__instance_free(i);
  if (!c->closing) yhc__cluster_reconcile(c);
  yhc__cluster_dispatch(c);
  if (c->on_idle) c->on_idle(c);
}

static int yhc__cluster_has(yhc_cluster *c, const yhc__instance *i) {
  const yhc__instance *k;
  for (k = c->instances; k; k = k->next)
    if (k == i) return 1;
  return 0;
}

/* Runs the startup function for each new instance. It may call anything (scale, destroy):
   after each call the instance is looked up again before its commands are stored. */
static void yhc__cluster_startup_run(void *ctx_) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, ctx_);
  yhc__golem *g = c->g;
  yhc__instance *i;
  for (;;) {
    yhc_ctx ctx;
    char listen[32];
    for (i = c->instances; i && !i->need_startup; i = i->next) {}
    if (!i) return;
    i->need_startup = 0;
    memset(&ctx, 0, sizeof ctx);
    snprintf(listen, sizeof listen, "0.0.0.0:%d", c->d.port);
    yhc__golem_hold(g);
    c->d.startup(&ctx, listen, c->d.startup_user);
    if (yhc__golem_unhold(g)) { /* the session was destroyed from inside: c is gone */
      yhc_buf_free(&ctx.cmds);
      return;
    }
    if (!yhc__cluster_has(c, i) || i->state >= YHC__I_STOPPING) {
      yhc_buf_free(&ctx.cmds);
      continue;
    }
    if (!ctx.failed && !ctx.count) ctx.failed = yhc_buf_appends(&ctx.cmds, "[") != 0;
    if (!ctx.failed) ctx.failed = yhc_buf_appends(&ctx.cmds, "]") != 0;
    if (ctx.failed) {
      yhc_buf_free(&ctx.cmds);
      yhc__instance_fail(i, "out of memory gathering startup commands");
      continue;
    }
    i->startup_cmds = ctx.cmds.ptr;
    if (i->startup_waiting) {
      i->startup_waiting = 0;
      yhc__instance_run_startup(i);
    }
  }
}

static void yhc__cluster_start_instance(yhc_cluster *c, yhc__offer *o) {
  yhc__instance *i = YHC__NEW(yhc__instance);
  if (!i) return;
  i->g = c->g;
  i->cluster = c;
  i->hooks = &c->hooks;
  i->service = c->url;
  i->port = c->d.port;
  i->lifetime_s = c->lifetime_s;
  i->renew_s = c->renew_s;
  i->state_poll_ms = c->state_poll_ms;
  i->drain_ms = c->drain_ms;
  i->tunnel_dead_ms = c->tunnel_dead_ms;
  i->concurrency = c->concurrency;
  i->vanish_ms = c->vanish_ms;
  i->startup_ms = c->startup_ms;
  i->approval_ms = c->approval_ms;
  i->expires_ms = o->expires_ms;
  i->spent_sink = &c->spent; /* payments for its agreement count towards the cluster's stats */
  snprintf(i->proposal_id, sizeof i->proposal_id, "%s", o->draft_id);
  snprintf(i->provider_id, sizeof i->provider_id, "%s", o->provider_id);
  snprintf(i->provider_name, sizeof i->provider_name, "%s", o->provider_name);
  i->coeff_duration = o->coeff_duration;
  i->coeff_cpu = o->coeff_cpu;
  i->coeff_start = o->coeff_start;
  i->threads = o->threads;
  i->interval_s = o->interval_s;
  i->payment_timeout_s = o->payment_timeout_s;
  yhc__offer_unlink(c, o);
  /* the startup commands are gathered from the user's function at the top of the loop's
     dispatch, long before the activity is deployed and needs them */
  if (c->d.startup) {
    i->need_startup = 1;
    if (!yhc__timer_armed(&c->startup_timer))
      yhc__timer_start(c->g->loop, &c->startup_timer, 0, yhc__cluster_startup_run, c);
  }
  i->next = c->instances;
  c->instances = i;
  yhc__instance_begin(i);
}

static yhc__offer *yhc__cluster_best_draft(yhc_cluster *c) {
  yhc__offer *o, *best = NULL;
  uint64_t now = yhc__wall_ms();
  for (o = c->offers; o; o = o->next) {
    if (o->state != 2 || yhc__cluster_avoids(c, o->provider_id) || yhc__offer_aged(c, o, now)) continue;
    if (!best || yhc__glm_cmp(&o->score, &best->score) < 0) best = o;
  }
  return best;
}

/* Before signing (issue 12): the budget must cover the start price plus budget_cover_min
   minutes at the draft's rates, and the burn-rate cap must leave room. 0 = sign. */
static int yhc__cluster_budget_check(yhc_cluster *c, const yhc__offer *o) {
  yhc__agreement t;
  char why[400];
  int rc;
  memset(&t, 0, sizeof t);
  t.coeff_duration = o->coeff_duration;
  t.coeff_cpu = o->coeff_cpu;
  t.coeff_start = o->coeff_start;
  t.threads = o->threads;
  rc = yhc__golem_can_afford(c->g, &t, why, sizeof why);
  if (!rc) {
    c->budget_blocked = 0;
    return 0;
  }
  if (c->budget_blocked != rc)
    yhc__emit_provider(c->g, YHC_EV_OFFER_REJECTED, c->url, o->provider_id, o->provider_name, YHC_ERR_BUDGET,
                       "not signing with %s for %s: %s", o->provider_name, c->url, why);
  c->budget_blocked = rc;
  return rc;
}

/* ---- size */

static int yhc__autoscale_eval(yhc_cluster *c) {
  const yhc_autoscale_desc *a = &c->auto_d;
  uint64_t now = yhc_loop_now(c->g->loop);
  int ready = 0, size = c->auto_size;
  yhc__instance *i;
  for (i = c->instances; i; i = i->next)
    if (i->state == YHC__I_READY && !i->draining) ready++;
  if (c->q.len == 0 && c->in_flight <= (size_t)(ready > 1 ? ready - 1 : 0)) {
    if (!c->auto_idle_since_ms) c->auto_idle_since_ms = now;
  } else {
    c->auto_idle_since_ms = 0;
  }
  if (now - c->auto_changed_ms >= (uint64_t)a->cooldown_ms || !c->auto_changed_ms) {
    /* grow when the queue outruns what the instances we have (or are starting) absorb */
    double per = (double)c->q.len / (double)(size > 0 ? size : 1);
    if (size < a->max_size && c->q.len > 0 && (size == 0 || per > a->queue_per_instance)) {
      size++;
      c->auto_changed_ms = now;
    } else if (size > a->min_size && c->auto_idle_since_ms && now - c->auto_idle_since_ms >= (uint64_t)a->idle_ms) {
      size--;
      c->auto_changed_ms = now;
      c->auto_idle_since_ms = now; /* hysteresis: a full idle period before the next step */
    }
  }
  if (size < a->min_size) size = a->min_size;
  if (size > a->max_size) size = a->max_size;
  c->auto_size = size;
  return size;
}

/* Asks the size function again; a scheduling decision made meanwhile used its last answer. */
static void yhc__cluster_rethink(void *ctx) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, ctx);
  yhc__golem *g = c->g;
  int t;
  if (c->size_mode != YHC__SIZE_FN || c->closing || c->failed_cluster) return;
  yhc__golem_hold(g);
  t = c->size_fn(c, c->size_user);
  if (yhc__golem_unhold(g)) return; /* the session was destroyed from inside it */
  if (c->size_mode != YHC__SIZE_FN) return;
  c->size_fn_value = t;
  c->rethinking = 1;
  yhc__cluster_reconcile(c);
  yhc__cluster_dispatch(c);
  c->rethinking = 0;
}

/* Under on_stop = ignore an instance that failed after serving is lost from the moment it
   fails, not once its agreement is settled: a replacement rented while it stops would cost
   money only to be drained again when it is gone. Each is counted once (set_size forgets). */
static int yhc__cluster_count_lost(yhc_cluster *c) {
  yhc__instance *i;
  if (c->d.on_stop != YHC_ON_STOP_IGNORE || c->closing) return c->lost;
  for (i = c->instances; i; i = i->next) {
    if (i->state >= YHC__I_STOPPING && i->failed && i->reached_ready && !i->counted_lost) {
      i->counted_lost = 1;
      c->lost++;
    }
  }
  return c->lost;
}

static int yhc__cluster_target(yhc_cluster *c) {
  int t;
  if (c->closing || c->failed_cluster || c->renting_stopped) return 0;
  switch (c->size_mode) {
  case YHC__SIZE_FN:
    t = c->size_fn_value;
    if (!c->rethinking && !yhc__timer_armed(&c->rethink))
      yhc__timer_start(c->g->loop, &c->rethink, 0, yhc__cluster_rethink, c);
    break;
  case YHC__SIZE_AUTO: t = yhc__autoscale_eval(c); break;
  default: t = c->size_int; break;
  }
  t -= yhc__cluster_count_lost(c);
  if (t < 0) t = 0;
  if (t > 250) t = 250; /* the VPN has room for 253 providers */
  return t;
}

static void yhc__instance_drain_timeout(void *ctx) {
  yhc__instance *i = YHC__CAST(yhc__instance *, ctx);
  yhc_cluster *c = YHC__CAST(yhc_cluster *, i->cluster);
  if (c->closing) i->cut_by_close = 1; /* what is still in flight ends with SHUTDOWN */
  yhc__instance_stop(i); /* what is still in flight moves to other instances */
}

static void yhc__cluster_drain(yhc_cluster *c, yhc__instance *i) {
  (void)c;
  i->draining = 1;
  if (i->state != YHC__I_READY || !i->in_flight) {
    yhc__instance_stop(i);
    return;
  }
  yhc__timer_start(i->g->loop, &i->drain_timer, (uint64_t)i->drain_ms, yhc__instance_drain_timeout, i);
}

/* Brings the number of instances towards the target: starts instances from the best drafts,
   keeps the demand alive while more are needed, and drains the least busy when fewer are.
   An instance whose agreement is expiring is replaced first and drained once the
   replacement is ready (make before break). */
static void yhc__cluster_reconcile(yhc_cluster *c) {
  int target, active = 0, ready = 0;
  yhc__instance *i;
  uint64_t now;
  if (c->g->state == YHC__G_FAILED) {
    while (c->q.head) yhc__req_fail(c->q.head, c->g->error.code ? c->g->error.code : YHC_ERR_YAGNA, "%s", c->g->error.msg);
    return;
  }
  if (c->g->state != YHC__G_READY) return;
  target = yhc__cluster_target(c);
  for (i = c->instances; i; i = i->next) {
    if (i->state >= YHC__I_STOPPING || i->draining) continue;
    if (!i->expiring) active++;
    if (i->state == YHC__I_READY && !i->expiring) ready++;
  }
  /* scale down: unready ones first (nothing to finish), then the least busy */
  while (active > target) {
    yhc__instance *pick = NULL;
    for (i = c->instances; i; i = i->next) {
      if (i->state >= YHC__I_STOPPING || i->draining || i->expiring) continue;
      if (!pick || (pick->state == YHC__I_READY && i->state != YHC__I_READY) ||
          (pick->state == i->state && i->in_flight < pick->in_flight))
        pick = i;
    }
    if (!pick) break;
    yhc__cluster_drain(c, pick);
    active--;
  }
  /* make before break: an expiring instance goes once enough others are ready */
  for (i = c->instances; i; i = i->next)
    if (i->expiring && !i->draining && i->state == YHC__I_READY && ready >= target) yhc__cluster_drain(c, i);
  if (active >= target) return;
  if (c->image_state == 0) return;
  if (c->demand_state == 0) {
    yhc__demand_subscribe(c);
    return;
  }
  if (c->demand_state != 2) return;
  now = yhc_loop_now(c->g->loop);
  {
    /* startup failures still stopping count already: the last allowed one must not be
       followed by another rental while its stop runs */
    int failing = c->startup_failures;
    for (i = c->instances; i; i = i->next)
      failing += i->state >= YHC__I_STOPPING && i->failed && !i->reached_ready && i->failed_state >= YHC__I_DEPLOYING;
    if (failing >= c->max_startup_failures) return;
  }
  if (now - c->subscribed_ms < (uint64_t)c->offer_window_ms) { /* let offers come in */
    /* ...but waiting requests with nothing to serve them should not pay the whole window:
       the best acceptable draft so far starts one instance, the window picks the rest */
    yhc__offer *o = !active && c->q.len && !c->offer_window_strict ? yhc__cluster_best_draft(c) : NULL;
    if (o && !yhc__cluster_budget_check(c, o)) yhc__cluster_start_instance(c, o);
    return;
  }
  if (c->g->budget_exhausted && !active) {
    /* the budget ended an agreement: unless a draft still fits, nothing queued can be served */
    yhc__offer *o = yhc__cluster_best_draft(c);
    if (!o || yhc__cluster_budget_check(c, o) == 1)
      while (c->q.head) yhc__req_fail(c->q.head, YHC_ERR_BUDGET, "budget: the budget of %s is spent", c->url);
  }
  while (active < target) {
    yhc__offer *o = yhc__cluster_best_draft(c);
    if (!o) break;
    if (yhc__cluster_budget_check(c, o)) {
      /* the budget cannot pay for another instance: with none running, what is queued can
         no longer be served (a burn-rate cap only limits how many run at once) */
      if (c->budget_blocked == 1 && !active)
        while (c->q.head)
          yhc__req_fail(c->q.head, YHC_ERR_BUDGET, "budget: %s cannot start an instance within the remaining budget", c->url);
      break;
    }
    yhc__cluster_start_instance(c, o);
    active++;
  }
  /* still short, nothing in negotiation and no progress for a while: new offers do reach
     this subscription, but an offer it already saw (used, refused by us, or refused finally
     by the provider) is not announced to it again, so a new one meets those providers anew */
  if (active < target) {
    int negotiating = 0;
    yhc__offer *o;
    for (o = c->offers; o; o = o->next) negotiating++;
    if (!negotiating && now - c->last_progress_ms > 30000) {
      yhc__demand_unsubscribe(c);
      yhc__demand_subscribe(c);
    }
  }
}

static void yhc__cluster_tick(void *ctx) {
  yhc_cluster *c = YHC__CAST(yhc_cluster *, ctx);
  uint64_t now = yhc_loop_now(c->g->loop);
  c->full = 0; /* a look at every instance once a second, whatever the bookkeeping says */
  if (c->image_state == 3 && now - c->image_failed_ms >= 60000) {
    c->image_state = 0;
    c->image_tries = 0;
  }
  if (c->image_state == 0 && !c->closing && !c->image_call && !c->image_timer.slot) yhc__image_resolve(c);
  yhc__cluster_age_offers(c);
  yhc__cluster_reconcile(c);
  yhc__cluster_dispatch(c);
  if (!c->closing) yhc__timer_start(c->g->loop, &c->tick, 1000, yhc__cluster_tick, c);
}

/* ==== Session and the public client API =========================================== */
/* Owns: the session object the user holds -- config with environment defaults and
   validation, the loop (its own or the user's), the plain HTTP client, the daemon client and
   Golem context, the clusters by URL, request routing, and graceful close: requests end,
   instances stop, agreements are terminated, invoices accepted, then the VPN goes and the
   allocation is released. */

enum { YHC__S_OPEN, YHC__S_DRAINING, YHC__S_INVOICES, YHC__S_TEARDOWN, YHC__S_CLOSED };

struct yhc_session {
  yhc_loop *loop;
  int own_loop;
  yhc_http *plain;
  yhc__golem g;
  yhc_session_desc d;
  char *yagna_url, *app_key, *subnet, *image_repo;
  yhc_cluster *clusters;
  int close_state;
  int closing;
  uint64_t close_started_ms, invoices_since_ms;
  yhc__timer close_timer;
  int destroying;
  yhc_error call_error;      /* why the last -1 of a size call */
};

static const char *yhc__env_or(const char *v, const char *env, const char *def) {
  const char *e;
  if (v && *v) return v;
  e = env ? getenv(env) : NULL;
  return (e && *e) ? e : def;
}

static double yhc__dbl_or(double v, double def) { return v > 0 ? v : def; }
static int yhc__int_or(int v, int def) { return v > 0 ? v : def; }

static int yhc__token_ok(const char *s, size_t max) {
  size_t n = 0;
  for (; *s; s++, n++) {
    unsigned char c = (unsigned char)*s;
    if (!(yhc__is_alpha(c) || yhc__is_digit(c) || c == '-' || c == '_' || c == '.')) return 0;
  }
  return n > 0 && n <= max;
}

static void yhc__session_golem_ready(yhc__golem *g) {
  yhc_session *s = YHC__CAST(yhc_session *, g->owner);
  yhc_cluster *c;
  for (c = s->clusters; c; c = c->next) {
    yhc__cluster_reconcile(c);
    yhc__cluster_dispatch(c);
  }
}

static void yhc__session_agreement_ended(yhc__golem *g, yhc__agreement *a, const char *why, int routine) {
  yhc__instance *i = YHC__CAST(yhc__instance *, a->owner);
  (void)g;
  if (!i) return;
  if (routine) yhc__instance_end_routine(i, "%s", why);
  else yhc__instance_fail(i, "%s", why);
}

/* After an outage every instance is checked at once; when the daemon lost the VPN network
   (a restart) the instances cannot be reached any more and are replaced, which is nobody's
   failure. */
static void yhc__session_probed(yhc__golem *g) {
  yhc_session *s = YHC__CAST(yhc_session *, g->owner);
  yhc_cluster *c;
  for (c = s->clusters; c; c = c->next) {
    yhc__instance *i;
    for (i = c->instances; i; i = i->next) yhc__instance_judge_suspects(i);
    if (!g->down_since) yhc__cluster_dispatch(c);
  }
}

static void yhc__session_daemon_back(yhc__golem *g, int network_lost) {
  yhc_session *s = YHC__CAST(yhc_session *, g->owner);
  yhc_cluster *c;
  for (c = s->clusters; c; c = c->next) {
    /* a restarted daemon lost every proposal (PROTOCOL.md 9.7): drafts are negotiated anew */
    while (network_lost && c->offers) yhc__offer_unlink(c, c->offers);
    for (;;) {
      yhc__instance *i;
      for (i = c->instances; i; i = i->next)
        if (network_lost && i->state < YHC__I_STOPPING && i->activity_id[0]) break;
      if (!i) break;
      yhc__instance_end_routine(i, "the daemon lost its VPN network (restarted)");
    }
    {
      yhc__instance *i;
      for (i = c->instances; i; i = i->next) yhc__instance_check_soon(i);
    }
    yhc__cluster_reconcile(c);
    yhc__cluster_dispatch(c);
  }
}

/* The money settings: exact strings win over the legacy double; lifetimes of 10 h or more
   need mid-agreement payments (providers refuse such demands without them). */
/* One price limit: its exact string wins; else its double (0 = the default), to 12 decimals. */
static int yhc__config_limit(const char *text, double v, const char *name, yhc__glm *out, yhc_error *err) {
  if (text) {
    int rc = yhc__glm_parse(text, strlen(text), 1, out);
    if (rc) {
      yhc__error_set(err, YHC_ERR_CONFIG, 0, "%s_glm \"%.60s\" is %s", name, text,
                     rc == YHC__GLM_OVERFLOW ? "too large" : "not a decimal amount with at most 18 decimals");
      return -1;
    }
    return 0;
  }
  if (yhc__glm_from_config_double(v > 0 ? v : 0.5, out)) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "%s must be below 1000000 GLM (use %s_glm for exact amounts)", name, name);
    return -1;
  }
  return 0;
}

static int yhc__session_money_config(const yhc_session_desc *d, yhc__glm *budget, yhc__glm *burn, yhc__glm limits[3],
                                     yhc_error *err) {
  memset(burn, 0, sizeof *burn);
  if (yhc__config_limit(d->max_price_cpu_hour_glm, d->max_price_cpu_hour, "max_price_cpu_hour", &limits[0], err) ||
      yhc__config_limit(d->max_price_env_hour_glm, d->max_price_env_hour, "max_price_env_hour", &limits[1], err) ||
      yhc__config_limit(d->max_price_start_glm, d->max_price_start, "max_price_start", &limits[2], err))
    return -1;
  if (d->budget_glm) {
    int rc = yhc__glm_parse(d->budget_glm, strlen(d->budget_glm), 1, budget);
    if (rc) {
      yhc__error_set(err, YHC_ERR_CONFIG, 0, "budget_glm \"%.60s\" is %s", d->budget_glm,
                     rc == YHC__GLM_OVERFLOW ? "too large" : "not a decimal amount with at most 18 decimals");
      return -1;
    }
  } else if (!(d->budget > 0)) {
    /* money has no default: zero (or unset) is refused rather than read as some amount */
    yhc__error_set(err, YHC_ERR_CONFIG, 0,
                   "no budget: set budget_glm (exact, e.g. \"1.0\") or budget, the GLM the session may spend");
    return -1;
  } else if (yhc__glm_from_config_double(d->budget, budget)) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "budget must be below 1000000 GLM (use budget_glm for exact amounts)");
    return -1;
  }
  if (d->max_glm_per_hour && yhc__glm_parse(d->max_glm_per_hour, strlen(d->max_glm_per_hour), 1, burn)) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "max_glm_per_hour \"%.60s\" is not a decimal amount", d->max_glm_per_hour);
    return -1;
  }
  if (d->budget_cover_min < 0 || d->time_scale < 0) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "budget_cover_min and time_scale must not be negative");
    return -1;
  }
  if (d->agreement_lifetime_s >= 36000 && d->mid_agreement_payments < 0) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0,
                   "agreement_lifetime_s of 10 h or more needs mid-agreement payments (mid_agreement_payments is -1): "
                   "providers refuse such demands without golem.com.scheme.payu.payment-timeout-sec?");
    return -1;
  }
  return 0;
}

static void yhc__session_free(yhc__golem *g);

YHCDEF yhc_session *yhc_session_create(const yhc_session_desc *desc, yhc_error *err) {
  yhc__glm budget, burn, limits[3];
  yhc_session *s;
  yhc_session_desc d;
  const char *url, *key, *subnet, *driver, *network, *repo;
  char token[16];
  yhc_url u;
  yhc_http_desc api_desc;
  yhc__error_clear(err);
  if (desc) d = *desc;
  else memset(&d, 0, sizeof d);
  url = yhc__env_or(d.yagna_url, "YAGNA_API_URL", "http://127.0.0.1:7465");
  key = yhc__env_or(d.app_key, "YAGNA_APPKEY", NULL);
  subnet = yhc__env_or(d.subnet, "YAGNA_SUBNET", "public");
  driver = yhc__env_or(d.payment_driver, "YAGNA_PAYMENT_DRIVER", "erc20");
  network = yhc__env_or(d.payment_network, "YAGNA_PAYMENT_NETWORK", "holesky");
  repo = yhc__env_or(d.image_repo, NULL, "https://registry.golem.network");
  if (!key) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "no yagna app key: set app_key or YAGNA_APPKEY");
    return NULL;
  }
  if (strlen(key) > 180 || !yhc__header_ok(key, 0)) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "the yagna app key is too long or has control characters");
    return NULL;
  }
  if (yhc_url_parse(url, strlen(url), &u, err) < 0 || strlen(url) > 200 ||
      !(yhc__str_ieq(u.scheme, "http") || yhc__str_ieq(u.scheme, "https"))) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "invalid yagna URL \"%.100s\": must be http(s)://host[:port]", url);
    return NULL;
  }
  if (!yhc__token_ok(subnet, 60) || !yhc__token_ok(driver, 30) || !yhc__token_ok(network, 30)) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "subnet, payment driver and network must be short names");
    return NULL;
  }
  if (d.budget < 0 || d.max_price_cpu_hour < 0 || d.max_price_env_hour < 0 || d.max_price_start < 0 ||
      d.agreement_lifetime_s < 0 || d.max_retries < 0 || d.instance_concurrency < 0 ||
      d.budget != d.budget) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "budget, prices, lifetime, retries and concurrency must not be negative");
    return NULL;
  }
  if (d.agreement_lifetime_s && d.agreement_lifetime_s < 360) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "agreement_lifetime_s must be at least 360 (providers refuse shorter demands)");
    return NULL;
  }
  if (d.agreement_renew_s < 0 || d.agreement_renew_s >= (d.agreement_lifetime_s ? d.agreement_lifetime_s : 3600)) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "agreement_renew_s must be below agreement_lifetime_s");
    return NULL;
  }
  if (yhc__session_money_config(&d, &budget, &burn, limits, err)) return NULL;
  s = YHC__NEW(yhc_session);
  if (!s) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory creating the session");
    return NULL;
  }
  d.budget = yhc__dbl_or(d.budget, 1.0);
  d.max_price_cpu_hour = yhc__dbl_or(d.max_price_cpu_hour, 0.5);
  d.max_price_env_hour = yhc__dbl_or(d.max_price_env_hour, 0.5);
  d.max_price_start = yhc__dbl_or(d.max_price_start, 0.5);
  d.agreement_lifetime_s = yhc__int_or(d.agreement_lifetime_s, 3600);
  d.agreement_renew_s = yhc__int_or(d.agreement_renew_s, YHC__MIN(120, d.agreement_lifetime_s / 2));
  d.request_timeout_ms = d.request_timeout_ms ? d.request_timeout_ms : 60000;
  if (!d.max_queue) d.max_queue = 10000;
  d.max_retries = d.max_retries ? d.max_retries : 3;
  d.instance_concurrency = yhc__int_or(d.instance_concurrency, 8);
  d.offer_window_ms = yhc__int_or(d.offer_window_ms, 1500);
  d.close_timeout_ms = yhc__int_or(d.close_timeout_ms, 20000);
  d.drain_timeout_ms = yhc__int_or(d.drain_timeout_ms, 10000);
  d.tunnel_dead_ms = yhc__int_or(d.tunnel_dead_ms, 15000);
  d.state_poll_ms = yhc__int_or(d.state_poll_ms, 3000);
  d.vanish_timeout_ms = yhc__int_or(d.vanish_timeout_ms, 30000);
  d.startup_timeout_ms = yhc__int_or(d.startup_timeout_ms, 300000);
  d.approval_timeout_ms = yhc__int_or(d.approval_timeout_ms, 60000);
  d.max_startup_failures = yhc__int_or(d.max_startup_failures, 3);
  d.clock_skew_ms = yhc__int_or(d.clock_skew_ms, 60000);
  s->yagna_url = yhc__strdup(url);
  s->app_key = yhc__strdup(key);
  s->subnet = yhc__strdup(subnet);
  s->image_repo = yhc__strdup(repo);
  d.yagna_url = s->yagna_url;
  d.app_key = NULL; /* kept only inside the Golem context */
  d.subnet = s->subnet;
  d.image_repo = s->image_repo;
  d.payment_driver = d.payment_network = NULL;
  s->d = d;
  if (d.loop) {
    s->loop = d.loop;
  } else {
    yhc_loop_desc ld;
    memset(&ld, 0, sizeof ld);
    ld.log = d.log;
    ld.log_user = d.log_user;
    ld.log_level = d.log_level;
    ld.resolver = d.resolver;
    s->loop = yhc_loop_create(&ld);
    s->own_loop = 1;
  }
  s->plain = s->loop ? yhc_http_create(s->loop, &d.http) : NULL;
  api_desc = d.http;
  api_desc.max_conns_per_host = 64; /* long-polls each hold a connection */
  api_desc.request_timeout_ms = -1; /* every call states its own */
  api_desc.idle_timeout_ms = 30000;
  s->g.api = s->loop ? yhc_http_create(s->loop, &api_desc) : NULL;
  if (!s->yagna_url || !s->app_key || !s->subnet || !s->image_repo || !s->loop || !s->plain || !s->g.api) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory creating the session");
    yhc_session_destroy(s);
    return NULL;
  }
  /* ids of the two clients never collide, so yhc_session_cancel knows where to look */
  s->g.api->next_id = (uint64_t)1 << 62;
  s->g.loop = s->loop;
  snprintf(s->g.base, sizeof s->g.base, "%s", url);
  while (strlen(s->g.base) && s->g.base[strlen(s->g.base) - 1] == '/') s->g.base[strlen(s->g.base) - 1] = 0;
  snprintf(s->g.auth, sizeof s->g.auth, "Bearer %s", key);
  snprintf(s->g.subnet, sizeof s->g.subnet, "%s", subnet);
  snprintf(token, sizeof token, "%s", (!strcmp(network, "mainnet") || !strcmp(network, "polygon")) ? "glm" : "tglm");
  snprintf(s->g.platform, sizeof s->g.platform, "%s-%s-%s", driver, network, token);
  s->g.budget = budget;
  s->g.burn_cap_hour = burn;
  s->g.max_cpu_hour = limits[0];
  s->g.max_env_hour = limits[1];
  s->g.max_start = limits[2];
  s->g.cover_min = d.budget_cover_min ? d.budget_cover_min : 5;
  s->g.time_scale = d.time_scale > 0 ? d.time_scale : 1;
  s->g.on_event = d.on_event;
  s->g.event_user = d.event_user;
  s->g.log_events = d.log_events;
  s->g.owner = s;
  s->g.free_owner = yhc__session_free;
  s->g.on_ready = yhc__session_golem_ready;
  s->g.on_agreement_ended = yhc__session_agreement_ended;
  s->g.on_daemon_back = yhc__session_daemon_back;
  s->g.on_probed = yhc__session_probed;
  s->g.clock_skew_ms = d.clock_skew_ms;
  yhc__golem_start(&s->g);
  return s;
}

static yhc_cluster *yhc__session_cluster(yhc_session *s, const char *url) {
  yhc_cluster *c;
  yhc_url u;
  yhc_error e;
  if (!url || yhc_url_parse(url, strlen(url), &u, &e) < 0) return NULL;
  for (c = s->clusters; c; c = c->next)
    if (yhc__str_ieq(u.host, c->host) && u.port == c->port) return c;
  return NULL;
}

static int yhc__json_object_ok(const char *text) {
  yhc_error e;
  yhc_json_doc *d = yhc_json_parse(text, strlen(text), NULL, &e);
  int ok = d && yhc_json_typeof(yhc_json_root(d)) == YHC_JSON_OBJECT;
  yhc_json_free(d);
  return ok;
}

static void yhc__cluster_free(yhc_cluster *c) {
  size_t k;
  yhc__offer *o;
  yhc__timer_stop(c->g->loop, &c->tick);
  yhc__timer_stop(c->g->loop, &c->rethink);
  yhc__timer_stop(c->g->loop, &c->startup_timer);
  yhc__timer_stop(c->g->loop, &c->collect_retry);
  yhc__timer_stop(c->g->loop, &c->image_timer);
  while ((o = c->offers) != NULL) yhc__offer_unlink(c, o);
  for (k = 0; k < c->navoid; k++) YHC_FREE(c->avoid[k]);
  YHC_FREE(c->avoid);
  YHC_FREE(c->image_hash);
  YHC_FREE(c->image_url);
  YHC_FREE(c->extra_props);
  YHC_FREE(c->extra_cons);
  YHC_FREE(c);
}

/* A service is named by a bare host: requests match it by host alone, so anything else in
   the URL would either never match (a port) or be a plain server's address (an IP literal,
   localhost). Returns why the URL is not a service name, or NULL. */
static const char *yhc__service_url_problem(const char *url, const yhc_url *u) {
  const char *auth = strstr(url, "://");
  size_t k, alldigits = 1, authlen = auth ? strcspn(auth + 3, "/?#") : 0;
  if (!yhc__str_ieq(u->scheme, "http")) return "the scheme must be http";
  if (strlen(url) >= 128 || u->host.len >= 100) return "the name is too long";
  if (u->userinfo.ptr) return "user information is not allowed";
  if (u->fragment.ptr) return "a fragment is not allowed";
  if (u->target.len > 1) return "a path or query is not allowed";
  if (auth && auth[3] == '[') return "an IP literal is not a service name";
  if (auth && memchr(auth + 3, ':', authlen)) return "a port is not allowed (the server's port in the VM is yhc_service_desc.port)";
  for (k = 0; k < u->host.len; k++) {
    unsigned char c = (unsigned char)u->host.ptr[k];
    if (!(yhc__is_alpha(c) || yhc__is_digit(c) || c == '-' || c == '.')) return "an IP literal or an invalid name";
    if (!(yhc__is_digit(c) || c == '.')) alldigits = 0;
  }
  if (alldigits) return "an IP literal is not a service name";
  if (yhc__str_ieq(u->host, "localhost") ||
      (u->host.len > 10 && yhc__str_ieq(yhc__tail(u->host, 10), ".localhost")))
    return "localhost is not a service name";
  return NULL;
}

YHCDEF int yhc_session_add_service(yhc_session *s, const yhc_service_desc *desc, yhc_error *err) {
  yhc_url u;
  yhc_cluster *c;
  size_t k;
  yhc__error_clear(err);
  if (!s || !desc || !desc->url) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "service needs a URL");
    return -1;
  }
  if (s->closing) {
    yhc__error_set(err, YHC_ERR_SHUTDOWN, 0, "the session is closing");
    return -1;
  }
  if (yhc_url_parse(desc->url, strlen(desc->url), &u, err) < 0) {
    char why[YHC_ERROR_MSG_MAX];
    snprintf(why, sizeof why, "%s", err ? err->msg : "");
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "service URL must be http://name (got \"%.100s\"): %.120s", desc->url, why);
    return -1;
  }
  {
    const char *why = yhc__service_url_problem(desc->url, &u);
    if (why) {
      yhc__error_set(err, YHC_ERR_CONFIG, 0, "service URL must be http://name (got \"%.100s\"): %s", desc->url, why);
      return -1;
    }
  }
  if (yhc__session_cluster(s, desc->url)) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "a service is already registered for %s", desc->url);
    return -1;
  }
  if (!desc->image_hash || !*desc->image_hash) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "service %s needs an image hash", desc->url);
    return -1;
  }
  for (k = 0; desc->image_hash[k]; k++) {
    if (yhc__hexval((unsigned char)desc->image_hash[k]) < 0 || k > 128) {
      yhc__error_set(err, YHC_ERR_CONFIG, 0, "image hash of %s must be hex", desc->url);
      return -1;
    }
  }
  if (desc->image_url && (strlen(desc->image_url) > 400 || !yhc__header_ok(desc->image_url, 0))) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "image URL of %s is invalid", desc->url);
    return -1;
  }
  if (desc->extra_properties && !yhc__json_object_ok(desc->extra_properties)) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "extra_properties of %s must be a JSON object", desc->url);
    return -1;
  }
  if (desc->initial_size < 0 || desc->port < 0 || desc->port > 65535 || desc->min_mem_gib < 0 ||
      desc->min_storage_gib < 0 || desc->min_threads < 0 ||
      (int)desc->on_stop < 0 || (int)desc->on_stop > (int)YHC_ON_STOP_IGNORE) {
    yhc__error_set(err, YHC_ERR_CONFIG, 0, "service %s: negative size, resource or bad port/policy", desc->url);
    return -1;
  }
  c = YHC__NEW(yhc_cluster);
  if (!c) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory adding a service");
    return -1;
  }
  c->g = &s->g;
  c->plain = s->plain;
  c->d = *desc;
  snprintf(c->url, sizeof c->url, "%s", desc->url);
  while (strlen(c->url) && c->url[strlen(c->url) - 1] == '/') c->url[strlen(c->url) - 1] = 0;
  snprintf(c->host, sizeof c->host, "%.*s", (int)u.host.len, u.host.ptr);
  c->port = u.port;
  c->d.url = c->url;
  c->d.port = desc->port ? desc->port : 80;
  c->d.min_mem_gib = yhc__dbl_or(desc->min_mem_gib, 0.5);
  c->d.min_storage_gib = yhc__dbl_or(desc->min_storage_gib, 2.0);
  c->d.min_threads = yhc__int_or(desc->min_threads, 1);
  c->image_hash = yhc__strdup(desc->image_hash);
  c->image_url = desc->image_url ? yhc__strdup(desc->image_url) : NULL;
  c->extra_props = desc->extra_properties ? yhc__strdup(desc->extra_properties) : NULL;
  c->extra_cons = desc->extra_constraints ? yhc__strdup(desc->extra_constraints) : NULL;
  c->d.image_hash = c->d.image_url = c->d.extra_properties = c->d.extra_constraints = NULL;
  c->lifetime_s = s->d.agreement_lifetime_s;
  c->mid_payments = s->d.mid_agreement_payments >= 0 && c->lifetime_s >= 18000;
  c->renew_s = s->d.agreement_renew_s;
  c->offer_window_ms = s->d.offer_window_ms;
  c->offer_window_strict = s->d.offer_window_strict;
  c->drain_ms = s->d.drain_timeout_ms;
  c->state_poll_ms = s->d.state_poll_ms;
  c->tunnel_dead_ms = s->d.tunnel_dead_ms;
  c->concurrency = s->d.instance_concurrency;
  c->max_retries = s->d.max_retries;
  c->idempotent_only = s->d.retry_idempotent_only;
  c->timeout_ms = s->d.request_timeout_ms;
  c->vanish_ms = s->d.vanish_timeout_ms;
  c->startup_ms = s->d.startup_timeout_ms;
  c->approval_ms = s->d.approval_timeout_ms;
  c->max_startup_failures = s->d.max_startup_failures;
  c->max_queue = s->d.max_queue;
  c->max_cpu_hour = s->g.max_cpu_hour;
  c->max_env_hour = s->g.max_env_hour;
  c->max_start = s->g.max_start;
  c->size_mode = YHC__SIZE_INT;
  c->size_int = desc->initial_size; /* as written: 0 starts the cluster empty */
  c->hooks.ready = yhc__cluster_instance_ready;
  c->hooks.ended = yhc__cluster_instance_ended;
  if (!c->image_hash || (desc->image_url && !c->image_url) || (desc->extra_properties && !c->extra_props) ||
      (desc->extra_constraints && !c->extra_cons)) {
    yhc__cluster_free(c);
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory adding a service");
    return -1;
  }
  c->next = s->clusters;
  s->clusters = c;
  c->repo = s->image_repo;
  yhc__image_resolve(c);
  yhc__timer_start(s->loop, &c->tick, 1000, yhc__cluster_tick, c);
  yhc__cluster_reconcile(c);
  return 0;
}

/* ---- requests */

static uint64_t yhc__session_defer_error(yhc_session *s, yhc_response_fn cb, void *user, yhc_err code,
                                         const char *msg) {
  yhc__req *r = yhc__req_new(s->g.api);
  if (!r) return 0;
  r->cb = cb;
  r->user = user;
  yhc__req_set_error(r, code, "%s", msg);
  yhc__req_complete(r);
  return r->id;
}

YHCDEF uint64_t yhc_session_request(yhc_session *s, const yhc_request *req, yhc_response_fn cb, void *user) {
  yhc_cluster *c;
  yhc__req *r;
  yhc_url u;
  int tls, timeout;
  char msg[300];
  if (!req || !req->url) return s->plain ? yhc_http_request(s->plain, req, cb, user) : 0;
  c = yhc__session_cluster(s, req->url);
  if (!c) {
    if (s->closing) return yhc__session_defer_error(s, cb, user, YHC_ERR_SHUTDOWN, "the session is closed");
    return yhc_http_request(s->plain, req, cb, user);
  }
  if (s->closing) return yhc__session_defer_error(s, cb, user, YHC_ERR_SHUTDOWN, "the session is closing: request not sent");
  if (c->failed_cluster) {
    snprintf(msg, sizeof msg, "service %.100s failed: %.180s", c->url, c->fail_msg);
    return yhc__session_defer_error(s, cb, user, YHC_ERR_SERVICE_FAILED, msg);
  }
  if (c->renting_stopped) return yhc__session_defer_error(s, cb, user, YHC_ERR_SERVICE_FAILED, c->startup_error);
  if (c->image_state == 3) return yhc__session_defer_error(s, cb, user, YHC_ERR_SERVICE_FAILED, c->fail_msg);
  if (s->g.state == YHC__G_FAILED) return yhc__session_defer_error(s, cb, user, s->g.error.code, s->g.error.msg);
  if (c->q.len >= c->max_queue) {
    snprintf(msg, sizeof msg, "the queue of %s is full (%zu requests waiting)", c->url, c->q.len);
    return yhc__session_defer_error(s, cb, user, YHC_ERR_QUEUE_FULL, msg);
  }
  r = yhc__req_new(s->g.api);
  if (!r) return 0;
  r->cb = cb;
  r->user = user;
  yhc__req_fill(r, req, &u, &tls);
  if (r->err_code) {
    yhc__req_complete(r);
    return r->id;
  }
  timeout = req->timeout_ms ? req->timeout_ms : c->timeout_ms;
  r->timeout_ms = timeout;
  r->submitted_ms = yhc_loop_now(s->loop);
  r->on_done = yhc__cluster_req_done;
  yhc__cluster_park(c, r, 0);
  if (timeout > 0) yhc__timer_start(s->loop, &r->deadline, (uint64_t)timeout, yhc__cluster_req_deadline, r);
  if (c->size_mode != YHC__SIZE_INT) yhc__cluster_reconcile(c);
  yhc__cluster_dispatch(c);
  return r->id;
}

YHCDEF int yhc_session_cancel(yhc_session *s, uint64_t id) {
  return id >= ((uint64_t)1 << 62) ? yhc_http_cancel(s->g.api, id) : yhc_http_cancel(s->plain, id);
}

YHCDEF yhc_response *yhc_session_fetch(yhc_session *s, const yhc_request *req) {
  yhc__fetch f;
  f.out = NULL;
  f.done = 0;
  if (!yhc_session_request(s, req, yhc__fetch_done, &f)) return NULL;
  while (!f.done)
    if (yhc_loop_poll(s->loop, -1) < 0 && errno != EINTR) break;
  return f.out;
}

YHCDEF yhc_response *yhc_session_fetch_json(yhc_session *s, const char *method, const char *url,
                                            const char *json) {
  yhc_json_req jr;
  yhc__json_fetch_req(&jr, method, url, json);
  return yhc_session_fetch(s, &jr.req);
}

/* ---- size */

/* The cluster a size call may change, or NULL with the reason in call_error. */
static yhc_cluster *yhc__session_sizable(yhc_session *s, const char *url, int bad_arg) {
  yhc_cluster *c;
  yhc__error_clear(&s->call_error);
  if (s->closing) {
    yhc__error_set(&s->call_error, YHC_ERR_SHUTDOWN, 0, "the session is closing: cluster sizes are fixed");
    return NULL;
  }
  c = yhc__session_cluster(s, url);
  if (!c) {
    yhc__error_set(&s->call_error, YHC_ERR_NO_SERVICE, 0, "no service is registered for %.100s", url ? url : "(null)");
    return NULL;
  }
  if (bad_arg) {
    yhc__error_set(&s->call_error, YHC_ERR_INVALID, 0, "invalid size argument for %.100s", url);
    return NULL;
  }
  return c;
}

YHCDEF const yhc_error *yhc_session_call_error(yhc_session *s) { return &s->call_error; }

/* A new size is a new attempt: after a stop for startup failures, and for an image whose
   lookup failed. */
static void yhc__cluster_rent_again(yhc_cluster *c) {
  c->renting_stopped = 0;
  c->startup_failures = 0;
  if (c->image_state == 3) {
    c->image_state = 0;
    c->image_tries = 0;
  }
}

YHCDEF int yhc_session_set_size(yhc_session *s, const char *url, int size) {
  yhc_cluster *c = yhc__session_sizable(s, url, size < 0);
  if (!c) return -1;
  c->size_mode = YHC__SIZE_INT;
  c->size_int = size;
  c->lost = 0;
  yhc__cluster_rent_again(c);
  yhc__cluster_reconcile(c);
  return 0;
}

YHCDEF int yhc_session_set_size_fn(yhc_session *s, const char *url, yhc_size_fn fn, void *user) {
  yhc_cluster *c = yhc__session_sizable(s, url, !fn);
  if (!c) return -1;
  c->size_mode = YHC__SIZE_FN;
  c->size_fn = fn;
  c->size_user = user;
  yhc__cluster_rent_again(c);
  yhc__cluster_reconcile(c);
  return 0;
}

YHCDEF int yhc_session_autoscale(yhc_session *s, const char *url, const yhc_autoscale_desc *d) {
  yhc_cluster *c = yhc__session_sizable(s, url, 0);
  yhc_autoscale_desc a;
  if (!c) return -1;
  if (d) a = *d;
  else memset(&a, 0, sizeof a);
  if (a.max_size <= 0) a.max_size = 4;
  if (a.min_size < 0) a.min_size = 0;
  if (a.min_size > a.max_size) a.min_size = a.max_size;
  if (a.queue_per_instance <= 0) a.queue_per_instance = 4;
  a.idle_ms = yhc__int_or(a.idle_ms, 30000);
  a.cooldown_ms = yhc__int_or(a.cooldown_ms, 5000);
  c->auto_d = a;
  c->auto_size = a.min_size;
  c->auto_changed_ms = 0;
  c->auto_idle_since_ms = 0;
  c->size_mode = YHC__SIZE_AUTO;
  yhc__cluster_rent_again(c);
  yhc__cluster_reconcile(c);
  return 0;
}

static int yhc__dbl_cmp(const void *a, const void *b) {
  double x = *YHC__CAST(const double *, a), y = *YHC__CAST(const double *, b);
  return x < y ? -1 : x > y;
}

YHCDEF void yhc_cluster_stats_get(const yhc_cluster *c, yhc_cluster_stats *out) {
  const yhc__instance *i;
  memset(out, 0, sizeof *out);
  out->url = c->url;
  switch (c->size_mode) {
  case YHC__SIZE_AUTO: out->size_target = c->auto_size; break;
  case YHC__SIZE_INT: out->size_target = c->size_int; break;
  default: out->size_target = -1; break; /* a function: evaluated on demand */
  }
  for (i = c->instances; i; i = i->next) {
    if (i->state == YHC__I_READY && !i->draining) out->ready++;
    else if (i->state < YHC__I_READY) out->starting++;
    else out->stopping++;
  }
  out->instances_failed = c->instances_failed;
  out->queued = c->q.len;
  out->in_flight = c->in_flight;
  out->completed = c->completed;
  out->failed = c->failed_n;
  out->retried = c->retried;
  out->spent = yhc__glm_to_double(&c->spent);
  yhc__glm_format(&c->spent, 0, out->spent_glm);
  out->failed_cluster = c->failed_cluster;
  out->bytes_out = c->bytes_out;
  out->bytes_in = c->bytes_in;
  if (c->timed_n) {
    out->queue_ms_avg = (double)c->queue_us_sum / 1000.0 / (double)c->timed_n;
    out->service_ms_avg = (double)c->service_us_sum / 1000.0 / (double)c->timed_n;
  }
  if (c->nlat) {
    double tmp[YHC__LAT_N];
    memcpy(tmp, c->lat, c->nlat * sizeof *tmp);
    qsort(tmp, c->nlat, sizeof *tmp, yhc__dbl_cmp);
    out->p50_ms = tmp[(c->nlat - 1) / 2];
    out->p99_ms = tmp[(c->nlat - 1) * 99 / 100];
  }
}

YHCDEF int yhc_session_stats(yhc_session *s, const char *url, yhc_cluster_stats *out) {
  yhc_cluster *c = yhc__session_cluster(s, url);
  if (!c) return -1;
  yhc_cluster_stats_get(c, out);
  return 0;
}

YHCDEF double yhc_session_spent(yhc_session *s) { return yhc__glm_to_double(&s->g.spent); }

YHCDEF void yhc_session_money(yhc_session *s, yhc_money *out) {
  const yhc__golem *g = &s->g;
  const yhc__agreement *a;
  yhc__glm committed = yhc__golem_committed(g), remaining = yhc__golem_remaining(g);
  memset(out, 0, sizeof *out);
  yhc__glm_format(&g->budget, 0, out->budget);
  yhc__glm_format(&g->spent, 0, out->spent);
  yhc__glm_format(&committed, 0, out->committed);
  yhc__glm_format(&remaining, 0, out->remaining);
  out->spent_d = yhc__glm_to_double(&g->spent);
  out->committed_d = yhc__glm_to_double(&committed);
  out->remaining_d = yhc__glm_to_double(&remaining);
  out->invoices_accepted = g->invoices_accepted;
  out->invoices_rejected = g->invoices_rejected;
  out->refused = g->refused;
  for (a = g->agreements; a; a = a->next) {
    if (a->invoice_done == 0 || a->invoice_done == 3) out->invoices_unpaid++;
    if (!a->terminated && !a->ended_ms) out->agreements_unterminated++;
  }
}

YHCDEF yhc_cluster *yhc_session_cluster(yhc_session *s, const char *url) { return yhc__session_cluster(s, url); }

static yhc_instance_state yhc__instance_public_state(const yhc__instance *i) {
  if (i->state < YHC__I_READY) return YHC_INSTANCE_STARTING;
  if (i->state == YHC__I_READY) return YHC_INSTANCE_READY;
  return i->state == YHC__I_STOPPING ? YHC_INSTANCE_STOPPING : YHC_INSTANCE_STOPPED;
}

YHCDEF size_t yhc_cluster_instances(const yhc_cluster *c, yhc_instance_info *out, size_t max) {
  const yhc__instance *i;
  size_t n = 0;
  uint64_t now = yhc_loop_now(c->g->loop);
  for (i = c->instances; i; i = i->next, n++) {
    yhc_instance_info *o;
    if (n >= max || !out) continue;
    o = &out[n];
    memset(o, 0, sizeof *o);
    o->provider_id = i->provider_id;
    o->provider_name = i->provider_name;
    o->agreement_id = i->agreement_id;
    o->activity_id = i->activity_id;
    o->state = yhc__instance_public_state(i);
    o->draining = i->draining;
    o->in_flight = i->in_flight;
    o->served = i->served;
    o->failed = i->failed_n;
    o->spent = i->agreement ? yhc__glm_to_double(&i->agreement->accepted) : 0;
    o->ready_ms = i->state == YHC__I_READY && i->ready_at_ms ? now - i->ready_at_ms : 0;
  }
  return n;
}

static int yhc__cluster_below_target(yhc_cluster *c) {
  const yhc__instance *i;
  int ready = 0;
  if (c->failed_cluster) return 1;
  for (i = c->instances; i; i = i->next) ready += i->state == YHC__I_READY && !i->draining;
  return ready < yhc__cluster_target(c);
}

YHCDEF yhc_state yhc_session_state(yhc_session *s, yhc_error *last_error) {
  yhc_cluster *c;
  if (last_error) *last_error = s->g.last_error;
  if (s->close_state == YHC__S_CLOSED) return YHC_STATE_CLOSED;
  if (s->closing) return YHC_STATE_CLOSING;
  if (s->g.state == YHC__G_FAILED) return YHC_STATE_FAILED;
  if (s->g.state != YHC__G_READY) return YHC_STATE_STARTING;
  for (c = s->clusters; c; c = c->next)
    if (yhc__cluster_below_target(c)) return YHC_STATE_DEGRADED;
  return YHC_STATE_READY;
}

YHCDEF const char *yhc_state_name(yhc_state state) {
  static const char *const names[] = {"starting", "ready", "degraded", "failed", "closing", "closed"};
  int k = (int)state - 1;
  return (k >= 0 && k < (int)(sizeof names / sizeof *names)) ? names[k] : "unknown";
}

/* ---- metrics (OpenMetrics text format 1.0) */

/* Label values are escaped as the format asks: backslash, double quote and newline. */
static void yhc__om_label(yhc_buf *b, const char *name, const char *value) {
  yhc_buf_printf(b, "%s=\"", name);
  for (; value && *value; value++) {
    if (*value == '\\' || *value == '"') yhc_buf_printf(b, "\\%c", *value);
    else if (*value == '\n') yhc_buf_appends(b, "\\n");
    else yhc_buf_append(b, value, 1);
  }
  yhc_buf_appends(b, "\"");
}

/* Seconds from microseconds, as integer arithmetic: printf's %f would follow the locale. */
static void yhc__om_seconds(yhc_buf *b, uint64_t us) {
  yhc_buf_printf(b, "%llu.%06llu", (unsigned long long)(us / 1000000u), (unsigned long long)(us % 1000000u));
}

/* GLM exactly, locale-free. */
static void yhc__om_glm(yhc_buf *b, const yhc__glm *glm) {
  char t[YHC__GLM_TEXT];
  yhc_buf_appends(b, yhc__glm_format(glm, 0, t));
}

static void yhc__om_family(yhc_buf *b, const char *name, const char *type, const char *unit, const char *help) {
  yhc_buf_printf(b, "# TYPE %s %s\n", name, type);
  if (unit) yhc_buf_printf(b, "# UNIT %s %s\n", name, unit);
  yhc_buf_printf(b, "# HELP %s %s\n", name, help);
}

/* One sample line: name{service="...",<extra>} value */
static void yhc__om_start(yhc_buf *b, const char *name, const char *suffix, const char *service) {
  yhc_buf_printf(b, "%s%s{", name, suffix);
  yhc__om_label(b, "service", service);
}

static void yhc__om_u64(yhc_buf *b, const char *name, const char *suffix, const char *service, const char *k1,
                        const char *v1, uint64_t value) {
  yhc__om_start(b, name, suffix, service);
  if (k1) {
    yhc_buf_appends(b, ",");
    yhc__om_label(b, k1, v1);
  }
  yhc_buf_printf(b, "} %llu\n", (unsigned long long)value);
}

static void yhc__om_hist(yhc_buf *b, const char *name, const char *service, const yhc__instance *i,
                         const yhc__hist *h) {
  uint64_t cum = 0;
  int k;
  for (k = 0; k <= YHC__HIST_N; k++) {
    cum += h->bucket[k];
    yhc__om_start(b, name, "_bucket", service);
    if (i) {
      yhc_buf_appends(b, ",");
      yhc__om_label(b, "provider_id", i->provider_id);
      yhc_buf_appends(b, ",");
      yhc__om_label(b, "provider_name", i->provider_name);
    }
    if (k < YHC__HIST_N) {
      yhc_buf_appends(b, ",le=\"");
      yhc__om_seconds(b, (uint64_t)yhc__hist_bound_ms[k] * 1000u);
      yhc_buf_printf(b, "\"} %llu\n", (unsigned long long)cum);
    } else {
      yhc_buf_printf(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
  }
  yhc__om_start(b, name, "_count", service);
  if (i) {
    yhc_buf_appends(b, ",");
    yhc__om_label(b, "provider_id", i->provider_id);
    yhc_buf_appends(b, ",");
    yhc__om_label(b, "provider_name", i->provider_name);
  }
  yhc_buf_printf(b, "} %llu\n", (unsigned long long)h->count);
  yhc__om_start(b, name, "_sum", service);
  if (i) {
    yhc_buf_appends(b, ",");
    yhc__om_label(b, "provider_id", i->provider_id);
    yhc_buf_appends(b, ",");
    yhc__om_label(b, "provider_name", i->provider_name);
  }
  yhc_buf_appends(b, "} ");
  yhc__om_seconds(b, h->sum_us);
  yhc_buf_appends(b, "\n");
}

YHCDEF int yhc_session_metrics(yhc_session *s, yhc_buf *out) {
  static const char *const inst_states[] = {"starting", "ready", "stopping", "stopped"};
  yhc_buf b;
  yhc_cluster *c;
  const yhc__instance *i;
  int k;
  memset(&b, 0, sizeof b);
  yhc__om_family(&b, "yhc_session_state", "stateset", NULL, "The session's state.");
  for (k = YHC_STATE_STARTING; k <= YHC_STATE_CLOSED; k++)
    yhc_buf_printf(&b, "yhc_session_state{yhc_session_state=\"%s\"} %d\n", yhc_state_name((yhc_state)k),
                   (int)yhc_session_state(s, NULL) == k);
  yhc__om_family(&b, "yhc_spent_glm", "gauge", NULL, "GLM accepted so far, all clusters.");
  yhc_buf_appends(&b, "yhc_spent_glm ");
  yhc__om_glm(&b, &s->g.spent);
  yhc_buf_appends(&b, "\n");
  yhc__om_family(&b, "yhc_requests", "counter", NULL, "Service requests answered, by result.");
  for (c = s->clusters; c; c = c->next) {
    yhc__om_u64(&b, "yhc_requests", "_total", c->url, "result", "response", c->completed);
    yhc__om_u64(&b, "yhc_requests", "_total", c->url, "result", "error", c->failed_n);
  }
  yhc__om_family(&b, "yhc_request_retries", "counter", NULL, "Times a request moved to another provider.");
  for (c = s->clusters; c; c = c->next) yhc__om_u64(&b, "yhc_request_retries", "_total", c->url, NULL, NULL, c->retried);
  yhc__om_family(&b, "yhc_sent_bytes", "counter", "bytes", "Request bytes sent to providers.");
  for (c = s->clusters; c; c = c->next) yhc__om_u64(&b, "yhc_sent_bytes", "_total", c->url, NULL, NULL, c->bytes_out);
  yhc__om_family(&b, "yhc_received_bytes", "counter", "bytes", "Response bytes received from providers.");
  for (c = s->clusters; c; c = c->next) yhc__om_u64(&b, "yhc_received_bytes", "_total", c->url, NULL, NULL, c->bytes_in);
  yhc__om_family(&b, "yhc_instance_failures", "counter", NULL, "Instances that ended by a failure.");
  for (c = s->clusters; c; c = c->next)
    yhc__om_u64(&b, "yhc_instance_failures", "_total", c->url, NULL, NULL, (uint64_t)c->instances_failed);
  yhc__om_family(&b, "yhc_queued_requests", "gauge", NULL, "Requests waiting for an instance.");
  for (c = s->clusters; c; c = c->next) yhc__om_u64(&b, "yhc_queued_requests", "", c->url, NULL, NULL, c->q.len);
  yhc__om_family(&b, "yhc_in_flight_requests", "gauge", NULL, "Requests on providers now.");
  for (c = s->clusters; c; c = c->next) yhc__om_u64(&b, "yhc_in_flight_requests", "", c->url, NULL, NULL, c->in_flight);
  yhc__om_family(&b, "yhc_instances", "gauge", NULL, "Instances by state.");
  for (c = s->clusters; c; c = c->next) {
    uint64_t n[4] = {0, 0, 0, 0};
    for (i = c->instances; i; i = i->next) n[(int)yhc__instance_public_state(i) - 1]++;
    for (k = 0; k < 4; k++) yhc__om_u64(&b, "yhc_instances", "", c->url, "state", inst_states[k], n[k]);
  }
  yhc__om_family(&b, "yhc_cluster_target_size", "gauge", NULL, "Instances the cluster aims for.");
  for (c = s->clusters; c; c = c->next)
    yhc__om_u64(&b, "yhc_cluster_target_size", "", c->url, NULL, NULL, (uint64_t)YHC__MAX(0, yhc__cluster_target(c)));
  yhc__om_family(&b, "yhc_request_duration_seconds", "histogram", "seconds", "Submission to answer of served requests.");
  for (c = s->clusters; c; c = c->next) yhc__om_hist(&b, "yhc_request_duration_seconds", c->url, NULL, &c->total_hist);
  yhc__om_family(&b, "yhc_request_queue_seconds", "histogram", "seconds", "Time served requests waited for an instance.");
  for (c = s->clusters; c; c = c->next) yhc__om_hist(&b, "yhc_request_queue_seconds", c->url, NULL, &c->queue_hist);
  yhc__om_family(&b, "yhc_request_service_seconds", "histogram", "seconds", "Time on the provider that answered.");
  for (c = s->clusters; c; c = c->next) yhc__om_hist(&b, "yhc_request_service_seconds", c->url, NULL, &c->service_hist);
  yhc__om_family(&b, "yhc_provider_requests", "counter", NULL, "Requests per provider instance, by result.");
  for (c = s->clusters; c; c = c->next) {
    for (i = c->instances; i; i = i->next) {
      int r;
      for (r = 0; r < 2; r++) {
        yhc__om_start(&b, "yhc_provider_requests", "_total", c->url);
        yhc_buf_appends(&b, ",");
        yhc__om_label(&b, "provider_id", i->provider_id);
        yhc_buf_appends(&b, ",");
        yhc__om_label(&b, "provider_name", i->provider_name);
        yhc_buf_printf(&b, ",result=\"%s\"} %llu\n", r ? "error" : "response",
                       (unsigned long long)(r ? i->failed_n : i->served));
      }
    }
  }
  yhc__om_family(&b, "yhc_provider_service_seconds", "histogram", "seconds", "Service time per provider instance.");
  for (c = s->clusters; c; c = c->next)
    for (i = c->instances; i; i = i->next)
      yhc__om_hist(&b, "yhc_provider_service_seconds", c->url, i, &i->service_hist);
  yhc_buf_appends(&b, "# EOF\n");
  if (!b.ptr || yhc_buf_append(out, b.ptr, b.len) < 0) {
    yhc_buf_free(&b);
    return -1;
  }
  yhc_buf_free(&b);
  return 0;
}
YHCDEF yhc_loop *yhc_session_loop(yhc_session *s) { return s->loop; }

YHCDEF int yhc_session_daemon_ok(yhc_session *s, yhc_error *why) {
  if (!s->g.down_since) {
    if (why) yhc__error_clear(why);
    return 1;
  }
  if (why)
    yhc__error_set(why, YHC_ERR_YAGNA, 0, "the yagna daemon at %s is unreachable since %llu ms: %s", s->g.base,
                   (unsigned long long)(yhc_loop_now(s->loop) - s->g.down_since), s->g.down_why);
  return 0;
}

/* ---- close */

static void yhc__session_closed_cb(void *ctx) {
  yhc_session *s = YHC__CAST(yhc_session *, ctx);
  s->close_state = YHC__S_CLOSED;
  yhc__timer_stop(s->loop, &s->close_timer);
  {
    char t[YHC__GLM_TEXT];
    if (s->g.left[0])
      yhc__emitf(&s->g, YHC_EV_SESSION_CLOSED, NULL, "session closed: %s GLM spent; not cleaned up: %s",
                 yhc__glm_format(&s->g.spent, 0, t), s->g.left);
    else
      yhc__emitf(&s->g, YHC_EV_SESSION_CLOSED, NULL, "session closed: %s GLM spent", yhc__glm_format(&s->g.spent, 0, t));
  }
}

/* The close is bounded by close_timeout_ms as a whole, even with the daemon gone or hung:
   work in flight is cut at half of it, invoices are awaited until 80 %, and at the end
   whatever is still being stopped or torn down is left as it is and named. */
static void yhc__session_close_step(void *ctx) {
  yhc_session *s = YHC__CAST(yhc_session *, ctx);
  yhc_cluster *c;
  uint64_t now = yhc_loop_now(s->loop), spent = now - s->close_started_ms;
  uint64_t limit = (uint64_t)s->d.close_timeout_ms;
  int busy = 0;
  if (s->close_state == YHC__S_DRAINING) {
    for (c = s->clusters; c; c = c->next) busy += c->instances != NULL;
    /* a start-up call in flight may still create the network or the allocation: let it
       finish so teardown can undo it (bounded by the daemon client's timeouts) */
    if (s->g.state == YHC__G_STARTING) busy++;
    if (busy && spent >= limit) {
      /* out of time: instances still stopping are left as they are */
      for (c = s->clusters; c; c = c->next)
        while (c->instances) yhc__instance_abandon(c->instances);
      busy = 0;
    } else if (busy && spent >= limit / 2) {
      /* out of patience: what is still running is cut and answered with an error */
      yhc__instance *i, *next;
      for (c = s->clusters; c; c = c->next) {
        for (i = c->instances; i; i = next) {
          next = i->next; /* a stop may end (and free) the instance at once */
          if (i->state >= YHC__I_STOPPING) continue;
          i->cut_by_close = 1;
          yhc__instance_stop(i);
        }
      }
    }
    if (busy) goto again;
    s->close_state = YHC__S_INVOICES;
    s->invoices_since_ms = now;
  }
  if (s->close_state == YHC__S_INVOICES) {
    if (yhc__golem_invoices_pending(&s->g) && spent < limit * 4 / 5) goto again;
    if (yhc__golem_invoices_pending(&s->g))
      yhc__golem_left(&s->g, "%d invoice(s) did not arrive in time", yhc__golem_invoices_pending(&s->g));
    s->close_state = YHC__S_TEARDOWN;
    if (spent >= limit) yhc__golem_abandon(&s->g);
    yhc__golem_teardown(&s->g, yhc__session_closed_cb, s);
    if (s->close_state == YHC__S_TEARDOWN) goto again;
    return;
  }
  if (s->close_state == YHC__S_TEARDOWN) {
    if (spent >= limit) yhc__golem_abandon(&s->g); /* ends the teardown, which ends the close */
    else goto again;
  }
  return;
again:
  yhc__timer_start(s->loop, &s->close_timer, 100, yhc__session_close_step, s);
}

YHCDEF const char *yhc_session_leftovers(yhc_session *s) { return s->g.left; }

static void yhc__session_cluster_idle(yhc_cluster *c) { (void)c; }

YHCDEF void yhc_session_close(yhc_session *s) {
  yhc_cluster *c;
  if (!s || s->closing) return;
  s->closing = 1;
  s->close_state = YHC__S_DRAINING;
  s->close_started_ms = yhc_loop_now(s->loop);
  for (c = s->clusters; c; c = c->next) {
    yhc__instance *i, *next;
    c->closing = 1;
    c->on_idle = yhc__session_cluster_idle;
    if (c->image_call) yhc__http_abandon(c->plain, c->image_call);
    c->image_call = 0;
    while (c->q.head) yhc__req_fail(c->q.head, YHC_ERR_SHUTDOWN, "the session closed before %s could serve the request", c->url);
    yhc__demand_unsubscribe(c);
    for (i = c->instances; i; i = next) {
      next = i->next;
      i->drain_ms = s->d.close_timeout_ms;
      yhc__cluster_drain(c, i);
    }
  }
  yhc__session_close_step(s);
}

/* Closed once the last event (SESSION_CLOSED) has reached the callback too. */
YHCDEF int yhc_session_closed(yhc_session *s) { return s->close_state == YHC__S_CLOSED && !s->g.ev_head; }

YHCDEF int yhc_session_run(yhc_session *s, const volatile int *done) {
  while (done ? !*done : !yhc_session_closed(s))
    if (yhc_loop_poll(s->loop, 1000) < 0 && errno != EINTR) return -1;
  return 0;
}

YHCDEF int yhc_session_close_wait(yhc_session *s) {
  yhc_session_close(s);
  if (yhc_session_run(s, NULL) < 0) return -1;
  return s->g.left[0] ? 1 : 0;
}

/* The last step of a destroy, run when no frame holds the session any more. */
static void yhc__session_free(yhc__golem *g) {
  yhc_session *s = YHC__CAST(yhc_session *, g->owner);
  if (s->own_loop) yhc_loop_destroy(s->loop); /* deferred by the loop itself if inside it */
  YHC_FREE(s->yagna_url);
  YHC_FREE(s->app_key);
  YHC_FREE(s->subnet);
  YHC_FREE(s->image_repo);
  YHC_FREE(s);
}

YHCDEF void yhc_session_destroy(yhc_session *s) {
  yhc_cluster *c;
  yhc__agreement *a;
  if (!s || s->destroying) return;
  s->destroying = 1;
  s->closing = 1;
  yhc__golem_hold(&s->g);
  /* events already noticed are answered first, while everything they name still exists;
     those a teardown would raise are not */
  yhc__events_flush(&s->g, 1);
  s->g.destroyed = 1;
  yhc__timer_stop(s->loop, &s->close_timer);
  /* answer every request first, while everything it may touch still exists */
  for (c = s->clusters; c; c = c->next) {
    yhc__instance *i;
    c->closing = 1;
    /* the image lookup runs on the plain client, destroyed after the clusters are freed */
    if (c->image_call) yhc__http_abandon(c->plain, c->image_call);
    c->image_call = 0;
    while (c->q.head) yhc__req_fail(c->q.head, YHC_ERR_SHUTDOWN, "the session was destroyed");
    for (i = c->instances; i; i = i->next) {
      /* a draining instance would stop itself (freeing its origin) inside the abort */
      i->draining = 0;
      if (i->origin) yhc__host_abort(i->origin, YHC_ERR_SHUTDOWN, "the session was destroyed");
    }
  }
  s->g.payment_polls = 0;
  yhc__timer_stop(s->loop, &s->g.debit_retry);
  yhc__timer_stop(s->loop, &s->g.invoice_retry);
  yhc__timer_stop(s->loop, &s->g.agreement_retry);
  /* daemon calls are cancelled while their owners still exist */
  if (s->g.api) yhc_http_destroy(s->g.api);
  s->g.api = NULL;
  while ((c = s->clusters) != NULL) {
    s->clusters = c->next;
    while (c->instances) {
      yhc__instance *i = c->instances;
      c->instances = i->next;
      i->call = i->poll_call = 0; /* already cancelled with the client */
      yhc__instance_free(i);
    }
    yhc__cluster_free(c);
  }
  while (s->g.nodes) {
    yhc__node_ref *n = s->g.nodes;
    s->g.nodes = n->next;
    YHC_FREE(n);
  }
  while ((a = s->g.agreements) != NULL) {
    s->g.agreements = a->next;
    YHC_FREE(a);
  }
  yhc_json_free(s->g.decorations);
  if (s->plain) yhc_http_destroy(s->plain);
  yhc__events_flush(&s->g, 0);
  yhc__golem_unhold(&s->g); /* frees s now, or when the callback it was called from returns */
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
