#!/bin/sh
# The test host's local CA: a fresh API certificate for Pebble on the first boot of each container
# (no key is baked into the image), then Pebble itself, validating HTTP-01 on port 80.
set -eu
dir=/etc/agentkeys-test-ca
if [ ! -s "$dir/cert.pem" ]; then
    mkdir -p "$dir"
    tmp=$(mktemp -d "$dir/.new.XXXXXX")
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=agentkeys test CA" \
        -days 30 -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
        -keyout "$tmp/key.pem" -out "$tmp/req.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$tmp/ext.cnf"
    openssl x509 -req -in "$tmp/req.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
        -days 30 -extfile "$tmp/ext.cnf" -out "$tmp/cert.pem" 2>/dev/null
    printf '{"pebble":{"listenAddress":"127.0.0.1:14000","managementListenAddress":"127.0.0.1:15000","certificate":"%s/cert.pem","privateKey":"%s/key.pem","httpPort":80,"tlsPort":5001,"ocspResponderURL":"","externalAccountBindingRequired":false}}\n' \
        "$dir" "$dir" >"$tmp/pebble.json"
    rm -f "$tmp/ca.key" "$tmp/req.csr" "$tmp/ext.cnf" "$tmp/ca.srl"
    mv "$tmp"/* "$dir/"
    rmdir "$tmp"
fi
exec /usr/bin/pebble -config "$dir/pebble.json" -dnsserver 127.0.0.1:8053
