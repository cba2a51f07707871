#!/usr/bin/env bash
# Installs what the benchmarks' brokered baselines need from Debian: redis-server (BullMQ's
# broker, for `npm run bench -- sched`). The benchmarks run the mesh rows without it and say so.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  echo "redis-server: $(redis-server --version | head -1)"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-bench-deps: run as root (apt-get install redis-server)" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# Debian starts the packaged service; the benchmark runs its own on a free port.
(systemctl disable --now redis-server 2>/dev/null || service redis-server stop 2>/dev/null || true) >/dev/null
echo "redis-server: $(redis-server --version | head -1)"
