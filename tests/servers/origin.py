#!/usr/bin/env python3
"""origin.py -- a well-behaved HTTP/1.1 origin server for yhc's interop tests.

Python 3 standard library only. Listens on 127.0.0.1 (or ::1 with --ipv6) on an OS-chosen
port (or --port N), prints exactly one line "PORT <n>" on stdout when ready, and exits on
SIGTERM, SIGINT or when its stdin reaches EOF (so a crashed test never leaves it behind).

Routes (every response carries X-Conn-Id, a number unique per TCP connection):
  /hello                 "Hello, world!\n" with Content-Length
  /echo                  any method; the body is the request body, raw (binary-safe); the
                         request is described in response headers:
                           X-Echo-Method: GET
                           X-Echo-Target: /echo?a=1 (path + query, verbatim)
                           X-Echo-Header: Name: value   (one per request header, in order,
                                                         repeated ones kept)
                           X-Echo-Body-Len: 5
                           X-Echo-Body-Chunked: 1 (only when the body came chunked)
  /chunked?n=N&size=S    N chunks of S bytes (byte i of the body = i % 251, see /bytes), with
                         chunk extensions and two trailers (X-Trailer-One: 1,
                         X-Trailer-Two: two); ?trailers=0 sends none
  /close?size=S[&v=0]    a close-delimited body of S bytes: no Content-Length, Connection: close;
                         v=0 answers with an HTTP/1.0 status line
  /status/N              status N; 204 and 304 have no body (304 does carry Content-Length:
                         1234, which must not be read as a body length), others a short body
  /cookies               three Set-Cookie headers (a=1, b=2, c=3, in that order) and
                         mixed-case headers, and X-Padded whose value has surrounding whitespace
  /bytes/N               N deterministic bytes: byte i = i % 251 (so NULs occur)
  /slow?ms=M             answers "slow" after M milliseconds
  /conn-id               the connection id as the body
  /continue?kind=K       interim responses before the final one: K = 100, 103 or both
  /head                  Content-Length: 1000; a GET gets 1000 bytes of 'h', a HEAD none
  anything else          404 with X-Echo-Target (the request target, verbatim)
"""
import argparse
import http.server
import itertools
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse

_conn_ids = itertools.count(1)
_conn_lock = threading.Lock()


def pattern(n, start=0):
    return bytes((i % 251) for i in range(start, start + n))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "yhc-origin/1"

    def version_string(self):
        return self.server_version

    def setup(self):
        super().setup()
        with _conn_lock:
            self.conn_id = next(_conn_ids)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):  # quiet: tests read stderr only on failure
        if os.environ.get("YHC_SERVER_LOG"):
            sys.stderr.write("origin: " + (fmt % args) + "\n")

    # -- helpers
    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out), True
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        n = int(self.headers.get("Content-Length") or 0)
        return (self.rfile.read(n) if n > 0 else b""), False

    def query(self):
        q = urllib.parse.urlsplit(self.path).query
        return {k: v[0] for k, v in urllib.parse.parse_qs(q).items()}

    def reply(self, status, body=b"", headers=(), ctype="application/octet-stream"):
        self.send_response(status)
        self.send_header("X-Conn-Id", str(self.conn_id))
        for k, v in headers:
            self.send_header(k, v)
        no_body = status in (204, 304) or 100 <= status < 200
        if not no_body:
            self.send_header("Content-Type", ctype)
            if not any(k.lower() == "content-length" for k, _ in headers):
                self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and not no_body:
            self.wfile.write(body)
        self.wfile.flush()

    # -- dispatch
    def route(self):
        path = urllib.parse.urlsplit(self.path).path
        body, chunked = self.read_body()
        q = self.query()
        if path == "/hello":
            return self.reply(200, b"Hello, world!\n", ctype="text/plain")
        if path == "/echo":
            hs = [("X-Echo-Method", self.command), ("X-Echo-Target", self.path)]
            for k, v in self.headers.items():
                hs.append(("X-Echo-Header", "%s: %s" % (k, v)))
            hs.append(("X-Echo-Body-Len", str(len(body))))
            if chunked:
                hs.append(("X-Echo-Body-Chunked", "1"))
            return self.reply(200, body, hs)
        if path == "/chunked":
            return self.send_chunked(int(q.get("n", "3")), int(q.get("size", "10")),
                                     q.get("trailers", "1") != "0")
        if path == "/close":
            size = int(q.get("size", "100"))
            line = "HTTP/1.0 200 OK\r\n" if q.get("v") == "0" else "HTTP/1.1 200 OK\r\n"
            head = line + "X-Conn-Id: %d\r\nConnection: close\r\n\r\n" % self.conn_id
            self.wfile.write(head.encode())
            if self.command != "HEAD":
                self.wfile.write(pattern(size))
            self.wfile.flush()
            self.close_connection = True
            return None
        if path.startswith("/status/"):
            code = int(path[len("/status/"):])
            if code == 304:
                return self.reply(304, headers=[("Content-Length", "1234"), ("ETag", '"x"')])
            if code == 204:
                return self.reply(204)
            return self.reply(code, ("status %d\n" % code).encode(), ctype="text/plain")
        if path == "/cookies":
            return self.reply(200, b"cookies\n", [("Set-Cookie", "a=1; Path=/"),
                                                  ("x-lower-case", "lower"),
                                                  ("Set-Cookie", "b=2"),
                                                  ("X-MiXeD-CaSe", "mixed"),
                                                  ("X-Padded", "  padded value \t"),
                                                  ("set-cookie", "c=3; HttpOnly")])
        if path.startswith("/bytes/"):
            return self.reply(200, pattern(int(path[len("/bytes/"):])))
        if path == "/slow":
            time.sleep(int(q.get("ms", "100")) / 1000.0)
            return self.reply(200, b"slow")
        if path == "/conn-id":
            return self.reply(200, str(self.conn_id).encode(), ctype="text/plain")
        if path == "/continue":
            kind = q.get("kind", "100")
            if kind in ("100", "both"):
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.wfile.flush()
            if kind in ("103", "both"):
                self.wfile.write(b"HTTP/1.1 103 Early Hints\r\n"
                                 b"Link: </style.css>; rel=preload; as=style\r\n\r\n")
                self.wfile.flush()
            return self.reply(200, b"final", [("X-Final", "yes")])
        if path == "/head":
            return self.reply(200, b"h" * 1000, [("Content-Length", "1000")])
        return self.reply(404, b"no such route\n", [("X-Echo-Target", self.path)],
                          ctype="text/plain")

    def send_chunked(self, n, size, trailers):
        self.send_response(200)
        self.send_header("X-Conn-Id", str(self.conn_id))
        self.send_header("Transfer-Encoding", "chunked")
        if trailers:
            self.send_header("Trailer", "X-Trailer-One, X-Trailer-Two")
        self.end_headers()
        if self.command == "HEAD":
            self.wfile.flush()
            return
        off = 0
        for i in range(n):
            ext = ";ext=%d" % i if i % 2 == 0 else ';name="quoted value";flag'
            self.wfile.write(b"%x%s\r\n" % (size, ext.encode()))
            self.wfile.write(pattern(size, off) + b"\r\n")
            self.wfile.flush()
            off += size
        self.wfile.write(b"0;last=1\r\n")
        if trailers:
            self.wfile.write(b"X-Trailer-One: 1\r\nX-Trailer-Two: two\r\n")
        self.wfile.write(b"\r\n")
        self.wfile.flush()

    def handle_one_request(self):
        # BaseHTTPRequestHandler dispatches on do_<METHOD>; route every method the same way.
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self.route()
            self.wfile.flush()
        except (ConnectionError, BrokenPipeError, socket.timeout):
            self.close_connection = True


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class Server6(Server):
    address_family = socket.AF_INET6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ipv6", action="store_true")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    cls, host = (Server6, "::1") if args.ipv6 else (Server, "127.0.0.1")
    try:
        srv = cls((host, args.port), Handler)
    except OSError as e:
        sys.stderr.write("origin: cannot listen on %s: %s\n" % (host, e))
        sys.exit(2)

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except Exception:
            pass
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    sys.stdout.write("PORT %d\n" % srv.server_address[1])
    sys.stdout.flush()
    srv.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
