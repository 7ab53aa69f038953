/* fuzz_client.c -- the whole HTTP client against a scripted peer (curl-fuzzer's model): the
   input is the server's side of a TCP connection, delivered in pieces whose sizes come from
   the input, followed by a close. The request must end exactly once, with a response or an
   error, with every byte freed; limits are small so the limit paths are reached. */
#define YHC_IMPLEMENTATION
#include "yhc.h"

#include <stdlib.h>

#include "fuzz_listener.h"

typedef struct peer {
  int listen_fd, fd;
  const unsigned char *data;
  size_t size, pos;
  int answers;
} peer;

static void on_done(const yhc_response *r, void *user) {
  peer *p = (peer *)user;
  p->answers++;
  if (r->err == YHC_ERR_OK && (r->status < 100 || r->status > 999)) abort();
  if (r->err != YHC_ERR_OK && (!r->error || !r->error[0])) abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static int listen_fd = -1, port = 0;
  yhc_loop *loop;
  yhc_http *http;
  yhc_http_desc d;
  yhc_request rq;
  peer p;
  char url[64];
  int rounds = 0;
  if (listen_fd < 0 && (listen_fd = make_listener(&port)) < 0) return 0;
  memset(&p, 0, sizeof p);
  p.fd = -1;
  p.data = data;
  p.size = size;
  memset(&d, 0, sizeof d);
  d.limits.max_header_bytes = 512;
  d.limits.max_header_count = 8;
  d.limits.max_body_bytes = 4096;
  d.limits.max_chunk_digits = 4;
  d.request_timeout_ms = 2000;
  d.idle_timeout_ms = 1000;
  loop = yhc_loop_create(NULL);
  http = yhc_http_create(loop, &d);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/fuzz", port);
  memset(&rq, 0, sizeof rq);
  rq.url = url;
  rq.method = size && (data[0] & 1) ? "HEAD" : "GET";
  yhc_http_request(http, &rq, on_done, &p);
  while (!p.answers && rounds++ < 10000) {
    yhc_loop_poll(loop, 1);
    if (p.fd < 0) {
      p.fd = accept(listen_fd, NULL, NULL);
      continue;
    }
    if (p.pos < p.size) {
      /* piece sizes 1..64 from the data itself, so splits land everywhere */
      size_t n = 1 + (p.data[p.pos] & 63);
      ssize_t w;
      if (n > p.size - p.pos) n = p.size - p.pos;
      w = send(p.fd, p.data + p.pos, n, MSG_NOSIGNAL);
      if (w > 0) p.pos += (size_t)w;
      else p.pos = p.size;
    } else if (p.fd >= 0) {
      shutdown(p.fd, SHUT_WR);
    }
  }
  if (p.fd >= 0) close(p.fd);
  yhc_http_destroy(http);
  yhc_loop_destroy(loop);
  if (p.answers != 1) abort(); /* exactly one answer, also when destroyed */
  return 0;
}
