#!/usr/bin/env bash
# Installs everything Keyward's demo and tests need, from Debian's archive.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in softhsm2 opensc openssl docker-registry skopeo apache2-utils ca-certificates curl python3 python3-yaml opencryptoki; do
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

# cosign: Debian 12 has none; Debian 13's package runs here. It is fetched with an apt
# configuration of the project's own (own sources list, lists and cache), so the
# system's apt setup is left as it is, and unpacked into .tools/.
TOOLS="$(cd "$(dirname "$0")/.." && pwd)/.tools"
if [[ ! -x "$TOOLS/bin/cosign" ]]; then
  echo "install-deps: fetching cosign from Debian trixie"
  mirror=$(grep -hoE '^URIs: *http[^ ]*/debian$|^deb +http[^ ]*/debian ' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | head -n1 | sed -E 's/^URIs: *//; s/^deb +//; s/ +$//' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  apt_dir="$TOOLS/apt"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$TOOLS/bin" "$TOOLS/cosign-root"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$apt_dir/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
  apt-get "${apt_opts[@]}" update -qq
  (cd "$apt_dir" && rm -f cosign_*.deb && apt-get "${apt_opts[@]}" download cosign -qq)
  dpkg-deb -x "$apt_dir"/cosign_*.deb "$TOOLS/cosign-root"
  ln -sf "$TOOLS/cosign-root/usr/bin/cosign" "$TOOLS/bin/cosign"
fi
"$TOOLS/bin/cosign" version >/dev/null

# pyotp: an independent TOTP implementation the tests check Keyward's codes against.
if ! python3 -c "import pyotp" 2>/dev/null; then
  echo "install-deps: installing pyotp"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore pyotp
fi

# jsonschema: the tests check what the CLI prints against client/schemas/cli.json.
if ! python3 -c "import jsonschema" 2>/dev/null; then
  echo "install-deps: installing jsonschema"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore jsonschema
fi

command -v cargo >/dev/null || { echo "install-deps: cargo is missing; install Rust (rustup) first" >&2; exit 1; }
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "install-deps: installing cargo-nextest"
  cargo install --locked cargo-nextest >/dev/null
fi
echo "install-deps: softhsm2 $(softhsm2-util --version), pkcs11-tool, docker-registry, skopeo, cosign ready"
