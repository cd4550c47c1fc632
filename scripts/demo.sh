#!/usr/bin/env bash
# Keyward's main job in one command: a dev instance with its own SoftHSM token, a key
# generated inside it, a file signed and checked with openssl, and an image pushed to a
# local registry, signed and attested through the daemon, and verified with cosign.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --release --locked -p keyward-daemon -p keyward-client
BIN=target/release
DIR=${KEYWARD_DEMO_DIR:-$PWD/.demo}
rm -rf "$DIR"
mkdir -p "$DIR"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Installing keyward with its man pages and completions into $DIR/prefix"
PREFIX="$DIR/prefix" KEYWARD_BIN=$BIN scripts/install.sh
test -s "$DIR/prefix/share/man/man1/keyward-sign.1"

step "Starting two local OCI registries (docker-registry on 127.0.0.1): images, and a second that only receives revocation lists"
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true' EXIT
start_registry() { # NAME; sets ADDR to its host:port
  local port addr
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  addr="127.0.0.1:$port"
  cat >"$DIR/$1.yml" <<YAML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $DIR/$1}}
http: {addr: $addr}
YAML
  docker-registry serve "$DIR/$1.yml" >"$DIR/$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do curl -sf "http://$addr/v2/" >/dev/null && break; sleep 0.1; done
  ADDR=$addr
}
start_registry registry; REG=$ADDR
start_registry registry2; REG2=$ADDR
echo "  $REG (images and revocation lists), $REG2 (revocation lists)"

step "Starting keywardd dev in $DIR (own SoftHSM token, CA inside the HSM)"
"$BIN/keywardd" dev --dir "$DIR/instance" --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
  --publish-revocations "$REG/org/keyward-revocations" --publish-revocations "$REG2/org/keyward-revocations" \
  >"$DIR/keywardd.out" 2>"$DIR/keywardd.log" &
PID=$!
PIDS+=($PID)
for _ in $(seq 1 300); do
  [[ -f "$DIR/instance/client.toml" ]] && break
  kill -0 $PID 2>/dev/null || { cat "$DIR/keywardd.log"; exit 1; }
  sleep 0.1
done
[[ -f "$DIR/instance/client.toml" ]] || { echo "keywardd did not become ready" >&2; exit 1; }
cat "$DIR/keywardd.out"
export KEYWARD_CONFIG="$DIR/instance/client.toml"

step "Creating two keys inside SoftHSM (ECDSA P-256): release-demo signs images, release-files signs files"
"$BIN/keyward" key create release-demo --algorithm ecdsa-p256 --purpose image
"$BIN/keyward" key create release-files --algorithm ecdsa-p256 --purpose blob

step "Signing a file through the daemon (the private key never leaves the HSM)"
printf 'keyward demo artifact %s\n' "$(date -u +%FT%TZ)" >"$DIR/artifact.txt"
"$BIN/keyward" sign-blob --key release-files --output-signature "$DIR/artifact.sig" "$DIR/artifact.txt"
echo "  an image key refuses files, so no one can sign a forged image payload with it:"
"$BIN/keyward" sign-blob --key release-demo "$DIR/artifact.txt" 2>&1 | sed 's/^/  /' || true

step "Verifying with openssl"
"$BIN/keyward" key public release-files >"$DIR/release-files.pem"
"$BIN/keyward" key public release-files --certificate >"$DIR/release-files.crt"
base64 -d "$DIR/artifact.sig" >"$DIR/artifact.sig.der"
openssl dgst -sha256 -verify "$DIR/release-files.pem" -signature "$DIR/artifact.sig.der" "$DIR/artifact.txt"
openssl verify -CAfile "$DIR/instance/ca.pem" "$DIR/release-files.crt"
"$BIN/keyward" key public release-demo >"$DIR/release-demo.pem"

step "Pushing an image to the local registry with skopeo"
# A small image as an OCI layout, built here without a Docker engine.
L="$DIR/layout"; mkdir -p "$L/blobs/sha256"
echo '{"imageLayoutVersion":"1.0.0"}' >"$L/oci-layout"
blob() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" "$L/blobs/sha256/$d"; echo "$d"; }
printf 'hello from keyward %s\n' "$(date -u +%FT%TZ)" >"$DIR/hello.txt"
tar -C "$DIR" -cf "$DIR/layer.tar" hello.txt
LD=$(blob "$DIR/layer.tar"); LS=$(stat -c%s "$DIR/layer.tar")
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"config":{"Cmd":["cat","/hello.txt"]}}' "$LD" >"$DIR/config.json"
CD=$(blob "$DIR/config.json"); CS=$(stat -c%s "$DIR/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' "$CD" "$CS" "$LD" "$LS" >"$DIR/manifest.json"
MD=$(blob "$DIR/manifest.json"); MS=$(stat -c%s "$DIR/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' "$MD" "$MS" >"$L/index.json"
skopeo copy --quiet --dest-tls-verify=false "oci:$L:v1" "docker://$REG/demo/hello:v1"
echo "pushed $REG/demo/hello:v1"

step "Signing the image with the HSM-held key (cosign simple signing, stored as sha256-<digest>.sig)"
"$BIN/keyward" sign --key release-demo -a "build=demo" "$REG/demo/hello:v1"

step "cosign verifies the signature with the key's public half"
COSIGN=.tools/bin/cosign
DOCKER_CONFIG="$DIR/no-docker" "$COSIGN" verify --key "$DIR/release-demo.pem" --insecure-ignore-tlog=true \
  --allow-http-registry "$REG/demo/hello:v1" 2>&1 | sed 's/^/  /'

step "cosign trusts the key by name instead: the Keyward CA, the key's identity, its time-stamps"
"$BIN/keyward" -o json trust export "$DIR/trust" --key release-demo >"$DIR/release-demo.json"
"$BIN/keyward" trust export "$DIR/trust" --key release-demo | sed 's/^/  /'
IDENTITY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["certificate_identity"])' "$DIR/release-demo.json")
ISSUER=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["certificate_oidc_issuer"])' "$DIR/release-demo.json")
by_identity() {
  DOCKER_CONFIG="$DIR/no-docker" "$COSIGN" verify --ca-roots "$DIR/trust/ca.pem" \
    --certificate-identity "$IDENTITY" --certificate-oidc-issuer "$ISSUER" \
    --timestamp-certificate-chain "$DIR/trust/tsa-chain.pem" --insecure-ignore-sct --insecure-ignore-tlog \
    --allow-http-registry "$REG/demo/hello:v1" >/dev/null 2>"$DIR/identity-verify.log" \
    || { cat "$DIR/identity-verify.log"; exit 1; }
}
by_identity && echo "  OK (v1's signature)"

step "Attesting build provenance (in-toto statement in a DSSE envelope) and verifying it with cosign"
echo '{"builder":{"id":"https://ci.example.com/keyward-demo"},"buildType":"https://example.com/demo"}' >"$DIR/provenance.json"
"$BIN/keyward" attest --key release-demo --type slsaprovenance --predicate "$DIR/provenance.json" "$REG/demo/hello:v1"
DOCKER_CONFIG="$DIR/no-docker" "$COSIGN" verify-attestation --key "$DIR/release-demo.pem" --insecure-ignore-tlog=true \
  --allow-http-registry --type slsaprovenance "$REG/demo/hello:v1" >/dev/null 2>"$DIR/attest-verify.log" \
  && echo "  cosign verify-attestation: OK" || { cat "$DIR/attest-verify.log"; exit 1; }

step "The signature ledger: what release-demo signed"
"$BIN/keyward" signatures list --key release-demo

step "Rotating the key: v2 signs; v1 verifies, never signs, and what it signed is re-signed with v2"
"$BIN/keyward" key rotate release-demo --wait
"$BIN/keyward" key history release-demo --pem-dir "$DIR/trusted" | grep -E '^v[0-9]'
"$BIN/keyward" verify --key release-demo "$REG/demo/hello:v1"

step "cosign verifies the image with the new version's public key alone"
"$BIN/keyward" key public release-demo >"$DIR/release-demo-v2.pem"
DOCKER_CONFIG="$DIR/no-docker" "$COSIGN" verify --key "$DIR/release-demo-v2.pem" --insecure-ignore-tlog=true \
  --allow-http-registry "$REG/demo/hello:v1" 2>/dev/null \
  | python3 -c 'import json,sys; [print("  signed by", p["optional"]["dev.keyward/key"], "v" + p["optional"]["dev.keyward/version"], "for", p["critical"]["identity"]["docker-reference"]) for p in json.load(sys.stdin)]'

step "The same cosign command, unchanged by the rotation"
by_identity && echo "  OK: nothing in the verifier changed when the key rotated"
"$BIN/keyward" -o json revocations show >"$DIR/revocations.json"
echo "  keyward verify, offline, by the same CA, identity and TSA chain, against the revocation list:"
"$BIN/keyward" verify "$REG/demo/hello:v1" --identity "$IDENTITY" --ca "$DIR/trust/ca.pem" \
  --tsa-chain "$DIR/trust/tsa-chain.pem" --revocations "$DIR/revocations.json" \
  --state "$DIR/revocation-state.json" | sed 's/^/  /'

step "Revoking: a key rotated without re-signing, its old version revoked after a leak"
"$BIN/keyward" key create release-legacy --purpose image >/dev/null
"$BIN/keyward" key policy set release-legacy --resign-on-rotate false >/dev/null
"$BIN/keyward" sign --key release-legacy "$REG/demo/hello:v1" >/dev/null
"$BIN/keyward" key public release-legacy --certificate >"$DIR/release-legacy-v1.crt"
"$BIN/keyward" key rotate release-legacy >/dev/null
"$BIN/keyward" principal add irene --role revoker --out "$DIR/irene/client.toml" >/dev/null
KEYWARD_CONFIG="$DIR/irene/client.toml" "$BIN/keyward" key revoke release-legacy --version 1 \
  --reason key-compromise --compromised-since "$(date -u -d '-1 hour' +%FT%TZ)"
"$BIN/keyward" revocations show
for _ in $(seq 1 100); do
  "$BIN/keyward" revocations status | grep -q behind || break
  sleep 0.1
done
echo "  the signed list reached both registries (OCI artifact, tags seq-N and latest):"
"$BIN/keyward" revocations status | sed 's/^/  /'
curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://$REG2/v2/org/keyward-revocations/manifests/latest" \
  | python3 -c 'import json,sys; m=json.load(sys.stdin); print("  " + m["artifactType"] + ":", ", ".join(l["mediaType"] for l in m["layers"]))'
echo "  keyward verify refuses the image signed by the revoked version:"
"$BIN/keyward" verify --key release-legacy "$REG/demo/hello:v1" 2>&1 | sed 's/^/  /' && exit 1 || true
echo "  verified offline (no daemon: the CA-signed key history and the list pulled from the second registry):"
"$BIN/keyward" -o json key history release-legacy >"$DIR/release-legacy-history.json"
"$BIN/keyward" verify --key release-legacy "$REG/demo/hello:v1" --offline --ca "$DIR/instance/ca.pem" \
  --key-history "$DIR/release-legacy-history.json" --revocations "$REG2/org/keyward-revocations" \
  --state "$DIR/revocations-seen.json" 2>&1 | sed 's/^/  /' && exit 1 || true
echo "  openssl fetches the CRL named in v1's certificate and rejects it:"
openssl verify -crl_check -crl_download -CAfile "$DIR/instance/ca.pem" "$DIR/release-legacy-v1.crt" 2>&1 | sed 's/^/  /' && exit 1 || true

step "A signer who is not an admin: roles decide what each principal may do"
"$BIN/keyward" principal add ci-bot --role signer --out "$DIR/ci-bot/client.toml"
KEYWARD_CONFIG="$DIR/ci-bot/client.toml" "$BIN/keyward" sign-blob --key release-files "$DIR/artifact.txt" >/dev/null && echo "  ci-bot signed a blob"
KEYWARD_CONFIG="$DIR/ci-bot/client.toml" "$BIN/keyward" key create rogue 2>&1 | sed 's/^/  /' || true

step "MFA: ci-bot enrols a TOTP second factor (any authenticator app; here PyPI's pyotp plays the app)"
KEYWARD_CONFIG="$DIR/ci-bot/client.toml" "$BIN/keyward" -o json mfa enroll >"$DIR/ci-bot/enrol.json"
SECRET=$(python3 -c 'import json,sys,urllib.parse as u; q=u.urlparse(json.load(open(sys.argv[1]))["otpauth_uri"]).query; print(u.parse_qs(q)["secret"][0])' "$DIR/ci-bot/enrol.json")
echo "  otpauth URI issued; the secret is stored sealed by an AES key inside the HSM"
KEYWARD_CONFIG="$DIR/ci-bot/client.toml" "$BIN/keyward" mfa confirm "$(python3 -c 'import pyotp,sys; print(pyotp.TOTP(sys.argv[1]).now())' "$SECRET")" | sed 's/^/  /'

step "Two-person rule: release-files now needs one approval; ci-bot asks, an approver approves"
"$BIN/keyward" principal add rita --role approver --out "$DIR/rita/client.toml" >/dev/null
"$BIN/keyward" key policy set release-files --approvals 1 --approvers rita
KEYWARD_CONFIG="$DIR/ci-bot/client.toml" "$BIN/keyward" sign-blob --wait --key release-files --output-signature "$DIR/approved.sig" "$DIR/artifact.txt" >/dev/null &
WAITER=$!
for _ in $(seq 1 50); do
  ID=$("$BIN/keyward" -o json approvals list --pending | python3 -c 'import json,sys; l=json.load(sys.stdin); print(l[0]["id"] if l else "")')
  [[ -n "$ID" ]] && break
  sleep 0.2
done
KEYWARD_CONFIG="$DIR/rita/client.toml" "$BIN/keyward" approvals show "$ID" | sed 's/^/  /'
KEYWARD_CONFIG="$DIR/rita/client.toml" "$BIN/keyward" approve "$ID" | sed -n '1p' | sed 's/^/  /'
wait $WAITER
base64 -d "$DIR/approved.sig" >"$DIR/approved.sig.der"
openssl dgst -sha256 -verify "$DIR/release-files.pem" -signature "$DIR/approved.sig.der" "$DIR/artifact.txt" | sed 's/^/  approved signature: /'

step "Every request is in the hash-chained audit log; an export verifies offline"
"$BIN/keyward" audit tail -n 10
"$BIN/keyward" audit public-key >"$DIR/audit.pem"
"$BIN/keyward" audit export >"$DIR/audit.jsonl"
"$BIN/keyward" audit verify "$DIR/audit.jsonl" --key "$DIR/audit.pem"

step "The token holds the keys as sensitive, never-extractable objects"
SOFTHSM2_CONF="$DIR/instance/softhsm2.conf" pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so \
  --token-label keyward-dev --login --pin "$(cat "$DIR/instance/pin")" --list-objects --type privkey 2>/dev/null \
  | grep -E 'Private Key|label|Access' || true

step "Done"
echo "keywardd signed $DIR/artifact.txt with key release-files (openssl verified it and the key's certificate) and $REG/demo/hello:v1 with key release-demo (cosign verified the signature and the provenance attestation), rotated release-demo and re-signed the image with its new version (cosign verified it with v2's key, and by the key's name through the CA with one command the rotation did not change, time-stamps checked), revoked release-legacy v1 (its signature refused, its certificate rejected by openssl through the CA's CRL, the signed revocation list published to two registries), all keys held in SoftHSM."

