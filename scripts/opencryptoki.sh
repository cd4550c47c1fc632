#!/usr/bin/env bash
# Gives opencryptoki's software token (slot 3 of the Debian package's default
# configuration) a fresh state for a test run: pkcsslotd restarted, the token's files
# removed, the token initialised with label $1 (default keyward), SO PIN
# $KEYWARD_OCK_SO_PIN and user PIN $KEYWARD_OCK_PIN. The token is system-wide, so
# whatever uses it runs one at a time. Needs root, as CI has; installed by
# scripts/install-deps.sh.
set -euo pipefail
label=${1:-keyward}
so=${KEYWARD_OCK_SO_PIN:-13579246}
user=${KEYWARD_OCK_PIN:-24681357}
slot=3
lib=/var/lib/opencryptoki/swtok

command -v pkcsslotd >/dev/null || { echo "opencryptoki is not installed: run scripts/install-deps.sh" >&2; exit 1; }
getent group pkcs11 >/dev/null || groupadd --system pkcs11
for d in /var/lock/opencryptoki /var/lock/opencryptoki/swtok /var/lib/opencryptoki "$lib" "$lib/TOK_OBJ"; do
  install -d -m 0770 -g pkcs11 "$d"
done
pkill -x pkcsslotd 2>/dev/null || true
for _ in $(seq 50); do pgrep -x pkcsslotd >/dev/null || break; sleep 0.1; done
rm -rf "${lib:?}"/NVTOK.DAT "${lib:?}"/MK_SO "${lib:?}"/MK_USER "${lib:?}"/TOK_OBJ/*
rm -f /dev/shm/var.lib.opencryptoki.swtok
pkcsslotd
# A fresh token's SO PIN is 87654321 and must be changed before the user PIN is set.
echo "$label" | pkcsconf -I -c "$slot" -S 87654321 >/dev/null
pkcsconf -P -c "$slot" -S 87654321 -n "$so" >/dev/null
pkcsconf -u -c "$slot" -S "$so" -n "$user" >/dev/null
echo "opencryptoki: token \"$label\" in slot $slot ready (module /usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so)"
