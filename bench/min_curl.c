/* min_curl.c -- the same minimal HTTP+JSON client as min_yhc.c on libcurl (easy interface)
   and cJSON, for the footprint comparison. */
#include <curl/curl.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { char *p; size_t n; } buf;
static size_t on_write(char *d, size_t sz, size_t nm, void *u) {
  buf *b = (buf *)u;
  char *q = (char *)realloc(b->p, b->n + sz * nm + 1);
  if (!q) return 0;
  memcpy(q + b->n, d, sz * nm);
  b->p = q;
  b->n += sz * nm;
  b->p[b->n] = 0;
  return sz * nm;
}

int main(int argc, char **argv) {
  CURL *e = curl_easy_init();
  buf b = {NULL, 0};
  long code = 0;
  int rc = 1;
  curl_easy_setopt(e, CURLOPT_URL, argc > 1 ? argv[1] : "http://127.0.0.1:8080/data.json");
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
  if (curl_easy_perform(e) == CURLE_OK &&
      curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200) {
    cJSON *j = cJSON_ParseWithLength(b.p, b.n);
    if (j) {
      cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "name");
      printf("%s\n", cJSON_IsString(n) ? n->valuestring : "?");
      cJSON_Delete(j);
      rc = 0;
    }
  }
  free(b.p);
  curl_easy_cleanup(e);
  return rc;
}
