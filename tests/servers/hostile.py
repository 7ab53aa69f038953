#!/usr/bin/env python3
"""hostile.py -- a scripted raw-socket HTTP server that misbehaves on purpose.

Python 3 standard library only. Same start-up protocol as origin.py: listens on 127.0.0.1 on
an OS-chosen port (or --port N), prints "PORT <n>" when ready, exits on SIGTERM/SIGINT or when
stdin reaches EOF. It reads each request head (and a Content-Length body), then plays the
scenario named by the request path. Every scenario is bounded: the endless ones stop after
100 MB, 60 s, or as soon as the client disconnects.

Every scripted response carries X-Conn-Id (unique per TCP connection) where it has headers.

  /byte-at-a-time           valid chunked response (extensions, trailers), one byte per send
                            (X-Trailer: done; body "hello, world")
  /oversize-headers         ?mode=many (default: 1 MB of 1000-byte header lines) or
                            mode=line (one header line of 1 MB, no CRLF until the end)
  /many-headers             10,000 small headers (?n=N to change), then an empty body
  /endless-body             ?mode=cl (Content-Length: 10^12) or mode=chunked (chunks forever)
  /bad-chunk                ?kind=zz | big (1ffffffffffffffff) | long (20 hex digits of value 5) |
                            neg (-5) | nocrlf (chunk data not followed by CRLF)
  /close-mid-body           Content-Length: 1000, sends 10 bytes, closes (?mode=chunked: one
                            chunk, then closes without the last chunk)
  /close-mid-headers        sends part of the header section, closes
  /close-immediately        reads the request, closes without a byte
  /reset                    reads the request, closes with RST (SO_LINGER 0)
  /silence                  reads the request, never answers
  /silence-mid-body         Content-Length: 100, sends 10 bytes, then nothing
  /silence-mid-headers      sends part of the header section, then nothing
  /bad-status-line          ?kind=garbage | code | version | empty | short
  /lf-only                  a response with bare-LF line endings (body "hello")
  /keepalive-then-close     ?mode=race (default): the first request on a connection gets a
                            keep-alive answer (body "conn <id> req 1"); any later request on the
                            same connection is read and the connection closed unanswered.
                            mode=idle: answers, then closes the idle connection after ?ms=50.
  /conflicting-length       Content-Length: 5 and Content-Length: 6
  /te-and-cl                Transfer-Encoding: chunked and Content-Length: 100; chunked body
                            "hello"; then the connection closes
  /bad-length               ?kind=neg | alpha | huge | list (Content-Length: 5, 6)
  /trailer-flood            ?mode=count (200 trailers) | bytes (1 MB of trailers)
  /http10                   "HTTP/1.0 200 OK", no Content-Length, body "old style", close
  /no-length                HTTP/1.1 200, no Content-Length, no Transfer-Encoding, no Connection
                            header: body "until the end", then close
  /bad-header               ?kind=nocolon | nul | space-name | ctl
  /obs-fold                 a folded header (X-Folded: a / SP b); body "ok"
  /interim-flood            100 Continue responses without end (bounded at 10 MB)
  /interim                  ?n=N 103 Early Hints responses, then 200 with body "final"
  /cl-and-te                Content-Length: 5 before Transfer-Encoding: chunked (the other
                            order of /te-and-cl); chunked body "hello"; then the connection closes
  /empty-length             ?kind=empty (Content-Length: ) | comma (Content-Length: ,); body "hello"
  /http10-chunked           HTTP/1.0 200 with Transfer-Encoding: chunked and Connection:
                            keep-alive, body "hello"; a second request on that connection is
                            read and the connection closed unanswered
  /huge-chunk               Transfer-Encoding: chunked, a first chunk of 0xffffffff bytes
                            announced, 5 of them sent, then nothing
  /headers                  ?n=N exactly N header fields (X-Conn-Id and Content-Length
                            included when N >= 2), body "ok"
"""
import argparse
import itertools
import os
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse

CAP_BYTES = 100 * 1024 * 1024
CAP_SECONDS = 60.0
_ids = itertools.count(1)
_lock = threading.Lock()


class Gone(Exception):
    pass


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        with _lock:
            self.id = next(_ids)
        self.nreq = 0

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            raise Gone()

    def read_request(self):
        """Returns (method, target, headers, body) or None at EOF."""
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 65536:
                return None
            try:
                d = self.sock.recv(65536)
            except OSError:
                return None
            if not d:
                return None
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        method, target = parts[0], parts[1] if len(parts) > 1 else "/"
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        n = 0
        for k, v in headers:
            if k.lower() == "content-length":
                n = int(v)
        while len(self.buf) < n:
            try:
                d = self.sock.recv(65536)
            except OSError:
                return None
            if not d:
                return None
            self.buf += d
        body, self.buf = self.buf[:n], self.buf[n:]
        self.nreq += 1
        return method, target, headers, body

    def hold(self, seconds=5):
        """After a response the client must not reuse: keeps the connection open until the peer
        closes it, sends anything (a request it should not have sent here: closed at once, so
        the mistake shows up in that request), or time is up."""
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(1)
        except OSError:
            pass

    def wait_for_close(self, seconds=CAP_SECONDS):
        """Holds the connection open, discarding input, until the peer closes or time is up."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.sock.settimeout(max(0.01, min(1.0, end - time.monotonic())))
            try:
                if not self.sock.recv(65536):
                    return
            except socket.timeout:
                continue
            except OSError:
                return


def stream_forever(c, make_block):
    sent, start = 0, time.monotonic()
    while sent < CAP_BYTES and time.monotonic() - start < CAP_SECONDS:
        b = make_block()
        c.send(b)
        sent += len(b)


def status(c, extra=""):
    return ("HTTP/1.1 200 OK\r\nX-Conn-Id: %d\r\n%s" % (c.id, extra)).encode()


# Each scenario returns True to keep the connection for another request.
def s_byte_at_a_time(c, q, method):
    resp = status(c, "Transfer-Encoding: chunked\r\nTrailer: X-Trailer\r\n\r\n") + (
        b"5;ext=1\r\nhello\r\n7;name=\"v\"\r\n, world\r\n0\r\nX-Trailer: done\r\n\r\n")
    for i in range(len(resp)):
        c.send(resp[i:i + 1])
        time.sleep(0.0005)
    return True


def s_oversize_headers(c, q, method):
    c.send(status(c))
    if q.get("mode") == "line":
        c.send(b"X-Long: ")
        sent = 0
        while sent < 1024 * 1024:
            c.send(b"a" * 4096)
            sent += 4096
        c.send(b"\r\nContent-Length: 0\r\n\r\n")
    else:
        i, sent = 0, 0
        while sent < 1024 * 1024:
            line = b"X-Big-%d: %s\r\n" % (i, b"b" * 990)
            c.send(line)
            sent += len(line)
            i += 1
        c.send(b"Content-Length: 0\r\n\r\n")
    return False


def s_many_headers(c, q, method):
    n = int(q.get("n", "10000"))
    out = [status(c)]
    for i in range(n):
        out.append(b"X-H-%d: v\r\n" % i)
    out.append(b"Content-Length: 0\r\n\r\n")
    c.send(b"".join(out))
    return False


def s_endless_body(c, q, method):
    block = bytes(range(256)) * 256  # 64 KiB
    if q.get("mode") == "chunked":
        c.send(status(c, "Transfer-Encoding: chunked\r\n\r\n"))
        chunk = b"%x\r\n" % len(block) + block + b"\r\n"
        stream_forever(c, lambda: chunk)
    else:
        c.send(status(c, "Content-Length: 1000000000000\r\n\r\n"))
        stream_forever(c, lambda: block)
    return False


def s_bad_chunk(c, q, method):
    kind = q.get("kind", "zz")
    c.send(status(c, "Transfer-Encoding: chunked\r\n\r\n"))
    c.send(b"5\r\nhello\r\n")
    body = {
        "zz": b"zz\r\nhello\r\n0\r\n\r\n",
        "big": b"1ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        "long": b"00000000000000000005\r\nhello\r\n0\r\n\r\n",
        "neg": b"-5\r\nhello\r\n0\r\n\r\n",
        "nocrlf": b"5\r\nhelloXX0\r\n\r\n",
    }.get(kind, b"zz\r\n")
    c.send(body)
    if kind == "long":  # a valid response (the digits limit decides)
        return True
    c.hold()
    return False


def s_close_mid_body(c, q, method):
    if q.get("mode") == "chunked":
        c.send(status(c, "Transfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n"))
    else:
        c.send(status(c, "Content-Length: 1000\r\n\r\n") + b"0123456789")
    return False


def s_close_mid_headers(c, q, method):
    c.send(b"HTTP/1.1 200 OK\r\nX-Conn-Id: %d\r\nContent-Le" % c.id)
    return False


def s_close_immediately(c, q, method):
    return False


def s_reset(c, q, method):
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return False


def s_silence(c, q, method):
    c.wait_for_close()
    return False


def s_silence_mid_body(c, q, method):
    c.send(status(c, "Content-Length: 100\r\n\r\n") + b"0123456789")
    c.wait_for_close()
    return False


def s_silence_mid_headers(c, q, method):
    c.send(b"HTTP/1.1 200 OK\r\nX-Conn-Id: %d\r\nContent-Le" % c.id)
    c.wait_for_close()
    return False


def s_bad_status_line(c, q, method):
    line = {
        "garbage": b"HELLO WORLD\r\n",
        "code": b"HTTP/1.1 2x0 OK\r\n",
        "version": b"HTTP/9.9 200 OK\r\n",
        "empty": b"\r\n",
        "short": b"HTTP/1.1 20 OK\r\n",
    }.get(q.get("kind", "garbage"), b"HELLO\r\n")
    c.send(line + b"Content-Length: 2\r\n\r\nok")
    c.hold()
    return False


def s_lf_only(c, q, method):
    c.send(b"HTTP/1.1 200 OK\nX-Conn-Id: %d\nX-Lf: yes\nContent-Length: 5\n\nhello" % c.id)
    return True


def s_keepalive_then_close(c, q, method):
    if q.get("mode") == "idle":
        body = b"conn %d req %d" % (c.id, c.nreq)
        c.send(status(c, "Content-Length: %d\r\n\r\n" % len(body)) + body)
        time.sleep(int(q.get("ms", "50")) / 1000.0)
        return False
    if c.nreq == 1:
        body = b"conn %d req %d" % (c.id, c.nreq)
        c.send(status(c, "Content-Length: %d\r\nConnection: keep-alive\r\n\r\n" % len(body)) + body)
        return True
    return False  # a later request on the same connection: close without answering


def s_conflicting_length(c, q, method):
    c.send(status(c, "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"))
    c.hold()
    return False


def s_te_and_cl(c, q, method):
    c.send(status(c, "Transfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n") +
           b"5\r\nhello\r\n0\r\n\r\n")
    return False


def s_bad_length(c, q, method):
    v = {"neg": b"-1", "alpha": b"abc", "huge": b"99999999999999999999999",
         "list": b"5, 6"}.get(q.get("kind", "neg"), b"x")
    c.send(status(c) + b"Content-Length: " + v + b"\r\n\r\nhello")
    c.hold()
    return False


def s_trailer_flood(c, q, method):
    c.send(status(c, "Transfer-Encoding: chunked\r\n\r\n") + b"5\r\nhello\r\n0\r\n")
    if q.get("mode") == "bytes":
        i, sent = 0, 0
        while sent < 1024 * 1024:
            line = b"X-T-%d: %s\r\n" % (i, b"t" * 990)
            c.send(line)
            sent += len(line)
            i += 1
    else:
        c.send(b"".join(b"X-T-%d: v\r\n" % i for i in range(200)))
    c.send(b"\r\n")
    c.hold()
    return False


def s_http10(c, q, method):
    c.send(b"HTTP/1.0 200 OK\r\nX-Conn-Id: %d\r\n\r\nold style" % c.id)
    return False


def s_no_length(c, q, method):
    c.send(b"HTTP/1.1 200 OK\r\nX-Conn-Id: %d\r\n\r\nuntil the end" % c.id)
    return False


def s_bad_header(c, q, method):
    line = {"nocolon": b"No colon here", "nul": b"X-Nul: a\x00b",
            "space-name": b"X Space: v", "ctl": b"X-Ctl: a\x01\x7fb"}.get(q.get("kind"), b"?")
    c.send(status(c) + line + b"\r\nContent-Length: 2\r\n\r\nok")
    c.hold()
    return False


def s_obs_fold(c, q, method):
    c.send(status(c, "X-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok"))
    return False


def s_interim_flood(c, q, method):
    msg = b"HTTP/1.1 100 Continue\r\n\r\n" * 1000
    sent, start = 0, time.monotonic()
    while sent < 10 * 1024 * 1024 and time.monotonic() - start < CAP_SECONDS:
        c.send(msg)
        sent += len(msg)
    return False


def s_interim(c, q, method):
    n = int(q.get("n", "1"))
    c.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" * n)
    c.send(status(c, "Content-Length: 5\r\n\r\n") + b"final")
    return True


def s_cl_and_te(c, q, method):
    c.send(status(c, "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n") +
           b"5\r\nhello\r\n0\r\n\r\n")
    return False


def s_empty_length(c, q, method):
    v = {"empty": b"", "comma": b","}.get(q.get("kind", "empty"), b"")
    c.send(status(c) + b"Content-Length: " + v + b"\r\n\r\nhello")
    c.hold()
    return False


def s_http10_chunked(c, q, method):
    if c.nreq == 1:
        c.send(b"HTTP/1.0 200 OK\r\nX-Conn-Id: %d\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\n\r\n" % c.id)
        return True
    return False


def s_huge_chunk(c, q, method):
    c.send(status(c, "Transfer-Encoding: chunked\r\n\r\n") + b"ffffffff\r\nhello")
    c.hold()
    return False


def s_headers(c, q, method):
    n = int(q.get("n", "2"))
    head = b"HTTP/1.1 200 OK\r\n"
    if n >= 2:
        head += b"X-Conn-Id: %d\r\nContent-Length: 2\r\n" % c.id
        head += b"".join(b"X-H-%d: v\r\n" % i for i in range(n - 2))
        c.send(head + b"\r\nok")
        return True
    c.send(head + b"Connection: close\r\n\r\nok")
    return False


SCENARIOS = {
    "/byte-at-a-time": s_byte_at_a_time,
    "/oversize-headers": s_oversize_headers,
    "/many-headers": s_many_headers,
    "/endless-body": s_endless_body,
    "/bad-chunk": s_bad_chunk,
    "/close-mid-body": s_close_mid_body,
    "/close-mid-headers": s_close_mid_headers,
    "/close-immediately": s_close_immediately,
    "/reset": s_reset,
    "/silence": s_silence,
    "/silence-mid-body": s_silence_mid_body,
    "/silence-mid-headers": s_silence_mid_headers,
    "/bad-status-line": s_bad_status_line,
    "/lf-only": s_lf_only,
    "/keepalive-then-close": s_keepalive_then_close,
    "/conflicting-length": s_conflicting_length,
    "/te-and-cl": s_te_and_cl,
    "/bad-length": s_bad_length,
    "/trailer-flood": s_trailer_flood,
    "/http10": s_http10,
    "/no-length": s_no_length,
    "/bad-header": s_bad_header,
    "/obs-fold": s_obs_fold,
    "/interim-flood": s_interim_flood,
    "/interim": s_interim,
    "/cl-and-te": s_cl_and_te,
    "/empty-length": s_empty_length,
    "/http10-chunked": s_http10_chunked,
    "/huge-chunk": s_huge_chunk,
    "/headers": s_headers,
}


def serve(sock):
    c = Conn(sock)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(CAP_SECONDS)
        while True:
            req = c.read_request()
            if req is None:
                break
            method, target, _headers, _body = req
            u = urllib.parse.urlsplit(target)
            q = {k: v[0] for k, v in urllib.parse.parse_qs(u.query).items()}
            fn = SCENARIOS.get(u.path)
            if fn is None:
                body = b"no such scenario\n"
                c.send(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                continue
            if os.environ.get("YHC_SERVER_LOG"):
                sys.stderr.write("hostile: conn %d req %d %s %s\n" % (c.id, c.nreq, method, target))
            if not fn(c, q, method):
                break
    except (Gone, OSError, ValueError):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.port))
    ls.listen(128)

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except Exception:
            pass
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    sys.stdout.write("PORT %d\n" % ls.getsockname()[1])
    sys.stdout.flush()
    while True:
        s, _ = ls.accept()
        threading.Thread(target=serve, args=(s,), daemon=True).start()


if __name__ == "__main__":
    main()
