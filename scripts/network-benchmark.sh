#!/usr/bin/env bash
# Issue 16's network figures, on this host (root: a network namespace and a veth pair of its
# own, Kamailio on the host end, Debian's dnsmasq inside as the resolver; all removed after):
#   link up → 200 OK to REGISTER with the edge proxy found by SRV (p50, p99, max over N),
#   DNS failure (NXDOMAIN) → first retry.
# Usage: sudo scripts/network-benchmark.sh [ITERATIONS]   (default 10; debug build: BUILD=debug)
set -euo pipefail
cd "$(dirname "$0")/.."
iterations=${1:-10}
configuration=${BUILD:-release}
[ "$(id -u)" -eq 0 ] || { echo "network-benchmark: needs root (ip netns)" >&2; exit 2; }
for tool in /usr/sbin/ip /usr/sbin/kamailio /usr/sbin/dnsmasq; do
    [ -x "$tool" ] || { echo "network-benchmark: $tool missing (scripts/install-deps.sh)" >&2; exit 2; }
done
swift build -c "$configuration" --product sip-benchmark >&2
".build/$configuration/sip-benchmark" link --dns --iterations "$iterations"
