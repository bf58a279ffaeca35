#!/bin/sh
# Test hosts only: make Pebble's API certificate and configuration in DIR (default
# /etc/agentkeys-test-ca) unless they exist. Writes ca.pem, cert.pem, key.pem and pebble.json;
# the CA's own key is thrown away. pebble.json names the files as the test host sees them, under
# /etc/agentkeys-test-ca (DIR is that directory seen from outside). Run inside the test image at
# first boot, or on the machine for a throwaway host (tests/demo.sh).
set -eu
dir=${1:-/etc/agentkeys-test-ca}
[ -s "$dir/cert.pem" ] && exit 0
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.new.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=agentkeys test CA" \
    -days 30 -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$tmp/key.pem" -out "$tmp/req.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$tmp/ext.cnf"
openssl x509 -req -in "$tmp/req.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
    -days 30 -extfile "$tmp/ext.cnf" -out "$tmp/cert.pem" 2>/dev/null
printf '{"pebble":{"listenAddress":"127.0.0.1:14000","managementListenAddress":"127.0.0.1:15000","certificate":"/etc/agentkeys-test-ca/cert.pem","privateKey":"/etc/agentkeys-test-ca/key.pem","httpPort":80,"tlsPort":5001,"ocspResponderURL":"","externalAccountBindingRequired":false}}\n' \
    >"$tmp/pebble.json"
for f in ca.pem key.pem pebble.json cert.pem; do mv "$tmp/$f" "$dir/$f"; done
