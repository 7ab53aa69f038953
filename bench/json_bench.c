/* json_bench.c -- parse throughput of yhc's JSON layer against cJSON on the files given.
   Build: cc -O2 -I. bench/json_bench.c -o /tmp/json_bench -lcjson -lm
   Run:   /tmp/json_bench ../shared/bench-data/twitter.json (and the others)
   Mode "yhc-only FILE" parses once with yhc and "read-only FILE" only reads the file, so
   callgrind's count for the parse is the difference of the two runs. */
#define YHC_IMPLEMENTATION
#include "yhc.h"
#include <cjson/cJSON.h>
#include <time.h>

static char *read_file(const char *path, size_t *len) {
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
  if (p) p[n] = 0; /* cJSON wants a NUL-terminated string; yhc does not need it */
  *len = (size_t)n;
  return p;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Best of several rounds so a scheduler hiccup does not count. */
static double bench_yhc(const char *text, size_t len) {
  double best = 1e9;
  int r, i;
  for (r = 0; r < 15; r++) {
    double t0 = now();
    for (i = 0; i < 10; i++) {
      yhc_json_doc *d = yhc_json_parse(text, len, NULL, NULL);
      if (!d) abort();
      yhc_json_free(d);
    }
    t0 = (now() - t0) / 10;
    if (t0 < best) best = t0;
  }
  return best;
}

static double bench_cjson(const char *text, size_t len) {
  double best = 1e9;
  int r, i;
  for (r = 0; r < 15; r++) {
    double t0 = now();
    for (i = 0; i < 10; i++) {
      cJSON *j = cJSON_ParseWithLength(text, len);
      if (!j) abort();
      cJSON_Delete(j);
    }
    t0 = (now() - t0) / 10;
    if (t0 < best) best = t0;
  }
  return best;
}

/* Parse plus reading every number as a double: the full cost of the lazy conversion. */
static double sum_numbers(const yhc_json *v) {
  double s = 0;
  const yhc_json *c;
  if (yhc_json_typeof(v) == YHC_JSON_NUMBER) return yhc_json_num(v, 0);
  for (c = yhc_json_first(v); c; c = yhc_json_next(c)) s += sum_numbers(c);
  return s;
}

static double bench_yhc_nums(const char *text, size_t len) {
  double best = 1e9, sink = 0;
  int r, i;
  for (r = 0; r < 15; r++) {
    double t0 = now();
    for (i = 0; i < 10; i++) {
      yhc_json_doc *d = yhc_json_parse(text, len, NULL, NULL);
      if (!d) abort();
      sink += sum_numbers(yhc_json_root(d));
      yhc_json_free(d);
    }
    t0 = (now() - t0) / 10;
    if (t0 < best) best = t0;
  }
  if (sink == 12345.678) puts("");
  return best;
}

int main(int argc, char **argv) {
  int i;
  size_t len;
  char *text;
  if (argc == 3 && (!strcmp(argv[1], "yhc-only") || !strcmp(argv[1], "read-only") ||
                    !strcmp(argv[1], "cjson-only"))) {
    text = read_file(argv[2], &len);
    if (!text) return 1;
    if (argv[1][0] == 'y') {
      yhc_json_doc *d = yhc_json_parse(text, len, NULL, NULL);
      if (!d) return 1;
      yhc_json_free(d);
    } else if (argv[1][0] == 'c') {
      cJSON_Delete(cJSON_ParseWithLength(text, len));
    }
    printf("%zu bytes\n", len);
    free(text);
    return 0;
  }
  printf("%-20s %10s %10s %8s %16s\n", "file", "yhc MB/s", "cJSON MB/s", "ratio", "yhc+nums MB/s");
  for (i = 1; i < argc; i++) {
    double ty, tc, tn;
    const char *name = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
    text = read_file(argv[i], &len);
    if (!text) {
      fprintf(stderr, "cannot read %s\n", argv[i]);
      return 1;
    }
    ty = bench_yhc(text, len);
    tc = bench_cjson(text, len);
    tn = bench_yhc_nums(text, len);
    printf("%-20s %10.0f %10.0f %7.2fx %16.0f\n", name, len / ty / 1e6, len / tc / 1e6, tc / ty,
           len / tn / 1e6);
    free(text);
  }
  return 0;
}
