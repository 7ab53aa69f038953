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
  uint64_t born; /* dispatch round it was added in: stale revents for a reused fd skip it */
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
  uint64_t round;
  /* timers */
  yhc__timer **heap;
  size_t nheap, capheap;
  uint64_t timer_seq;
  yhc__pubtimer *pubtimers;
  uint64_t next_pub_id;
  /* scratch for tier 1 */
  struct pollfd *pfd;
  int pfd_cap;
};

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
  }
  loop->next_pub_id = 1;
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
  t->due = yhc_loop_now(loop) + delay_ms;
  t->seq = ++loop->timer_seq;
  t->fn = fn;
  t->ctx = ctx;
  yhc__heap_place(loop, loop->nheap++, t);
  yhc__heap_up(loop, loop->nheap - 1);
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

/* Runs timers that are due. A timer armed while running with delay 0 waits for the next
   round, so a callback that re-arms itself cannot starve I/O. */
static int yhc__timers_run(yhc_loop *loop) {
  uint64_t now = yhc_loop_now(loop);
  uint64_t last_seq = loop->timer_seq;
  int ran = 0;
  while (loop->nheap && loop->heap[0]->due <= now && loop->heap[0]->seq <= last_seq) {
    yhc__timer *t = loop->heap[0];
    yhc__timer_stop(loop, t);
    t->fn(t->ctx);
    ran++;
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

static int yhc__watch_add(yhc_loop *loop, yhc__watch *w, int fd, yhc__io_fn fn, void *ctx) {
  if (fd < 0) return -1;
  if (fd >= loop->by_fd_cap) {
    int cap = loop->by_fd_cap ? loop->by_fd_cap : 64;
    yhc__watch **m;
    while (cap <= fd) cap *= 2;
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
  w->born = loop->round;
  loop->by_fd[fd] = w;
  loop->nwatch++;
  return 0;
}

static void yhc__watch_del(yhc_loop *loop, yhc__watch *w) {
  if (w->fd >= 0 && w->fd < loop->by_fd_cap && loop->by_fd[w->fd] == w) {
    loop->by_fd[w->fd] = NULL;
    loop->nwatch--;
  }
  w->fd = -1;
}

static void yhc__watch_set(yhc__watch *w, int rd, int wr) {
  w->events = (short)((rd ? POLLIN : 0) | (wr ? POLLOUT : 0));
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
typedef struct yhc__tcp {
  yhc__stream base;
  yhc_loop *loop;
  yhc__watch w;
  struct addrinfo *ai, *next_ai;
  int connected;
  char host[256];
  int port;
} yhc__tcp;

static void yhc__tcp_close_fd(yhc__tcp *t) {
  if (t->w.fd >= 0) {
    int fd = t->w.fd;
    yhc__watch_del(t->loop, &t->w);
    close(fd);
  }
}

static int yhc__set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL, 0);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
  return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static void yhc__tcp_io(void *ctx, int revents);

/* Starts a non-blocking connect to the next address. Returns 0 when one is under way. */
static int yhc__tcp_try_next(yhc__tcp *t) {
  int last_errno = ECONNREFUSED;
  while (t->next_ai) {
    struct addrinfo *a = t->next_ai;
    int fd, one = 1;
    t->next_ai = a->ai_next;
    fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) { last_errno = errno; continue; }
    if (yhc__set_nonblock(fd) < 0) { last_errno = errno; close(fd); continue; }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef SO_NOSIGPIPE
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
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
      freeaddrinfo(t->ai);
      t->ai = t->next_ai = NULL;
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
    if (revents & (POLLIN | POLLHUP | POLLERR)) ev |= YHC__EV_READ;
    if (revents & (POLLOUT | POLLERR)) ev |= YHC__EV_WRITE;
    if (ev) yhc__stream_emit(&t->base, ev);
  }
}

static long yhc__tcp_read(yhc__stream *s, void *buf, size_t cap) {
  yhc__tcp *t = YHC__PUN(yhc__tcp *, s);
  for (;;) {
    ssize_t n = recv(t->w.fd, buf, cap, 0);
    if (n >= 0) return (long)n;
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
  yhc__tcp_close_fd(t);
  if (t->ai) freeaddrinfo(t->ai);
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

/* Resolves host (blocking getaddrinfo; numeric addresses skip the resolver) and starts a
   non-blocking connect. The stream emits CONNECT or ERROR later; NULL return = failed now
   (err says why: DNS, CONNECT or NOMEM). */
static yhc__stream *yhc__tcp_open(yhc_loop *loop, const char *host, int port, yhc_error *err) {
  struct addrinfo hints;
  char portstr[16];
  int rc;
  yhc__tcp *t = YHC__NEW(yhc__tcp);
  if (!t) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory opening a connection");
    return NULL;
  }
  t->base.vt = &yhc__tcp_vt;
  t->loop = loop;
  t->w.fd = -1;
  t->port = port;
  snprintf(t->host, sizeof t->host, "%s", host);
  snprintf(portstr, sizeof portstr, "%d", port);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  rc = getaddrinfo(host, portstr, &hints, &t->ai);
  if (rc != 0) {
    hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
    rc = getaddrinfo(host, portstr, &hints, &t->ai);
  }
  if (rc != 0 || !t->ai) {
    yhc__error_set(err, YHC_ERR_DNS, 0, "cannot resolve host %s: %s", host, gai_strerror(rc));
    YHC_FREE(t);
    return NULL;
  }
  t->next_ai = t->ai;
  if (yhc__tcp_try_next(t) < 0) {
    *err = t->base.err;
    yhc__tcp_close(&t->base);
    return NULL;
  }
  return &t->base;
}

