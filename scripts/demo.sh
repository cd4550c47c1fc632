#!/usr/bin/env bash
# Keyward's main job in one command: a dev instance with its own SoftHSM token, a key
# generated inside it, a file signed through the daemon, and the signature checked
# with openssl against the key's public half and the Keyward CA.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --release --locked -p keyward-daemon -p keyward-client
BIN=target/release
DIR=${KEYWARD_DEMO_DIR:-$PWD/.demo}
rm -rf "$DIR"
mkdir -p "$DIR"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Starting keywardd dev in $DIR (own SoftHSM token, CA inside the HSM)"
"$BIN/keywardd" dev --dir "$DIR/instance" --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
  >"$DIR/keywardd.out" 2>"$DIR/keywardd.log" &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  [[ -f "$DIR/instance/client.toml" ]] && break
  kill -0 $PID 2>/dev/null || { cat "$DIR/keywardd.log"; exit 1; }
  sleep 0.1
done
[[ -f "$DIR/instance/client.toml" ]] || { echo "keywardd did not become ready" >&2; exit 1; }
cat "$DIR/keywardd.out"
export KEYWARD_CONFIG="$DIR/instance/client.toml"

step "Creating key release-demo (ECDSA P-256, generated inside SoftHSM)"
"$BIN/keyward" key create release-demo --algorithm ecdsa-p256

step "Signing a file through the daemon (the private key never leaves the HSM)"
printf 'keyward demo artifact %s\n' "$(date -u +%FT%TZ)" >"$DIR/artifact.txt"
"$BIN/keyward" sign-blob --key release-demo --output-signature "$DIR/artifact.sig" "$DIR/artifact.txt"

step "Verifying with openssl"
"$BIN/keyward" key public release-demo >"$DIR/release-demo.pem"
"$BIN/keyward" key public release-demo --certificate >"$DIR/release-demo.crt"
base64 -d "$DIR/artifact.sig" >"$DIR/artifact.sig.der"
openssl dgst -sha256 -verify "$DIR/release-demo.pem" -signature "$DIR/artifact.sig.der" "$DIR/artifact.txt"
openssl verify -CAfile "$DIR/instance/ca.pem" "$DIR/release-demo.crt"

step "Rotating the key: v1 retires (still verifies), v2 signs"
"$BIN/keyward" key rotate release-demo

step "The token holds the keys as sensitive, never-extractable objects"
SOFTHSM2_CONF="$DIR/instance/softhsm2.conf" pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so \
  --token-label keyward-dev --login --pin "$(cat "$DIR/instance/pin")" --list-objects --type privkey 2>/dev/null \
  | grep -E 'Private Key|label|Access' || true

step "Done"
echo "keywardd signed $DIR/artifact.txt with key release-demo; openssl verified the signature and the certificate."
