/* ==== Public API: event loop, timers ============================================== */

/* All I/O runs from one single-threaded poll() loop. Three ways to drive it, as curl's multi
   interface does:
     1. yhc_loop_poll(loop, timeout): the library calls poll() once and dispatches;
        yhc_loop_run(loop, &done) turns it until *done becomes non-zero.
     2. Your own poll(): yhc_loop_fds() fills pollfds and the timeout the library needs,
        you poll() them together with your own fds, then hand them to yhc_loop_dispatch().
     3. (planned) socket/timer callbacks for epoll or libuv users.
   A loop is not thread-safe; use one per thread. */
#include <poll.h>

typedef struct yhc_loop yhc_loop;
typedef uint64_t (*yhc_clock_fn)(void *user); /* milliseconds, monotonic */

typedef struct yhc_loop_desc {
  yhc_clock_fn clock; /* default: CLOCK_MONOTONIC; tests inject their own */
  void *clock_user;
  yhc_log_fn log;     /* default: none */
  void *log_user;
  yhc_log_level log_level; /* 0 = WARN */
} yhc_loop_desc;

/* desc may be NULL. Returns NULL when out of memory. */
YHCDEF yhc_loop *yhc_loop_create(const yhc_loop_desc *desc);
/* Destroys the loop; every object built on it must be destroyed first. */
YHCDEF void yhc_loop_destroy(yhc_loop *loop);
YHCDEF uint64_t yhc_loop_now(yhc_loop *loop);

/* Tier 1. Waits at most timeout_ms (-1 = until something is due) and runs what is ready.
   Returns the number of callbacks run, or -1 with errno when poll() itself failed. */
YHCDEF int yhc_loop_poll(yhc_loop *loop, int timeout_ms);
/* Turns the loop until *done is non-zero or nothing is left to wait for. Returns 0 when
   *done was set, -1 when the loop ran dry first. */
YHCDEF int yhc_loop_run(yhc_loop *loop, const volatile int *done);

/* Tier 2. Writes up to `cap` pollfds and the timeout the library needs (ms, -1 = none).
   Returns how many fds the library watches (call again with more room if that exceeds cap). */
YHCDEF int yhc_loop_fds(yhc_loop *loop, struct pollfd *fds, int cap, int *timeout_ms);
/* Hands poll()'s results back (fds not owned by the library are ignored) and runs due timers. */
YHCDEF void yhc_loop_dispatch(yhc_loop *loop, const struct pollfd *fds, int nfds);

/* Timers: one-shot; the callback runs from the loop. Ids are never reused, so cancelling a
   timer that already fired is a harmless no-op (returns 0). */
typedef void (*yhc_timer_fn)(void *user);
YHCDEF uint64_t yhc_timer_add(yhc_loop *loop, uint64_t delay_ms, yhc_timer_fn fn, void *user);
YHCDEF int yhc_timer_cancel(yhc_loop *loop, uint64_t id);

