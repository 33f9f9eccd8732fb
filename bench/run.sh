#!/usr/bin/env bash
# make bench: measures, then rewrites bench/RESULTS.md from this run only.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/bench/RESULTS.md"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
{
  echo "# Benchmark results"
  echo
  echo "Written by \`make bench\` on $(date -u +%Y-%m-%dT%H:%MZ); every number below comes"
  echo "from that one run on this machine: $(nproc) cores, ${cpu:-unknown CPU}."
  echo
  echo "## Crypto: the wolfSSL ztr links vs Debian's binary package"
  echo
  echo "AES-GCM seals 16 KiB records (the TLS record size of the data plane);"
  echo "ECDSA/ECDHE P-256 is the per-handshake cost. Source: \`bench/crypto_speed.c\`,"
  echo "built once against each library."
  echo
  bash "$root/bench/crypto.sh"
  echo
  echo "## Relay throughput"
  echo
  echo "ztr's data plane (a tunneler's port forward, one mTLS session, a connector) next to"
  echo "an stunnel pair and an HAProxy pair (TLS 1.3 mutual TLS on P-256) and direct TCP, on the same servers in"
  echo "the same run. Targets: throughput ≥ 1.2× stunnel, new streams/s ≥ 10× stunnel's new"
  echo "connections/s, p99 latency ≤ 2× stunnel's, ≤ 16 KiB per idle stream."
  echo
  bash "$root/bench/dataplane.sh"
  echo
  echo "## Workers: one loop per agent against two"
  echo
  bash "$root/bench/workers.sh"
  echo
  echo "## Controller scale"
  echo
  bash "$root/bench/controller.sh"
  echo
  echo "## Controller scale on PostgreSQL"
  echo
  CTL_BENCH_STORE=postgres bash "$root/bench/controller.sh"
  echo
  echo "## One controller, 50 000 sessions or the descriptor limit (SQLite)"
  echo
  CTL_BENCH_SESSIONS=50000 bash "$root/bench/controller.sh"
  echo
  echo "## One controller, 50 000 sessions or the descriptor limit (PostgreSQL)"
  echo
  CTL_BENCH_SESSIONS=50000 CTL_BENCH_STORE=postgres bash "$root/bench/controller.sh"
  echo
  echo "## Controller cluster: three controllers on one PostgreSQL database"
  echo
  CTL_CLUSTER_SESSIONS=50000 bash "$root/bench/controller_cluster.sh"
  echo
  echo "## Revocation latency: 1 000 denies"
  echo
  bash "$root/bench/revocation.sh"
  echo
  echo "## Web console at 10 000 nodes"
  echo
  bash "$root/bench/console.sh"
  echo
  echo "## Agent footprint"
  echo
  echo "A connector and a tunneler (release build) enrolled and ONLINE against a local"
  echo "controller with 10 s heartbeats; RSS and CPU over an idle window. Target:"
  echo "≤ 4 MiB RSS, ~0 % CPU. Source: \`bench/agents.sh\`."
  echo
  bash "$root/bench/agents.sh"
} > "$out.tmp"
mv "$out.tmp" "$out"
cat "$out"
