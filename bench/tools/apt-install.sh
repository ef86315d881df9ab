#!/usr/bin/env bash
# apt-install.sh PKG=UPSTREAM...: installs each Debian package at the newest available
# version of that upstream release (e.g. nginx=1.22.1 -> 1.22.1-9+deb12u10), without
# starting its system service (policy-rc.d), and stops/disables anything it started anyway.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "apt-install.sh: needs root (apt-get); install $* yourself or run make bench-tools as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
specs=()
for arg in "$@"; do
  pkg=${arg%%=*}
  upstream=${arg#*=}
  version=$(apt-cache madison "$pkg" 2>/dev/null | awk -v u="$upstream" '$3 ~ "^([0-9]+:)?"u"([-+~]|$)" {print $3; exit}')
  if [ -z "$version" ]; then
    apt-get update -qq
    version=$(apt-cache madison "$pkg" 2>/dev/null | awk -v u="$upstream" '$3 ~ "^([0-9]+:)?"u"([-+~]|$)" {print $3; exit}')
  fi
  if [ -z "$version" ]; then
    echo "apt-install.sh: no $pkg $upstream in the apt sources (apt-cache madison $pkg); update the pin in make/bench.mk" >&2
    exit 1
  fi
  specs+=("$pkg=$version")
done

# Keep invoke-rc.d from starting nginx/haproxy on install; remove our policy afterwards.
policy=/usr/sbin/policy-rc.d
ours=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && ours=1
fi
trap '[ -n "$ours" ] && rm -f "$policy"' EXIT
apt-get install -y -qq --no-install-recommends "${specs[@]}"

# Belt and braces: no service left running or enabled.
for svc in nginx haproxy; do
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  elif [ -x "/etc/init.d/$svc" ]; then
    "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
  fi
done
h2load --version
nginx -v
haproxy -v
