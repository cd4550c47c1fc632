#!/usr/bin/env bash
# Signing benchmark: raw cryptoki on SoftHSM vs SignDigest through keywardd over mTLS,
# with 10 and 3,000 keys on the token, and image signing. Prints signatures/s, p50/p99
# and the ratios. Then the re-signing benchmark: a 2,000-image campaign against fresh
# signing of the same images, and the daemon's peak RSS at 200 and 2,000 images. Then
# the time from a revocation to its list being fetchable from 3 registries, and an
# incident on 1,000 signed images with its phases. Then image signing with certificates
# and time-stamps in every layer against the signature alone. Then the hot path: daemon
# CPU per signature against SoftHSM's own, latency at 8 and 64 in flight, audit on/off,
# the batch path; and image signing against the same registry requests made directly.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked --bins -p keyward-daemon
cargo bench --locked -p keyward-tests --bench signing
cargo bench --locked -p keyward-tests --bench resign
cargo bench --locked -p keyward-tests --bench revocation
cargo bench --locked -p keyward-tests --bench incident
cargo bench --locked -p keyward-tests --bench certificates
cargo bench --locked -p keyward-tests --bench hotpath
cargo bench --locked -p keyward-tests --bench registry_share
