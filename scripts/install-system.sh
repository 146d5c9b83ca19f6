#!/usr/bin/env bash
# Installs the Debian packages the tests and the sandbox need (idempotent).
# etcd + Go toolchain + vendored-library sources for the control-plane build,
# chromium for the channel-page tests, curl for the sandbox's control URL, kubectl (Debian's
# kubernetes-client, the same Kubernetes release as the control plane) for the tests and the
# README's commands, prometheus (a real server for the canary analysis tests and the sandbox), and the
# deb-src entry for `apt-get source kubernetes`.
set -euo pipefail

PKGS=(golang-go etcd-server rsync make openssl dpkg-dev curl prometheus
      golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
      chromium chromium-driver)

# kubectl: Debian's kubernetes-client ships /usr/bin/kubectl. A kubectl that is already on PATH
# (a cloud SDK's package, a binary of its own) is kept as it is: installing kubernetes-client over
# another package's /usr/bin/kubectl fails with a file conflict.
if ! command -v kubectl >/dev/null 2>&1; then
  PKGS+=(kubernetes-client)
fi

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

# Whatever kubectl is on PATH must run: the tests call it, and the README's commands use it.
if ! kubectl version --client >/dev/null 2>&1; then
  echo "kubectl on PATH ($(command -v kubectl || echo none)) does not run: \`kubectl version --client\` failed" >&2
  exit 1
fi
echo "system packages: ok (kubectl: $(command -v kubectl))"
