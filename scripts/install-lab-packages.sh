#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo use, once per machine (apt-get update, then
# whatever is missing): routing daemons as BGP peers, client tools, nftables for the kube-proxy
# stand-in, keepalived as the failover baseline, Python's yaml for deploy/example_values.py and conntrack
# for kube-proxy.
set -euo pipefail
packages=(bird2 frr gobgpd arping ndisc6 nftables iproute2 iputils-ping tcpdump keepalived python3-yaml openssl conntrack)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "not root: cannot install ${missing[*]}; lab tests will skip (they fail under CI=true)" >&2
  fi
fi
