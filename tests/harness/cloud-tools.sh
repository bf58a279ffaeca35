#!/usr/bin/env bash
# The test tools from PyPI, pinned, in their own virtual environment (made once; recreated when
# missing): cfn-lint (AWS's resource schemas), moto's server (a local AWS API on loopback) with
# boto3, the client the moto test drives it with, and sslyze, which judges the TLS a converged
# host serves against Mozilla's configurations. Prints the environment's bin directory.
set -euo pipefail
venv=/var/tmp/agentkeys-hostd-test/cloud-py-v2
if [ ! -x "$venv/bin/cfn-lint" ] || [ ! -x "$venv/bin/moto_server" ] || [ ! -x "$venv/bin/sslyze" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    cfn-lint==1.58.0 'moto[server,cloudformation]==5.2.5' boto3==1.44.8 sslyze==6.3.1 >&2
fi
echo "$venv/bin"
