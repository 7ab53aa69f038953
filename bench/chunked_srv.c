/* chunked_srv.c -- serves 64 MiB with Transfer-Encoding: chunked, CHUNK bytes per chunk, to
   each connection in turn (one request per connection, then close), so the download benchmark
   measures the client's chunked decoding rather than nginx's SSI filter.
     chunked_srv PORT CHUNK          listens on 127.0.0.1:PORT until killed or stdin closes */
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TOTAL ((size_t)64 << 20)

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int main(int argc, char **argv) {
  struct sockaddr_in a;
  int ls, one = 1;
  size_t chunk, i, hl;
  char *frame;
  static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
  if (argc != 3) {
    fprintf(stderr, "usage: chunked_srv PORT CHUNK\n");
    return 2;
  }
  chunk = (size_t)atol(argv[2]);
  if (!chunk || TOTAL % chunk) {
    fprintf(stderr, "chunked_srv: CHUNK must divide 64 MiB\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  /* one pre-built frame "<hex>\r\n<data>\r\n", written TOTAL/chunk times */
  frame = (char *)malloc(chunk + 32);
  hl = (size_t)snprintf(frame, 32, "%zx\r\n", chunk);
  for (i = 0; i < chunk; i++) frame[hl + i] = (char)('a' + i % 26);
  memcpy(frame + hl + chunk, "\r\n", 2);
  ls = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)atoi(argv[1]));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 16)) {
    perror("chunked_srv: bind/listen");
    return 1;
  }
  for (;;) {
    struct pollfd pf[1] = {{ls, POLLIN, 0}};
    char req[8192];
    size_t got = 0;
    int c;
    if (poll(pf, 1, -1) < 0) continue;
    if (!(pf[0].revents & POLLIN)) continue;
    c = accept(ls, NULL, NULL);
    if (c < 0) continue;
    while (got < sizeof req - 1) { /* the request head; its content does not matter */
      ssize_t n = read(c, req + got, sizeof req - 1 - got);
      if (n <= 0) break;
      got += (size_t)n;
      req[got] = 0;
      if (strstr(req, "\r\n\r\n")) break;
    }
    if (write_all(c, head, sizeof head - 1) == 0) {
      for (i = 0; i < TOTAL / chunk; i++)
        if (write_all(c, frame, hl + chunk + 2)) break;
      if (i == TOTAL / chunk) write_all(c, "0\r\n\r\n", 5);
    }
    close(c);
  }
}
