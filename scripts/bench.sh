#!/usr/bin/env bash
# Signing benchmark: raw cryptoki on SoftHSM vs SignDigest through keywardd over mTLS,
# with 10 and 3,000 keys on the token. Prints signatures/s, p50/p99 and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked --bins -p keyward-daemon
cargo bench --locked -p keyward-tests --bench signing
