/* ==== TLS streams (mbedTLS, optional) ============================================ */
/* Owns: TLS sessions over TCP streams, exposed as the same byte-stream interface, so HTTP and
   WebSocket code never know whether bytes are encrypted. Compiled in with YHC_MBEDTLS;
   otherwise opening one is a clear YHC_ERR_NO_TLS error. */

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

#endif /* !YHC_MBEDTLS */

