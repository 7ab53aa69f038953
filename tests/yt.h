/* yt.h -- the tiny test harness every C test program in tests/ uses.
   Each check counts as one pass or one fail; yt_done() prints "N passed, N failed"
   (the line tests/run-all.sh sums) and returns the process exit code. */
#ifndef YT_H
#define YT_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct yt_state { int passed, failed; const char *group; } yt_state;
static yt_state yt_g; /* test programs are single-threaded processes; one tally each */

/* How many of a randomized loop's `n` iterations to run: all of them, or a fiftieth under
   YT_LIGHT=1, which the valgrind job sets (it checks memory, not millions of inputs: the
   plain and sanitizer runs do those). */
static inline long yt_iters(long n) {
  const char *light = getenv("YT_LIGHT");
  return light && light[0] == '1' ? (n / 50 > 0 ? n / 50 : 1) : n;
}

#define YT_GROUP(name) (yt_g.group = (name), fprintf(stderr, "-- %s\n", (name)))

#define YT_CHECK(cond)                                                                   \
  do {                                                                                   \
    if (cond) {                                                                          \
      yt_g.passed++;                                                                     \
    } else {                                                                             \
      yt_g.failed++;                                                                     \
      fprintf(stderr, "FAIL %s:%d [%s] %s\n", __FILE__, __LINE__,                       \
              yt_g.group ? yt_g.group : "", #cond);                                     \
    }                                                                                    \
  } while (0)

#define YT_CHECKF(cond, ...)                                                             \
  do {                                                                                   \
    if (cond) {                                                                          \
      yt_g.passed++;                                                                     \
    } else {                                                                             \
      yt_g.failed++;                                                                     \
      fprintf(stderr, "FAIL %s:%d [%s] %s: ", __FILE__, __LINE__,                       \
              yt_g.group ? yt_g.group : "", #cond);                                     \
      fprintf(stderr, __VA_ARGS__);                                                      \
      fputc('\n', stderr);                                                               \
    }                                                                                    \
  } while (0)

#define YT_EQ_INT(a, b)                                                                  \
  do {                                                                                   \
    long long yt_a_ = (long long)(a), yt_b_ = (long long)(b);                            \
    YT_CHECKF(yt_a_ == yt_b_, "%lld != %lld", yt_a_, yt_b_);                             \
  } while (0)

#define YT_EQ_STR(a, b)                                                                  \
  do {                                                                                   \
    const char *yt_a_ = (a), *yt_b_ = (b);                                               \
    YT_CHECKF(yt_a_ && yt_b_ && strcmp(yt_a_, yt_b_) == 0, "\"%s\" != \"%s\"",           \
              yt_a_ ? yt_a_ : "(null)", yt_b_ ? yt_b_ : "(null)");                       \
  } while (0)

#define YT_EQ_MEM(p, n, s)                                                               \
  do {                                                                                   \
    size_t yt_n_ = (size_t)(n);                                                          \
    YT_CHECKF(yt_n_ == strlen(s) && memcmp((p), (s), yt_n_) == 0, "\"%.*s\" != \"%s\"",  \
              (int)yt_n_, (const char *)(p), (s));                                       \
  } while (0)

static int yt_done(void) {
  printf("%d passed, %d failed\n", yt_g.passed, yt_g.failed);
  return yt_g.failed ? 1 : 0;
}
#endif
