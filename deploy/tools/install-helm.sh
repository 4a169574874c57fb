#!/usr/bin/env bash
# Build the Helm CLI from source through the Go module proxy into healer's cache and print its path.
#
#   deploy/tools/install-helm.sh                 # default version, prints .../helm
#   HEALER_HELM_VERSION=v3.22.0 deploy/tools/install-helm.sh
#
# Used by tests/integration/deploy/conftest.py (chart rendering in `make test`) and by hand.
# `go install helm.sh/helm/v3/cmd/helm@VERSION` fetches the module through GOPROXY and checks it
# against the Go checksum database, so the binary is built from the published, verified source.
# The binary lands in ${XDG_CACHE_HOME:-~/.cache}/healer/bin/helm-<version>/helm (never in the
# repo); an existing binary is reused. The first build takes minutes (see deploy/README.md).
set -euo pipefail

main() {
  local version="${HEALER_HELM_VERSION:-v3.22.0}"
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/healer/bin/helm-${version}"
  if [ -x "$dir/helm" ]; then
    echo "$dir/helm"
    return 0
  fi
  if ! command -v go >/dev/null 2>&1; then
    echo "install-helm.sh: the Go toolchain (go) is not on PATH" >&2
    return 3
  fi
  mkdir -p "$dir"
  exec 9>"$dir/.build.lock"
  flock 9
  if [ -x "$dir/helm" ]; then   # another process built it while we waited
    echo "$dir/helm"
    return 0
  fi
  local started=$SECONDS
  # build in a scratch dir so no go.mod around us interferes; install atomically
  HELM_BUILD_TMP="$(mktemp -d)"
  trap 'rm -rf "$HELM_BUILD_TMP"' EXIT
  local tmp="$HELM_BUILD_TMP"
  (
    cd "$tmp"
    GOBIN="$tmp/bin" CGO_ENABLED=0 go install \
      -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${version}" \
      "helm.sh/helm/v3/cmd/helm@${version}"
  ) >&2
  mv "$tmp/bin/helm" "$dir/helm"
  echo "install-helm.sh: built helm ${version} in $((SECONDS - started))s" >&2
  echo "$dir/helm"
}

main "$@"
