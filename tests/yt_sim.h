/* yt_sim.h -- starts the yagna stand-in (tests/yagna-sim) for C tests and talks to its admin
   API (faults, state, spec violations) through yhc's own plain HTTP client.

   Needs node and tests/yagna-sim/node_modules (make sim-deps); yt_sim_available() says whether
   they are there so a test can print a clear skip line instead. Include after yhc.h (with the
   implementation) and yt_proc.h. */
#ifndef YT_SIM_H
#define YT_SIM_H

#define YT_SIM_APPKEY "yhc-test-appkey"

typedef struct yt_sim {
  yt_proc proc;
  char url[64];      /* http://127.0.0.1:PORT */
  char hash[80];     /* examples/calc-image */
} yt_sim;

YT_PROC_FN int yt_sim_available(void) {
  return yt_have_exe("node") && access("tests/yagna-sim/node_modules/ws", F_OK) == 0 &&
         access("examples/calc-image/calculator_server.py", F_OK) == 0;
}

/* The image hash of examples/calc-image, as the stand-in computes it. */
YT_PROC_FN int yt_sim_hash(char *out, size_t cap) {
  FILE *f = popen("node tests/yagna-sim --print-hash examples/calc-image", "r");
  size_t n;
  if (!f) return -1;
  n = fread(out, 1, cap - 1, f);
  pclose(f);
  while (n && (out[n - 1] == '\n' || out[n - 1] == '\r')) n--;
  out[n] = 0;
  return n == 56 ? 0 : -1;
}

/* Starts the stand-in with `providers` providers on a free port; `extra` are more flags
   (NULL-terminated, may be NULL), e.g. "--debit-note-interval", "1". */
YT_PROC_FN int yt_sim_start(yt_sim *s, int providers, const char *const *extra) {
  const char *argv[40];
  char np[16];
  int n = 0, k;
  memset(s, 0, sizeof *s);
  if (yt_sim_hash(s->hash, sizeof s->hash) < 0) {
    fprintf(stderr, "yt_sim: cannot compute the calc-image hash\n");
    return -1;
  }
  snprintf(np, sizeof np, "%d", providers);
  argv[n++] = "node";
  argv[n++] = "tests/yagna-sim";
  argv[n++] = "--port";
  argv[n++] = "0";
  argv[n++] = "--appkey";
  argv[n++] = YT_SIM_APPKEY;
  argv[n++] = "--providers";
  argv[n++] = np;
  argv[n++] = "--images";
  argv[n++] = "examples";
  argv[n++] = "--quiet";
  for (k = 0; extra && extra[k] && n < 38; k++) argv[n++] = extra[k];
  argv[n] = NULL;
  if (yt_proc_start_marker(&s->proc, argv, 30000, "listening on http://127.0.0.1:") < 0) return -1;
  snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->proc.port);
  return 0;
}

YT_PROC_FN void yt_sim_stop(yt_sim *s) { yt_proc_stop(&s->proc); }

/* One admin call; returns the response (caller frees) or NULL. */
YT_PROC_FN yhc_response *yt_sim_call(yt_sim *s, yhc_http *http, const char *method, const char *path,
                                     const char *json_body) {
  char url[256];
  yhc_header h[2];
  yhc_request rq;
  snprintf(url, sizeof url, "%s%s", s->url, path);
  h[0].name = "Authorization";
  h[0].value = "Bearer " YT_SIM_APPKEY;
  h[1].name = "Content-Type";
  h[1].value = "application/json";
  memset(&rq, 0, sizeof rq);
  rq.method = method;
  rq.url = url;
  rq.headers = h;
  rq.header_count = json_body ? 2 : 1;
  rq.body = json_body;
  rq.body_len = json_body ? strlen(json_body) : 0;
  rq.timeout_ms = 30000;
  return yhc_http_fetch(http, &rq);
}

/* POST /_sim/fault with the given JSON; 0 when the stand-in took it. */
YT_PROC_FN int yt_sim_fault(yt_sim *s, yhc_http *http, const char *json) {
  yhc_response *r = yt_sim_call(s, http, "POST", "/_sim/fault", json);
  int ok = r && !r->err && r->status >= 200 && r->status < 300;
  if (!ok) fprintf(stderr, "yt_sim: fault %s: %s %d\n", json, r ? r->error : "?", r ? r->status : 0);
  if (r) yhc_response_free(r);
  return ok ? 0 : -1;
}

/* Requests from yhc that did not conform to the official spec, or -1 when unknown. */
YT_PROC_FN long yt_sim_violations(yt_sim *s, yhc_http *http) {
  yhc_response *r = yt_sim_call(s, http, "GET", "/_sim/violations", NULL);
  long n = -1;
  if (r && !r->err && r->status == 200) {
    yhc_json_doc *d = yhc_json_parse(r->body.ptr, r->body.len, NULL, NULL);
    n = (long)yhc_json_int(yhc_json_get(yhc_json_root(d), "count"), -1);
    if (n > 0) fprintf(stderr, "yt_sim: violations: %.*s\n", (int)(r->body.len > 2000 ? 2000 : r->body.len), r->body.ptr);
    yhc_json_free(d);
  }
  if (r) yhc_response_free(r);
  return n;
}

/* GET /_sim/state parsed; the caller frees the document. */
YT_PROC_FN yhc_json_doc *yt_sim_state(yt_sim *s, yhc_http *http) {
  yhc_response *r = yt_sim_call(s, http, "GET", "/_sim/state", NULL);
  yhc_json_doc *d = NULL;
  if (r && !r->err && r->status == 200) d = yhc_json_parse(r->body.ptr, r->body.len, NULL, NULL);
  if (r) yhc_response_free(r);
  return d;
}

#endif
