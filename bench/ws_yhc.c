/* ws_yhc.c -- throughput of yhc's WebSocket byte stream (the internal yhc__ws_open stream the
   VPN tunnel uses) against an echo peer.
     ws_yhc URL MSG_BYTES SECONDS
   Writes MSG_BYTES per write() (one binary frame each) while at most WINDOW bytes are
   unanswered, reads the echo back as a byte stream and checks it. Output:
     RESULT mbps=<echoed payload MB/s, one direction> msgs=<messages/s> cpu_pct=<yhc's CPU> */
#include "common.h"
#define YHC_IMPLEMENTATION
#include "yhc.h"

static yhc_loop *loop;
static yhc__stream *ws;
static size_t msg, window;
static uint64_t sent, received, sent_at_start, recv_at_start;
static int done, failed, measuring;
static double deadline;
static unsigned char *out, *in;
static size_t in_cap = 1 << 20;


/* The payload is a running byte counter mod 251, so the echo can be checked as a stream. */
static void pump(void) {
  for (;;) {
    long n;
    size_t i;
    if (!measuring || bench_now() < deadline) {
      while (sent - received + msg <= window) {
        for (i = 0; i < msg; i++) out[i] = (unsigned char)((sent + i) % 251);
        n = ws->vt->write(ws, out, msg);
        if (n == YHC__AGAIN) break;
        if (n < 0) {
          fprintf(stderr, "ws_yhc: write: %s\n", ws->err.msg);
          failed = done = 1;
          return;
        }
        if ((size_t)n != msg) { /* a partial frame: keep the stream going */
          sent += (uint64_t)n;
          break;
        }
        sent += (uint64_t)n;
      }
    }
    n = ws->vt->read(ws, in, in_cap);
    if (n == YHC__AGAIN) break;
    if (n <= 0) {
      fprintf(stderr, "ws_yhc: read: %s\n", n == 0 ? "EOF" : ws->err.msg);
      failed = done = 1;
      return;
    }
    for (i = 0; i < (size_t)n; i += 997) /* spot checks keep the check off the profile */
      if (in[i] != (unsigned char)((received + i) % 251)) {
        fprintf(stderr, "ws_yhc: echo mismatch at byte %llu\n", (unsigned long long)(received + i));
        failed = done = 1;
        return;
      }
    received += (uint64_t)n;
  }
  if (measuring && bench_now() >= deadline && received == sent) done = 1;
  ws->vt->want(ws, 1, sent - received + msg <= window);
}

static void on_event(void *owner, int ev) {
  (void)owner;
  if (ev & YHC__EV_ERROR) {
    fprintf(stderr, "ws_yhc: %s\n", ws->err.msg);
    failed = done = 1;
    return;
  }
  if (ev & YHC__EV_CONNECT) done = 1;
  pump();
}

int main(int argc, char **argv) {
  yhc_error err;
  double secs, t0, t1, c0;
  if (argc != 4) {
    fprintf(stderr, "usage: ws_yhc ws://HOST:PORT/ MSG_BYTES SECONDS\n");
    return 2;
  }
  msg = (size_t)atol(argv[2]);
  secs = atof(argv[3]);
  window = msg * 64 > ((size_t)256 << 10) ? msg * 64 : (size_t)256 << 10;
  if (window > ((size_t)1 << 20)) window = (size_t)1 << 20;
  out = (unsigned char *)malloc(msg);
  in = (unsigned char *)malloc(in_cap);
  loop = yhc_loop_create(NULL);
  memset(&err, 0, sizeof err);
  ws = yhc__ws_open(loop, NULL, NULL, argv[1], NULL, 0, NULL, &err);
  if (!ws) {
    fprintf(stderr, "ws_yhc: open: %s\n", err.msg);
    return 1;
  }
  ws->on_event = on_event;
  ws->owner = NULL;
  ws->vt->want(ws, 1, 1);
  yhc_loop_run(loop, &done); /* until the 101 */
  if (failed) return 1;
  /* 0.3 s warm-up, then the measured run; both drain the window before they end */
  done = 0;
  measuring = 1;
  deadline = bench_now() + 0.3;
  pump();
  yhc_loop_run(loop, &done);
  if (failed) return 1;
  done = 0;
  sent_at_start = sent;
  recv_at_start = received;
  t0 = bench_now();
  c0 = bench_cpu();
  deadline = t0 + secs;
  pump();
  yhc_loop_run(loop, &done);
  t1 = bench_now();
  if (failed) return 1;
  /* cpu_pct: this process's user+sys share of the wall time (100 = one core busy); when it
     is well below 100 the echo peer, not yhc, sets the pace */
  printf("RESULT mbps=%.1f msgs=%.0f bytes=%llu cpu_pct=%.0f\n",
         (double)(received - recv_at_start) / (t1 - t0) / 1e6,
         (double)(received - recv_at_start) / msg / (t1 - t0),
         (unsigned long long)(received - recv_at_start), (bench_cpu() - c0) / (t1 - t0) * 100);
  ws->vt->close(ws);
  yhc_loop_destroy(loop);
  return 0;
}
