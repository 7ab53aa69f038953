/* json_peers.c -- JSON parse and write throughput: yhc vs cJSON vs jansson (simdjson is in
   json_simd.cpp, a C++ program).
     json_peers time FILE...           per file and library: parse MB/s and write MB/s
                                       (compact; both over the input file's size), median of
                                       5 rounds of >= 0.05 s each
     json_peers ir LIB FILE            for callgrind: one warm-up parse, then one parse between
                                       CALLGRIND_TOGGLE_COLLECT marks (run with
                                       --collect-atstart=no); LIB = yhc|cjson|jansson|yhc+num
   Output: "RESULT file=... lib=... parse_mbps=... write_mbps=..." lines. */
#include "common.h"
#define YHC_IMPLEMENTATION
#include "yhc.h"
#include <cjson/cJSON.h>
#include <jansson.h>
#include <valgrind/callgrind.h>

/* yhc+num: yhc keeps numbers as text until asked; this variant also converts every number to
   a double after parsing, the work cJSON and jansson do while parsing (parse rows only). */
enum { L_YHC, L_CJSON, L_JANSSON, L_YHC_NUM, L_COUNT };
static const char *lib_names[L_COUNT] = {"yhc", "cjson", "jansson", "yhc+num"};
static double num_sink;
static double sum_numbers(const yhc_json *v) {
  double s = 0;
  const yhc_json *c;
  if (yhc_json_typeof(v) == YHC_JSON_NUMBER) return yhc_json_num(v, 0);
  for (c = yhc_json_first(v); c; c = yhc_json_next(c)) s += sum_numbers(c);
  return s;
}

static void *parse(int lib, const char *text, size_t len) {
  void *r = NULL;
  if (lib == L_YHC || lib == L_YHC_NUM) r = yhc_json_parse(text, len, NULL, NULL);
  else if (lib == L_CJSON) r = cJSON_ParseWithLength(text, len);
  else r = json_loadb(text, len, 0, NULL);
  if (!r) {
    fprintf(stderr, "json_peers: %s failed to parse\n", lib_names[lib]);
    exit(1);
  }
  if (lib == L_YHC_NUM) num_sink += sum_numbers(yhc_json_root((yhc_json_doc *)r));
  return r;
}
static void release(int lib, void *d) {
  if (lib == L_YHC || lib == L_YHC_NUM) yhc_json_free((yhc_json_doc *)d);
  else if (lib == L_CJSON) cJSON_Delete((cJSON *)d);
  else json_decref((json_t *)d);
}
static yhc_buf ybuf;
/* Serialises compactly; returns the output length. */
static size_t write_doc(int lib, void *d) {
  size_t n;
  if (lib == L_YHC) {
    yhc_jw w;
    ybuf.len = 0; /* the buffer is reused, as a client writing request bodies would */
    yhc_jw_init(&w, &ybuf);
    yhc_jw_value(&w, yhc_json_root((yhc_json_doc *)d));
    if (yhc_jw_finish(&w)) {
      fprintf(stderr, "json_peers: yhc write failed\n");
      exit(1);
    }
    return ybuf.len;
  } else if (lib == L_CJSON) {
    char *s = cJSON_PrintUnformatted((cJSON *)d);
    n = strlen(s);
    cJSON_free(s);
  } else {
    char *s = json_dumps((json_t *)d, JSON_COMPACT);
    n = strlen(s);
    free(s);
  }
  return n;
}

/* This machine is shared: CPU time of this thread, so time spent descheduled does not count
   (cache and frequency effects from neighbours still do; the spread shows them). */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
static double spreads[2];

/* Seconds per operation: median over 5 rounds, each repeating until >= 0.05 s. */
static double time_op(int lib, int op, const char *text, size_t len) {
  double r[5];
  int k, iters = 1;
  void *doc = op ? parse(lib, text, len) : NULL;
  for (;;) { /* calibrate */
    double t0 = cpu_now();
    int i;
    for (i = 0; i < iters; i++) {
      if (op) write_doc(lib, doc);
      else release(lib, parse(lib, text, len));
    }
    if (cpu_now() - t0 >= 0.05) break;
    iters *= 2;
  }
  for (k = 0; k < 5; k++) {
    double t0 = cpu_now();
    int i;
    for (i = 0; i < iters; i++) {
      if (op) write_doc(lib, doc);
      else release(lib, parse(lib, text, len));
    }
    r[k] = (cpu_now() - t0) / iters;
  }
  if (doc) release(lib, doc);
  qsort(r, 5, sizeof r[0], bench_cmp_double);
  {
    spreads[op] = (r[4] - r[0]) / r[2]; /* (max - min) / median */
  }
  return r[2];
}

int main(int argc, char **argv) {
  int i, lib;
  size_t len;
  char *text;
  if (argc == 4 && !strcmp(argv[1], "ir")) {
    void *d;
    for (lib = 0; lib < L_COUNT && strcmp(lib_names[lib], argv[2]); lib++) {}
    if (lib == L_COUNT) return 2;
    text = bench_read_file(argv[3], &len);
    if (!text) return 1;
    release(lib, parse(lib, text, len)); /* warm-up: lazy binding, malloc arenas */
    CALLGRIND_TOGGLE_COLLECT;
    d = parse(lib, text, len);
    CALLGRIND_TOGGLE_COLLECT;
    release(lib, d);
    printf("RESULT bytes=%zu\n", len);
    free(text);
    return 0;
  }
  if (argc < 3 || strcmp(argv[1], "time")) {
    fprintf(stderr, "usage: json_peers time FILE... | json_peers ir yhc|cjson|jansson FILE\n");
    return 2;
  }
  for (i = 2; i < argc; i++) {
    const char *name = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
    text = bench_read_file(argv[i], &len);
    if (!text) {
      fprintf(stderr, "json_peers: cannot read %s\n", argv[i]);
      return 1;
    }
    for (lib = 0; lib < L_COUNT; lib++) {
      double tp = time_op(lib, 0, text, len), tw = lib == L_YHC_NUM ? 0 : time_op(lib, 1, text, len);
      if (lib == L_YHC_NUM) spreads[1] = 0;
      printf("RESULT file=%s lib=%s parse_mbps=%.1f write_mbps=%.1f parse_spread=%.2f "
             "write_spread=%.2f\n", name, lib_names[lib], (double)len / tp / 1e6,
             tw > 0 ? (double)len / tw / 1e6 : 0.0, spreads[0], spreads[1]);
      fflush(stdout);
    }
    free(text);
  }
  yhc_buf_free(&ybuf);
  return num_sink == 1234.5678 ? 3 : 0;
}
