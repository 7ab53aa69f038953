/* ==== Public API: Golem session, services, clusters ============================== */

/* A session rents providers through a yagna daemon and routes requests: a request whose URL
   host names a registered service ("http://calc/add/1/2") goes to that service's cluster of
   provider instances over the yagna VPN; any other URL is a plain HTTP(S) request. */

typedef struct yhc_session yhc_session;
typedef struct yhc_cluster yhc_cluster;
typedef struct yhc_ctx yhc_ctx;

typedef enum yhc_event_kind {
  YHC_EV_SESSION_READY = 1,   /* identity, allocation and VPN are set up */
  YHC_EV_DEMAND_PUBLISHED,
  YHC_EV_OFFER_RECEIVED,
  YHC_EV_OFFER_REJECTED,      /* by us: price, resources, platform, or an avoided provider */
  YHC_EV_PROPOSAL_REJECTED,   /* by the provider */
  YHC_EV_AGREEMENT_SIGNED,
  YHC_EV_ACTIVITY_STARTED,
  YHC_EV_SERVICE_READY,
  YHC_EV_REQUEST_FORWARDED,
  YHC_EV_REQUEST_RETRIED,
  YHC_EV_DEBIT_NOTE_ACCEPTED,
  YHC_EV_DEBIT_NOTE_REJECTED,
  YHC_EV_INVOICE_ACCEPTED,
  YHC_EV_INVOICE_REJECTED,
  YHC_EV_SERVICE_FAILED,
  YHC_EV_SERVICE_STOPPED,
  YHC_EV_CLUSTER_FAILED,
  YHC_EV_SESSION_CLOSED,
  YHC_EV_ERROR
} yhc_event_kind;

/* Everything an event points to is valid during the callback only. Fields that do not apply
   are NULL (or 0). `message` is always a complete human-readable line. */
typedef struct yhc_event {
  yhc_event_kind kind;
  const char *service;        /* the service URL, e.g. "http://calc" */
  const char *provider_id;
  const char *provider_name;
  const char *agreement_id;
  const char *activity_id;
  const char *amount;         /* GLM as a decimal string (payments) */
  double price_hour;          /* expected GLM per hour (agreements) */
  yhc_err err;
  const char *message;
} yhc_event;

typedef void (*yhc_event_fn)(const yhc_event *ev, void *user);

typedef struct yhc_session_desc {
  const char *yagna_url;        /* [$YAGNA_API_URL or http://127.0.0.1:7465] */
  const char *app_key;          /* [$YAGNA_APPKEY]; required */
  const char *subnet;           /* [$YAGNA_SUBNET or "public"] */
  const char *payment_driver;   /* [$YAGNA_PAYMENT_DRIVER or "erc20"] */
  const char *payment_network;  /* [$YAGNA_PAYMENT_NETWORK or "holesky"]; "polygon" = mainnet */
  double budget;                /* GLM the allocation holds [1.0] */
  double max_price_cpu_hour;    /* GLM per CPU-hour an offer may ask [0.5] */
  double max_price_env_hour;    /* GLM per hour of duration [0.5] */
  double max_price_start;       /* GLM start price [0.5] */
  int agreement_lifetime_s;     /* demand expiration and agreement validTo [3600] */
  int agreement_renew_s;        /* start an instance's replacement this long before its
                                   agreement ends; must be below the lifetime [120] */
  const char *image_repo;       /* image registry [https://registry.golem.network] */
  int request_timeout_ms;       /* default deadline of a service request [60000]; <0 none */
  size_t max_queue;             /* queued requests per cluster before refusing [10000] */
  int max_retries;              /* times a request moves to another provider [3] */
  int retry_idempotent_only;    /* 1 = a request already sent is retried only if idempotent */
  int instance_concurrency;     /* requests in flight per instance (tunnel connections) [8] */
  int offer_window_ms;          /* collect offers this long before choosing the cheapest [1500] */
  int close_timeout_ms;         /* graceful close: wait for work and invoices [20000] */
  int drain_timeout_ms;         /* scale-down: wait for an instance's requests [10000] */
  int tunnel_dead_ms;           /* a silent tunnel counts as dead after [15000] */
  int state_poll_ms;            /* activity state checks per instance [3000] */
  yhc_event_fn on_event;
  void *event_user;
  int log_events;               /* 1 = also print events on stderr; 2 = with every request */
  yhc_loop *loop;               /* [a loop of the session's own] */
  yhc_http_desc http;           /* for plain requests */
  yhc_log_fn log;               /* library log (when the session makes its own loop) */
  void *log_user;
  yhc_log_level log_level;
} yhc_session_desc;

/* Validates the config (a clear YHC_ERR_CONFIG otherwise) and starts talking to the daemon
   from the loop: identity, allocation, VPN. Returns NULL with err filled on failure. */
YHCDEF yhc_session *yhc_session_create(const yhc_session_desc *desc, yhc_error *err);

typedef enum yhc_on_stop {
  YHC_ON_STOP_RESTART = 0, /* replace a failed instance on another provider (default) */
  YHC_ON_STOP_RAISE,       /* the cluster fails: its requests end with an error */
  YHC_ON_STOP_IGNORE       /* do not replace: the cluster shrinks */
} yhc_on_stop;

/* Startup: called for each new instance once its VM has started; queue the commands that
   start the HTTP server with yhc_ctx_run(). `listen_on` is where the server must listen,
   e.g. "0.0.0.0:80". */
typedef void (*yhc_startup_fn)(yhc_ctx *ctx, const char *listen_on, void *user);

typedef struct yhc_service_desc {
  const char *url;              /* "http://calc": requests to this host go to the service */
  const char *image_hash;       /* sha3 of the VM image, resolved at the image repository */
  const char *image_url;        /* optional: the image's download URL (no repository lookup) */
  yhc_startup_fn startup;
  void *startup_user;
  int initial_size;             /* [1]; to start with none (requests wait in the queue),
                                   call yhc_session_set_size(s, url, 0) after adding it */
  int port;                     /* where the server listens in the VM [80] */
  double min_mem_gib;           /* [0.5] */
  double min_storage_gib;       /* [2.0] */
  int min_threads;              /* [1] */
  const char *extra_properties; /* JSON object merged into the demand's properties */
  const char *extra_constraints;/* e.g. "(golem.inf.cpu.threads>=4)", ANDed in */
  yhc_on_stop on_stop;
} yhc_service_desc;

/* Registers a service. A duplicate URL or bad description is YHC_ERR_CONFIG. */
YHCDEF int yhc_session_add_service(yhc_session *s, const yhc_service_desc *desc, yhc_error *err);

/* Queues a command for the instance being started: argv[0] is the entry point, NULL ends the
   list. Output is captured and shown in errors. Returns 0, or -1 when out of memory. */
YHCDEF int yhc_ctx_run(yhc_ctx *ctx, const char *const *argv);
/* The same with a raw ExeScript command object, e.g. {"run":{...}}. */
YHCDEF int yhc_ctx_command(yhc_ctx *ctx, const char *command_json);

/* Requests: the callback runs exactly once, from the loop. Service requests wait in their
   cluster's queue until an instance is ready (or their deadline passes). */
YHCDEF uint64_t yhc_session_request(yhc_session *s, const yhc_request *req, yhc_response_fn cb,
                                    void *user);
YHCDEF int yhc_session_cancel(yhc_session *s, uint64_t id);
/* Blocking convenience, as yhc_http_fetch. */
YHCDEF yhc_response *yhc_session_fetch(yhc_session *s, const yhc_request *req);

/* Cluster size: a number, a function re-evaluated on every scheduling decision and at least
   once a second, or the built-in auto-balancer. Returns 0, or -1 for an unknown URL. */
typedef int (*yhc_size_fn)(const yhc_cluster *c, void *user);
YHCDEF int yhc_session_set_size(yhc_session *s, const char *url, int size);
YHCDEF int yhc_session_set_size_fn(yhc_session *s, const char *url, yhc_size_fn fn, void *user);

typedef struct yhc_autoscale_desc {
  int min_size;           /* [0] */
  int max_size;           /* [4] */
  double queue_per_instance; /* grow when queued per instance exceeds this [4] */
  int idle_ms;            /* shrink by one after this long with nothing queued and little in flight [30000] */
  int cooldown_ms;        /* between two changes [5000] */
} yhc_autoscale_desc;
YHCDEF int yhc_session_autoscale(yhc_session *s, const char *url, const yhc_autoscale_desc *d);

typedef struct yhc_cluster_stats {
  const char *url;
  int size_target;
  int starting;            /* negotiating, deploying, starting */
  int ready;
  int stopping;
  int instances_failed;    /* total so far */
  size_t queued;
  size_t in_flight;
  uint64_t completed;      /* requests answered with a response */
  uint64_t failed;         /* requests answered with an error */
  uint64_t retried;        /* times a request moved to another instance */
  double p50_ms, p99_ms;   /* over the last 1024 responses */
  double spent;            /* GLM accepted for this cluster's agreements */
  int failed_cluster;      /* on_stop = raise fired */
} yhc_cluster_stats;

/* Read access for size functions and monitoring. */
YHCDEF void yhc_cluster_stats_get(const yhc_cluster *c, yhc_cluster_stats *out);
YHCDEF int yhc_session_stats(yhc_session *s, const char *url, yhc_cluster_stats *out);
YHCDEF double yhc_session_spent(yhc_session *s); /* GLM accepted so far, all clusters */

/* Graceful close: no new requests; queued ones fail with YHC_ERR_SHUTDOWN, in-flight ones
   finish (bounded by close_timeout_ms); instances stop, agreements are terminated, invoices
   accepted, the VPN removed, the allocation released. Non-blocking: watch
   yhc_session_closed(), or call yhc_session_close_wait(). Calling it twice is harmless. */
YHCDEF void yhc_session_close(yhc_session *s);
YHCDEF int yhc_session_closed(yhc_session *s);
YHCDEF int yhc_session_close_wait(yhc_session *s);
/* Frees everything at once (after close, or to abandon): every unanswered request ends with
   YHC_ERR_SHUTDOWN first. Does not talk to the daemon. */
YHCDEF void yhc_session_destroy(yhc_session *s);
YHCDEF yhc_loop *yhc_session_loop(yhc_session *s);
/* Turns the session's loop until *done (or, with done NULL, until the session has closed). */
YHCDEF int yhc_session_run(yhc_session *s, const volatile int *done);

