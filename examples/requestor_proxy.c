/* requestor_proxy.c -- a local HTTP server in front of a Golem cluster.

   Every request that arrives on 127.0.0.1:PORT (method, path and query, headers, body) is
   forwarded to the cluster "http://calc" -- identical instances of examples/calc-image on
   rented providers, reached over the yagna VPN -- and the answer (status, headers, body) goes
   back to the caller:

     YAGNA_APPKEY=... YHC_IMAGE_HASH=... ./requestor_proxy [PORT [SIZE]]
     curl http://127.0.0.1:5000/add/3/4                    -> 7
     curl -d '{"expr":"2**10"}' http://127.0.0.1:5000/calc  -> 1024

   PORT defaults to 5000 (0 = any free port, printed at start); SIZE is the number of
   instances [1]. Environment: YAGNA_API_URL, YAGNA_APPKEY, YHC_IMAGE_HASH, YHC_IMAGE_REPO,
   YHC_BUDGET (GLM the proxy may spend, exact decimal) [1.0].
   Ctrl-C closes the session gracefully (agreements terminated, invoices paid).

   GET /metrics is answered by the proxy itself: the session's metrics in the OpenMetrics text
   format, for Prometheus and its kin.

   The proxy shows the embeddable tier of the event loop: it runs poll() itself over its own
   sockets and the library's (yhc_loop_fds() / yhc_loop_dispatch()), all in one thread. To
   stay short it answers one request per connection ("Connection: close"); request bodies come
   with a Content-Length or chunked (forwarded with a Content-Length). Answers are relayed once
   complete: the library calls back with the whole response after retrying it elsewhere if a
   provider failed midway. Ctrl-C (or SIGTERM) stops accepting, lets the requests in flight
   answer (up to PROXY_DRAIN_MS), then closes the session. */
#define YHC_IMPLEMENTATION
#include "yhc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROXY_SERVICE "http://calc"
#define PROXY_MAX_CLIENTS 256
#define PROXY_MAX_HEAD 16384
#define PROXY_MAX_BODY (16u << 20)
#define PROXY_MAX_HEADERS 64
#define PROXY_DRAIN_MS 30000

typedef struct proxy_client {
  int fd;
  char *in;              /* the request as received */
  size_t in_len, in_cap;
  size_t head_len;       /* bytes up to and including the blank line, once seen */
  size_t body_len;       /* from Content-Length, or of the decoded chunked body */
  int chunked;           /* the body came chunked: decoded in place after the head */
  int is_head;           /* a HEAD: the upstream Content-Length is the answer's */
  uint64_t pending;      /* the forwarded request, while it runs */
  char *out;             /* the answer being written back */
  size_t out_len, out_pos;
} proxy_client;

typedef struct proxy {
  yhc_session *s;
  int listen_fd;
  proxy_client *clients[PROXY_MAX_CLIENTS];
  int nclients;
} proxy;

static volatile sig_atomic_t proxy_stop;
static void proxy_on_signal(int sig) { (void)sig; proxy_stop = 1; }

static void proxy_start_server(yhc_ctx *ctx, const char *listen_on, void *user) {
  const char *argv[] = {"/bin/sh", "-c",
                        "python3 /golem/run/calculator_server.py --port 80 >/dev/null 2>&1 &", NULL};
  (void)listen_on;
  (void)user;
  yhc_ctx_run(ctx, argv);
}

/* ---- answers */

static void proxy_set_answer(proxy_client *c, char *text, size_t len) {
  free(c->out);
  c->out = text;
  c->out_len = len;
  c->out_pos = 0;
}

/* A short plain-text answer of our own (bad request, upstream failure...). */
static void proxy_answer_text(proxy_client *c, int status, const char *reason, const char *text) {
  size_t cap = strlen(text) + 200;
  char *out = (char *)malloc(cap);
  int n;
  if (!out) return;
  n = snprintf(out, cap,
               "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
               status, reason, strlen(text), text);
  proxy_set_answer(c, out, (size_t)n);
}

/* Headers that describe one connection, not the message: never passed along (RFC 9110 7.6.1). */
static int proxy_hop_by_hop(const char *name, size_t len) {
  static const char *const hop[] = {"connection", "keep-alive", "proxy-connection", "te", "trailer",
                                    "transfer-encoding", "upgrade", "content-length", "host", "expect"};
  size_t k;
  for (k = 0; k < sizeof hop / sizeof *hop; k++)
    if (strlen(hop[k]) == len && !strncasecmp(name, hop[k], len)) return 1;
  return 0;
}

/* The cluster answered (or gave up): status line, end-to-end headers and body go back. A HEAD
   answer has no body, and its Content-Length is the upstream one (RFC 9110 9.3.2). */
static void proxy_on_answer(const yhc_response *r, void *user) {
  proxy_client *c = (proxy_client *)user;
  size_t k, cap;
  char *out;
  int n;
  c->pending = 0;
  if (c->fd < 0) return; /* the caller went away and the request was cancelled */
  if (r->err) {
    int status = r->err == YHC_ERR_TIMEOUT ? 504 : r->err == YHC_ERR_QUEUE_FULL ? 503 : 502;
    char text[600];
    snprintf(text, sizeof text, "%s: %s\n", yhc_strerror(r->err), r->error);
    proxy_answer_text(c, status, status == 504 ? "Gateway Timeout" : status == 503 ? "Service Unavailable" : "Bad Gateway", text);
    return;
  }
  cap = 128 + r->reason.len + r->body.len;
  for (k = 0; k < r->header_count; k++) cap += r->headers[k].name.len + r->headers[k].value.len + 4;
  out = (char *)malloc(cap);
  if (!out) return;
  n = snprintf(out, cap, "HTTP/1.1 %d %.*s\r\n", r->status, (int)r->reason.len, r->reason.ptr);
  for (k = 0; k < r->header_count; k++) {
    const yhc_header_view *h = &r->headers[k];
    int is_length = h->name.len == 14 && !strncasecmp(h->name.ptr, "content-length", 14);
    if (proxy_hop_by_hop(h->name.ptr, h->name.len) && !(c->is_head && is_length)) continue;
    n += snprintf(out + n, cap - (size_t)n, "%.*s: %.*s\r\n", (int)h->name.len, h->name.ptr, (int)h->value.len,
                  h->value.ptr);
  }
  if (c->is_head) n += snprintf(out + n, cap - (size_t)n, "Connection: close\r\n\r\n");
  else n += snprintf(out + n, cap - (size_t)n, "Content-Length: %zu\r\nConnection: close\r\n\r\n", r->body.len);
  memcpy(out + n, r->body.ptr, r->body.len);
  proxy_set_answer(c, out, (size_t)n + r->body.len);
}

/* ---- requests */

static void proxy_answer_metrics(proxy *p, proxy_client *c) {
  yhc_buf m;
  char *out;
  int n;
  memset(&m, 0, sizeof m);
  if (yhc_session_metrics(p->s, &m) < 0 || !(out = (char *)malloc(m.len + 200))) {
    yhc_buf_free(&m);
    proxy_answer_text(c, 500, "Internal Server Error", "out of memory\n");
    return;
  }
  n = sprintf(out,
              "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"
              "Content-Length: %zu\r\nConnection: close\r\n\r\n",
              m.len);
  memcpy(out + n, m.ptr, m.len);
  proxy_set_answer(c, out, (size_t)n + m.len);
  yhc_buf_free(&m);
}

/* Decodes a chunked body (RFC 9112 7.1) that starts at `in` in place, so the decoded bytes
   also start at `in`. Returns the decoded length once the last chunk and the trailers are in,
   -2 while more is needed, -1 for a malformed or too large body. */
static long proxy_dechunk(char *in, size_t len, size_t max) {
  size_t r = 0, w = 0;
  for (;;) {
    size_t size = 0, digits = 0;
    char *eol = (char *)memchr(in + r, '\n', len - r);
    if (!eol) return len - r > 1024 ? -1 : -2;
    for (; r < (size_t)(eol - in); r++) {
      int c = in[r], v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                     : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (v < 0) break;
      if (++digits > 8) return -1;
      size = size * 16 + (size_t)v;
    }
    if (!digits || (in[r] != ';' && in[r] != '\r' && in[r] != '\n')) return -1; /* extensions are ignored */
    r = (size_t)(eol - in) + 1;
    if (size == 0) { /* trailers: skipped up to the blank line */
      for (;;) {
        eol = (char *)memchr(in + r, '\n', len - r);
        if (!eol) return len - r > 8192 ? -1 : -2;
        if (eol == in + r || (eol == in + r + 1 && in[r] == '\r')) return (long)w;
        r = (size_t)(eol - in) + 1;
      }
    }
    if (size > max - w) return -1;
    if (len - r < size + 2) return -2;
    memmove(in + w, in + r, size);
    w += size;
    r += size;
    if (in[r] == '\r') r++;
    if (in[r] != '\n') return -1;
    r++;
  }
}

/* The request is complete in c->in: parse the head in place and hand it to the session. */
static void proxy_forward(proxy *p, proxy_client *c) {
  yhc_header headers[PROXY_MAX_HEADERS];
  size_t nh = 0;
  char *line = c->in, *end, *method, *target, *url;
  yhc_request rq;
  c->in[c->head_len - 2] = 0; /* the head becomes one string of lines */
  end = strstr(line, "\r\n");
  if (end) *end = 0;
  method = line;
  target = strchr(line, ' ');
  if (!target || target[1] != '/' || !strchr(target + 1, ' ')) {
    proxy_answer_text(c, 400, "Bad Request", "expected: METHOD /path HTTP/1.1\n");
    return;
  }
  *target++ = 0;
  *strchr(target, ' ') = 0;
  c->is_head = !strcmp(method, "HEAD");
  if (!strcmp(method, "GET") && !strcmp(target, "/metrics")) {
    proxy_answer_metrics(p, c);
    return;
  }
  for (line = end ? end + 2 : NULL; line && *line; line = end ? end + 2 : NULL) {
    char *colon = strchr(line, ':');
    end = strstr(line, "\r\n");
    if (end) *end = 0;
    if (!colon) continue;
    *colon = 0;
    if (proxy_hop_by_hop(line, strlen(line))) continue;
    if (nh == PROXY_MAX_HEADERS) {
      proxy_answer_text(c, 431, "Request Header Fields Too Large", "too many headers\n");
      return;
    }
    for (colon++; *colon == ' ' || *colon == '\t'; colon++) {}
    headers[nh].name = line;
    headers[nh].value = colon;
    nh++;
  }
  url = (char *)malloc(strlen(PROXY_SERVICE) + strlen(target) + 1);
  if (!url) return;
  strcpy(url, PROXY_SERVICE);
  strcat(url, target);
  memset(&rq, 0, sizeof rq);
  rq.method = method;
  rq.url = url;
  rq.headers = headers;
  rq.header_count = nh;
  rq.body = c->in + c->head_len;
  rq.body_len = c->body_len;
  rq.timeout_ms = 120000; /* the first request waits for a provider to be rented */
  /* the library copies what it needs: url, headers and body may go away after this call */
  c->pending = yhc_session_request(p->s, &rq, proxy_on_answer, c);
  free(url);
  if (!c->pending) proxy_answer_text(c, 500, "Internal Server Error", "out of memory\n");
}

/* The value of header `name` in a NUL-terminated head, or NULL. */
static const char *proxy_head_find(const char *head, const char *name) {
  size_t len = strlen(name);
  const char *line;
  for (line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n"))
    if (!strncasecmp(line + 2, name, len) && line[2 + len] == ':') return line + 3 + len;
  return NULL;
}

/* Reads what the caller sent; forwards once head and body are in. Returns -1 to drop it. */
static int proxy_read(proxy *p, proxy_client *c) {
  for (;;) {
    ssize_t n;
    if (c->in_cap - c->in_len < 4096) {
      size_t cap = c->in_cap ? c->in_cap * 2 : 8192;
      char *in = (char *)realloc(c->in, cap + 1);
      if (!in) return -1;
      c->in = in;
      c->in_cap = cap;
    }
    n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    if (n <= 0) return -1;
    c->in_len += (size_t)n;
    c->in[c->in_len] = 0;
    if (!c->head_len) {
      char *blank = strstr(c->in, "\r\n\r\n");
      const char *cl;
      if (!blank) {
        if (c->in_len > PROXY_MAX_HEAD) return -1;
        continue;
      }
      c->head_len = (size_t)(blank + 4 - c->in);
      *blank = 0; /* look for framing headers within the head only */
      cl = proxy_head_find(c->in, "content-length");
      c->body_len = cl ? strtoul(cl, NULL, 10) : 0;
      if (proxy_head_find(c->in, "transfer-encoding")) {
        const char *te = proxy_head_find(c->in, "transfer-encoding");
        while (*te == ' ') te++;
        if (strncasecmp(te, "chunked", 7) || cl) {
          proxy_answer_text(c, 400, "Bad Request", "only Transfer-Encoding: chunked, without Content-Length\n");
          return 0;
        }
        c->chunked = 1;
      }
      if (c->body_len > PROXY_MAX_BODY) {
        proxy_answer_text(c, 413, "Content Too Large", "body too large\n");
        return 0;
      }
      /* curl asks before sending a large body; say yes rather than make it wait a second */
      if (proxy_head_find(c->in, "expect") && c->in_len < c->head_len + c->body_len) {
        static const char go_on[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (write(c->fd, go_on, sizeof go_on - 1) < 0) return -1;
      }
      *blank = '\r';
    }
    if (c->chunked && (c->in_len - c->head_len < 5 || (memcmp(c->in + c->in_len - 2, "\n\n", 2) &&
                                                       memcmp(c->in + c->in_len - 4, "\r\n\r\n", 4)))) {
      continue; /* a chunked body ends with a blank line: decode only what may be whole */
    }
    if (c->chunked) {
      /* decoded from a copy: a pass over an incomplete body must leave the bytes as they came */
      char *copy = (char *)malloc(c->in_len - c->head_len + 1);
      long got;
      if (!copy) return -1;
      memcpy(copy, c->in + c->head_len, c->in_len - c->head_len);
      got = proxy_dechunk(copy, c->in_len - c->head_len, PROXY_MAX_BODY);
      if (got >= 0) {
        memcpy(c->in + c->head_len, copy, (size_t)got);
        c->body_len = (size_t)got;
      }
      free(copy);
      if (got == -1) {
        proxy_answer_text(c, 400, "Bad Request", "malformed or too large chunked body\n");
        return 0;
      }
      if (got >= 0) {
        proxy_forward(p, c);
        return 0;
      }
      if (c->in_len - c->head_len > PROXY_MAX_BODY + (PROXY_MAX_BODY >> 4)) return -1;
      continue;
    }
    if (c->in_len >= c->head_len + c->body_len) {
      proxy_forward(p, c);
      return 0;
    }
  }
}

/* Writes the answer; returns 1 when it is all out (the connection then closes). */
static int proxy_write(proxy_client *c) {
  while (c->out_pos < c->out_len) {
    ssize_t n = write(c->fd, c->out + c->out_pos, c->out_len - c->out_pos);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    if (n <= 0) return 1;
    c->out_pos += (size_t)n;
  }
  return 1;
}

static void proxy_drop(proxy *p, int k) {
  proxy_client *c = p->clients[k];
  close(c->fd);
  c->fd = -1;
  /* the callback runs inside cancel and, seeing fd < 0, only forgets the request */
  if (c->pending) yhc_session_cancel(p->s, c->pending);
  free(c->in);
  free(c->out);
  free(c);
  p->clients[k] = p->clients[--p->nclients];
}

static void proxy_accept(proxy *p) {
  for (;;) {
    int fd = accept(p->listen_fd, NULL, NULL);
    proxy_client *c;
    if (fd < 0) return;
    if (p->nclients == PROXY_MAX_CLIENTS || !(c = (proxy_client *)calloc(1, sizeof *c))) {
      close(fd);
      continue;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    c->fd = fd;
    p->clients[p->nclients++] = c;
  }
}

static int proxy_listen(int port) {
  struct sockaddr_in a;
  socklen_t alen = sizeof a;
  int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0 ||
      getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
    perror("requestor_proxy: listen");
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  printf("requestor_proxy listening on http://127.0.0.1:%d -> %s\n", ntohs(a.sin_port), PROXY_SERVICE);
  fflush(stdout);
  return fd;
}

/* ---- one poll() for everything */

static int proxy_busy(const proxy *p) {
  int k;
  for (k = 0; k < p->nclients; k++)
    if (p->clients[k]->pending || p->clients[k]->out) return 1;
  return 0;
}

/* After Ctrl-C: no new callers; those still reading a request are let go; the requests in
   flight get their answers (bounded). */
static void proxy_start_drain(proxy *p) {
  int k;
  close(p->listen_fd);
  p->listen_fd = -1;
  for (k = p->nclients - 1; k >= 0; k--)
    if (!p->clients[k]->pending && !p->clients[k]->out) proxy_drop(p, k);
  fprintf(stderr, "requestor_proxy: stopping; %d request(s) in flight get their answers first\n", p->nclients);
}

static void proxy_run(proxy *p) {
  struct pollfd *fds = NULL;
  int cap = 0;
  uint64_t drain_until = 0;
  for (;;) {
    int n = 0, lib, timeout, k;
    uint64_t now = yhc_loop_now(yhc_session_loop(p->s));
    if (proxy_stop && !drain_until) {
      proxy_start_drain(p);
      drain_until = now + PROXY_DRAIN_MS;
    }
    if (drain_until && (!proxy_busy(p) || now >= drain_until)) break;
    /* ours first: the listening socket, then each caller (reading a request or writing back) */
    for (;;) {
      int need = 1 + p->nclients;
      if (cap >= need) {
        lib = yhc_loop_fds(yhc_session_loop(p->s), fds + need, cap - need, &timeout);
        if (need + lib <= cap) break;
        need += lib;
      }
      cap = need + 64;
      fds = (struct pollfd *)realloc(fds, (size_t)cap * sizeof *fds);
      if (!fds) return;
    }
    fds[n].fd = p->listen_fd; /* -1 while draining: poll() skips it */
    fds[n++].events = POLLIN;
    for (k = 0; k < p->nclients; k++) {
      proxy_client *c = p->clients[k];
      fds[n].fd = c->fd;
      fds[n++].events = c->out ? POLLOUT : c->pending ? 0 : POLLIN;
    }
    if (timeout < 0 || timeout > 500) timeout = 500; /* to notice Ctrl-C */
    if (poll(fds, (nfds_t)(n + lib), timeout) < 0 && errno != EINTR) break;
    /* the library's sockets and timers: answers arrive here (proxy_on_answer) */
    yhc_loop_dispatch(yhc_session_loop(p->s), fds + n, lib);
    for (k = p->nclients - 1; k >= 0; k--) { /* backwards: dropping moves the last into k */
      proxy_client *c = p->clients[k];
      short rev = fds[1 + k].revents;
      if (c->out) {
        if (proxy_write(c)) proxy_drop(p, k);
      } else if ((rev & (POLLIN | POLLHUP | POLLERR)) && !c->pending) {
        if (proxy_read(p, c) < 0) proxy_drop(p, k);
      } else if (rev & (POLLHUP | POLLERR)) {
        proxy_drop(p, k);
      }
    }
    if (p->listen_fd >= 0 && (fds[0].revents & POLLIN)) proxy_accept(p);
  }
  free(fds);
}

static int requestor_proxy_main(int argc, char **argv) {
  const char *hash = getenv("YHC_IMAGE_HASH");
  int port = argc > 1 ? atoi(argv[1]) : 5000, size = argc > 2 ? atoi(argv[2]) : 1;
  yhc_session_desc sd;
  yhc_service_desc svc;
  yhc_error err;
  proxy p;
  if (!hash) {
    fprintf(stderr, "usage: YHC_IMAGE_HASH=... %s [PORT [SIZE]]\n", argv[0]);
    return 2;
  }
  memset(&p, 0, sizeof p);
  memset(&sd, 0, sizeof sd);
  sd.budget_glm = getenv("YHC_BUDGET") ? getenv("YHC_BUDGET") : "1.0"; /* GLM it may spend */
  sd.image_repo = getenv("YHC_IMAGE_REPO"); /* NULL = the public Golem registry */
  sd.log_events = 1;                        /* progress on stderr */
  p.s = yhc_session_create(&sd, &err);
  if (!p.s) {
    fprintf(stderr, "requestor_proxy: %s\n", err.msg);
    return 1;
  }
  memset(&svc, 0, sizeof svc);
  svc.url = PROXY_SERVICE;
  svc.image_hash = hash;
  svc.startup = proxy_start_server;
  svc.initial_size = size > 0 ? size : 1;
  if (yhc_session_add_service(p.s, &svc, &err) < 0 || (p.listen_fd = proxy_listen(port)) < 0) {
    if (err.code) fprintf(stderr, "requestor_proxy: %s\n", err.msg);
    yhc_session_destroy(p.s);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, proxy_on_signal);
  signal(SIGTERM, proxy_on_signal);
  proxy_run(&p);
  if (p.listen_fd >= 0) close(p.listen_fd);
  while (p.nclients) proxy_drop(&p, p.nclients - 1);
  fprintf(stderr, "requestor_proxy: closing the session\n");
  yhc_session_close_wait(p.s);
  fprintf(stderr, "requestor_proxy: spent %.9f GLM\n", yhc_session_spent(p.s));
  yhc_session_destroy(p.s);
  return 0;
}

/* tests/test_cluster.c includes this file to build and run the proxy inside its own binary */
#ifndef REQUESTOR_PROXY_NO_MAIN
int main(int argc, char **argv) { return requestor_proxy_main(argc, argv); }
#endif
