#!/usr/bin/env bash
# Installs what the benchmarks' brokered baselines need from Debian: redis-server (BullMQ's
# broker, for `npm run bench -- sched`) and nats-server (JetStream KV, for `npm run bench -- api`).
# The benchmarks run the mesh rows without them and say so.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-bench-deps: run as root (apt-get install ${missing[*]})" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian may start the packaged services; the benchmarks run their own on free ports.
  for svc in "${missing[@]}"; do
    (systemctl disable --now "$svc" 2>/dev/null || service "$svc" stop 2>/dev/null || true) >/dev/null
  done
fi
echo "redis-server: $(redis-server --version | head -1)"
echo "nats-server: $(nats-server --version | head -1)"
