/* loop_libuv.c -- yhc in a libuv loop (tier 3: socket and timer callbacks).

   Each fd yhc asks us to watch gets a uv_poll_t, kept in the per-fd pointer yhc hands back
   (fd_data); yhc's deadline is one uv_timer_t. Readiness goes back through
   yhc_loop_action(), the timer through yhc_loop_timeout(). yhc closes an fd only after telling
   us to remove it, so uv_poll_stop() always sees a live fd, as libuv requires. The work (a
   Golem session and plain HTTP requests, each answer checked) is in loop_demo.h.

     YAGNA_APPKEY=... YHC_IMAGE_HASH=... ./loop_libuv http://127.0.0.1:8080
   Build: cc -std=c99 -I. examples/loop_libuv.c -luv -lm (Debian: libuv1-dev). */
#define YHC_IMPLEMENTATION
#include "yhc.h"
#include "loop_demo.h"

#include <uv.h>

typedef struct app {
  uv_loop_t *uv;
  uv_timer_t timer;    /* yhc's deadline */
  uv_timer_t give_up;  /* our own bound on the whole run */
  loop_demo *d;
  int handles;         /* uv_poll_t alive: 0 at the end */
} app;

static void app_check_done(app *a) {
  if (loop_demo_done(a->d)) uv_stop(a->uv);
}

static void on_ready(uv_poll_t *h, int status, int events) {
  app *a = (app *)h->data;
  uv_os_fd_t fd;
  int ev = 0;
  if (uv_fileno((uv_handle_t *)h, &fd) != 0) return;
  if (status < 0) ev |= POLLERR;
  if (events & UV_READABLE) ev |= POLLIN;
  if (events & UV_WRITABLE) ev |= POLLOUT;
  if (events & UV_DISCONNECT) ev |= POLLHUP;
  yhc_loop_action(loop_demo_loop(a->d), fd, ev);
  app_check_done(a);
}

static void on_closed(uv_handle_t *h) {
  app *a = (app *)h->data;
  a->handles--;
  free(h);
}

static void on_socket(void *user, int fd, int events, int old_events, void **fd_data) {
  app *a = (app *)user;
  uv_poll_t *h = (uv_poll_t *)*fd_data;
  int flags = (events & POLLIN ? UV_READABLE : 0) | (events & POLLOUT ? UV_WRITABLE : 0);
  if (!events) { /* remove: stop now (the fd is still open), free when libuv is done with it */
    uv_poll_stop(h);
    uv_close((uv_handle_t *)h, on_closed);
    *fd_data = NULL;
    return;
  }
  if (!old_events) {
    h = (uv_poll_t *)malloc(sizeof *h);
    if (!h || uv_poll_init_socket(a->uv, h, fd) != 0) {
      fprintf(stderr, "uv_poll_init_socket(%d) failed\n", fd);
      free(h);
      return;
    }
    h->data = a;
    a->handles++;
    *fd_data = h;
  }
  uv_poll_start(h, flags, on_ready);
}

static void on_timer(uv_timer_t *t) {
  app *a = (app *)t->data;
  yhc_loop_timeout(loop_demo_loop(a->d));
  app_check_done(a);
}

static void on_timeout(void *user, int ms) {
  app *a = (app *)user;
  if (ms < 0) uv_timer_stop(&a->timer);
  else uv_timer_start(&a->timer, on_timer, (uint64_t)ms, 0);
}

static void on_give_up(uv_timer_t *t) { uv_stop(((app *)t->data)->uv); }

int main(int argc, char **argv) {
  loop_demo d;
  app a;
  int rc;
  memset(&a, 0, sizeof a);
  a.uv = uv_default_loop();
  a.d = &d;
  uv_timer_init(a.uv, &a.timer);
  uv_timer_init(a.uv, &a.give_up);
  a.timer.data = a.give_up.data = &a;
  if (loop_demo_start(&d, argc > 1 ? argv[1] : NULL) < 0) return 1;
  yhc_loop_set_callbacks(loop_demo_loop(&d), on_socket, on_timeout, &a);
  uv_timer_start(&a.give_up, on_give_up, 180000, 0);
  uv_run(a.uv, UV_RUN_DEFAULT);
  rc = loop_demo_finish(&d, "libuv"); /* destroying the session tells the last removals */
  uv_close((uv_handle_t *)&a.timer, NULL);
  uv_close((uv_handle_t *)&a.give_up, NULL);
  uv_run(a.uv, UV_RUN_DEFAULT); /* the close callbacks */
  if (a.handles != 0) {
    printf("FAIL %d uv_poll_t left\nlibuv: 0 passed, 1 failed\n", a.handles);
    rc = 1;
  }
  uv_loop_close(a.uv);
  return rc;
}
