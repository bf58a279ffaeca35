#!/bin/sh
# The test host's local CA: Pebble's API certificate on the first boot of each host (no key is
# baked into an image), then Pebble itself, validating HTTP-01 on port 80.
set -eu
/usr/local/lib/agentkeys-test/make-test-ca.sh /etc/agentkeys-test-ca
exec /usr/bin/pebble -config /etc/agentkeys-test-ca/pebble.json -dnsserver 127.0.0.1:8053
