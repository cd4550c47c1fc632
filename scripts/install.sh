#!/usr/bin/env bash
# Installs keyward and keywardd with their manual and shell completions under PREFIX
# (default ~/.local): bin/, share/man/man1/, and the bash, zsh and fish completion
# directories. Builds the release binaries first unless KEYWARD_BIN names a directory
# that holds them.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-$HOME/.local}
if [[ -z ${KEYWARD_BIN:-} ]]; then
  cargo build --release --locked -p keyward-daemon -p keyward-client
  KEYWARD_BIN=target/release
fi
install -d "$PREFIX/bin" "$PREFIX/share/man/man1" \
  "$PREFIX/share/bash-completion/completions" "$PREFIX/share/zsh/site-functions" \
  "$PREFIX/share/fish/vendor_completions.d"
install -m 0755 "$KEYWARD_BIN/keyward" "$KEYWARD_BIN/keywardd" "$PREFIX/bin/"
"$PREFIX/bin/keyward" man --dir "$PREFIX/share/man/man1" >/dev/null
"$PREFIX/bin/keyward" completion bash >"$PREFIX/share/bash-completion/completions/keyward"
"$PREFIX/bin/keyward" completion zsh >"$PREFIX/share/zsh/site-functions/_keyward"
"$PREFIX/bin/keyward" completion fish >"$PREFIX/share/fish/vendor_completions.d/keyward.fish"
echo "install: keyward and keywardd in $PREFIX/bin, $(ls "$PREFIX/share/man/man1" | grep -c '^keyward') man pages (man keyward-sign), completions for bash, zsh and fish"
