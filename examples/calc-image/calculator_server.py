#!/usr/bin/env python3
"""Calculator HTTP service for the yhc demo image (Python 3 standard library only).

Listens on 0.0.0.0:80 by default (as inside a Golem VM); HTTP/1.1 with keep-alive.

  GET  /add/A/B /sub/A/B /mul/A/B /div/A/B   -> result as text ("7")
  POST /calc        body: {"expr": "1+2*3"} / {"op":"add","a":1,"b":2} / plain "1+2*3" -> result
  GET|POST /echo    -> JSON {method, path, headers: [[name, value], ...], body_b64, body}
  GET  /bytes/N     -> N bytes of the pattern bytes(i % 251)
  GET  /sleep/MS    -> waits MS milliseconds, answers "slept MS"
  GET  /health      -> "ok"
"""
import argparse
import ast
import base64
import json
import operator
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 64 * 1024 * 1024
MAX_BYTES = 256 * 1024 * 1024
_OPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos,
}


def fmt(x):
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x) if isinstance(x, float) else str(x)


def num(s):
    try:
        return int(s)
    except ValueError:
        return float(s)


def evaluate(expr):
    """Safe arithmetic evaluation (numbers, + - * / // % **, parentheses)."""
    if len(expr) > 10000:
        raise ValueError("expression too long")

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 1000:
                raise ValueError("exponent too large")
            return _OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        raise ValueError("unsupported expression")

    return ev(ast.parse(expr.strip(), mode="eval"))


BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes; without TCP_NODELAY every keep-alive
    # response stalls ~40 ms on Nagle + delayed ACK
    disable_nagle_algorithm = True
    server_version = "yhc-calc/1.0"

    def log_message(self, fmt_, *args):  # quiet unless --verbose
        if self.server.verbose:
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt_ % args))

    def send(self, status, body, ctype="text/plain; charset=utf-8", extra=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or []):
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                if len(data) + size > MAX_BODY:
                    raise ValueError("body too large")
                data += self.rfile.read(size)
                self.rfile.readline(3)
            return bytes(data)
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(n) if n > 0 else b""

    def route(self):
        try:
            body = self.read_body() if self.command in ("POST", "PUT", "PATCH", "DELETE") else b""
        except ValueError as e:
            self.close_connection = True
            return self.send(413, "%s\n" % e)
        path, _, query = self.path.partition("?")
        parts = [p for p in path.split("/") if p]
        try:
            if path == "/health":
                return self.send(200, "ok")
            if parts and parts[0] == "echo":
                doc = {
                    "method": self.command,
                    "path": self.path,
                    "headers": [[k, v] for k, v in self.headers.items()],
                    "body": body.decode("utf-8", "replace"),
                    "body_b64": base64.b64encode(body).decode(),
                    "body_len": len(body),
                }
                return self.send(200, json.dumps(doc), "application/json")
            if len(parts) == 3 and parts[0] in BINARY and self.command in ("GET", "HEAD"):
                a, b = num(parts[1]), num(parts[2])
                if parts[0] == "div" and b == 0:
                    return self.send(400, "division by zero")
                return self.send(200, fmt(BINARY[parts[0]](a, b)))
            if path == "/calc" and self.command == "POST":
                text = body.decode("utf-8").strip()
                try:
                    doc = json.loads(text)
                except ValueError:
                    doc = text
                if isinstance(doc, dict) and "op" in doc:
                    op = doc["op"]
                    if op not in BINARY:
                        return self.send(400, "unknown op")
                    if op == "div" and doc["b"] == 0:
                        return self.send(400, "division by zero")
                    return self.send(200, fmt(BINARY[op](doc["a"], doc["b"])))
                expr = doc.get("expr") if isinstance(doc, dict) else str(doc)
                return self.send(200, fmt(evaluate(str(expr))))
            if len(parts) == 2 and parts[0] == "bytes":
                n = int(parts[1])
                if n < 0 or n > MAX_BYTES:
                    return self.send(400, "bad size")
                pattern = bytes(i % 251 for i in range(251))
                data = (pattern * (n // 251 + 1))[:n]
                return self.send(200, data, "application/octet-stream")
            if len(parts) == 2 and parts[0] == "sleep":
                ms = max(0, min(int(parts[1]), 600000))
                time.sleep(ms / 1000.0)
                return self.send(200, "slept %d" % ms)
            return self.send(404, "not found: %s\n" % path)
        except (ValueError, KeyError, TypeError, ZeroDivisionError, SyntaxError, OverflowError) as e:
            return self.send(400, "bad request: %s\n" % e)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = route


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    srv = ThreadingHTTPServer((a.host, a.port), Handler)
    srv.verbose = a.verbose
    sys.stderr.write("calculator listening on %s:%d\n" % (a.host, a.port))
    sys.stderr.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
