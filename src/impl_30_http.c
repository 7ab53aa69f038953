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
static int yhc__is_tchar(unsigned char c) {
  static const char extra[] = "!#$%&'*+-.^_`|~";
  return yhc__is_alpha(c) || yhc__is_digit(c) || (c && strchr(extra, c) != NULL);
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

/* Where a request is: nowhere yet, in an origin's queue, on a connection, waiting for its
   deferred answer, held by an upper layer (a cluster's queue), or finished. */
enum { YHC__REQ_NEW, YHC__REQ_QUEUED, YHC__REQ_ACTIVE, YHC__REQ_DEFERRED, YHC__REQ_PARKED, YHC__REQ_DONE };
enum { YHC__BODY_NONE, YHC__BODY_LENGTH, YHC__BODY_CHUNKED, YHC__BODY_CLOSE };
enum { YHC__PH_HEAD, YHC__PH_BODY };

typedef struct yhc__host yhc__host;
typedef struct yhc__conn yhc__conn;
typedef struct yhc__req yhc__req;

struct yhc__req {
  yhc_http *http;
  uint64_t id;
  int where;
  yhc__req *all_prev, *all_next;  /* http->live: every request not yet finished */
  yhc__req *q_prev, *q_next;      /* a host's queue or the deferred list */
  yhc__host *host;
  yhc__conn *conn;
  /* what to send */
  yhc_buf wire;
  int is_head;
  int asked_close;                /* the caller sent Connection: close (RFC 9112 9.6) */
  int retryable;                  /* safe to resend on a stale keep-alive connection */
  int stale_retried;
  int (*on_body)(void *user, const void *data, size_t len);
  int (*on_head)(void *user, const yhc_response *head);
  int streamed;                   /* the user has seen part of the answer: no retry now */
  yhc_response_fn cb;
  void *user;
  /* internal completion hook; the default hands the response to cb and recycles */
  void (*on_done)(yhc__req *req);
  void (*unpark)(yhc__req *req);  /* takes a PARKED request out of its owner's queue */
  void *owner;                    /* the upper layer's object (a cluster) */
  void *slot;                     /* where the upper layer sent it (an instance) */
  int attempts;
  char failed_on[160];            /* providers that failed it, for the final error */
  uint64_t submitted_ms;
  int sent;                       /* bytes of it reached a connection */
  int deadline_hit;
  yhc__timer deadline;
  int timeout_ms;
  /* what came back */
  int status, minor;
  yhc_str reason;
  yhc_buf head;
  yhc_header_view *hv;
  size_t nh, hvcap;
  yhc_buf trail;
  yhc_header_view *tv;
  size_t nt, tvcap;
  yhc_buf body;
  uint64_t body_total;
  int body_mode;
  uint64_t body_left;
  yhc__chunked chunk;
  int keepalive;
  int got_bytes;
  yhc_error error;
  yhc__req *free_next;
};

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
  yhc__req *qhead, *qtail;
  size_t qlen;
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
  yhc__req *dq_head, *dq_tail;  /* deferred completions (invalid requests) */
  yhc__timer deferred_timer;
  yhc__req *free_reqs;
  int nfree;
  uint64_t next_id;
  int destroying;
  char user_agent[64];
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
  r->trail.len = 0;
  r->body.len = 0;
  r->body_total = 0;
  r->nh = r->nt = 0;
  r->body_mode = YHC__BODY_NONE;
  r->body_left = 0;
  r->chunk.state = YHC__CH_SIZE;
  r->chunk.left = 0;
  r->keepalive = 0;
  r->got_bytes = 0;
  yhc__error_clear(&r->error);
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
    yhc_buf wire = r->wire, head = r->head, trail = r->trail, body = r->body;
    yhc_header_view *hv = r->hv, *tv = r->tv;
    size_t hvcap = r->hvcap, tvcap = r->tvcap;
    memset(r, 0, sizeof *r);
    r->wire = wire; r->wire.len = 0;
    r->head = head; r->trail = trail; r->body = body;
    r->hv = hv; r->hvcap = hvcap; r->tv = tv; r->tvcap = tvcap;
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
  yhc_buf_free(&r->wire);
  yhc_buf_free(&r->head);
  yhc_buf_free(&r->trail);
  yhc_buf_free(&r->body);
  YHC_FREE(r->hv);
  YHC_FREE(r->tv);
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
  resp->err = r->error.code;
  resp->error = r->error.code ? r->error.msg : "";
  resp->status = r->status;
  resp->http_minor = r->minor;
  resp->reason = r->reason;
  resp->headers = r->hv;
  resp->header_count = r->nh;
  resp->trailers = r->tv;
  resp->trailer_count = r->nt;
  resp->body.ptr = r->body.ptr ? r->body.ptr : "";
  resp->body.len = r->body.len;
}

static void yhc__req_deliver_user(yhc__req *r) {
  yhc_response resp;
  yhc__response_view(r, &resp);
  if (r->cb) r->cb(&resp, r->user);
  yhc__req_release(r);
}

/* Detaches r from wherever it waits, then runs its completion exactly once. */
static void yhc__req_complete(yhc__req *r) {
  yhc_http *http = r->http;
  YHC_ASSERT(r->where != YHC__REQ_DONE);
  yhc__timer_stop(http->loop, &r->deadline);
  if (r->where == YHC__REQ_QUEUED) {
    yhc__host *h = r->host;
    if (r->q_prev) r->q_prev->q_next = r->q_next; else h->qhead = r->q_next;
    if (r->q_next) r->q_next->q_prev = r->q_prev; else h->qtail = r->q_prev;
    h->qlen--;
  } else if (r->where == YHC__REQ_DEFERRED) {
    if (r->q_prev) r->q_prev->q_next = r->q_next; else http->dq_head = r->q_next;
    if (r->q_next) r->q_next->q_prev = r->q_prev; else http->dq_tail = r->q_prev;
  } else if (r->where == YHC__REQ_PARKED) {
    if (r->unpark) r->unpark(r);
  } else if (r->where == YHC__REQ_ACTIVE && r->conn) {
    yhc__conn *c = r->conn;
    c->req = NULL;
    r->conn = NULL;
    /* a response cut short leaves the connection in an unknown state */
    if (r->error.code) yhc__conn_close(c);
  }
  r->q_prev = r->q_next = NULL;
  r->where = YHC__REQ_DONE;
  yhc__req_unlink_live(r);
  if (r->on_done) r->on_done(r); else yhc__req_deliver_user(r);
}

static void yhc__req_fail(yhc__req *r, yhc_err code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  yhc__error_vset(&r->error, code, 0, fmt, ap);
  va_end(ap);
  yhc__req_complete(r);
}

static void yhc__req_fail_with(yhc__req *r, const yhc_error *e) {
  r->error = *e;
  if (!r->error.code) r->error.code = YHC_ERR_IO;
  yhc__req_complete(r);
}

static void yhc__deferred_run(void *ctx) {
  yhc_http *http = YHC__CAST(yhc_http *, ctx);
  while (http->dq_head) yhc__req_complete(http->dq_head);
}

/* Ends r with its error from the loop rather than from inside the caller's submit call. */
static void yhc__req_defer(yhc__req *r) {
  yhc_http *http = r->http;
  r->where = YHC__REQ_DEFERRED;
  r->q_next = NULL;
  r->q_prev = http->dq_tail;
  if (http->dq_tail) http->dq_tail->q_next = r; else http->dq_head = r;
  http->dq_tail = r;
  if (!yhc__timer_armed(&http->deferred_timer))
    yhc__timer_start(http->loop, &http->deferred_timer, 0, yhc__deferred_run, http);
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

static int yhc__hdr_is(const char *name, const char *want) {
  return yhc__str_ieq(yhc__str_c(name), want);
}

/* Writes the request head and body into r->wire. Returns 0, or -1 with r->error set. */
static int yhc__req_serialise(yhc__req *r, const char *method, yhc_str host, int port,
                              int default_port, yhc_str target, const yhc_request *req) {
  yhc_buf *w = &r->wire;
  size_t i;
  int have_host = 0, have_ua = 0, have_len = 0, have_te = 0, ok = 0;
  for (i = 0; i < req->header_count; i++) {
    const yhc_header *hd = &req->headers[i];
    if (!yhc__header_ok(hd->name, 1) || !yhc__header_ok(hd->value, 0)) {
      yhc__error_set(&r->error, YHC_ERR_INVALID, 0,
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
  if (yhc_buf_reserve(w, 256 + target.len + req->body_len)) goto nomem;
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
    if (port != default_port) ok |= yhc_buf_printf(w, ":%d", port);
    ok |= yhc_buf_append(w, "\r\n", 2);
  }
  if (!have_ua && r->http->user_agent[0]) ok |= yhc_buf_printf(w, "User-Agent: %s\r\n", r->http->user_agent);
  for (i = 0; i < req->header_count; i++) {
    ok |= yhc_buf_appends(w, req->headers[i].name);
    ok |= yhc_buf_append(w, ": ", 2);
    ok |= yhc_buf_appends(w, req->headers[i].value);
    ok |= yhc_buf_append(w, "\r\n", 2);
  }
  if (!have_len && !have_te &&
      (req->body_len || !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH")))
    ok |= yhc_buf_printf(w, "Content-Length: %zu\r\n", req->body_len);
  ok |= yhc_buf_append(w, "\r\n", 2);
  if (req->body_len) ok |= yhc_buf_append(w, req->body, req->body_len);
  if (ok) goto nomem;
  return 0;
nomem:
  yhc__error_set(&r->error, YHC_ERR_NOMEM, 0, "out of memory building the request");
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
  yhc__req *r = h->qhead;
  if (!r) {
    yhc__conn_go_idle(c);
    return;
  }
  h->qhead = r->q_next;
  if (h->qhead) h->qhead->q_prev = NULL; else h->qtail = NULL;
  h->qlen--;
  r->q_next = r->q_prev = NULL;
  yhc__conn_start(c, r);
}

static yhc__conn *yhc__conn_open(yhc__host *h, yhc_error *err);

static void yhc__host_enqueue(yhc__host *h, yhc__req *r, int front) {
  r->host = h;
  r->where = YHC__REQ_QUEUED;
  if (front) {
    r->q_prev = NULL;
    r->q_next = h->qhead;
    if (h->qhead) h->qhead->q_prev = r; else h->qtail = r;
    h->qhead = r;
  } else {
    r->q_next = NULL;
    r->q_prev = h->qtail;
    if (h->qtail) h->qtail->q_next = r; else h->qhead = r;
    h->qtail = r;
  }
  h->qlen++;
}

/* Matches queued requests with idle connections, and opens connections for the rest up to
   the cap. A failure to even start a connection fails the request at the queue's head, so a
   dead origin answers each request once instead of retrying forever. */
static void yhc__host_pump(yhc__host *h) {
  while (h->qhead) {
    yhc__conn *c, *idle = NULL;
    int connecting = 0;
    for (c = h->conns; c; c = c->next) {
      if (c->state == YHC__CONN_IDLE && !idle) idle = c;
      if (c->state == YHC__CONN_CONNECTING) connecting++;
    }
    if (idle && idle->s->vt->alive && !idle->s->vt->alive(idle->s)) {
      yhc__conn_close(idle); /* closed by the peer while the loop was not turning */
      continue;
    }
    if (idle) {
      yhc__conn_next(idle);
      continue;
    }
    if ((size_t)connecting >= h->qlen || h->nconns >= h->max_conns) return;
    {
      yhc_error err;
      yhc__error_clear(&err);
      if (!yhc__conn_open(h, &err)) {
        h->last_error = err;
        if (h->on_conn_error) h->on_conn_error(h, &err);
        if (h->qhead) yhc__req_fail_with(h->qhead, &err);
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
    r->error = *e;
    yhc__req_complete(r); /* closes c */
  } else {
    yhc__conn_close(c);
  }
  if (was_connecting) {
    if (h->on_conn_error) h->on_conn_error(h, e);
    /* the request this connection was opened for takes the error */
    if (h->qhead && h->nconns < (int)h->qlen) yhc__req_fail_with(h->qhead, e);
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
    r->streamed = 1;
    if (r->on_body(r->user, p, n)) {
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
      /* "5, 5" and repeated equal values are one length; anything else is an attack */
      size_t j = 0;
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
      }
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
  if (r->is_head || r->status == 204 || r->status == 304 || (r->status >= 100 && r->status < 200)) {
    r->body_mode = YHC__BODY_NONE;
  } else if (te) {
    r->body_mode = chunked ? YHC__BODY_CHUNKED : YHC__BODY_CLOSE;
    if (have_cl || !chunked) r->keepalive = 0; /* RFC 9112: close after such a message */
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

/* Parses what is buffered. Returns 1 when the connection is still usable for more input. */
static int yhc__conn_parse(yhc__conn *c) {
  yhc_http *http = c->host->http;
  const yhc_limits *lim = &http->d.limits;
  while (c->req && !c->dead) {
    yhc__req *r = c->req;
    const char *p = c->rbuf.ptr + c->rpos;
    size_t avail = c->rbuf.len - c->rpos;
    if (c->phase == YHC__PH_HEAD) {
      size_t end;
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
          yhc__grow_views(&r->hv, &r->hvcap, YHC__MIN(lim->max_header_count, 32) + 1)) {
        yhc__conn_fail_msg(c, YHC_ERR_NOMEM, "out of memory storing response headers");
        return 0;
      }
      yhc__error_clear(&e);
      for (;;) {
        n = yhc__parse_head(r->head.ptr, end, &h, r->hv, r->hvcap, &e);
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
      if (out.data && yhc__conn_body(c, out.data, out.len)) return 0;
      if (out.done) {
        if (out.trailer_len) {
          long tn;
          size_t cnt = 0;
          r->trail.len = 0;
          if (yhc_buf_append(&r->trail, out.trailer, out.trailer_len) ||
              yhc__grow_views(&r->tv, &r->tvcap, lim->max_header_count)) {
            yhc__conn_fail_msg(c, YHC_ERR_NOMEM, "out of memory storing trailers");
            return 0;
          }
          tn = yhc__parse_fields(r->trail.ptr, r->trail.len, 0, r->tv, lim->max_header_count, &cnt,
                                 "response trailer", &e);
          if (tn <= 0) {
            if (tn == 0) yhc__error_set(&e, YHC_ERR_PROTOCOL, 0, "malformed trailer section");
            yhc__conn_fail(c, &e);
            return 0;
          }
          r->nt = cnt;
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
  while (h->qhead) yhc__req_fail(h->qhead, code, "%s", msg);
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
  if (d->max_conns_per_host <= 0) d->max_conns_per_host = 16;
  if (d->max_idle_per_host <= 0) d->max_idle_per_host = d->max_conns_per_host;
  d->connect_timeout_ms = yhc__timeout_or(d->connect_timeout_ms, 10000);
  d->idle_timeout_ms = yhc__timeout_or(d->idle_timeout_ms, 30000);
  d->keepalive_ms = yhc__timeout_or(d->keepalive_ms, 30000);
  d->request_timeout_ms = yhc__timeout_or(d->request_timeout_ms, 120000);
  if (!d->recv_buffer) d->recv_buffer = 16384;
  snprintf(http->user_agent, sizeof http->user_agent, "%s",
           d->user_agent ? d->user_agent : "yhc/" YHC_VERSION);
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
  snprintf(key, sizeof key, "%s://%s:%d", tls ? "https" : "http", hostname, u->port);
  for (h = http->hosts; h; h = h->next)
    if (!h->external && !strcmp(h->key, key)) return h;
  return yhc__host_new(http, key, hostname, u->port, tls, http->d.max_conns_per_host);
}

/* Builds a request record from the public description. Invalid input leaves r->error set
   (the caller defers the answer). */
static void yhc__req_fill(yhc__req *r, const yhc_request *req, yhc_url *u, int *tls) {
  const char *method = req->method ? req->method : "GET";
  yhc_error e;
  *tls = 0;
  if (!req->url || yhc_url_parse(req->url, strlen(req->url), u, &e) < 0) {
    if (!req->url) yhc__error_set(&e, YHC_ERR_URL, 0, "request has no URL");
    r->error = e;
    return;
  }
  if (yhc__str_ieq(u->scheme, "https")) {
    *tls = 1;
#ifndef YHC_MBEDTLS
    yhc__error_set(&r->error, YHC_ERR_NO_TLS, 0,
                   "https:// needs TLS, but yhc was built without TLS (define YHC_MBEDTLS)");
    return;
#endif
  } else if (!yhc__str_ieq(u->scheme, "http")) {
    yhc__error_set(&r->error, YHC_ERR_URL, 0, "unsupported URL scheme \"%.*s\"",
                   (int)YHC__MIN(u->scheme.len, 32), u->scheme.ptr);
    return;
  }
  if (!yhc__method_ok(method)) {
    yhc__error_set(&r->error, YHC_ERR_INVALID, 0, "invalid request method \"%.32s\"", method);
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
  yhc__req *r = yhc__req_new(http);
  yhc_url u;
  int tls = 0, timeout;
  yhc__host *h;
  if (!r) return 0;
  r->cb = cb;
  r->user = user;
  if (!req) {
    yhc__error_set(&r->error, YHC_ERR_INVALID, 0, "request is NULL");
    yhc__req_defer(r);
    return r->id;
  }
  yhc__req_fill(r, req, &u, &tls);
  if (r->error.code) {
    yhc__req_defer(r);
    return r->id;
  }
  h = yhc__host_find_or_add(http, &u, tls);
  if (!h) {
    yhc__error_set(&r->error, YHC_ERR_NOMEM, 0, "out of memory (or host name too long)");
    yhc__req_defer(r);
    return r->id;
  }
  timeout = req->timeout_ms ? req->timeout_ms : http->d.request_timeout_ms;
  r->timeout_ms = timeout;
  if (timeout > 0) yhc__timer_start(http->loop, &r->deadline, (uint64_t)timeout, yhc__req_deadline, r);
  yhc__host_submit(h, r, 0);
  return r->id;
}

YHCDEF int yhc_http_cancel(yhc_http *http, uint64_t id) {
  yhc__req *r;
  for (r = http->live; r; r = r->all_next) {
    if (r->id == id) {
      yhc__req_fail(r, YHC_ERR_CANCELLED, "request cancelled");
      return 0;
    }
  }
  return -1;
}

YHCDEF void yhc_http_destroy(yhc_http *http) {
  if (!http) return;
  http->destroying = 1;
  yhc__timer_stop(http->loop, &http->deferred_timer);
  while (http->dq_head) yhc__req_complete(http->dq_head);
  while (http->hosts) yhc__host_free(http->hosts);
  while (http->live) yhc__req_fail(http->live, YHC_ERR_CANCELLED, "request cancelled: client destroyed");
  while (http->free_reqs) {
    yhc__req *r = http->free_reqs;
    http->free_reqs = r->free_next;
    yhc__req_free_mem(r);
  }
  yhc__tls_ctx_free(http->tls);
  YHC_FREE(http);
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

