#!/usr/bin/env bash
# Builds the device image and runs its boot test under QEMU (image/README.md). Needs root and
# the host packages image/build.sh and image/boot-test.sh name when they are missing:
#   mmdebstrap dosfstools mtools fdisk e2fsprogs bmap-tools zstd espeak-ng sox systemd udev
#   git binutils qemu-system-x86 ovmf iproute2 python3
# Arguments go to image/build.sh (e.g. --reuse-base while iterating).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
"$here/image/build.sh" "$@"
"$here/image/boot-test.sh"
