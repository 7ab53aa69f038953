#!/bin/bash
# bench/nginx.sh DIR PORT -- writes a benchmark nginx config and docroot into DIR (1 worker,
# access_log off, open-file cache, keep-alive without a request cap) and runs nginx in the foreground on
# 127.0.0.1:PORT. Same approach as tests/servers/nginx.sh, plus the large bodies:
#   /small.txt         "Hello from nginx\n" (17 bytes, answered from the config, no file I/O)
#   /big.bin           64 MiB with Content-Length (sendfile)
#   /chunked/big.txt   the same 64 MiB through the SSI filter, which drops Content-Length, so
#                      nginx sends it Transfer-Encoding: chunked
set -eu
dir=$1 port=$2
NGINX=${NGINX:-/usr/sbin/nginx}
mkdir -p "$dir/www/chunked" "$dir/tmp" "$dir/logs"
printf 'Hello from nginx\n' >"$dir/www/small.txt"
if [ ! -s "$dir/www/big.bin" ]; then
  # printable text (the SSI parser scans it) without "<!--", 64 MiB exactly
  python3 - "$dir/www/big.bin" <<'PY'
import sys
line = (b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ._-+=/\\|[]{}()#@!?%&*^~`'" * 3)[:255] + b"\n"
block = line * 4096  # 1 MiB
with open(sys.argv[1], "wb") as f:
    for _ in range(64):
        f.write(block)
PY
  ln -f "$dir/www/big.bin" "$dir/www/chunked/big.txt" 2>/dev/null || cp "$dir/www/big.bin" "$dir/www/chunked/big.txt"
fi
chmod -R a+rX "$dir"
user_line=
if [ "$(id -u)" = 0 ]; then user_line="user root;"; fi
cat >"$dir/nginx.conf" <<CONF
$user_line
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log stderr error;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  types { text/plain txt; application/octet-stream bin; }
  default_type application/octet-stream;
  sendfile on;
  # Without the cache, every small.txt costs nginx open/fstat/close and its one worker saturates
  # near 30k req/s at 8 connections: every client then measures nginx, not itself (yhc and
  # libcurl tied at ~32k while yhc spent 18 us of CPU per request and libcurl 31).
  open_file_cache max=64 inactive=600s;
  open_file_cache_valid 600s;
  tcp_nopush on;
  keepalive_timeout 120s;
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:$port backlog=1024;
    root $dir/www;
    # the rate benchmarks' 17 bytes come from the config: even from the open-file cache, the
    # file's own headers and sendfile kept nginx's one worker the limit near 50k req/s
    location = /small.txt { default_type text/plain; return 200 "Hello from nginx\\n"; }
    location /chunked/ { ssi on; ssi_types *; chunked_transfer_encoding on; }
  }
}
CONF
exec "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e stderr
