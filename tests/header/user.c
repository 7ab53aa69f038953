/* The user file of a two-translation-unit program (tests/header_builds.sh): includes yhc.h
   without YHC_IMPLEMENTATION and calls the library through its public declarations only, so
   a C user linked with a C++-built implementation (and the other way round) proves the
   extern "C" linkage. Ends with "N passed, N failed". */
#include "yhc.h"
#include <stdio.h>
#include <string.h>

static int passed, failed;
#define CHECK(c) ((c) ? (void)passed++ : (void)(failed++, fprintf(stderr, "FAIL %s:%d %s\n", __FILE__, __LINE__, #c)))

static void fired(void *user) { *(int *)user += 1; }

int main(void) {
  yhc_buf b = YHC_ZERO;
  yhc_jw w;
  yhc_error err;
  yhc_json_doc *doc;
  yhc_loop *loop;
  int ticks = 0, rounds = 0;

  yhc_jw_init(&w, &b);
  yhc_jw_obj_begin(&w);
  yhc_jw_key(&w, "name");
  yhc_jw_str(&w, "calc \"v2\"");
  yhc_jw_key(&w, "n");
  yhc_jw_int(&w, 42);
  yhc_jw_obj_end(&w);
  CHECK(yhc_jw_finish(&w) == 0);
  doc = yhc_json_parse(b.ptr, b.len, NULL, &err);
  CHECK(doc != NULL);
  CHECK(strcmp(yhc_json_cstr(yhc_json_get(yhc_json_root(doc), "name"), ""), "calc \"v2\"") == 0);
  CHECK(yhc_json_int(yhc_json_get(yhc_json_root(doc), "n"), 0) == 42);
  yhc_json_free(doc);
  yhc_buf_free(&b);
  CHECK(yhc_json_parse("[1,", 3, NULL, &err) == NULL && err.code == YHC_ERR_JSON);
  CHECK(strlen(yhc_strerror(YHC_ERR_JSON)) > 0);

  loop = yhc_loop_create(NULL);
  CHECK(loop != NULL);
  CHECK(yhc_timer_add(loop, 5, fired, &ticks) != 0);
  while (!ticks && rounds++ < 1000) yhc_loop_poll(loop, 100);
  CHECK(ticks == 1);
  yhc_loop_destroy(loop);

  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
