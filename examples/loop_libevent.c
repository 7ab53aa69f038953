/* loop_libevent.c -- yhc in a libevent loop (tier 3: socket and timer callbacks).

   Each fd yhc asks us to watch gets a persistent struct event, kept in the per-fd pointer
   yhc hands back (fd_data); yhc's deadline is one timer event. Readiness goes back through
   yhc_loop_action(), the timer through yhc_loop_timeout(). The work (a Golem session and
   plain HTTP requests, each answer checked) is in loop_demo.h.

     YAGNA_APPKEY=... YHC_IMAGE_HASH=... ./loop_libevent http://127.0.0.1:8080
   Build: cc -std=c99 -I. examples/loop_libevent.c -levent -lm (Debian: libevent-dev). */
#define YHC_IMPLEMENTATION
#include "yhc.h"
#include "loop_demo.h"

#include <event2/event.h>

typedef struct app {
  struct event_base *base;
  struct event *timer;   /* yhc's deadline */
  loop_demo *d;
  int events;            /* struct event alive: 0 at the end */
} app;

static void on_ready(evutil_socket_t fd, short what, void *arg) {
  app *a = (app *)arg;
  int ev = (what & EV_READ ? POLLIN : 0) | (what & EV_WRITE ? POLLOUT : 0);
  yhc_loop_action(loop_demo_loop(a->d), (int)fd, ev);
  if (loop_demo_done(a->d)) event_base_loopbreak(a->base);
}

static void on_socket(void *user, int fd, int events, int old_events, void **fd_data) {
  app *a = (app *)user;
  struct event *e = (struct event *)*fd_data;
  short what = (short)((events & POLLIN ? EV_READ : 0) | (events & POLLOUT ? EV_WRITE : 0) | EV_PERSIST);
  if (old_events) { /* change or remove: this event goes either way */
    event_free(e);
    a->events--;
    *fd_data = NULL;
  }
  if (!events) return;
  e = event_new(a->base, fd, what, on_ready, a);
  if (!e || event_add(e, NULL) != 0) {
    fprintf(stderr, "event_new/event_add(%d) failed\n", fd);
    if (e) event_free(e);
    return;
  }
  a->events++;
  *fd_data = e;
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
  app *a = (app *)arg;
  (void)fd;
  (void)what;
  yhc_loop_timeout(loop_demo_loop(a->d));
  if (loop_demo_done(a->d)) event_base_loopbreak(a->base);
}

static void on_timeout(void *user, int ms) {
  app *a = (app *)user;
  struct timeval tv;
  if (ms < 0) {
    evtimer_del(a->timer);
    return;
  }
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  evtimer_add(a->timer, &tv);
}

int main(int argc, char **argv) {
  loop_demo d;
  app a;
  struct timeval bound = {180, 0}; /* our own bound on the whole run */
  int rc;
  memset(&a, 0, sizeof a);
  a.base = event_base_new();
  a.d = &d;
  if (!a.base) return 1;
  a.timer = evtimer_new(a.base, on_timer, &a);
  if (loop_demo_start(&d, argc > 1 ? argv[1] : NULL) < 0) return 1;
  yhc_loop_set_callbacks(loop_demo_loop(&d), on_socket, on_timeout, &a);
  event_base_loopexit(a.base, &bound);
  event_base_dispatch(a.base);
  rc = loop_demo_finish(&d, "libevent"); /* destroying the session tells the last removals */
  if (a.events != 0) {
    printf("FAIL %d events left\nlibevent: 0 passed, 1 failed\n", a.events);
    rc = 1;
  }
  event_free(a.timer);
  event_base_free(a.base);
  return rc;
}
