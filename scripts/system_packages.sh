#!/usr/bin/env bash
# Debian packages the test suite needs: Chromium for browser tests, docker-compose to check the
# compose file offline. Installs only what is missing; needs root (our machines and CI run as root).
set -euo pipefail
need=()
command -v docker-compose >/dev/null || need+=(docker-compose)
[ -x /usr/lib/chromium/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "Missing system packages: ${need[*]} (install them with your package manager)" >&2
  exit 1
fi
echo "Installing ${need[*]} from Debian's packages..." >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
