/* loop_epoll.c -- yhc in an epoll loop of your own (tier 3: socket and timer callbacks).

   yhc tells us which fds to watch for what (on_socket: add, change, remove) and when to call
   it back (on_timeout); we keep them in our epoll set next to our own fds (here only a
   timerfd for yhc's deadline) and hand readiness back with
   yhc_loop_action() and yhc_loop_timeout(). The work itself (a Golem session and plain HTTP
   requests, each answer checked) is in loop_demo.h.

     YAGNA_APPKEY=... YHC_IMAGE_HASH=... ./loop_epoll http://127.0.0.1:8080
   (tests/loop_examples.sh runs it against the yagna stand-in). Linux only. */
#define YHC_IMPLEMENTATION
#include "yhc.h"
#include "loop_demo.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

typedef struct app {
  int ep;      /* our epoll set */
  int tfd;     /* a timerfd armed for yhc's deadline */
  int errors;  /* epoll_ctl failures: there must be none */
} app;

/* Poll bits and epoll bits have the same values on Linux for IN and OUT. */
static void on_socket(void *user, int fd, int events, int old_events, void **fd_data) {
  app *a = (app *)user;
  struct epoll_event ev;
  int op = !events ? EPOLL_CTL_DEL : old_events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  (void)fd_data; /* epoll keeps the fd itself in ev.data */
  memset(&ev, 0, sizeof ev);
  ev.events = (uint32_t)((events & POLLIN ? EPOLLIN : 0) | (events & POLLOUT ? EPOLLOUT : 0));
  ev.data.fd = fd;
  if (epoll_ctl(a->ep, op, fd, &ev) < 0) {
    fprintf(stderr, "epoll_ctl(%d, fd %d): %s\n", op, fd, strerror(errno));
    a->errors++;
  }
}

static void on_timeout(void *user, int ms) {
  app *a = (app *)user;
  struct itimerspec its;
  memset(&its, 0, sizeof its);
  if (ms == 0) its.it_value.tv_nsec = 1; /* "now": the smallest delay that still arms it */
  else if (ms > 0) {
    its.it_value.tv_sec = ms / 1000;
    its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
  }
  timerfd_settime(a->tfd, 0, &its, NULL); /* all zero (ms < 0) disarms it */
}

int main(int argc, char **argv) {
  loop_demo d;
  app a;
  struct epoll_event ev;
  long long turns = 0;
  int rc;
  a.errors = 0;
  a.ep = epoll_create1(EPOLL_CLOEXEC);
  a.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (a.ep < 0 || a.tfd < 0) return perror("epoll/timerfd"), 1;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.fd = a.tfd;
  epoll_ctl(a.ep, EPOLL_CTL_ADD, a.tfd, &ev);
  if (loop_demo_start(&d, argc > 1 ? argv[1] : NULL) < 0) return 1;
  yhc_loop_set_callbacks(loop_demo_loop(&d), on_socket, on_timeout, &a);

  /* bounded: the stand-in rents a provider in seconds; 3 minutes means something is wrong */
  {
    uint64_t end = yhc_loop_now(loop_demo_loop(&d)) + 180000;
    while (!loop_demo_done(&d) && yhc_loop_now(loop_demo_loop(&d)) < end) {
      struct epoll_event evs[64];
      int i, n = epoll_wait(a.ep, evs, 64, 1000);
      turns++;
      for (i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        if (fd == a.tfd) {
          uint64_t expirations;
          if (read(a.tfd, &expirations, sizeof expirations) > 0) yhc_loop_timeout(loop_demo_loop(&d));
          continue;
        }
        /* EPOLLERR/EPOLLHUP have the poll() values too */
        yhc_loop_action(loop_demo_loop(&d), fd, (int)evs[i].events);
      }
    }
  }
  printf("epoll loop: %lld turns\n", turns);
  loop_demo_check(&d, a.errors == 0, "no epoll_ctl failed", NULL);
  rc = loop_demo_finish(&d, "epoll");
  close(a.tfd);
  close(a.ep);
  return rc;
}
