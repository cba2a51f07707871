#!/usr/bin/env bash
# Installs what the tests need from Debian: chromium (the dashboard's browser tests, driven by
# playwright-core; browser downloads are impossible here) and prometheus (its promtool checks the
# /metrics exposition). Does nothing when both are present; `npm test` runs it first.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-test-deps: ${missing[*]} missing; run as root (apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "install-test-deps: installing ${missing[*]} from Debian"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged prometheus service; the tests only need its promtool.
(systemctl disable --now prometheus 2>/dev/null || service prometheus stop 2>/dev/null || true) >/dev/null
command -v chromium >/dev/null && command -v promtool >/dev/null
