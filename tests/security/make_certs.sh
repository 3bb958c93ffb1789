#!/usr/bin/env bash
# Throwaway certificates for the TLS tests, made with the openssl command
# into DIR (which must exist):
#   ca.pem ca.key                 the test CA
#   server.pem server.key         CN satlab-server, SAN localhost, 127.0.0.1, ::1
#   server2.pem server2.key       the same names, another key (rotation)
#   client.pem client.key         CN tenant-a, signed by the CA (mTLS)
#   expired.pem expired.key       signed by the CA, valid 2020-01-01..02 only
#   other_ca.pem other_ca.key     an unrelated CA
#   other_client.pem .key         CN tenant-a, signed by the other CA
#   other_server.pem .key         the server names, signed by the other CA
# Usage: make_certs.sh DIR
set -euo pipefail
dir=${1:?usage: make_certs.sh DIR}
cd "$dir"
command -v openssl >/dev/null || { echo "make_certs.sh: openssl not found" >&2; exit 1; }
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() {  # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 2 -out "$1.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
leaf() {  # name subject ca ext
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf '%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial \
    -days 2 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
server_ext='subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
extendedKeyUsage=serverAuth'
client_ext='extendedKeyUsage=clientAuth'
ca ca "satlab test CA"
ca other_ca "unrelated test CA"
leaf server satlab-server ca "$server_ext"
leaf server2 satlab-server-rotated ca "$server_ext"
leaf client tenant-a ca "$client_ext"
leaf other_client tenant-a other_ca "$client_ext"
leaf other_server satlab-server other_ca "$server_ext"
# Expired: `openssl ca` takes explicit start and end dates (x509 -req does not).
key expired.key
openssl req -new -key expired.key -subj "/CN=tenant-expired" -out expired.csr
mkdir -p ca_db && : > ca_db/index.txt && echo 01 > ca_db/serial
cat > ca_db/ca.cnf <<CNF
[ca]
default_ca = test
[test]
database = $PWD/ca_db/index.txt
serial = $PWD/ca_db/serial
new_certs_dir = $PWD/ca_db
default_md = sha256
policy = any
x509_extensions = ext
[any]
commonName = supplied
[ext]
extendedKeyUsage = clientAuth
CNF
openssl ca -batch -config ca_db/ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr \
  -startdate 20200101000000Z -enddate 20200102000000Z -out expired.pem -notext 2>/dev/null
rm -rf expired.csr ca_db ./*.srl
