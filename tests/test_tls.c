/* TLS layer (mbedTLS). Without YHC_MBEDTLS: an https:// request fails with YHC_ERR_NO_TLS and
   says so, and that is all. With it: certificates are generated for this run
   (tests/servers/mkcerts.sh, into a temporary directory), tests/servers/origin.py is served
   over TLS by a small Python wrapper (stdlib ssl), and the client is checked against a good
   certificate, keep-alive reuse, chunked and close-delimited bodies, each verification failure
   with its message, the insecure mode and its warning, an old protocol version, and a peer
   that stalls the handshake. Run from the repository root (tests/run-all.sh does). */
#define YHC_IMPLEMENTATION
#include "yhc.h"
#include "tests/yt.h"
#include "tests/yt_proc.h"

#include <stdlib.h>

static int contains(const char *hay, const char *needle) {
  return hay && needle && strstr(hay, needle) != NULL;
}

#ifndef YHC_MBEDTLS

int main(void) {
  yhc_loop *loop = yhc_loop_create(NULL);
  yhc_http *http = yhc_http_create(loop, NULL);
  yhc_request req;
  yhc_response *r;
  yhc__tls_ctx *ctx = NULL;
  yhc__tls_conf conf;
  yhc_error err;
  YT_GROUP("built without TLS");
  memset(&req, 0, sizeof req);
  req.url = "https://localhost:1/";
  r = yhc_http_fetch(http, &req);
  YT_CHECK(r != NULL);
  if (r) {
    YT_EQ_INT(r->err, YHC_ERR_NO_TLS);
    YT_CHECKF(contains(r->error, "built without TLS"), "message: %s", r->error);
    yhc_response_free(r);
  }
  /* the stream layer says the same to any other user of it (the WebSocket client) */
  memset(&conf, 0, sizeof conf);
  yhc__error_clear(&err);
  YT_CHECK(yhc__tls_open(loop, &ctx, &conf, "localhost", 443, &err) == NULL);
  YT_EQ_INT(err.code, YHC_ERR_NO_TLS);
  YT_CHECKF(contains(err.msg, "built without TLS"), "message: %s", err.msg);
  yhc__tls_ctx_free(ctx);
  yhc_http_destroy(http);
  yhc_loop_destroy(loop);
  return yt_done();
}

#else /* YHC_MBEDTLS */

/* origin.py's handler behind Python's ssl module. argv: cert key mode; mode "tls11" caps the
   server at TLS 1.1, "plain" serves without TLS. The handshake runs in the handler thread
   (on the first read), so a client that never finishes it blocks no one. */
static const char server_py[] =
    "import os, signal, ssl, sys, threading, warnings\n"
    "warnings.simplefilter('ignore')  # TLS 1.1 is deprecated: that is the point\n"
    "sys.path.insert(0, os.path.join(os.getcwd(), 'tests', 'servers'))\n"
    "import origin\n"
    "cert, key, mode = sys.argv[1], sys.argv[2], sys.argv[3]\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "if mode == 'tls11':\n"
    "    ctx.set_ciphers('DEFAULT:@SECLEVEL=0')\n"
    "    ctx.minimum_version = ssl.TLSVersion.TLSv1\n"
    "    ctx.maximum_version = ssl.TLSVersion.TLSv1_1\n"
    "ctx.load_cert_chain(cert, key)\n"
    "class S(origin.Server):\n"
    "    def get_request(self):\n"
    "        s, a = self.socket.accept()\n"
    "        if mode == 'plain':\n"
    "            return s, a\n"
    "        return ctx.wrap_socket(s, server_side=True, do_handshake_on_connect=False), a\n"
    "    def handle_error(self, request, addr):\n"
    "        pass\n"
    "signal.signal(signal.SIGTERM, lambda *_: os._exit(0))\n"
    "srv = S(('127.0.0.1', 0), origin.Handler)\n"
    "def watch():\n"
    "    try:\n"
    "        while sys.stdin.buffer.read(4096):\n"
    "            pass\n"
    "    except Exception:\n"
    "        pass\n"
    "    os._exit(0)\n"
    "threading.Thread(target=watch, daemon=True).start()\n"
    "print('PORT %d' % srv.server_address[1], flush=True)\n"
    "srv.serve_forever(poll_interval=0.2)\n";

static char certdir[256];

static const char *cert_path(const char *name, const char *ext) {
  static char bufs[8][512];
  static int next;
  char *b = bufs[next++ % 8];
  snprintf(b, sizeof bufs[0], "%s/%s.%s", certdir, name, ext);
  return b;
}

static int start_server(yt_proc *p, const char *cert, const char *mode) {
  const char *argv[7];
  argv[0] = yt_python();
  argv[1] = "-c";
  argv[2] = server_py;
  argv[3] = cert_path(cert, "crt");
  argv[4] = cert_path(cert, "key");
  argv[5] = mode;
  argv[6] = NULL;
  if (yt_proc_start(p, argv, 10000) < 0) {
    fprintf(stderr, "cannot start the TLS server for %s (%s)\n", cert, mode);
    return -1;
  }
  return 0;
}

/* ---- a client with its own loop, logging into a capture */

typedef struct client {
  yhc_loop *loop;
  yhc_http *http;
  int warns;
  char warn[600];
} client;

static void on_log(void *user, yhc_log_level level, const char *msg) {
  client *c = (client *)user;
  if (level == YHC_LOG_WARN) {
    c->warns++;
    snprintf(c->warn, sizeof c->warn, "%s", msg);
  }
}

static void client_open(client *c, const yhc_http_desc *d) {
  yhc_loop_desc ld;
  memset(c, 0, sizeof *c);
  memset(&ld, 0, sizeof ld);
  ld.log = on_log;
  ld.log_user = c;
  ld.log_level = YHC_LOG_WARN;
  c->loop = yhc_loop_create(&ld);
  c->http = yhc_http_create(c->loop, d);
}

static void client_close(client *c) {
  yhc_http_destroy(c->http);
  yhc_loop_destroy(c->loop);
}

static yhc_response *client_get(client *c, const char *fmt, int port) {
  char url[256];
  yhc_request req;
  snprintf(url, sizeof url, fmt, port);
  memset(&req, 0, sizeof req);
  req.url = url;
  req.timeout_ms = 8000; /* a hang must become a failed check, not a stuck test */
  return yhc_http_fetch(c->http, &req);
}

static yhc_http_desc desc_ca(void) {
  yhc_http_desc d;
  memset(&d, 0, sizeof d);
  d.ca_file = cert_path("ca", "crt");
  return d;
}

static int body_is_pattern(const yhc_response *r, size_t n) {
  size_t i;
  if (r->body.len != n) return 0;
  for (i = 0; i < n; i++)
    if ((unsigned char)r->body.ptr[i] != i % 251) return 0;
  return 1;
}

static long conn_id(const yhc_response *r) {
  yhc_str v = yhc_response_header(r, "X-Conn-Id");
  char buf[32];
  if (!v.ptr || v.len >= sizeof buf) return -1;
  memcpy(buf, v.ptr, v.len);
  buf[v.len] = 0;
  return atol(buf);
}

/* Streams a body and checks it against the /bytes pattern as it comes. */
typedef struct sink {
  size_t n;
  int bad;
  int done;
  yhc_err err;
  char msg[YHC_ERROR_MSG_MAX];
} sink;

static int sink_body(void *user, const void *data, size_t len) {
  sink *k = (sink *)user;
  const unsigned char *p = (const unsigned char *)data;
  size_t i;
  for (i = 0; i < len; i++, k->n++)
    if (p[i] != k->n % 251) k->bad = 1;
  return 0;
}

static void sink_done(const yhc_response *r, void *user) {
  sink *k = (sink *)user;
  k->done = 1;
  k->err = r->err;
  snprintf(k->msg, sizeof k->msg, "%s", r->error);
}

/* Expects one failed fetch whose message contains every needle. */
static void expect_fail(client *c, const char *fmt, int port, yhc_err code, const char *n1,
                        const char *n2) {
  yhc_response *r = client_get(c, fmt, port);
  YT_CHECK(r != NULL);
  if (!r) return;
  YT_CHECKF(r->err == code, "err %s (%s), want %s", yhc_strerror(r->err), r->error,
            yhc_strerror(code));
  YT_CHECKF(contains(r->error, n1), "\"%s\" lacks \"%s\"", r->error, n1);
  if (n2) YT_CHECKF(contains(r->error, n2), "\"%s\" lacks \"%s\"", r->error, n2);
  fprintf(stderr, "   error: %s\n", r->error);
  yhc_response_free(r);
}

static void test_good(int port) {
  client c;
  yhc_http_desc d = desc_ca();
  yhc_response *r;
  long id1 = -1, id2 = -2;
  YT_GROUP("good certificate, keep-alive reuse");
  client_open(&c, &d);
  r = client_get(&c, "https://localhost:%d/hello", port);
  YT_CHECK(r && r->err == YHC_ERR_OK);
  if (r) {
    if (r->err) fprintf(stderr, "   error: %s\n", r->error);
    YT_EQ_INT(r->status, 200);
    YT_EQ_MEM(r->body.ptr, r->body.len, "Hello, world!\n");
    id1 = conn_id(r);
    yhc_response_free(r);
  }
  /* the second request rides the same TLS session: same server-side connection id */
  r = client_get(&c, "https://localhost:%d/conn-id", port);
  YT_CHECK(r && r->err == YHC_ERR_OK);
  if (r) {
    id2 = conn_id(r);
    yhc_response_free(r);
  }
  YT_CHECKF(id1 > 0 && id1 == id2, "connection ids %ld and %ld", id1, id2);
  YT_EQ_INT(c.warns, 0);

  YT_GROUP("chunked, large and close-delimited bodies over TLS");
  r = client_get(&c, "https://localhost:%d/chunked?n=40&size=1000", port);
  YT_CHECK(r && r->err == YHC_ERR_OK);
  if (r) {
    YT_CHECK(body_is_pattern(r, 40000));
    YT_CHECK(yhc__str_ieq(yhc_response_header(r, "Transfer-Encoding"), "chunked"));
    YT_CHECK(r->trailer_count == 2);
    YT_EQ_INT(conn_id(r), id1);
    yhc_response_free(r);
  }
  r = client_get(&c, "https://localhost:%d/bytes/300000", port);
  YT_CHECK(r && r->err == YHC_ERR_OK && body_is_pattern(r, 300000));
  if (r) yhc_response_free(r);
  /* the server closes without close_notify: that is the end of the body, not an error */
  r = client_get(&c, "https://localhost:%d/close?size=5000", port);
  YT_CHECKF(r && r->err == YHC_ERR_OK, "%s", r ? r->error : "no response");
  if (r) {
    YT_CHECK(body_is_pattern(r, 5000));
    yhc_response_free(r);
  }
  /* a fresh connection (and handshake) after the close, same context */
  r = client_get(&c, "https://localhost:%d/conn-id", port);
  YT_CHECK(r && r->err == YHC_ERR_OK && conn_id(r) > id1);
  if (r) yhc_response_free(r);
  client_close(&c);

  /* A streamed body is read through the receive buffer, a few hundred bytes per read and a
     bounded number of reads per wakeup, while TLS records are up to 16 KiB: the tail of the
     last record is held decrypted inside mbedTLS, where poll() cannot see it. */
  YT_GROUP("small receive buffer: bytes held inside mbedTLS are not stuck");
  d.recv_buffer = 300;
  d.idle_timeout_ms = 3000;
  client_open(&c, &d);
  {
    sink k;
    yhc_request req;
    char url[128];
    memset(&k, 0, sizeof k);
    memset(&req, 0, sizeof req);
    snprintf(url, sizeof url, "https://localhost:%d/bytes/49152", port); /* 3 full records */
    req.url = url;
    req.on_body = sink_body;
    req.timeout_ms = 8000;
    yhc_http_request(c.http, &req, sink_done, &k);
    while (!k.done)
      if (yhc_loop_poll(c.loop, -1) < 0 && errno != EINTR) break;
    YT_CHECKF(k.done && k.err == YHC_ERR_OK, "%s", k.msg);
    YT_EQ_INT(k.n, 49152);
    YT_CHECK(!k.bad);
    r = client_get(&c, "https://localhost:%d/chunked?n=12&size=15000&trailers=0", port);
    YT_CHECKF(r && r->err == YHC_ERR_OK, "%s", r ? r->error : "no response");
    if (r) {
      YT_CHECK(body_is_pattern(r, 180000));
      yhc_response_free(r);
    }
  }
  client_close(&c);
}

static void test_verify_failures(int good, int expired, int wronghost, int self) {
  client c;
  yhc_http_desc d;
  YT_GROUP("unknown CA (system bundle does not have the test CA)");
  memset(&d, 0, sizeof d);
  client_open(&c, &d);
  if (access("/etc/ssl/certs/ca-certificates.crt", R_OK) == 0) {
    expect_fail(&c, "https://localhost:%d/hello", good, YHC_ERR_TLS,
                "certificate verification failed", "unknown CA");
    expect_fail(&c, "https://localhost:%d/hello", good, YHC_ERR_TLS,
                "TLS handshake with localhost port", "not correctly signed by the trusted CA");
  } else {
    /* no ca-certificates package: the default must refuse clearly rather than trust nothing */
    fprintf(stderr, "   (no system CA bundle: checking the error for that instead)\n");
    expect_fail(&c, "https://localhost:%d/hello", good, YHC_ERR_TLS, "no trusted CA certificates",
                "set ca_file");
  }
  client_close(&c);

  d = desc_ca();
  client_open(&c, &d);
  YT_GROUP("expired certificate");
  expect_fail(&c, "https://localhost:%d/hello", expired, YHC_ERR_TLS,
              "certificate verification failed", "expired certificate");
  YT_GROUP("hostname mismatch");
  expect_fail(&c, "https://localhost:%d/hello", wronghost, YHC_ERR_TLS,
              "certificate verification failed", "hostname mismatch");
  YT_GROUP("self-signed certificate");
  expect_fail(&c, "https://localhost:%d/hello", self, YHC_ERR_TLS,
              "certificate verification failed", "self-signed");
  YT_EQ_INT(c.warns, 0);
  client_close(&c);

  YT_GROUP("CA file that does not exist");
  d.ca_file = "/nonexistent/yhc-ca.pem";
  client_open(&c, &d);
  expect_fail(&c, "https://localhost:%d/hello", good, YHC_ERR_TLS, "cannot load CA file",
              "/nonexistent/yhc-ca.pem");
  client_close(&c);

  YT_GROUP("ca_path: a directory holding the CA");
  memset(&d, 0, sizeof d);
  d.ca_path = certdir; /* holds ca.crt among other PEM files */
  client_open(&c, &d);
  {
    yhc_response *r = client_get(&c, "https://localhost:%d/hello", good);
    YT_CHECKF(r && r->err == YHC_ERR_OK, "%s", r ? r->error : "no response");
    if (r) yhc_response_free(r);
  }
  client_close(&c);
}

static void test_insecure(int self, int wronghost) {
  client c;
  yhc_http_desc d;
  yhc_response *r;
  YT_GROUP("tls_insecure: accepted, and loudly logged once");
  memset(&d, 0, sizeof d);
  d.tls_insecure = 1;
  client_open(&c, &d);
  r = client_get(&c, "https://localhost:%d/hello", self);
  YT_CHECKF(r && r->err == YHC_ERR_OK, "%s", r ? r->error : "no response");
  if (r) {
    YT_EQ_INT(r->status, 200);
    yhc_response_free(r);
  }
  r = client_get(&c, "https://localhost:%d/close?size=10", wronghost);
  YT_CHECKF(r && r->err == YHC_ERR_OK, "%s", r ? r->error : "no response");
  if (r) yhc_response_free(r);
  YT_EQ_INT(c.warns, 1);
  YT_CHECKF(contains(c.warn, "VERIFICATION IS OFF"), "warning: %s", c.warn);
  client_close(&c);
}

static void test_protocol(int tls11, int plain) {
  client c;
  yhc_http_desc d = desc_ca();
  client_open(&c, &d);
  if (tls11 > 0) {
    YT_GROUP("server limited to TLS 1.1");
    expect_fail(&c, "https://localhost:%d/hello", tls11, YHC_ERR_TLS, "TLS handshake with localhost",
                "protocol version");
  }
  YT_GROUP("plain HTTP server on an https:// URL");
  expect_fail(&c, "https://localhost:%d/hello", plain, YHC_ERR_TLS, "TLS handshake with localhost",
              "handshake failure");
  YT_GROUP("connection refused passes through as a connect error");
  expect_fail(&c, "https://127.0.0.1:%d/", 1, YHC_ERR_CONNECT, "127.0.0.1", NULL);
  client_close(&c);
}

/* A listener that never accepts: TCP connects (the kernel's backlog), TLS never answers. */
static void test_stall(void) {
  client c;
  yhc_http_desc d = desc_ca();
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  long long t0, ms;
  yhc_response *r;
  YT_GROUP("peer stalls the handshake: connect timeout");
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 8) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
    YT_CHECKF(0, "cannot listen: %s", strerror(errno));
    if (fd >= 0) close(fd);
    return;
  }
  d.connect_timeout_ms = 400;
  client_open(&c, &d);
  t0 = yt_now_ms();
  r = client_get(&c, "https://127.0.0.1:%d/", ntohs(sa.sin_port));
  ms = yt_now_ms() - t0;
  YT_CHECK(r != NULL);
  if (r) {
    YT_CHECKF(r->err == YHC_ERR_TIMEOUT, "err %s: %s", yhc_strerror(r->err), r->error);
    fprintf(stderr, "   error: %s (after %lld ms)\n", r->error, ms);
    yhc_response_free(r);
  }
  YT_CHECKF(ms >= 350 && ms < 2000, "took %lld ms", ms);
  client_close(&c);
  close(fd);
}

int main(void) {
  char tmpl[] = "/tmp/yhc-tls-XXXXXX";
  char cmd[512];
  yt_proc good, expired, wronghost, self, tls11, plain;
  int have_tls11;
  long long t0 = yt_now_ms();
  signal(SIGPIPE, SIG_IGN);
  YT_GROUP("certificates");
  if (!mkdtemp(tmpl)) {
    YT_CHECKF(0, "mkdtemp: %s", strerror(errno));
    return yt_done();
  }
  snprintf(certdir, sizeof certdir, "%s", tmpl);
  snprintf(cmd, sizeof cmd, "sh tests/servers/mkcerts.sh '%s'", certdir);
  if (!yt_have_exe("openssl") || system(cmd) != 0) {
    YT_CHECKF(0, "tests/servers/mkcerts.sh failed (needs openssl; run from the repository root)");
    return yt_done();
  }
  YT_CHECK(1);
  YT_GROUP("servers");
  if (start_server(&good, "good", "tls") < 0 || start_server(&expired, "expired", "tls") < 0 ||
      start_server(&wronghost, "wronghost", "tls") < 0 || start_server(&self, "self", "tls") < 0 ||
      start_server(&plain, "good", "plain") < 0) {
    YT_CHECKF(0, "a TLS test server did not start");
    return yt_done();
  }
  /* OpenSSL builds without TLS 1.1 exist; that check is then skipped, said so */
  have_tls11 = start_server(&tls11, "good", "tls11") == 0;
  if (!have_tls11) fprintf(stderr, "   (no TLS 1.1 server: the protocol version check is skipped)\n");
  YT_CHECK(1);

  test_good(good.port);
  test_verify_failures(good.port, expired.port, wronghost.port, self.port);
  test_insecure(self.port, wronghost.port);
  test_protocol(have_tls11 ? tls11.port : 0, plain.port);
  test_stall();

  yt_proc_stop(&good);
  yt_proc_stop(&expired);
  yt_proc_stop(&wronghost);
  yt_proc_stop(&self);
  yt_proc_stop(&plain);
  if (have_tls11) yt_proc_stop(&tls11);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", certdir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", certdir);
  fprintf(stderr, "   (%lld ms)\n", yt_now_ms() - t0);
  return yt_done();
}

#endif /* YHC_MBEDTLS */
