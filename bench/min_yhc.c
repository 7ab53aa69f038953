/* min_yhc.c -- the footprint probe: a minimal HTTP+JSON client on yhc (no TLS). Fetches a URL,
   parses the JSON answer and prints one field. Built with -Os -ffunction-sections
   -fdata-sections -Wl,--gc-sections; bench/run.sh reports its .text. */
#define YHC_IMPLEMENTATION
#include "yhc.h"
#include <stdio.h>

int main(int argc, char **argv) {
  yhc_loop *loop = yhc_loop_create(NULL);
  yhc_http *http = yhc_http_create(loop, NULL);
  yhc_request req;
  yhc_response *r;
  int rc = 1;
  memset(&req, 0, sizeof req);
  req.url = argc > 1 ? argv[1] : "http://127.0.0.1:8080/data.json";
  r = yhc_http_fetch(http, &req);
  if (r && !r->err && r->status == 200) {
    yhc_json_doc *d = yhc_json_parse(r->body.ptr, r->body.len, NULL, NULL);
    if (d) {
      printf("%s\n", yhc_json_cstr(yhc_json_get(yhc_json_root(d), "name"), "?"));
      yhc_json_free(d);
      rc = 0;
    }
  }
  yhc_response_free(r);
  yhc_http_destroy(http);
  yhc_loop_destroy(loop);
  return rc;
}
