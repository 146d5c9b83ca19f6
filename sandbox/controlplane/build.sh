#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kube-scheduler v1.20.2 from Debian's
# `kubernetes` source package, once, and caches the binaries outside the checkout.
#
# The vendored reflect2 v1.0.1 / json-iterator crash the apiserver under Go >= 1.18
# (`fatal error: fault` in mapiterinit) whenever a client asks for pretty JSON or YAML, so they
# are replaced by Debian's fixed copies before building. The cache key includes the Debian
# version and this patch's revision.
set -euo pipefail

PATCH_REV=1
DEB_VERSION=$(apt-cache showsrc kubernetes 2>/dev/null | awk '/^Version:/{print $2; exit}')
if [ -z "$DEB_VERSION" ]; then
  echo "error: no source package 'kubernetes' known to apt; run scripts/install-system.sh (adds deb-src)" >&2
  exit 1
fi
CACHE_ROOT=${RELEASE_BOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/release-bot}
KEY="kubernetes-${DEB_VERSION//[^A-Za-z0-9.]/_}-p${PATCH_REV}"
OUT="$CACHE_ROOT/$KEY"
BINS=(kube-apiserver kube-controller-manager kube-scheduler)

have_all() { for b in "${BINS[@]}"; do [ -x "$OUT/bin/$b" ] || return 1; done; }
if have_all; then echo "$OUT/bin"; exit 0; fi

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.build.lock"
flock 9
if have_all; then echo "$OUT/bin"; exit 0; fi

WORK=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
echo "building Kubernetes control plane ($DEB_VERSION) in $WORK; takes about 4 minutes" >&2
apt-get source -qq kubernetes >/dev/null 2>&1 || { echo "error: apt-get source kubernetes failed" >&2; exit 1; }
SRC=$(find "$WORK" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -n 1)
cd "$SRC"

patch_vendor() {  # $1 vendor path, $2 Debian gocode path, $3 module, $4 version
  local dst="vendor/$1" src="/usr/share/gocode/src/$2"
  [ -d "$src" ] || { echo "error: $src missing; install golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev" >&2; exit 1; }
  find "$dst" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' -delete
  find "$src" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' -exec cp {} "$dst/" \;
  sed -i -E "s|^# $3 v[^ ]+|# $3 $4|" vendor/modules.txt
}
patch_vendor github.com/modern-go/reflect2 github.com/modern-go/reflect2 github.com/modern-go/reflect2 v1.0.2
patch_vendor github.com/json-iterator/go github.com/json-iterator/go github.com/json-iterator/go v1.1.12

export GOFLAGS="" GO111MODULE=off GOCACHE="$WORK/gocache"
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" >"$WORK/make.log" 2>&1 || {
  tail -n 40 "$WORK/make.log" >&2; echo "error: control-plane build failed" >&2; exit 1; }

mkdir -p "$OUT.tmp/bin"
for b in "${BINS[@]}"; do cp "_output/bin/$b" "$OUT.tmp/bin/"; done
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
echo "$OUT/bin"
