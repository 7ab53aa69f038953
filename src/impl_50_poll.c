/* ==== poll() loop ================================================================== */
/* Owns: the calls to poll(), the embeddable tier (fds out, results in), and the blocking
   conveniences built on them. Everything below the loop is driven from here or from the
   user's own loop through yhc_loop_fds()/yhc_loop_dispatch(); nothing else blocks. */

YHCDEF void yhc_loop_destroy(yhc_loop *loop) {
  if (!loop) return;
  while (loop->pubtimers) yhc_timer_cancel(loop, loop->pubtimers->id);
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
  return n;
}

YHCDEF void yhc_loop_dispatch(yhc_loop *loop, const struct pollfd *fds, int nfds) {
  int i;
  uint64_t round = ++loop->round;
  for (i = 0; i < nfds; i++) {
    int fd = fds[i].fd;
    short rev = fds[i].revents;
    yhc__watch *w;
    if (!rev || fd < 0 || fd >= loop->by_fd_cap) continue;
    w = loop->by_fd[fd];
    /* a watch born in this round reuses the fd of one closed during it: not its revents */
    if (!w || w->born == round) continue;
    rev &= (short)(w->events | POLLERR | POLLHUP | POLLNVAL);
    if (!w->events || !rev) continue;
    w->fn(w->ctx, rev);
  }
  yhc__timers_run(loop);
}

YHCDEF int yhc_loop_poll(yhc_loop *loop, int timeout_ms) {
  int n, tw, rc, ran = 0, i;
  n = yhc_loop_fds(loop, loop->pfd, loop->pfd_cap, &tw);
  if (n > loop->pfd_cap) {
    struct pollfd *p = YHC__CAST(struct pollfd *, YHC_REALLOC(loop->pfd, (size_t)n * sizeof *p));
    if (!p) {
      errno = ENOMEM;
      return -1;
    }
    loop->pfd = p;
    loop->pfd_cap = n;
    n = yhc_loop_fds(loop, loop->pfd, loop->pfd_cap, &tw);
  }
  if (tw >= 0 && (timeout_ms < 0 || tw < timeout_ms)) timeout_ms = tw;
  rc = poll(loop->pfd, (nfds_t)n, timeout_ms);
  if (rc < 0 && errno != EINTR) return -1;
  if (rc > 0)
    for (i = 0; i < n; i++) ran += loop->pfd[i].revents != 0;
  yhc_loop_dispatch(loop, loop->pfd, rc > 0 ? n : 0);
  return ran;
}

static int yhc__loop_idle(yhc_loop *loop) {
  int fd;
  if (loop->nheap) return 0;
  for (fd = 0; fd < loop->by_fd_cap; fd++)
    if (loop->by_fd[fd] && loop->by_fd[fd]->events) return 0;
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

