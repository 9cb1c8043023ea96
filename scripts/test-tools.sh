#!/usr/bin/env bash
# Run by `pnpm test` before the tests: installs the command-line tools the deploy tests need
# (deploy/INSTALL-TOOLS.sh: ShellCheck, kubectl with kustomize v5) where it can (root on Debian),
# and otherwise says what is missing; the tests that need a missing tool then fail naming it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  bash deploy/INSTALL-TOOLS.sh || echo "test tools: deploy/INSTALL-TOOLS.sh failed; the deploy tests will name what is missing" >&2
else
  for tool in shellcheck kubectl; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/opt/platform-tools/bin/$tool" ] ||
      echo "test tools: $tool not found and not root on Debian: run deploy/INSTALL-TOOLS.sh as root" >&2
  done
fi
exit 0
