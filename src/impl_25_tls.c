/* ==== TLS streams (mbedTLS, optional) ============================================ */
/* Owns: TLS sessions over TCP streams, exposed as the same byte-stream interface, so HTTP and
   WebSocket code never know whether bytes are encrypted. Compiled in with YHC_MBEDTLS;
   otherwise opening one is a clear YHC_ERR_NO_TLS error. */

/* Configuration, all of it through yhc_http_desc (and the same for wss:// WebSockets):
     YHC_MBEDTLS     compile TLS in; link with -lmbedtls -lmbedx509 -lmbedcrypto.
                     Works with mbedTLS 2.28 (verified) and 3.x (written for it; see below).
     ca_file         PEM bundle of trusted CAs [/etc/ssl/certs/ca-certificates.crt, then the
                     directory /etc/ssl/certs].
     ca_path         directory of PEM CA certificates (loaded in addition to ca_file).
     tls_insecure    1 = no certificate or host name verification. Logged as a WARN once per
                     client, because it makes the connection readable by anyone on the path.
   Verification is on by default: the chain must lead to a trusted CA, be within its validity
   dates, and name the host (SNI is sent for the same name). TLS 1.2 is the minimum version.
   connect_timeout_ms covers the TCP connect and the handshake together. */

typedef struct yhc__tls_conf {
  const char *ca_file;  /* borrowed from the client's desc: must outlive the client */
  const char *ca_path;
  int insecure;
  yhc_loop *log_loop;   /* where the loud "verification off" warning goes */
} yhc__tls_conf;

typedef struct yhc__tls_ctx yhc__tls_ctx;

#ifndef YHC_MBEDTLS

static yhc__stream *yhc__tls_open(yhc_loop *loop, yhc__tls_ctx **ctx, const yhc__tls_conf *conf,
                                  const char *host, int port, yhc_error *err) {
  (void)loop;
  (void)ctx;
  (void)conf;
  yhc__error_set(err, YHC_ERR_NO_TLS, 0,
                 "cannot reach %s port %d over TLS: yhc was built without TLS (define YHC_MBEDTLS)",
                 host, port);
  return NULL;
}

static void yhc__tls_ctx_free(yhc__tls_ctx *ctx) { (void)ctx; }

#else /* YHC_MBEDTLS */

/* How it works, for the next reader:
   The stream owns a TCP stream (it is that stream's owner) and runs mbedTLS over it: the BIO
   callbacks call the inner stream's read/write (recv, and send with MSG_NOSIGNAL, on the
   non-blocking fd), so the same code runs TLS over anything with the stream interface. The handshake is driven from the inner stream's events; CONNECT is
   emitted only after it succeeded. mbedTLS may hold decrypted bytes that poll() cannot see,
   so a read that leaves some behind arms a zero-delay timer that emits READ again.

   EOF: a close_notify alert and a bare TCP FIN both read as EOF (0). A truncation attack on
   a close-delimited HTTP body is therefore not detected: RFC 9112 lets clients accept such
   bodies, and servers commonly close without close_notify.

   Write contract (as for every stream, but it matters here): after write() returned AGAIN,
   call it again with the same bytes first; mbedTLS has already encrypted them.

   mbedTLS 3.x: headers come through mbedtls/build_info.h (pulled in by version.h), struct
   fields are private and not touched, MBEDTLS_SSL_MINOR_VERSION_* are gone (3.x is TLS 1.2+
   anyway, so no minimum is set), TLS 1.3 needs psa_crypto_init() (process-wide state, but
   mbedTLS's own and idempotent; yhc keeps none) and may hand over
   NewSessionTicket messages from read, which are skipped. mbedTLS 4 (PSA-only RNG) is not
   supported. */
#include <mbedtls/version.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_PSA_CRYPTO_C)
#  include <psa/crypto.h>
#endif
#if MBEDTLS_VERSION_NUMBER >= 0x04000000
#  error "yhc supports mbedTLS 2.28 and 3.x; mbedTLS 4 is not supported yet"
#endif
#if MBEDTLS_VERSION_NUMBER < 0x02100000
#  error "yhc needs mbedTLS 2.16 or later (2.28 LTS recommended)"
#endif

#define YHC__TLS_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
#define YHC__TLS_CA_DIR "/etc/ssl/certs"

struct yhc__tls_ctx {
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  mbedtls_x509_crt ca;
  mbedtls_ssl_config conf;
  int insecure;
};

typedef struct yhc__tls {
  yhc__stream base;
  yhc_loop *loop;
  yhc__stream *tcp;          /* owned; we are its owner */
  mbedtls_ssl_context ssl;
  yhc__timer pending;        /* READ for bytes mbedTLS holds that poll() cannot signal */
  int handshaken, eof, failed;
  int bio_failed;            /* the inner stream failed: its err is the cause */
  int want_rd, want_wr;      /* what the owner asked for */
  int rd_needs_write;        /* mbedTLS read wants the socket writable (alerts, renegotiation) */
  int wr_needs_read;         /* mbedTLS write wants the socket readable */
  size_t wpend;              /* length of a write mbedTLS encrypted but could not send yet */
  char host[256];
  int port;
} yhc__tls;

static void yhc__tls_strerror(int ret, char *buf, size_t cap) {
#ifdef MBEDTLS_ERROR_C
  char tmp[160];
  mbedtls_strerror(ret, tmp, sizeof tmp);
  snprintf(buf, cap, "%s (-0x%04x)", tmp, (unsigned)-ret);
#else
  snprintf(buf, cap, "mbedTLS error -0x%04x", (unsigned)-ret);
#endif
}

static void yhc__tls_ctx_free(yhc__tls_ctx *ctx) {
  if (!ctx) return;
  mbedtls_ssl_config_free(&ctx->conf);
  mbedtls_x509_crt_free(&ctx->ca);
  mbedtls_ctr_drbg_free(&ctx->drbg);
  mbedtls_entropy_free(&ctx->entropy);
  YHC_FREE(ctx);
}

/* Loads the CAs the conf names, or the system's. Returns 0 or -1 with err set. */
static int yhc__tls_load_cas(yhc__tls_ctx *ctx, const yhc__tls_conf *conf, yhc_error *err) {
#ifdef MBEDTLS_FS_IO
  char why[200];
  int rc;
  if (conf->ca_file && *conf->ca_file) {
    rc = mbedtls_x509_crt_parse_file(&ctx->ca, conf->ca_file);
    if (rc < 0) {
      yhc__tls_strerror(rc, why, sizeof why);
      yhc__error_set(err, YHC_ERR_TLS, 0, "cannot load CA file %s: %s", conf->ca_file, why);
      return -1;
    }
  }
  if (conf->ca_path && *conf->ca_path) {
    rc = mbedtls_x509_crt_parse_path(&ctx->ca, conf->ca_path);
    if (rc < 0) {
      yhc__tls_strerror(rc, why, sizeof why);
      yhc__error_set(err, YHC_ERR_TLS, 0, "cannot load CA directory %s: %s", conf->ca_path, why);
      return -1;
    }
  }
  if ((conf->ca_file && *conf->ca_file) || (conf->ca_path && *conf->ca_path)) return 0;
  if (mbedtls_x509_crt_parse_file(&ctx->ca, YHC__TLS_CA_FILE) >= 0) return 0;
  if (mbedtls_x509_crt_parse_path(&ctx->ca, YHC__TLS_CA_DIR) >= 0) return 0;
  yhc__error_set(err, YHC_ERR_TLS, 0,
                 "no trusted CA certificates: neither " YHC__TLS_CA_FILE " nor " YHC__TLS_CA_DIR
                 "/ could be loaded; set ca_file or ca_path");
  return -1;
#else
  (void)ctx;
  (void)conf;
  yhc__error_set(err, YHC_ERR_TLS, 0,
                 "mbedTLS was built without MBEDTLS_FS_IO: CA certificates cannot be loaded");
  return -1;
#endif
}

/* The shared part: RNG, CA chain, configuration. Created on the first TLS connection. */
static yhc__tls_ctx *yhc__tls_ctx_new(const yhc__tls_conf *conf, yhc_error *err) {
  static const char pers[] = "yhc";
  char why[200];
  int rc;
  yhc__tls_ctx *ctx = YHC__NEW(yhc__tls_ctx);
  if (!ctx) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory creating the TLS context");
    return NULL;
  }
  mbedtls_entropy_init(&ctx->entropy);
  mbedtls_ctr_drbg_init(&ctx->drbg);
  mbedtls_x509_crt_init(&ctx->ca);
  mbedtls_ssl_config_init(&ctx->conf);
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_PSA_CRYPTO_C)
  /* TLS 1.3 (and MBEDTLS_USE_PSA_CRYPTO) run on PSA; initialising twice is harmless. */
  if (psa_crypto_init() != PSA_SUCCESS) {
    yhc__error_set(err, YHC_ERR_TLS, 0, "TLS setup failed: psa_crypto_init failed");
    yhc__tls_ctx_free(ctx);
    return NULL;
  }
#endif
  rc = mbedtls_ctr_drbg_seed(&ctx->drbg, mbedtls_entropy_func, &ctx->entropy,
                             YHC__PUN(const unsigned char *, pers), sizeof pers - 1);
  if (rc == 0)
    rc = mbedtls_ssl_config_defaults(&ctx->conf, MBEDTLS_SSL_IS_CLIENT,
                                     MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
  if (rc != 0) {
    yhc__tls_strerror(rc, why, sizeof why);
    yhc__error_set(err, YHC_ERR_TLS, 0, "TLS setup failed: %s", why);
    yhc__tls_ctx_free(ctx);
    return NULL;
  }
  mbedtls_ssl_conf_rng(&ctx->conf, mbedtls_ctr_drbg_random, &ctx->drbg);
#if MBEDTLS_VERSION_NUMBER < 0x03000000
  /* 2.x still offers TLS 1.0 and 1.1 when compiled in (Debian's is); 3.x starts at 1.2. */
  mbedtls_ssl_conf_min_version(&ctx->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
#endif
  ctx->insecure = conf->insecure;
  if (conf->insecure) {
    mbedtls_ssl_conf_authmode(&ctx->conf, MBEDTLS_SSL_VERIFY_NONE);
    yhc__log(conf->log_loop, YHC_LOG_WARN,
             "!!! TLS CERTIFICATE VERIFICATION IS OFF (tls_insecure=1): https:// and wss:// "
             "connections accept any certificate for any host, so anyone on the network path "
             "can read and change the traffic. Use this for testing only. !!!");
  } else {
    if (yhc__tls_load_cas(ctx, conf, err) < 0) {
      yhc__tls_ctx_free(ctx);
      return NULL;
    }
    mbedtls_ssl_conf_authmode(&ctx->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&ctx->conf, &ctx->ca, NULL);
  }
  return ctx;
}

/* ---- BIO over the inner stream */

static int yhc__tls_bio_send(void *ctx, const unsigned char *buf, size_t len) {
  yhc__tls *t = YHC__CAST(yhc__tls *, ctx);
  long n = t->tcp->vt->write(t->tcp, buf, YHC__MIN(len, (size_t)INT_MAX));
  if (n == YHC__AGAIN) return MBEDTLS_ERR_SSL_WANT_WRITE;
  if (n < 0) {
    t->bio_failed = 1;
    return MBEDTLS_ERR_NET_SEND_FAILED;
  }
  return (int)n;
}

static int yhc__tls_bio_recv(void *ctx, unsigned char *buf, size_t len) {
  yhc__tls *t = YHC__CAST(yhc__tls *, ctx);
  long n = t->tcp->vt->read(t->tcp, buf, YHC__MIN(len, (size_t)INT_MAX));
  if (n == YHC__AGAIN) return MBEDTLS_ERR_SSL_WANT_READ;
  if (n < 0) {
    t->bio_failed = 1;
    return MBEDTLS_ERR_NET_RECV_FAILED;
  }
  return (int)n; /* 0 = EOF: mbedTLS reports it as CONN_EOF */
}

/* ---- the stream */

static void yhc__tls_update_want(yhc__tls *t) {
  t->tcp->vt->want(t->tcp, t->want_rd || t->wr_needs_read, t->want_wr || t->rd_needs_write);
}

static void yhc__tls_pending_fire(void *ctx) {
  yhc__tls *t = YHC__CAST(yhc__tls *, ctx);
  if (!t->failed) yhc__stream_emit(&t->base, YHC__EV_READ);
}

/* Bytes already inside mbedTLS (decrypted, or a buffered record) never wake poll(). */
static void yhc__tls_check_pending(yhc__tls *t) {
  if ((mbedtls_ssl_get_bytes_avail(&t->ssl) > 0 || mbedtls_ssl_check_pending(&t->ssl)) &&
      !yhc__timer_armed(&t->pending))
    yhc__timer_start(t->loop, &t->pending, 0, yhc__tls_pending_fire, t);
}

/* Why a handshake failed, in words a user can act on. */
static void yhc__tls_handshake_error(yhc__tls *t, int ret) {
  char why[200], cause[200];
  yhc_error *e = &t->base.err;
  if (t->bio_failed) {
    yhc_error inner = t->tcp->err;
    yhc__error_set(e, inner.code ? inner.code : YHC_ERR_IO, 0, "TLS handshake with %s port %d failed: %s",
                   t->host, t->port, inner.msg);
    return;
  }
  yhc__tls_strerror(ret, why, sizeof why);
  if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
    uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
    char info[256];
    char kinds[128];
    size_t i, n;
    static const struct { uint32_t flag; const char *name; } names[] = {
        {MBEDTLS_X509_BADCERT_NOT_TRUSTED, "unknown CA or self-signed certificate"},
        {MBEDTLS_X509_BADCERT_EXPIRED, "expired certificate"},
        {MBEDTLS_X509_BADCERT_FUTURE, "certificate not yet valid"},
        {MBEDTLS_X509_BADCERT_CN_MISMATCH, "hostname mismatch"},
        {MBEDTLS_X509_BADCERT_REVOKED, "revoked certificate"}};
    info[0] = kinds[0] = 0;
    if (mbedtls_x509_crt_verify_info(info, sizeof info, "", flags) < 0) info[0] = 0;
    /* one line per flag: join them */
    n = strlen(info);
    while (n && (info[n - 1] == '\n' || info[n - 1] == ' ')) info[--n] = 0;
    for (i = 0; i < n; i++)
      if (info[i] == '\n') info[i] = ';';
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
      size_t k = strlen(kinds);
      if (flags & names[i].flag)
        snprintf(kinds + k, sizeof kinds - k, "%s%s", k ? ", " : "", names[i].name);
    }
    if (!kinds[0]) snprintf(kinds, sizeof kinds, "certificate rejected");
    yhc__error_set(e, YHC_ERR_TLS, 0,
                   "TLS handshake with %s port %d failed: certificate verification failed: %s [%s]",
                   t->host, t->port, info[0] ? info : why, kinds);
    return;
  }
  if (ret == 0 || ret == MBEDTLS_ERR_SSL_CONN_EOF) {
    snprintf(cause, sizeof cause, "the server closed the connection (not a TLS server, or it "
                                  "rejected the client hello)");
#if defined(MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION)
  } else if (ret == MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION) {
    snprintf(cause, sizeof cause, "protocol version not supported (yhc needs TLS 1.2 or later)");
#endif
#if defined(MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION)
  } else if (ret == MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION) {
    snprintf(cause, sizeof cause, "protocol version not supported (yhc needs TLS 1.2 or later)");
#endif
  } else if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE) {
#if MBEDTLS_VERSION_NUMBER < 0x03000000
    /* 2.x keeps the alert in a public field; 3.x made it private, so only the code is said */
    int alert = t->ssl.in_msg ? t->ssl.in_msg[1] : -1;
    if (alert == MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION)
      snprintf(cause, sizeof cause, "protocol version not supported: the server sent alert "
                                    "protocol_version (yhc needs TLS 1.2 or later)");
    else if (alert == MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE)
      snprintf(cause, sizeof cause, "handshake failure: the server sent alert handshake_failure "
                                    "(no common cipher suite or parameters)");
    else
      snprintf(cause, sizeof cause, "handshake failure: the server sent fatal alert %d", alert);
#else
    snprintf(cause, sizeof cause, "handshake failure: the server sent a fatal alert");
#endif
  } else {
    snprintf(cause, sizeof cause, "handshake failure");
  }
  yhc__error_set(e, YHC_ERR_TLS, 0, "TLS handshake with %s port %d failed: %s: %s", t->host,
                 t->port, cause, why);
}

static void yhc__tls_handshake_step(yhc__tls *t) {
  int ret;
  for (;;) {
    ret = mbedtls_ssl_handshake(&t->ssl);
#ifdef MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
    if (ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) continue;
#endif
    break;
  }
  if (ret == MBEDTLS_ERR_SSL_WANT_READ) {
    t->tcp->vt->want(t->tcp, 1, 0);
    return;
  }
  if (ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
    t->tcp->vt->want(t->tcp, 0, 1);
    return;
  }
  if (ret != 0) {
    yhc__tls_handshake_error(t, ret);
    t->failed = 1;
    t->tcp->vt->want(t->tcp, 0, 0);
    yhc__stream_emit(&t->base, YHC__EV_ERROR);
    return;
  }
  t->handshaken = 1;
  yhc__log(t->loop, YHC_LOG_DEBUG, "TLS with %s port %d: %s, %s", t->host, t->port,
           mbedtls_ssl_get_version(&t->ssl), mbedtls_ssl_get_ciphersuite(&t->ssl));
  yhc__tls_update_want(t);
  yhc__tls_check_pending(t);
  yhc__stream_emit(&t->base, YHC__EV_CONNECT); /* last: the owner may close us */
}

static void yhc__tls_inner_event(void *owner, int ev) {
  yhc__tls *t = YHC__CAST(yhc__tls *, owner);
  int out = 0;
  if (t->failed) return;
  if (ev & YHC__EV_ERROR) {
    t->base.err = t->tcp->err;
    t->failed = 1;
    yhc__stream_emit(&t->base, YHC__EV_ERROR);
    return;
  }
  if (!t->handshaken) {
    /* CONNECT starts the handshake; READ/WRITE continue it */
    yhc__tls_handshake_step(t);
    return;
  }
  if (ev & YHC__EV_READ) out |= YHC__EV_READ | (t->wr_needs_read ? YHC__EV_WRITE : 0);
  if (ev & YHC__EV_WRITE) out |= YHC__EV_WRITE | (t->rd_needs_write ? YHC__EV_READ : 0);
  if (out) yhc__stream_emit(&t->base, out);
}

static long yhc__tls_read(yhc__stream *s, void *buf, size_t cap) {
  yhc__tls *t = YHC__PUN(yhc__tls *, s);
  if (!t->handshaken || t->failed) return t->failed ? YHC__FAIL : YHC__AGAIN;
  if (t->eof) return 0;
  for (;;) {
    int ret = mbedtls_ssl_read(&t->ssl, YHC__CAST(unsigned char *, buf), YHC__MIN(cap, (size_t)INT_MAX));
    if (ret > 0) {
      if (t->rd_needs_write) {
        t->rd_needs_write = 0;
        yhc__tls_update_want(t);
      }
      yhc__tls_check_pending(t);
      return ret;
    }
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
      int need_wr = ret == MBEDTLS_ERR_SSL_WANT_WRITE;
      if (need_wr != t->rd_needs_write) {
        t->rd_needs_write = need_wr;
        yhc__tls_update_want(t);
      }
      yhc__timer_stop(t->loop, &t->pending);
      return YHC__AGAIN;
    }
#ifdef MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
    if (ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) continue; /* TLS 1.3 */
#endif
    if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || ret == MBEDTLS_ERR_SSL_CONN_EOF) {
      t->eof = 1;
      return 0;
    }
    t->failed = 1;
    if (t->bio_failed) {
      s->err = t->tcp->err;
    } else {
      char why[200];
      yhc__tls_strerror(ret, why, sizeof why);
      yhc__error_set(&s->err, YHC_ERR_TLS, 0, "TLS error receiving from %s port %d: %s", t->host,
                     t->port, why);
    }
    return YHC__FAIL;
  }
}

static long yhc__tls_write(yhc__stream *s, const void *buf, size_t len) {
  yhc__tls *t = YHC__PUN(yhc__tls *, s);
  size_t chunk;
  int ret;
  if (t->failed) return YHC__FAIL;
  if (!t->handshaken) return YHC__AGAIN;
  if (!len) return 0;
  /* mbedTLS answers a retried write with the length it encrypted the first time */
  YHC_ASSERT(!t->wpend || len >= t->wpend);
  chunk = t->wpend ? YHC__MIN(t->wpend, len) : YHC__MIN(len, (size_t)INT_MAX);
  ret = mbedtls_ssl_write(&t->ssl, YHC__CAST(const unsigned char *, buf), chunk);
  if (ret > 0) {
    t->wpend = 0;
    if (t->wr_needs_read) {
      t->wr_needs_read = 0;
      yhc__tls_update_want(t);
    }
    return ret;
  }
  if (ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
    t->wpend = chunk;
    return YHC__AGAIN;
  }
  if (ret == MBEDTLS_ERR_SSL_WANT_READ) {
    if (!t->wr_needs_read) {
      t->wr_needs_read = 1;
      yhc__tls_update_want(t);
    }
    return YHC__AGAIN;
  }
  t->failed = 1;
  if (t->bio_failed) {
    s->err = t->tcp->err;
  } else {
    char why[200];
    yhc__tls_strerror(ret, why, sizeof why);
    yhc__error_set(&s->err, YHC_ERR_TLS, 0, "TLS error sending to %s port %d: %s", t->host,
                   t->port, why);
  }
  return YHC__FAIL;
}

static void yhc__tls_want(yhc__stream *s, int rd, int wr) {
  yhc__tls *t = YHC__PUN(yhc__tls *, s);
  t->want_rd = rd;
  t->want_wr = wr;
  if (t->handshaken && !t->failed) yhc__tls_update_want(t);
}

static void yhc__tls_close(yhc__stream *s) {
  yhc__tls *t = YHC__PUN(yhc__tls *, s);
  yhc__timer_stop(t->loop, &t->pending);
  /* best effort, never waits: a server that wants close_notify gets it when the socket
     has room, and a missing one is no harm to an HTTP client */
  if (t->handshaken && !t->eof && !t->failed && !t->bio_failed) mbedtls_ssl_close_notify(&t->ssl);
  mbedtls_ssl_free(&t->ssl);
  t->tcp->vt->close(t->tcp);
  YHC_FREE(t);
}

/* Alive when the TCP stream is and mbedTLS holds nothing unread (which would be out of turn). */
static int yhc__tls_alive(yhc__stream *s) {
  yhc__tls *t = YHC__PUN(yhc__tls *, s);
  if (t->eof || t->failed || !t->handshaken || mbedtls_ssl_get_bytes_avail(&t->ssl)) return 0;
  return !t->tcp->vt->alive || t->tcp->vt->alive(t->tcp);
}

static const yhc__stream_vt yhc__tls_vt = {yhc__tls_read, yhc__tls_write, yhc__tls_want,
                                           yhc__tls_close, yhc__tls_alive};

/* Opens a TLS stream to host:port (DNS and connect as yhc__tcp_open). *ctx is the shared
   context: created here on first use, freed by the caller with yhc__tls_ctx_free() after
   every stream that used it is closed. conf is read only when creating the context. The
   stream emits CONNECT after the handshake, or ERROR (err names the cause). */
static yhc__stream *yhc__tls_open(yhc_loop *loop, yhc__tls_ctx **ctx, const yhc__tls_conf *conf,
                                  const char *host, int port, yhc_error *err) {
  yhc__tls *t;
  int rc;
  if (!*ctx) {
    *ctx = yhc__tls_ctx_new(conf, err);
    if (!*ctx) return NULL;
  }
  t = YHC__NEW(yhc__tls);
  if (!t) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory opening a TLS connection");
    return NULL;
  }
  t->base.vt = &yhc__tls_vt;
  t->loop = loop;
  t->port = port;
  snprintf(t->host, sizeof t->host, "%s", host);
  mbedtls_ssl_init(&t->ssl);
  rc = mbedtls_ssl_setup(&t->ssl, &(*ctx)->conf);
  /* SNI and the name the certificate must carry (a literal IP is checked against the
     certificate's names too; mbedTLS 2.28 matches only DNS names and the CN) */
  if (rc == 0) rc = mbedtls_ssl_set_hostname(&t->ssl, host);
  if (rc != 0) {
    char why[200];
    yhc__tls_strerror(rc, why, sizeof why);
    yhc__error_set(err, rc == MBEDTLS_ERR_SSL_ALLOC_FAILED ? YHC_ERR_NOMEM : YHC_ERR_TLS, 0,
                   "TLS setup for %s port %d failed: %s", host, port, why);
    mbedtls_ssl_free(&t->ssl);
    YHC_FREE(t);
    return NULL;
  }
  mbedtls_ssl_set_bio(&t->ssl, t, yhc__tls_bio_send, yhc__tls_bio_recv, NULL);
  t->tcp = yhc__tcp_open(loop, host, port, err);
  if (!t->tcp) {
    mbedtls_ssl_free(&t->ssl);
    YHC_FREE(t);
    return NULL;
  }
  t->tcp->owner = t;
  t->tcp->on_event = yhc__tls_inner_event;
  return &t->base;
}

#endif /* YHC_MBEDTLS */

