/* ==== Public API: HTTP/1.1 client ================================================ */

/* Limits against untrusted peers. Zero means the default in brackets. Exceeding one ends the
   request with YHC_ERR_LIMIT and a message naming the limit; the connection is closed. */
typedef struct yhc_limits {
  size_t max_header_bytes;  /* status line + headers, also trailers [16384] */
  size_t max_header_count;  /* headers (and trailers) per response [100] */
  size_t max_body_bytes;    /* collected body; streaming bodies are not limited [64 MiB] */
  size_t max_chunk_digits;  /* hex digits of a chunk size [16] */
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
     memory stays at the receive buffer. Return non-zero to abort (YHC_ERR_CANCELLED). */
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
/* Ends every unfinished request with YHC_ERR_CANCELLED (callbacks run from inside this call),
   closes every connection and frees the client. */
YHCDEF void yhc_http_destroy(yhc_http *http);

/* Submits a request. The callback runs exactly once, from the loop, never from inside this
   call (so invalid requests are reported through it too). Returns the request's id (never
   0), or 0 only when not even the request record could be allocated (no callback then). */
YHCDEF uint64_t yhc_http_request(yhc_http *http, const yhc_request *req, yhc_response_fn cb,
                                 void *user);
/* Ends an unfinished request with YHC_ERR_CANCELLED (its callback runs before this returns).
   Returns 0, or -1 when the id is unknown or already finished. */
YHCDEF int yhc_http_cancel(yhc_http *http, uint64_t id);

/* Blocking convenience: submits and turns the loop until the request ends. Returns an owned
   response (check ->err) to release with yhc_response_free(); NULL only when out of memory. */
YHCDEF yhc_response *yhc_http_fetch(yhc_http *http, const yhc_request *req);
YHCDEF void yhc_response_free(yhc_response *resp);

/* Case-insensitive header lookup; the first match, or {NULL,0}. For repeated headers
   (Set-Cookie) iterate: size_t i = 0; while (yhc_response_header_next(r, "set-cookie", &i, &v)) */
YHCDEF yhc_str yhc_response_header(const yhc_response *resp, const char *name);
YHCDEF int yhc_response_header_next(const yhc_response *resp, const char *name, size_t *iter,
                                    yhc_str *value);

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

