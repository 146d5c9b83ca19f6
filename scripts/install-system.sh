#!/usr/bin/env bash
# Installs the Debian packages the tests and the sandbox need (idempotent).
# etcd + Go toolchain + vendored-library sources for the control-plane build,
# chromium for the channel-page tests, and the deb-src entry for `apt-get source kubernetes`.
set -euo pipefail

PKGS=(golang-go etcd-server rsync make openssl dpkg-dev
      golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
      chromium chromium-driver)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

src=/etc/apt/sources.list.d/debian.sources
need_src=0
if [ -f "$src" ] && ! grep -q '^Types: deb deb-src' "$src"; then
  $SUDO sed -i 's/^Types: deb$/Types: deb deb-src/' "$src"
  need_src=1
fi

if [ "${#missing[@]}" -gt 0 ] || [ "$need_src" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  if [ "${#missing[@]}" -gt 0 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
echo "system packages: ok"
