#!/usr/bin/env bash
# Builds the device image and runs its two QEMU tests (image/README.md): the boot test (the
# test image against Kamailio and a baresip post) and the console test (the installers' image
# unprovisioned, a technician on the serial console). Part of `make test` and CI. Needs root (it re-runs itself with sudo otherwise), the Debian archive
# (mmdebstrap) and the host packages below, which it installs when they are missing.
#   scripts/image-test.sh [BUILD-ARGS...]   arguments go to image/build.sh (e.g. --reuse-base
#                                           or --bin-dir DIR while iterating)
#   scripts/image-test.sh --install-deps    only install the host packages
# Build and test output is kept in image/out/ (image-build.log, boot-test-serial.log,
# boot-test-peers/, console-test-serial.log). Both QEMU tests run even if the first fails.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

packages=(
    # image/build.sh
    mmdebstrap dosfstools mtools fdisk e2fsprogs bmap-tools zstd espeak-ng sox systemd udev git binutils
    # image/boot-test.sh and its host-side peers
    qemu-system-x86 ovmf iproute2 python3 kamailio kamailio-tls-modules baresip-core openssl
)

if [ "$(id -u)" -ne 0 ]; then
    # PATH through env(1): sudo's secure_path would drop Swift from it.
    vars=("PATH=$PATH")
    for v in BZ_TIMEOUT BZ_QEMU_MEM BZ_MIRROR BZ_SECURITY_MIRROR BZ_OUT; do
        [ -n "${!v:-}" ] && vars+=("$v=${!v}")
    done
    command -v sudo >/dev/null 2>&1 || { echo "image-test: needs root (mmdebstrap, a network namespace), and there is no sudo" >&2; exit 2; }
    exec sudo env "${vars[@]}" "$0" "$@"
fi

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "image-test: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -q
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
fi
[ "${1:-}" = "--install-deps" ] && exit 0

out="${BZ_OUT:-$here/image/out}"
mkdir -p "$out"
start=$(date +%s)
echo "image-test: image/build.sh $* (log: $out/image-build.log)"
if ! "$here/image/build.sh" "$@" > "$out/image-build.log" 2>&1; then
    tail -n 40 "$out/image-build.log"
    echo "image-test: FAIL: image/build.sh failed (whole log: $out/image-build.log)"
    exit 1
fi
grep -E '^(== |build time|compressed image|source:|kernel )' "$out/image-build.log" || true
built=$(date +%s)
status=0
"$here/image/boot-test.sh" || status=1
booted=$(date +%s)
"$here/image/console-test.sh" || status=1
now=$(date +%s)
echo "image-test: build $(( (built - start) / 60 ))m$(( (built - start) % 60 ))s, boot test $(( booted - built ))s, console test $(( now - booted ))s"
[ "$status" -eq 0 ] && echo "image-test: PASS" || echo "image-test: FAIL"
exit "$status"
