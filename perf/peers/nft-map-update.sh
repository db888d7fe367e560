#!/usr/bin/env bash
# The Linux kernel peer for control-plane updates: how long nftables takes to
# apply one element change to a kube-proxy-style Service map of N entries
# (kube-proxy's nftables mode keeps Services in such verdict maps and
# rewrites only what changed).
# Runs in a network namespace of its own, created and removed here.
# Usage: perf/peers/nft-map-update.sh [ENTRIES] [CHANGES]    (as root)
set -euo pipefail
n=${1:-100000}
changes=${2:-200}
ns=sluice-nft-$$
tmp=$(mktemp -d)
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
ip netns add "$ns"
{
  echo "table ip kp {"
  echo "  map svc { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; elements = {"
  for ((i = 0; i < n; i++)); do
    printf '    10.%d.%d.%d . tcp . 80 : 10.244.%d.%d . 8080,\n' $((96 + i / 65536)) $((i / 256 % 256)) $((i % 256)) $((i / 256 % 256)) $((i % 256))
  done
  echo "  } }"
  echo "  chain prerouting { type nat hook prerouting priority dstnat; dnat ip to ip daddr . meta l4proto . th dport map @svc; }"
  echo "}"
} > "$tmp/setup.nft"
start=$(date +%s.%N)
ip netns exec "$ns" nft -f "$tmp/setup.nft"
end=$(date +%s.%N)
echo "load $n elements: $(echo "$end - $start" | bc) s"
# One element replaced per change, each its own nft transaction (as a sync
# with one changed endpoint would be), timed end to end.
: > "$tmp/times"
for ((c = 0; c < changes; c++)); do
  i=$((c * 37 % n))
  key=$(printf '10.%d.%d.%d . tcp . 80' $((96 + i / 65536)) $((i / 256 % 256)) $((i % 256)))
  printf 'delete element ip kp svc { %s }\nadd element ip kp svc { %s : 10.245.%d.%d . 8080 }\n' "$key" "$key" $((c / 256 % 256)) $((c % 256)) > "$tmp/change.nft"
  s=$(date +%s%N)
  ip netns exec "$ns" nft -f "$tmp/change.nft"
  e=$(date +%s%N)
  echo $(((e - s) / 1000)) >> "$tmp/times"
done
sort -n "$tmp/times" | awk -v n="$changes" '{a[NR]=$1} END {printf "one-element change over %d runs: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", n, a[int(n*0.5)]/1000, a[int(n*0.99)]/1000, a[n]/1000}'
