#!/bin/sh
# mkcerts.sh DIR -- generates the certificates tests/test_tls.c needs into DIR (created if
# missing). Nothing here is committed: the test makes a fresh temporary DIR each run.
#   ca.crt/ca.key         a private test CA (the client trusts it through ca_file)
#   good.crt/.key         CN=localhost, SAN DNS:localhost + IP:127.0.0.1, signed by the CA
#   expired.crt/.key      the same names, signed by the CA, valid only in January 2020
#   wronghost.crt/.key    CN/SAN wrong.example, signed by the CA
#   self.crt/.key         CN/SAN localhost, self-signed (no CA)
# EC P-256 keys: fast to generate, and every mbedTLS and OpenSSL build handles them.
set -eu
d=${1:?usage: mkcerts.sh DIR}
mkdir -p "$d"
cd "$d"

key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }
# leaf NAME CN SAN: a CSR and a certificate signed by the CA, valid for two days
leaf() {
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nsubjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -sha256 \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
}

key ca.key
openssl req -x509 -new -key ca.key -subj "/CN=yhc test CA" -days 2 -sha256 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.crt 2>/dev/null

leaf good localhost "DNS:localhost,IP:127.0.0.1"
leaf wronghost wrong.example "DNS:wrong.example"

# Expired: `openssl ca` is the portable way (OpenSSL 3.0) to set dates in the past.
key expired.key
openssl req -new -key expired.key -subj "/CN=localhost" -out expired.csr 2>/dev/null
cat > ca.cnf <<'CNF'
[ca]
default_ca = yhc
[yhc]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
x509_extensions = leaf
[any]
commonName = supplied
[leaf]
basicConstraints = CA:FALSE
subjectAltName = DNS:localhost
extendedKeyUsage = serverAuth
CNF
: > index.txt
echo 1000 > serial
openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -in expired.csr -out expired.crt \
  -startdate 20200101000000Z -enddate 20200201000000Z >/dev/null 2>&1

key self.key
openssl req -x509 -new -key self.key -subj "/CN=localhost" -days 2 -sha256 \
  -addext "subjectAltName=DNS:localhost" -out self.crt 2>/dev/null

for f in ca good expired wronghost self; do
  test -s "$f.crt" && test -s "$f.key" || { echo "mkcerts.sh: $f.crt not made" >&2; exit 1; }
done
