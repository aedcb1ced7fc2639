#!/usr/bin/env bash
# Installs what podnet needs on a Debian 12 machine that has Node: the Debian packages that are
# missing, and the npm dependencies when node_modules is missing or older than package-lock.json.
# Idempotent: on a machine that has everything it changes nothing and takes about a second.
# `scripts/setup.sh --check` only reports what is missing (exit 1 if anything is).
set -euo pipefail
cd "$(dirname "$0")/.."

# What each package is for:
#   iproute2 nftables iptables conntrack: the kernel tools tests inspect state with (and iptables/conntrack
#     for the service proxy's comparisons); iputils-ping util-linux (nsenter) procps: the lab and tests;
#   etcd-server etcd-client: the datastore;
#   podman runc conmon containernetworking-plugins busybox-static: the real runtime and the reference plugins;
#   bind9-dnsutils (dig) dnsperf dnsmasq-base: cluster DNS, its tests and its benchmark baseline;
#   iperf3 wget curl python3: clients inside lab pods (throughput, HTTP, UDP);
#   ethtool: bench:net turns VXLAN tx checksum offload off for its kubernetes#88986 comparison;
#   chromium graphviz: screenshots and graphs of the lab; openssl: certificates for tests;
#   ca-certificates time git: npm over TLS, the benchmarks' timing, the checkout itself;
#   gcc libc6-dev: npm run build compiles the CNI forwarder (src/plugin/forwarder.c, static).
PACKAGES=(
  iproute2 nftables iptables conntrack iputils-ping util-linux procps
  etcd-server etcd-client
  podman runc conmon containernetworking-plugins busybox-static
  bind9-dnsutils dnsperf dnsmasq-base
  iperf3 wget curl python3 ethtool
  chromium graphviz openssl
  ca-certificates time git
  gcc libc6-dev
  # arping: gratuitous ARP when a node takes a LoadBalancer IP over (src/kernel/lb-announce.ts)
  iputils-arping
)

check_only=false
[[ "${1:-}" == "--check" ]] && check_only=true

# Node 20.16 or newer and npm come with the machine (Debian 12's own nodejs is 18, too old).
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 16) ? 0 : 1)' 2>/dev/null; then
  echo "podnet needs Node 20.16 or newer and npm on PATH; found: $(node --version 2>/dev/null || echo none)" >&2
  exit 1
fi

missing=()
for package in "${PACKAGES[@]}"; do
  # db:Status-Abbrev is "ii " for an installed package; anything else (or no record) means missing.
  if [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null)" != "ii " ]]; then missing+=("$package"); fi
done

# npm ci writes node_modules/.package-lock.json; when package-lock.json is newer, the tree is stale.
npm_stale=false
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then npm_stale=true; fi

if $check_only; then
  status=0
  if ((${#missing[@]})); then echo "missing Debian packages: ${missing[*]}"; status=1; fi
  if $npm_stale; then echo "node_modules is missing or older than package-lock.json (npm ci)"; status=1; fi
  ((status == 0)) && echo "setup: nothing missing"
  exit $status
fi

if ((${#missing[@]})); then
  as_root=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "installing ${missing[*]} needs root (or sudo)" >&2; exit 1; }
    as_root=(sudo)
  fi
  echo "setup: installing ${missing[*]}"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if $npm_stale; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
fi

# npm 11 skips install scripts it has not been told to trust (NOTES.md); koffi ships prebuilt
# binaries and needs none, but check that the native addon really loads rather than fail later.
if ! node -e 'require("koffi")' 2>/dev/null; then
  echo "setup: the koffi native addon does not load (node $(node --version)); see npm's install-scripts warnings above" >&2
  exit 1
fi
