#!/bin/bash
# nginx.sh -- runs Debian's nginx in the foreground for yhc's interop tests.
#
# Generates a config in a temp dir (1 worker, access_log off, pid and temp paths inside the temp
# dir, keep-alive on), listens on 127.0.0.1 on a free port, prints "PORT <n>" on stdout once it
# accepts connections, and runs until SIGTERM/SIGINT or until its stdin reaches EOF (so a
# crashed test never leaves it behind); then stops nginx and removes the temp dir.
# Exits 3 without printing PORT when nginx is not installed.
#
# Every response carries X-Conn-Id: nginx's connection serial number (keep-alive reuse checks).
# Served:
#   /small.txt           "Hello from nginx\n"
#   /big.bin             1 MiB (1048576 bytes), byte i = i % 251 (same pattern as origin.py /bytes)
#   /chunked/index.html  passed through the SSI filter, which drops Content-Length, so nginx
#                        sends it with Transfer-Encoding: chunked; the body is
#                        "<p>chunked</p>\n" repeated 200 times then "<p>ssi=yes</p>\n"
set -u
NGINX=${NGINX:-/usr/sbin/nginx}
if [ ! -x "$NGINX" ]; then NGINX=$(command -v nginx 2>/dev/null || true); fi
if [ -z "$NGINX" ] || [ ! -x "$NGINX" ]; then
  echo "nginx.sh: nginx not installed" >&2
  exit 3
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/yhc-nginx.XXXXXX")
ngpid=
catpid=
cleanup() {
  if [ -n "$ngpid" ]; then kill -TERM "$ngpid" 2>/dev/null; wait "$ngpid" 2>/dev/null; fi
  if [ -n "$catpid" ]; then kill "$catpid" 2>/dev/null; fi
  rm -rf "$dir"
  ngpid=
  catpid=
}
trap 'cleanup; exit 0' TERM INT HUP
trap cleanup EXIT

mkdir -p "$dir/www/chunked" "$dir/tmp" "$dir/logs"
printf 'Hello from nginx\n' >"$dir/www/small.txt"
python3 -c '
import sys
sys.stdout.buffer.write(bytes(i % 251 for i in range(1048576)))' >"$dir/www/big.bin"
{
  for _ in $(seq 200); do printf '<p>chunked</p>\n'; done
  printf '<!--# set var="x" value="yes" --><p>ssi=<!--# echo var="x" --></p>\n'
} >"$dir/www/chunked/index.html"
chmod -R a+rX "$dir"

user_line=
if [ "$(id -u)" = 0 ]; then user_line="user root;"; fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_conf() { # port
  cat >"$dir/nginx.conf" <<EOF
$user_line
daemon off;
master_process on;
worker_processes 1;
pid $dir/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
  access_log off;
  log_not_found off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  types { text/html html; text/plain txt; application/octet-stream bin; }
  default_type application/octet-stream;
  sendfile on;
  keepalive_timeout 60s;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:$1;
    root $dir/www;
    add_header X-Conn-Id \$connection always;
    location /chunked/ { ssi on; ssi_types *; chunked_transfer_encoding on; }
  }
}
EOF
}

# Our stdin: keep a handle, since background jobs get /dev/null as stdin.
exec 3<&0

port=
for _ in 1 2 3 4 5; do
  p=$(free_port)
  write_conf "$p"
  "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e stderr >&2 </dev/null 3<&- &
  ngpid=$!
  for _ in $(seq 100); do
    if (exec 4<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
    if ! kill -0 "$ngpid" 2>/dev/null; then break; fi
    sleep 0.05
  done
  [ -n "$port" ] && break
  kill -TERM "$ngpid" 2>/dev/null; wait "$ngpid" 2>/dev/null; ngpid=
done
if [ -z "$port" ]; then
  echo "nginx.sh: nginx did not start" >&2
  exit 1
fi

echo "PORT $port"
cat <&3 >/dev/null &
catpid=$!
exec 3<&-
# Until stdin closes, nginx dies, or a signal arrives (the trap runs cleanup).
wait -n "$catpid" "$ngpid" 2>/dev/null
cleanup
exit 0
