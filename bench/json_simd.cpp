// json_simd.cpp -- simdjson (DOM API) parse and minify throughput, timed the same way as
// json_peers.c (thread CPU time, median of 5 rounds of >= 0.05 s, MB/s over the input size).
//   json_simd time FILE...    RESULT lines as json_peers
//   json_simd ir FILE [num]   one parse between CALLGRIND_TOGGLE_COLLECT marks (num: plus
//                             get_double() of every number, as yhc+num reads every number)
#include <simdjson.h>
#include <valgrind/callgrind.h>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>

static double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

template <class F> static double time_op(F f, double *spread) {
  double r[5];
  int iters = 1;
  for (;;) {
    double t0 = cpu_now();
    for (int i = 0; i < iters; i++) f();
    if (cpu_now() - t0 >= 0.05) break;
    iters *= 2;
  }
  for (double &x : r) {
    double t0 = cpu_now();
    for (int i = 0; i < iters; i++) f();
    x = (cpu_now() - t0) / iters;
  }
  std::sort(r, r + 5);
  *spread = (r[4] - r[0]) / r[2];
  return r[2];
}

// Every number of the document through get_double(): what a reader of all numbers pays on
// top of the parse (simdjson's DOM has converted them during the parse already).
static double sum_numbers(simdjson::dom::element e) {
  double s = 0;
  switch (e.type()) {
    case simdjson::dom::element_type::ARRAY:
      for (simdjson::dom::element c : simdjson::dom::array(e)) s += sum_numbers(c);
      break;
    case simdjson::dom::element_type::OBJECT:
      for (simdjson::dom::key_value_pair kv : simdjson::dom::object(e)) s += sum_numbers(kv.value);
      break;
    case simdjson::dom::element_type::DOUBLE:
    case simdjson::dom::element_type::INT64:
    case simdjson::dom::element_type::UINT64: {
      double d = 0;
      if (!e.get_double().get(d)) s += d;
      break;
    }
    default:
      break;
  }
  return s;
}
static double num_sink;

int main(int argc, char **argv) {
  if ((argc == 3 || argc == 4) && !strcmp(argv[1], "ir")) {
    bool num = argc == 4 && !strcmp(argv[3], "num");
    simdjson::padded_string text;
    if (simdjson::padded_string::load(argv[2]).get(text)) return 1;
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(text).get(doc)) return 1; // warm-up: allocates the parser's buffers
    CALLGRIND_TOGGLE_COLLECT;
    auto err = parser.parse(text).get(doc);
    if (!err && num) num_sink += sum_numbers(doc);
    CALLGRIND_TOGGLE_COLLECT;
    if (err) return 1;
    std::printf("RESULT bytes=%zu implementation=%s\n", text.size(),
                simdjson::get_active_implementation()->name().c_str());
    return 0;
  }
  if (argc < 3 || strcmp(argv[1], "time")) {
    std::fprintf(stderr, "usage: json_simd time FILE... | json_simd ir FILE\n");
    return 2;
  }
  for (int i = 2; i < argc; i++) {
    simdjson::padded_string text;
    if (simdjson::padded_string::load(argv[i]).get(text)) {
      std::fprintf(stderr, "json_simd: cannot read %s\n", argv[i]);
      return 1;
    }
    const char *name = std::strrchr(argv[i], '/') ? std::strrchr(argv[i], '/') + 1 : argv[i];
    // The parser is reused across parses, the way simdjson is meant to be used.
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    bool ok = true;
    double sp, sw;
    double tp = time_op([&] { ok &= !parser.parse(text).get(doc); }, &sp), sn;
    double tn = time_op([&] {
      ok &= !parser.parse(text).get(doc);
      num_sink += sum_numbers(doc);
    }, &sn);
    size_t out = 0;
    double tw = time_op([&] { out += simdjson::minify(doc).size(); }, &sw);
    if (!ok || !out) {
      std::fprintf(stderr, "json_simd: parse failed on %s\n", name);
      return 1;
    }
    std::printf("RESULT file=%s lib=simdjson parse_mbps=%.1f write_mbps=%.1f parse_spread=%.2f "
                "write_spread=%.2f implementation=%s\n",
                name, double(text.size()) / tp / 1e6, double(text.size()) / tw / 1e6, sp, sw,
                simdjson::get_active_implementation()->name().c_str());
    std::printf("RESULT file=%s lib=simdjson+num parse_mbps=%.1f write_mbps=0 parse_spread=%.2f "
                "write_spread=0\n", name, double(text.size()) / tn / 1e6, sn);
  }
  return num_sink == 1234.5678 ? 3 : 0;
}
