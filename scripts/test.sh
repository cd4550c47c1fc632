#!/usr/bin/env bash
# Runs every Keyward test on this machine: installs what is missing, builds the
# binaries the end-to-end tests start, then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --workspace --bins --locked
cargo nextest run --workspace --locked --no-fail-fast "$@"
