/* yhc.h -- Golem Network HTTP client in one C header. v0.1.0

   Send ordinary HTTP requests to HTTP servers running as services on Golem Network
   providers, as easily as to any other server; plain HTTP(S) to every other URL. What the
   Python ya-httpx-client does on top of yapapi, in C: libc and POSIX sockets only, mbedTLS
   optional. Single-threaded and poll()-driven; embeds in your own event loop.

   Do this in exactly one C or C++ file, with yhc.h as its first include:
       #define YHC_IMPLEMENTATION
       #include "yhc.h"
   and include "yhc.h" without the define everywhere else. License: MIT, at the end.

   QUICK START (a service on Golem; see examples/calculator.c for the whole program)

       static void start(yhc_ctx *ctx, const char *listen_on, void *user) {
         const char *argv[] = {"/bin/sh", "-c", "python3 /golem/run/server.py &", NULL};
         yhc_ctx_run(ctx, argv);            // commands that start the server in the VM
       }
       yhc_session_desc sd = {0};           // YAGNA_API_URL, YAGNA_APPKEY from the env
       yhc_error err;
       yhc_session *s = yhc_session_create(&sd, &err);
       yhc_service_desc svc = {0};
       svc.url = "http://calc"; svc.image_hash = "..."; svc.startup = start;
       yhc_session_add_service(s, &svc, &err);
       yhc_request rq = {0};
       rq.url = "http://calc/add/3/4";      // any other URL is a plain HTTP request
       yhc_response *r = yhc_session_fetch(s, &rq);   // or yhc_session_request(..., cb, user)
       printf("%d %.*s\n", r->status, (int)r->body.len, r->body.ptr);
       yhc_response_free(r);
       yhc_session_close_wait(s);           // agreements terminated, invoices paid
       yhc_session_destroy(s);

   Plain HTTP without Golem: yhc_loop_create(), yhc_http_create(), yhc_http_fetch() or
   yhc_http_request() with a callback, driven by yhc_loop_poll() or your own poll() through
   yhc_loop_fds()/yhc_loop_dispatch().

   CONFIGURATION MACROS (define before the implementation include)
     YHC_MALLOC(sz), YHC_REALLOC(p,sz), YHC_FREE(p)   all three or none  [malloc/realloc/free]
     YHC_ASSERT(c)       programmer errors only, never peer bytes         [assert]
     YHCDEF              linkage of the public API                        [extern]
     YHC_STATIC          makes YHCDEF static (private copy per file)
     YHC_MBEDTLS         compile in TLS (https://, wss://); link -lmbedtls -lmbedx509 -lmbedcrypto
     YHC_VERSION         the User-Agent version                           ["0.1.0"]
     YHC_STARTUP_PROBE_MS  how long a started service may take to listen  [60000]

   LIMITS AGAINST UNTRUSTED PEERS (runtime, per client; 0 = default)
     yhc_limits.max_header_bytes   response head (and trailers)           [16384]
     yhc_limits.max_header_count   header fields per response             [100]
     yhc_limits.max_body_bytes     collected body (streaming: unlimited)  [64 MiB]
     yhc_limits.max_chunk_digits   hex digits of a chunk size             [16]
     yhc_json_opts.max_depth       JSON nesting                           [512]
     WebSocket tunnel frames       payload of one received frame          [1 MiB]
     timeouts: connect [10 s], idle [30 s], keep-alive [30 s], request [120 s; 60 s for services]
     Daemon answers are parsed with a depth of 64 and at most 16 MiB.

   ERRORS: every failure has a code (yhc_err, yhc_strerror()) and a message naming what went
   wrong, e.g. "response header section exceeds 16384 bytes". Every request ends exactly once,
   through its callback, with a response or an error.
@@TOC@@
*/
#ifndef YHC_H
#define YHC_H

/* The implementation needs POSIX declarations (getaddrinfo, clock_gettime) even under
   -std=c99; this only works when yhc.h is the first include of the implementation file. */
#if defined(YHC_IMPLEMENTATION) && !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#  define _POSIX_C_SOURCE 200809L
#endif

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

