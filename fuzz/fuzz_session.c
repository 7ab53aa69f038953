/* fuzz_session.c -- a whole session whose daemon is the fuzzer.
   Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -I. fuzz/fuzz_session.c -o /tmp/fs -lm

   A scripted daemon listens on loopback. Every HTTP request the session sends it (REST
   calls, event feeds, the image lookup) is answered with the next answer of the input; a
   WebSocket upgrade (a VPN tunnel) is accepted properly and then fed the next answer's bytes
   raw, as frames. An answer is [status selector][length, 2 bytes][body]; when the input is
   used up every request gets a 500 and its connection is closed.

   Time is virtual: the loop's clock jumps to the next due timer whenever nothing is ready,
   so timeouts of minutes take microseconds. What must hold, whatever the daemon says: no
   crash and no sanitizer report; every request submitted gets exactly one answer, and by its
   deadline (plus a round of slack); destroying the session frees everything (LeakSanitizer). */
#define YHC_IMPLEMENTATION
#include "yhc.h"

#include <stdlib.h>

#include "fuzz_listener.h"

#define MAX_PEERS 32
#define REQUESTS 3
#define REQUEST_TIMEOUT_MS 20000

typedef struct peer_conn {
  int fd;
  yhc_buf in;
  int tunnel; /* upgraded: the rest is raw bytes */
} peer_conn;

typedef struct daemon {
  int listen_fd, port;
  peer_conn c[MAX_PEERS];
  const unsigned char *data;
  size_t size, pos;
} daemon_t;

static uint64_t virtual_ms;
static uint64_t clock_fn(void *user) {
  (void)user;
  return virtual_ms;
}

static int answers[REQUESTS];

static void on_answer(const yhc_response *r, void *user) {
  int i = (int)(intptr_t)user;
  answers[i]++;
  if (r->err != YHC_ERR_OK && (!r->error || !r->error[0])) abort();
}

/* The next answer of the script: status, body view. 0 when the script is over. */
static int next_answer(daemon_t *d, int *status, const unsigned char **body, size_t *len) {
  static const int statuses[8] = {200, 201, 204, 400, 404, 409, 500, 200};
  size_t n;
  if (d->pos + 3 > d->size) return 0;
  *status = statuses[d->data[d->pos] & 7];
  n = (size_t)d->data[d->pos + 1] << 8 | d->data[d->pos + 2];
  d->pos += 3;
  if (n > d->size - d->pos) n = d->size - d->pos;
  *body = d->data + d->pos;
  *len = n;
  d->pos += n;
  return 1;
}

static void send_all(int fd, const void *p, size_t n) {
  const char *b = (const char *)p;
  while (n) {
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w <= 0) return;
    b += w;
    n -= (size_t)w;
  }
}

static void peer_close(peer_conn *c) {
  close(c->fd);
  c->fd = -1;
  c->tunnel = 0;
  yhc_buf_free(&c->in);
}

/* Answers one complete request head (its body, if any, is skipped by Content-Length). */
static void answer_request(daemon_t *d, peer_conn *c, const char *head, size_t head_len) {
  int status;
  const unsigned char *body;
  size_t len;
  char hdr[512];
  const char *key = strstr(head, "Sec-WebSocket-Key: ");
  (void)head_len;
  if (!next_answer(d, &status, &body, &len)) {
    static const char fail[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n"
                               "Connection: close\r\n\r\n{}";
    send_all(c->fd, fail, sizeof fail - 1);
    peer_close(c);
    return;
  }
  if (key) {
    char k[64], accept[29];
    size_t i = 0;
    key += 19;
    while (key[i] && key[i] != '\r' && i < sizeof k - 1) { k[i] = key[i]; i++; }
    k[i] = 0;
    yhc__ws_accept_for_key(k, accept);
    snprintf(hdr, sizeof hdr, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    send_all(c->fd, hdr, strlen(hdr));
    send_all(c->fd, body, len);
    c->tunnel = 1;
    return;
  }
  snprintf(hdr, sizeof hdr, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
           "Content-Length: %zu\r\n\r\n", status, status == 204 ? (size_t)0 : len);
  send_all(c->fd, hdr, strlen(hdr));
  if (status != 204) send_all(c->fd, body, len);
}

static void peer_readable(daemon_t *d, peer_conn *c) {
  char buf[8192];
  ssize_t n = recv(c->fd, buf, sizeof buf, 0);
  if (n <= 0) {
    peer_close(c);
    return;
  }
  if (c->tunnel) { /* what the session sends into a tunnel: answered with the next answer */
    int status;
    const unsigned char *body;
    size_t len;
    if (next_answer(d, &status, &body, &len)) send_all(c->fd, body, len);
    else peer_close(c);
    return;
  }
  if (yhc_buf_append(&c->in, buf, (size_t)n) < 0 || c->in.len > 1 << 20) {
    peer_close(c);
    return;
  }
  for (;;) {
    char *end = strstr(c->in.ptr, "\r\n\r\n");
    const char *cl;
    size_t head_len, body_len = 0;
    if (!end) return;
    head_len = (size_t)(end - c->in.ptr) + 4;
    *end = 0;
    cl = strstr(c->in.ptr, "Content-Length: ");
    if (cl) body_len = (size_t)strtoul(cl + 16, NULL, 10);
    if (c->in.len < head_len + body_len) {
      *end = '\r';
      return;
    }
    answer_request(d, c, c->in.ptr, head_len);
    if (c->fd < 0) return;
    yhc__buf_consume(&c->in, head_len + body_len);
    if (c->tunnel || !c->in.len) return;
  }
}

static void startup(yhc_ctx *ctx, const char *listen_on, void *user) {
  const char *argv[] = {"/bin/sh", "-c", "true", NULL};
  (void)listen_on;
  (void)user;
  yhc_ctx_run(ctx, argv);
}

/* One round of the tier-2 loop with the daemon's fds beside the library's. Returns how many
   fds were ready. */
static int turn(yhc_loop *loop, daemon_t *d) {
  struct pollfd fds[256];
  int n, i, nd = 0, tw, rc;
  n = yhc_loop_fds(loop, fds, 200, &tw);
  if (n > 200) n = 200;
  fds[n + nd].fd = d->listen_fd;
  fds[n + nd].events = POLLIN;
  fds[n + nd].revents = 0;
  nd++;
  for (i = 0; i < MAX_PEERS; i++) {
    if (d->c[i].fd < 0) continue;
    fds[n + nd].fd = d->c[i].fd;
    fds[n + nd].events = POLLIN;
    fds[n + nd].revents = 0;
    nd++;
  }
  /* a short real wait lets loopback bytes arrive; then virtual time jumps to the next timer */
  rc = poll(fds, (nfds_t)(n + nd), tw == 0 ? 0 : 2);
  if (rc == 0 && tw > 0) virtual_ms += (uint64_t)tw;
  else if (rc == 0 && tw < 0) virtual_ms += 1000;
  yhc_loop_dispatch(loop, fds, n);
  for (i = n; i < n + nd; i++) {
    int k;
    if (!fds[i].revents) continue;
    if (fds[i].fd == d->listen_fd) {
      int fd = accept(d->listen_fd, NULL, NULL);
      for (k = 0; fd >= 0 && k < MAX_PEERS && d->c[k].fd >= 0; k++) {}
      if (fd >= 0 && k == MAX_PEERS) close(fd);
      else if (fd >= 0) d->c[k].fd = fd;
      continue;
    }
    for (k = 0; k < MAX_PEERS; k++)
      if (d->c[k].fd == fds[i].fd) peer_readable(d, &d->c[k]);
  }
  return rc;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static daemon_t d;
  static int ready;
  yhc_loop_desc ld;
  yhc_loop *loop;
  yhc_session_desc sd;
  yhc_service_desc svc;
  yhc_session *s;
  yhc_error err;
  char url[64];
  int i, rounds;
  uint64_t deadline;
  if (!ready) {
    d.listen_fd = make_listener(&d.port);
    if (d.listen_fd < 0) return 0;
    for (i = 0; i < MAX_PEERS; i++) d.c[i].fd = -1;
    ready = 1;
  }
  d.data = data;
  d.size = size;
  d.pos = 0;
  memset(answers, 0, sizeof answers);
  virtual_ms = 1000000;
  memset(&ld, 0, sizeof ld);
  ld.clock = clock_fn;
  ld.resolver.hosts_file = "";
  ld.resolver.nameservers = "127.0.0.1:9";
  loop = yhc_loop_create(&ld);
  if (!loop) return 0;
  snprintf(url, sizeof url, "http://127.0.0.1:%d", d.port);
  memset(&sd, 0, sizeof sd);
  sd.yagna_url = url;
  sd.app_key = "fuzz";
  sd.budget_glm = "1.0";
  sd.subnet = "public";
  sd.payment_driver = "erc20";
  sd.payment_network = "holesky";
  sd.loop = loop;
  sd.request_timeout_ms = REQUEST_TIMEOUT_MS;
  sd.http.request_timeout_ms = REQUEST_TIMEOUT_MS; /* the plain request too */
  sd.close_timeout_ms = 5000;
  sd.offer_window_ms = 100;
  sd.image_repo = url;
  s = yhc_session_create(&sd, &err);
  if (s) {
    memset(&svc, 0, sizeof svc);
    svc.url = "http://calc";
    svc.image_hash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    svc.startup = startup;
    yhc_session_add_service(s, &svc, &err);
    for (i = 0; i < REQUESTS; i++) {
      yhc_request rq;
      char u[96];
      memset(&rq, 0, sizeof rq);
      if (i == 2) snprintf(u, sizeof u, "%s/plain", url);
      else snprintf(u, sizeof u, "http://calc/add/%d/1", i);
      rq.url = u;
      if (!yhc_session_request(s, &rq, on_answer, (void *)(intptr_t)i)) answers[i]++;
    }
    deadline = virtual_ms + REQUEST_TIMEOUT_MS + 5000;
    for (rounds = 0; rounds < 20000; rounds++) {
      int all = 1;
      for (i = 0; i < REQUESTS; i++) all &= answers[i] == 1;
      if (all) break;
      if (virtual_ms > deadline) {
        fprintf(stderr, "fuzz_session: a request is unanswered past its deadline\n");
        abort();
      }
      turn(loop, &d);
    }
    if (rounds == 20000) {
      fprintf(stderr, "fuzz_session: no answers after 20000 rounds\n");
      abort();
    }
    /* a graceful close, bounded, then destroy whatever state it reached */
    yhc_session_close(s);
    for (rounds = 0; rounds < 2000 && !yhc_session_closed(s); rounds++) turn(loop, &d);
    yhc_session_destroy(s);
    for (i = 0; i < REQUESTS; i++)
      if (answers[i] != 1) abort();
  }
  yhc_loop_destroy(loop);
  for (i = 0; i < MAX_PEERS; i++)
    if (d.c[i].fd >= 0) peer_close(&d.c[i]);
  return 0;
}
