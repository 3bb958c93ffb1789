#!/usr/bin/env bash
# Makes a private CA and certificates for docker/compose.yaml (and for a
# first try of TLS anywhere) with the openssl command:
#   docker/tls/ca/ca.crt (+ ca.key)        the CA; give ca.crt to clients
#   docker/tls/server/tls.crt, tls.key      satlab-server's certificate, for
#                                           satlab, localhost, 127.0.0.1 and
#                                           any extra names given as arguments
#   docker/tls/client/NAME.crt, NAME.key    with --client NAME: a client
#                                           certificate for mutual TLS
# Usage: docker/make-certs.sh [--days N] [--client NAME]... [EXTRA_DNS_NAME]...
# Re-running keeps the CA and issues a new server certificate: replacing
# tls.crt/tls.key under a running server rotates it (docs/deploy.md).
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)/tls
days=90
clients=()
names=()
while (($#)); do
  case $1 in
    --days) days=$2; shift 2 ;;
    --client) clients+=("$2"); shift 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
mkdir -p "$dir/ca" "$dir/server" "$dir/client"
umask 077
if [[ ! -f $dir/ca/ca.key ]]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca/ca.key"
  openssl req -x509 -new -key "$dir/ca/ca.key" -subj "/CN=satlab CA" -days 3650 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -out "$dir/ca/ca.crt"
fi
san="DNS:satlab,DNS:localhost,IP:127.0.0.1"
for n in "${names[@]}"; do san+=",DNS:$n"; done
issue() {  # out_prefix subject extensions
  local tmp
  tmp=$(mktemp -d "$dir/.new.XXXXXX")  # same filesystem: mv is a rename
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/key"
  openssl req -new -key "$tmp/key" -subj "/CN=$2" -out "$tmp/csr"
  printf '%s\n' "$3" > "$tmp/ext"
  openssl x509 -req -in "$tmp/csr" -CA "$dir/ca/ca.crt" -CAkey "$dir/ca/ca.key" \
    -CAcreateserial -days "$days" -extfile "$tmp/ext" -out "$tmp/crt" 2>/dev/null
  # Key first, then certificate, each replaced in one rename: a server
  # re-reading them never loads a half-written file (a key that does not
  # match yet is ignored until the certificate follows).
  mv "$tmp/key" "$1.key"
  mv "$tmp/crt" "$1.crt"
  rm -rf "$tmp"
}
issue "$dir/server/tls" satlab "subjectAltName=$san
extendedKeyUsage=serverAuth"
for c in "${clients[@]}"; do
  issue "$dir/client/$c" "$c" "extendedKeyUsage=clientAuth"
done
# The container runs as uid 10001: it must be able to read the key. As root
# hand it over; otherwise make it readable (a development machine).
chmod 0644 "$dir/ca/ca.crt" "$dir/server/tls.crt"
if [[ $(id -u) == 0 ]]; then
  chown 10001:10001 "$dir/server/tls.key"
else
  chmod 0644 "$dir/server/tls.key"
  echo "make-certs: $dir/server/tls.key made readable by everyone on this machine (the container's uid 10001 must read it)" >&2
fi
echo "make-certs: CA $dir/ca/ca.crt; server certificate for $san (valid $days days)"
