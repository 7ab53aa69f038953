/* test_loop.c -- tier 3 of loop integration (socket and timer callbacks) and the thread-safe
   yhc_loop_wakeup(), against tests/servers/origin.py over real sockets.

   The tier-3 user here is a loop of its own built on poll(), whose only knowledge of the
   library's fds is what on_socket told it: every tell is checked against what was told
   before (add / change / remove in order, fd_data handed back), and every fd told must be
   open when told, which is what makes fd numbers safe in the user's loop. A second thread
   (the only test linked with -lpthread) wakes a loop blocked in poll() in tiers 1 and 3.
   Tier 1's own wait set (epoll, or poll() under YHC_NO_EPOLL) is checked first, through the
   loop's watches: fd numbers reused, closed fds still open elsewhere, ignored hang-ups. */
#define YHC_IMPLEMENTATION
#include "yhc.h"
#include "yt.h"
#include "yt_proc.h"

#include <pthread.h>

static yt_proc origin;

static void url_at(char *out, size_t cap, const char *path) {
  snprintf(out, cap, "http://127.0.0.1:%d%s", origin.port, path);
}

/* ---- a user loop on poll(), fed only by the callbacks */

#define MAXFD 1024
typedef struct user_loop {
  int events[MAXFD];
  void *token[MAXFD]; /* what we stored in *fd_data */
  int adds, changes, removes, bad_order, bad_data, closed_when_told, timeouts_told;
  long long deadline; /* -1 = none */
  yhc_loop *loop;
} user_loop;

static int fd_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

static void on_socket(void *user, int fd, int events, int old_events, void **fd_data) {
  user_loop *u = (user_loop *)user;
  if (fd < 0 || fd >= MAXFD) { u->bad_order++; return; }
  if (!fd_open(fd)) u->closed_when_told++;
  if (old_events != u->events[fd]) u->bad_order++;
  if (old_events == 0) {
    if (*fd_data != NULL) u->bad_data++;
    u->adds++;
    *fd_data = &u->token[fd];
    u->token[fd] = &u->events[fd];
  } else if (*fd_data != &u->token[fd]) {
    u->bad_data++;
  }
  if (events == 0) {
    if (old_events == 0) u->bad_order++; /* removing what was never added */
    u->removes++;
    u->token[fd] = NULL;
  } else if (old_events) {
    u->changes++;
  }
  if (events & ~(POLLIN | POLLOUT)) u->bad_order++;
  u->events[fd] = events;
}

static void on_timeout(void *user, int ms) {
  user_loop *u = (user_loop *)user;
  u->timeouts_told++;
  u->deadline = ms < 0 ? -1 : yt_now_ms() + ms;
}

static int user_watched(const user_loop *u) {
  int fd, n = 0;
  for (fd = 0; fd < MAXFD; fd++) n += u->events[fd] != 0;
  return n;
}

/* One turn of the user's loop: poll what we were told, hand results back. */
static void user_turn(user_loop *u, int max_wait_ms) {
  struct pollfd p[MAXFD];
  int fd, n = 0, wait = max_wait_ms, i, k;
  for (fd = 0; fd < MAXFD; fd++)
    if (u->events[fd]) {
      p[n].fd = fd;
      p[n].events = (short)u->events[fd];
      p[n].revents = 0;
      n++;
    }
  if (u->deadline >= 0) {
    long long left = u->deadline - yt_now_ms();
    if (left < 0) left = 0;
    if (left < wait) wait = (int)left;
  }
  k = poll(p, (nfds_t)n, wait);
  for (i = 0; k > 0 && i < n; i++)
    if (p[i].revents) yhc_loop_action(u->loop, p[i].fd, p[i].revents);
  if (u->deadline >= 0 && yt_now_ms() >= u->deadline) {
    u->deadline = -1;
    yhc_loop_timeout(u->loop);
  }
}

typedef struct answer {
  int done, status, err;
  size_t len;
  char body[64];
} answer;

static void on_answer(const yhc_response *r, void *user) {
  answer *a = (answer *)user;
  a->done = 1;
  a->status = r->status;
  a->err = r->err;
  a->len = r->body.len;
  snprintf(a->body, sizeof a->body, "%.*s", (int)r->body.len, r->body.ptr ? r->body.ptr : "");
}

static uint64_t submit(yhc_http *h, answer *a, const char *path, int timeout_ms) {
  char url[128];
  yhc_request rq = YHC_ZERO;
  url_at(url, sizeof url, path);
  rq.url = url;
  rq.timeout_ms = timeout_ms;
  memset(a, 0, sizeof *a);
  return yhc_http_request(h, &rq, on_answer, a);
}

static int all_done(const answer *a, int n) {
  int i;
  for (i = 0; i < n; i++)
    if (!a[i].done) return 0;
  return 1;
}

static void run_until(user_loop *u, const answer *a, int n, int ms) {
  long long end = yt_now_ms() + ms;
  while (!all_done(a, n) && yt_now_ms() < end) user_turn(u, 100);
}

static void test_tier3_http(void) {
  user_loop u;
  yhc_loop *loop;
  yhc_http *h;
  answer a[24];
  int i, ok = 0;
  YT_GROUP("tier 3: plain HTTP through socket and timer callbacks");
  memset(&u, 0, sizeof u);
  u.deadline = -1;
  loop = yhc_loop_create(NULL);
  h = yhc_http_create(loop, NULL);
  YT_CHECK(loop && h);
  if (!loop || !h) return;
  u.loop = loop;
  yhc_loop_set_callbacks(loop, on_socket, on_timeout, &u);
  /* the loop's own wakeup fd is the first thing to watch */
  YT_EQ_INT(user_watched(&u), 1);
  YT_EQ_INT(u.adds, 1);

  /* 16 at once (several connections, keep-alive reuse), a close-delimited body, a slow
     answer cut by its deadline (a timer), a refused connection */
  for (i = 0; i < 16; i++) submit(h, &a[i], "/hello", 10000);
  submit(h, &a[16], "/close?size=10", 10000);
  submit(h, &a[17], "/slow?ms=3000", 300);
  {
    char url[64];
    yhc_request rq = YHC_ZERO;
    snprintf(url, sizeof url, "http://127.0.0.1:1/");
    rq.url = url;
    memset(&a[18], 0, sizeof a[18]);
    yhc_http_request(h, &rq, on_answer, &a[18]);
  }
  /* the requests were made outside any dispatch: the wakeup fd says there is news */
  {
    int fd, readable = 0;
    for (fd = 0; fd < MAXFD; fd++)
      if (u.events[fd]) {
        struct pollfd p;
        p.fd = fd;
        p.events = POLLIN;
        p.revents = 0;
        readable += poll(&p, 1, 0) == 1;
      }
    YT_CHECK(readable >= 1);
  }
  run_until(&u, a, 19, 15000);
  for (i = 0; i < 16; i++) ok += a[i].done && a[i].status == 200 && !strcmp(a[i].body, "Hello, world!\n");
  YT_EQ_INT(ok, 16);
  YT_CHECK(a[16].done && a[16].status == 200 && a[16].len == 10);
  YT_CHECK(a[17].done && a[17].err == YHC_ERR_TIMEOUT);
  YT_CHECK(a[18].done && a[18].err == YHC_ERR_CONNECT);
  YT_CHECK(u.adds >= 3);     /* the wakeup fd and at least two connections */
  YT_CHECK(u.changes >= 1);  /* connect (OUT) then read (IN) */
  YT_CHECK(u.removes >= 1);  /* the closed and the refused connections */
  YT_CHECK(u.timeouts_told >= 1);

  /* a second wave reuses kept-alive connections and the fd numbers freed by the first */
  for (i = 0; i < 8; i++) submit(h, &a[i], "/conn-id", 10000);
  run_until(&u, a, 8, 15000);
  for (i = 0, ok = 0; i < 8; i++) ok += a[i].done && a[i].status == 200;
  YT_EQ_INT(ok, 8);

  /* destroying the client outside a dispatch: its fds are told removed on the next action
     (the wakeup fd turns readable), and only then closed */
  yhc_http_destroy(h);
  {
    long long end = yt_now_ms() + 5000;
    while (user_watched(&u) > 1 && yt_now_ms() < end) user_turn(&u, 100);
  }
  YT_EQ_INT(user_watched(&u), 1);
  /* back to tier 1: the last fd is removed, and poll()ing still works */
  yhc_loop_set_callbacks(loop, NULL, NULL, NULL);
  YT_EQ_INT(user_watched(&u), 0);
  YT_EQ_INT(u.adds, u.removes);
  YT_EQ_INT(u.bad_order, 0);
  YT_EQ_INT(u.bad_data, 0);
  YT_EQ_INT(u.closed_when_told, 0);
  yhc_loop_destroy(loop);
}

/* A fetch that blocks inside tier 3 polls the loop itself; destroy removes what is left. */
static void test_tier3_blocking_and_destroy(void) {
  user_loop u;
  yhc_loop *loop;
  yhc_http *h;
  yhc_response *r;
  yhc_request rq = YHC_ZERO;
  char url[128];
  YT_GROUP("tier 3: a blocking fetch inside, destroy tells the removals");
  memset(&u, 0, sizeof u);
  u.deadline = -1;
  loop = yhc_loop_create(NULL);
  h = yhc_http_create(loop, NULL);
  if (!loop || !h) { YT_CHECK(0); return; }
  u.loop = loop;
  yhc_loop_set_callbacks(loop, on_socket, on_timeout, &u);
  url_at(url, sizeof url, "/hello");
  rq.url = url;
  r = yhc_http_fetch(h, &rq);
  YT_CHECK(r && r->status == 200);
  yhc_response_free(r);
  YT_CHECK(user_watched(&u) >= 1);
  yhc_http_destroy(h);
  yhc_loop_destroy(loop);
  YT_EQ_INT(user_watched(&u), 0);
  YT_EQ_INT(u.adds, u.removes);
  YT_EQ_INT(u.bad_order, 0);
  YT_EQ_INT(u.closed_when_told, 0);
}

/* ---- yhc_loop_wakeup from another thread */

typedef struct waker {
  yhc_loop *loop;
  int delay_ms, times, rc;
} waker;

static void *wake_later(void *arg) {
  waker *w = (waker *)arg;
  int i;
  yt_sleep_ms(w->delay_ms);
  for (i = 0; i < w->times; i++)
    if (yhc_loop_wakeup(w->loop) < 0) w->rc = -1;
  return NULL;
}

static void test_wakeup_threads(void) {
  yhc_loop *loop = yhc_loop_create(NULL);
  int i, quick = 0, never = 0;
  YT_GROUP("yhc_loop_wakeup from a second thread");
  if (!loop) { YT_CHECK(0); return; }
  /* tier 1: a poll() that would wait 20 s returns when the other thread wakes it */
  for (i = 0; i < 5; i++) {
    pthread_t th;
    waker w;
    long long t0 = yt_now_ms();
    w.loop = loop;
    w.delay_ms = 50;
    w.times = 1;
    w.rc = 0;
    if (pthread_create(&th, NULL, wake_later, &w) != 0) { YT_CHECK(0); break; }
    YT_CHECK(yhc_loop_poll(loop, 20000) >= 1);
    quick += yt_now_ms() - t0 < 10000;
    pthread_join(th, NULL);
    YT_EQ_INT(w.rc, 0);
  }
  YT_EQ_INT(quick, 5);
  /* a storm of wakeups while the loop runs: none fails, and once drained the loop sleeps */
  {
    pthread_t th;
    waker w;
    long long end = yt_now_ms() + 10000, t0;
    w.loop = loop;
    w.delay_ms = 0;
    w.times = 100000;
    w.rc = 0;
    if (pthread_create(&th, NULL, wake_later, &w) == 0) {
      int k;
      for (k = 0; k < 100 && yt_now_ms() < end; k++) yhc_loop_poll(loop, 5);
      pthread_join(th, NULL);
      YT_EQ_INT(w.rc, 0);
      yhc_loop_poll(loop, 0);
      t0 = yt_now_ms();
      YT_EQ_INT(yhc_loop_poll(loop, 200), 0); /* nothing left: it waited, ran nothing */
      YT_CHECK(yt_now_ms() - t0 >= 150);
    }
  }
  /* the wakeup fd alone is not work: a loop with nothing else runs dry at once */
  YT_EQ_INT(yhc_loop_run(loop, &never), -1);
  yhc_loop_destroy(loop);

  /* tier 3: the wakeup fd is one the user watches; the other thread makes it readable */
  {
    user_loop u;
    pthread_t th;
    waker w;
    long long t0;
    memset(&u, 0, sizeof u);
    u.deadline = -1;
    u.loop = loop = yhc_loop_create(NULL);
    if (!loop) { YT_CHECK(0); return; }
    yhc_loop_set_callbacks(loop, on_socket, on_timeout, &u);
    YT_EQ_INT(user_watched(&u), 1);
    w.loop = loop;
    w.delay_ms = 50;
    w.times = 1;
    w.rc = 0;
    t0 = yt_now_ms();
    if (pthread_create(&th, NULL, wake_later, &w) == 0) {
      user_turn(&u, 20000);
      YT_CHECK(yt_now_ms() - t0 < 10000);
      pthread_join(th, NULL);
    }
    yhc_loop_destroy(loop);
    YT_EQ_INT(user_watched(&u), 0);
    YT_EQ_INT(u.bad_order, 0);
  }
}

/* ---- tier 1's wait set (epoll on Linux, poll() under YHC_NO_EPOLL): the same answers either way */

typedef struct seen {
  int calls, revents;
} seen;

static void on_ready(void *ctx, int revents) {
  seen *s = (seen *)ctx;
  s->calls++;
  s->revents |= revents;
}

/* yhc_loop_poll(timeout) that reports nothing must take about its timeout: a stale readiness
   (a closed fd's, or a hang-up nobody watches) would make it return at once, every time. */
static int waits_quietly(yhc_loop *loop, int ms) {
  long long t0 = yt_now_ms();
  int i, ran = 0;
  for (i = 0; i < 3; i++) ran += yhc_loop_poll(loop, ms);
  return ran == 0 && yt_now_ms() - t0 >= 3 * ms - 5;
}

static void test_tier1_wait_set(void) {
  yhc_loop *loop = yhc_loop_create(NULL);
  yhc__watch w, w2;
  seen a, b;
  int sp[2], sp2[2], fd, held;
  char c = 'x';
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  YT_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
  YT_CHECK(yhc__watch_add(loop, &w, sp[0], on_ready, &a) == 0);
  yhc__watch_set(&w, 1, 0);
  YT_CHECK(waits_quietly(loop, 20));
  YT_CHECK(write(sp[1], &c, 1) == 1);
  YT_CHECK(yhc_loop_poll(loop, 1000) == 1);
  YT_CHECKF(a.calls == 1 && (a.revents & POLLIN), "a readable fd is reported (calls %d)", a.calls);
  YT_CHECK(read(sp[0], &c, 1) == 1);
  /* write interest added and dropped again */
  yhc__watch_set(&w, 1, 1);
  a.calls = a.revents = 0;
  YT_CHECK(yhc_loop_poll(loop, 1000) == 1);
  YT_CHECK(a.calls == 1 && (a.revents & POLLOUT));
  yhc__watch_set(&w, 1, 0);
  YT_CHECK(waits_quietly(loop, 20));

  /* a closed fd whose socket another descriptor still holds (a forked child's, here a dup)
     is readable: the loop must not hear of it any more */
  fd = sp[0];
  held = dup(sp[0]);
  YT_CHECK(held >= 0);
  YT_CHECK(write(sp[1], &c, 1) == 1);
  a.calls = 0;
  yhc__watch_close(loop, &w);
  YT_CHECKF(waits_quietly(loop, 20), "a closed fd's socket, still open elsewhere, is not reported");
  YT_CHECK(a.calls == 0);

  /* the closed fd's number comes back for a new socket: that one is watched afresh */
  close(held);
  YT_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp2) == 0);
  YT_CHECKF(sp2[0] == fd || sp2[1] == fd, "the fd number %d is reused (got %d, %d)", fd, sp2[0], sp2[1]);
  if (sp2[1] == fd) { int t = sp2[0]; sp2[0] = sp2[1]; sp2[1] = t; }
  YT_CHECK(yhc__watch_add(loop, &w2, sp2[0], on_ready, &b) == 0);
  yhc__watch_set(&w2, 1, 0);
  YT_CHECK(write(sp2[1], &c, 1) == 1);
  YT_CHECK(yhc_loop_poll(loop, 1000) == 1);
  YT_CHECKF(b.calls == 1, "a new socket on a reused fd number is reported (calls %d)", b.calls);
  YT_CHECK(read(sp2[0], &c, 1) == 1);

  /* the peer hangs up while the watch asks for nothing: no report, and no spinning on it */
  yhc__watch_set(&w2, 0, 0);
  close(sp2[1]);
  b.calls = 0;
  YT_CHECKF(waits_quietly(loop, 20), "a hang-up on an fd watched for nothing is not reported");
  yhc__watch_set(&w2, 1, 0);
  YT_CHECK(yhc_loop_poll(loop, 1000) == 1);
  YT_CHECK(b.calls == 1);
  yhc__watch_close(loop, &w2);
  close(sp[1]);
  yhc_loop_destroy(loop);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  test_tier1_wait_set();
  test_wakeup_threads();
  if (yt_proc_start_py(&origin, "tests/servers/origin.py", NULL, 10000) != 0) {
    YT_CHECKF(0, "tests/servers/origin.py did not start (python3; run from the repository root)");
    return yt_done();
  }
  test_tier3_http();
  test_tier3_blocking_and_destroy();
  yt_proc_stop(&origin);
  return yt_done();
}
