#!/usr/bin/env bash
# Installs everything Keyward's demo and tests need, from Debian's archive.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in softhsm2 opensc openssl docker-registry skopeo ca-certificates curl python3; do
  have "$pkg" || need+=("$pkg")
done

if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    SUDO=sudo
  else
    SUDO=
  fi
  echo "install-deps: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The distribution registry package enables a system service on install; Keyward's
# scripts and tests start their own instances on loopback ports, so the stock one is
# stopped if it runs (it would hold port 5000).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi

command -v cargo >/dev/null || { echo "install-deps: cargo is missing; install Rust (rustup) first" >&2; exit 1; }
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "install-deps: installing cargo-nextest"
  cargo install --locked cargo-nextest >/dev/null
fi
echo "install-deps: softhsm2 $(softhsm2-util --version), pkcs11-tool, docker-registry ready"
