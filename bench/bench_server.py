#!/usr/bin/env python3
"""bench_server.py -- examples/calc-image/calculator_server.py with TCP_NODELAY on every
connection. The stock server writes the response head and body in separate send()s; with
Nagle on, the body waits for the client's delayed ACK, so every keep-alive request takes
~40 ms whoever the client is (curl, wrk and yhc all measure 23 req/s at 1 in flight). The
end-to-end benchmark wants to see the tunnel, not that stall, so it serves this wrapper both
directly and inside the VM image (bench/e2e.sh puts both files in the image)."""
import os
import runpy
import sys
from http.server import BaseHTTPRequestHandler

BaseHTTPRequestHandler.disable_nagle_algorithm = True
here = os.path.dirname(os.path.abspath(__file__))
sys.argv[0] = os.path.join(here, "calculator_server.py")
runpy.run_path(sys.argv[0], run_name="__main__")
