/* common.h -- shared helpers for yhc's benchmark programs: a clock, a counting allocator
   (for YHC_MALLOC/YHC_REALLOC/YHC_FREE), VmHWM/VmRSS from /proc, latency percentiles.
   Every bench prints machine-readable lines "RESULT key=value ..." that run.sh collects. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H
#define _GNU_SOURCE 1
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#if defined(__GNUC__) || defined(__clang__)
#  define BENCH_UNUSED __attribute__((unused))
#else
#  define BENCH_UNUSED
#endif

BENCH_UNUSED static double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU seconds (user + system) this process has used: the client's own cost, which a busy
   neighbour on a shared machine disturbs far less than the wall-clock rate. */
BENCH_UNUSED static double bench_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* One answer into a bench's tally: a good one (no error, 200) counts in *ok and returns 1; any
   other counts in *bad and leaves its text in why. */
BENCH_UNUSED static int bench_tally(int err, const char *error, int status, uint64_t *ok, uint64_t *bad, char *why,
                                    size_t why_cap) {
  if (err || status != 200) {
    (*bad)++;
    snprintf(why, why_cap, "%s (status %d)", err ? error : "", status);
    return 0;
  }
  (*ok)++;
  return 1;
}

/* Counting allocator: a 16-byte header keeps each block's size so FREE and REALLOC know what
   leaves. `live` is the heap the library holds right now, `peak` its high-water mark. */
typedef struct bench_heap {
  size_t live, peak;
  uint64_t allocs, reallocs, frees;
} bench_heap;
static bench_heap bench_h;

BENCH_UNUSED static void *bench_malloc(size_t n) {
  size_t *p = (size_t *)malloc(n + 16);
  if (!p) return NULL;
  p[0] = n;
  bench_h.live += n;
  if (bench_h.live > bench_h.peak) bench_h.peak = bench_h.live;
  bench_h.allocs++;
  return (char *)p + 16;
}
BENCH_UNUSED static void bench_free(void *q) {
  size_t *p;
  if (!q) return;
  p = (size_t *)((char *)q - 16);
  bench_h.live -= p[0];
  bench_h.frees++;
  free(p);
}
BENCH_UNUSED static void *bench_realloc(void *q, size_t n) {
  size_t *p, old;
  if (!q) return bench_malloc(n);
  p = (size_t *)((char *)q - 16);
  old = p[0];
  p = (size_t *)realloc(p, n + 16);
  if (!p) return NULL;
  p[0] = n;
  bench_h.live = bench_h.live - old + n;
  if (bench_h.live > bench_h.peak) bench_h.peak = bench_h.live;
  bench_h.reallocs++;
  return (char *)p + 16;
}

/* "VmHWM" or "VmRSS" in KiB, -1 when /proc is not there. */
BENCH_UNUSED static long bench_proc_kb(const char *field) {
  char line[256];
  long kb = -1;
  size_t fl = strlen(field);
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
      kb = strtol(line + fl + 1, NULL, 10);
      break;
    }
  }
  fclose(f);
  return kb;
}

BENCH_UNUSED static int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
/* q in [0,1] of n sorted samples (nearest rank). */
BENCH_UNUSED static double bench_pct(double *v, size_t n, double q) {
  size_t i;
  if (!n) return 0;
  i = (size_t)(q * (double)n);
  if (i >= n) i = n - 1;
  return v[i];
}

BENCH_UNUSED static char *bench_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *p;
  long n;
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  p = (char *)malloc((size_t)n + 1);
  if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
    free(p);
    p = NULL;
  }
  fclose(f);
  if (p) p[n] = 0; /* cJSON wants NUL-terminated text; the others take a length */
  *len = (size_t)n;
  return p;
}
#endif
