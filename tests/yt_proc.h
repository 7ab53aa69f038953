/* yt_proc.h -- helpers for C tests that need a server process (tests/servers/).

   A server is started with fork/exec; its stdout is a pipe from which yt_proc_start() reads the
   one line "PORT <n>" (with a timeout); its stdin is a pipe the parent keeps open, so when the
   test process dies for any reason the server sees EOF on stdin and exits by itself.
   yt_proc_stop() sends SIGTERM, waits a little, then SIGKILL, and reaps.

   POSIX only. The including file must define _POSIX_C_SOURCE (200809L) before its first
   include (yhc.h does this when it is the first include and YHC_IMPLEMENTATION is defined). */
#ifndef YT_PROC_H
#define YT_PROC_H
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__GNUC__) || defined(__clang__)
#  define YT_PROC_FN static __attribute__((unused))
#else
#  define YT_PROC_FN static
#endif

typedef struct yt_proc {
  pid_t pid;    /* 0 = not running */
  int in_fd;    /* write end of the child's stdin; closing it tells the child to exit */
  int out_fd;   /* read end of the child's stdout */
  int port;     /* from the "PORT <n>" line */
  int status;   /* wait status once reaped */
} yt_proc;

YT_PROC_FN long long yt_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

YT_PROC_FN void yt_sleep_ms(int ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

/* 1 when `name` is an executable: a path, or found in $PATH, /usr/sbin or /sbin. */
YT_PROC_FN int yt_have_exe(const char *name) {
  const char *path = getenv("PATH");
  char buf[4096];
  const char *p;
  if (!name || !*name) return 0;
  if (strchr(name, '/')) return access(name, X_OK) == 0;
  snprintf(buf, sizeof buf, "%s:/usr/sbin:/sbin:/usr/local/sbin", path ? path : "/usr/bin:/bin");
  p = buf;
  while (*p) {
    const char *end = strchr(p, ':');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    char full[4096];
    struct stat st;
    if (n > 0 && n + strlen(name) + 2 < sizeof full) {
      memcpy(full, p, n);
      full[n] = '/';
      strcpy(full + n + 1, name);
      if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && access(full, X_OK) == 0) return 1;
    }
    if (!end) break;
    p = end + 1;
  }
  return 0;
}

/* The Python interpreter the servers run under: $PYTHON or "python3". */
YT_PROC_FN const char *yt_python(void) {
  const char *p = getenv("PYTHON");
  return (p && *p) ? p : "python3";
}

/* Reaps the child if it has exited; returns 1 when it is gone. */
YT_PROC_FN int yt_proc_reap(yt_proc *p, int block) {
  pid_t r;
  if (p->pid <= 0) return 1;
  do {
    r = waitpid(p->pid, &p->status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == p->pid || (r < 0 && errno == ECHILD)) {
    p->pid = 0;
    return 1;
  }
  return 0;
}

/* Stops the server: closes its stdin, SIGTERM, up to 3 s grace, then SIGKILL; reaps it. */
YT_PROC_FN void yt_proc_stop(yt_proc *p) {
  long long deadline;
  if (p->in_fd >= 0) close(p->in_fd);
  p->in_fd = -1;
  if (p->pid > 0) {
    kill(p->pid, SIGTERM);
    deadline = yt_now_ms() + 3000;
    while (!yt_proc_reap(p, 0) && yt_now_ms() < deadline) yt_sleep_ms(10);
    if (p->pid > 0) {
      kill(p->pid, SIGKILL);
      yt_proc_reap(p, 1);
    }
  }
  if (p->out_fd >= 0) close(p->out_fd);
  p->out_fd = -1;
}

/* Starts argv[0] (searched in PATH) with argv and waits up to timeout_ms for a stdout line
   containing `marker` followed by the port number (other lines are skipped). Returns 0 with
   p->port set, or -1 (the child, if any, is stopped; a message went to stderr). */
YT_PROC_FN int yt_proc_start_marker(yt_proc *p, const char *const *argv, int timeout_ms,
                                    const char *marker) {
  int in[2], out[2];
  char line[512];
  size_t len = 0;
  long long deadline = yt_now_ms() + timeout_ms;
  memset(p, 0, sizeof *p);
  p->in_fd = p->out_fd = -1;
  if (pipe(in) < 0) return -1;
  if (pipe(out) < 0) {
    close(in[0]);
    close(in[1]);
    return -1;
  }
  /* The parent's ends must not leak into later children (they would keep stdin open). */
  fcntl(in[1], F_SETFD, FD_CLOEXEC);
  fcntl(out[0], F_SETFD, FD_CLOEXEC);
  fflush(stdout);
  fflush(stderr);
  p->pid = fork();
  if (p->pid < 0) {
    p->pid = 0;
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    return -1;
  }
  if (p->pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    if (in[0] > 1) close(in[0]);
    if (out[1] > 1) close(out[1]);
    close(in[1]);
    close(out[0]);
    signal(SIGPIPE, SIG_DFL);
    execvp(argv[0], (char *const *)argv);
    fprintf(stderr, "yt_proc: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  p->in_fd = in[1];
  p->out_fd = out[0];
  for (;;) {
    struct pollfd pfd;
    long long left = deadline - yt_now_ms();
    ssize_t n;
    int r;
    char *nl;
    if (left <= 0) {
      fprintf(stderr, "yt_proc: %s did not print PORT within %d ms\n", argv[0], timeout_ms);
      break;
    }
    pfd.fd = p->out_fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    r = poll(&pfd, 1, (int)left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    n = read(p->out_fd, line + len, sizeof line - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      fprintf(stderr, "yt_proc: %s exited before printing PORT\n", argv[0]);
      break;
    }
    len += (size_t)n;
    line[len] = 0;
    while ((nl = strchr(line, '\n')) != NULL) {
      int port = 0;
      const char *m;
      *nl = 0; /* search this line only: a later one may still be incomplete */
      m = strstr(line, marker);
      if (m && sscanf(m + strlen(marker), "%d", &port) == 1 && port > 0 && port < 65536) {
        p->port = port;
        return 0;
      }
      len -= (size_t)(nl + 1 - line);
      memmove(line, nl + 1, len + 1);
    }
    if (len >= sizeof line - 1) {
      fprintf(stderr, "yt_proc: %s: overlong first line\n", argv[0]);
      break;
    }
  }
  yt_proc_stop(p);
  return -1;
}

/* The servers in tests/servers print "PORT <n>" first. */
YT_PROC_FN int yt_proc_start(yt_proc *p, const char *const *argv, int timeout_ms) {
  return yt_proc_start_marker(p, argv, timeout_ms, "PORT ");
}

/* Convenience: `python3 <script> [arg]`. */
YT_PROC_FN int yt_proc_start_py(yt_proc *p, const char *script, const char *arg, int timeout_ms) {
  const char *argv[4];
  argv[0] = yt_python();
  argv[1] = script;
  argv[2] = arg;
  argv[3] = NULL;
  return yt_proc_start(p, argv, timeout_ms);
}

#endif
