#!/usr/bin/env bash
# Builds the Beeldzorg tablet disk image: Debian 12 (bookworm) amd64 on a GPT disk with
#   1  ESP    (FAT32)  systemd-boot, the kernel and initrd, the loader entry; provisioning
#                      files an installer drops in beeldzorg/provision/ (consumed at boot)
#   2  root   (ext4)   the OS, beeldzorgd, beeldzorgctl, units, udev rules, prompts
#   3  state  (ext4)   /var/lib/beeldzorg: the database and provisioned data
# No mounts and no loop devices: mmdebstrap into a directory, `mkfs.ext4 -d`, `mkfs.vfat -C`
# plus mtools, and sfdisk on a plain file.
#
# Outputs (image/out/ unless BZ_OUT is set):
#   beeldzorg.img  beeldzorg.img.bmap  beeldzorg.img.zst     the image installers flash
#   beeldzorg-test.img                                        the same plus the boot-test unit
#                                                             (see image/README.md, "The test image")
#
#   image/build.sh [--bin-dir DIR] [--no-test-image] [--reuse-base]
#     --bin-dir DIR     take beeldzorgd and beeldzorgctl from DIR instead of building them
#     --no-test-image   only the image installers flash
#     --fast            no .bmap and no .zst (for iterating on the test image)
#     --reuse-base      reuse the Debian tree of the previous build (.build-image/base)
#                       instead of running mmdebstrap again (for iterating on our files)
#
# Without --bin-dir the binaries are built from the committed HEAD (a clone in
# .build-image/src, scratch path .build-image/swift), never from the shared working tree,
# so someone's half-finished edit cannot end up in an image.
# Needs root (mmdebstrap, file ownership in the ext4 images) and the packages listed by
# need_packages below.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
image_dir="$repo/image"
out="${BZ_OUT:-$image_dir/out}"
work="${BZ_WORK:-$repo/.build-image}"
suite=bookworm
mirror="${BZ_MIRROR:-http://deb.debian.org/debian}"
security_mirror="${BZ_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

bin_dir=""
test_image=1
reuse_base=0
fast=0
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) bin_dir="$(cd "$2" && pwd)"; shift 2 ;;
        --no-test-image) test_image=0; shift ;;
        --reuse-base) reuse_base=1; shift ;;
        --fast) fast=1; shift ;;
        -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument $1" >&2; exit 64 ;;
    esac
done

start_time=$(date +%s)
step() { printf '\n== %s (+%ss)\n' "$*" "$(( $(date +%s) - start_time ))"; }
die() { echo "build.sh: $*" >&2; exit 1; }

# ------------------------------------------------------------------------------------------
# Host tools. Command -> Debian package, so a missing tool names the package to install.
need_packages=(
    mmdebstrap:mmdebstrap mkfs.vfat:dosfstools mcopy:mtools mmd:mtools sfdisk:fdisk
    mkfs.ext4:e2fsprogs bmaptool:bmap-tools zstd:zstd espeak-ng:espeak-ng sox:sox
    systemd-sysusers:systemd systemd-tmpfiles:systemd systemctl:systemd systemd-hwdb:udev
    git:git strip:binutils
)
missing=()
for pair in "${need_packages[@]}"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ -z "$bin_dir" ] && ! command -v swift >/dev/null 2>&1; then
    echo "build.sh: swift is not on PATH (or pass --bin-dir)" >&2; exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "build.sh: missing host packages: ${missing[*]}" >&2
    echo "  apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
fi
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap and the ext4 images need real file ownership)"

mkdir -p "$out" "$work"

# ------------------------------------------------------------------------------------------
step "beeldzorgd and beeldzorgctl (release, static Swift standard library, stripped)"
bins="$work/bin"
rm -rf "$bins"; mkdir -p "$bins"
if [ -n "$bin_dir" ]; then
    cp "$bin_dir/beeldzorgd" "$bin_dir/beeldzorgctl" "$bins/"
else
    src="$work/src"
    if [ ! -d "$src/.git" ]; then
        git clone -q "$repo" "$src"
    fi
    # Fetch and check out the committed HEAD; git touches only the files that changed, so
    # SwiftPM's incremental build stays incremental.
    git -C "$src" fetch -q "$repo" HEAD
    git -C "$src" checkout -q --detach FETCH_HEAD
    echo "source: $(git -C "$src" log --oneline -1)"
    for product in beeldzorgd beeldzorgctl; do
        (cd "$src" && nice -n 10 swift build -c release --static-swift-stdlib \
            --scratch-path "$work/swift" --product "$product") | tail -n 3
    done
    cp "$work/swift/release/beeldzorgd" "$work/swift/release/beeldzorgctl" "$bins/"
fi
strip --strip-all "$bins/beeldzorgd" "$bins/beeldzorgctl"
ls -l "$bins"
# What the binaries still need from the system; each must come from a package below.
ldd "$bins/beeldzorgd" "$bins/beeldzorgctl" | awk '/=>/ {print $1}' | sort -u | tr '\n' ' '; echo

# ------------------------------------------------------------------------------------------
step "prompts (espeak-ng + sox on the build host)"
prompts="$work/prompts"
rm -rf "$prompts"; mkdir -p "$prompts"
cp "$repo/prompts/nl.txt" "$prompts/nl.txt"
"$repo/prompts/render.sh" "$prompts/nl.txt" "$prompts/wav/nl" | tail -n 1

# ------------------------------------------------------------------------------------------
step "root file system (mmdebstrap $suite amd64)"
base="$work/base"
rootfs="$work/rootfs"
# Runtime libraries: what `ldd` above lists beyond glibc and libstdc++ (libevdev, libv4l2,
# ALSA, Opus, VPX, SRTP, SQLite, OpenSSL's libcrypto, webrtc-audio-processing; the build
# stops below if one is missing); espeak-ng and sox render prompts with a name in them at
# run time (Devices/SpeechRenderer.swift).
packages=(
    systemd systemd-sysv udev kmod systemd-resolved systemd-timesyncd e2fsprogs iproute2
    linux-image-amd64 initramfs-tools zstd systemd-boot-efi
    libevdev2 libv4l-0 libasound2 libasound2-data libopus0 libvpx7 libsrtp2-1 libsqlite3-0
    libstdc++6 libgcc-s1 libssl3
    # echo cancellation (Sources/CEchoCanceller)
    libwebrtc-audio-processing1
    # the screen (Sources/Screen, issue 9): DRM/KMS, FreeType with DejaVu Sans, PNG, libyuv
    libdrm2 libfreetype6 libpng16-16 fonts-dejavu-core libyuv0
    espeak-ng sox
    # ALSA's tools: doctor's advice names arecord -L, aplay -L and alsamixer, and a technician
    # finds the PCM names and unmutes with them (issue 17; Tests/IntegrationTests/AdviceCommandsTests);
    # amixer reads back the levels beeldzorgd sets (issue 19)
    alsa-utils
    # The provisioning client trusts the system's roots when provisioning.ca_file is left out.
    ca-certificates
)
# Only the Debian archive: the build host's other apt sources (vendors' repositories) must
# not leak into a device image.
# Documentation, manuals and translations are not needed on a tablet (copyright files stay).
if [ "$reuse_base" -eq 0 ] || [ ! -f "$base/etc/os-release" ]; then
    # The archive first, with apt's own downloader (the host's apt proxy settings apply): an
    # unreachable archive is a clear failure here, not somewhere inside mmdebstrap.
    if ! timeout 90 /usr/lib/apt/apt-helper download-file "$mirror/dists/$suite/InRelease" \
            "$work/InRelease.check" >/dev/null 2>"$work/archive-check.err"; then
        sed 's/^/  /' "$work/archive-check.err" >&2
        die "the Debian archive $mirror is unreachable from this machine; the image is built from it (mmdebstrap). Set BZ_MIRROR (and BZ_SECURITY_MIRROR) to a reachable mirror."
    fi
    rm -f "$work/InRelease.check" "$work/archive-check.err"
    rm -rf "$base"
    mmdebstrap --variant=essential --arch=amd64 \
        --include="$(IFS=,; echo "${packages[*]}")" \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/lintian/*' \
        --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && printf "COMPRESS=zstd\n" > "$1/etc/initramfs-tools/conf.d/beeldzorg.conf"' \
        --customize-hook='rm -rf "$1/var/lib/apt/lists/"* "$1/var/cache/apt/"*' \
        "$suite" "$base" \
        "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security_mirror $suite-security main"
else
    echo "reusing $base"
fi
rm -rf "$rootfs"
cp -a "$base" "$rootfs"

# ------------------------------------------------------------------------------------------
step "our files"
install -D -m0755 "$bins/beeldzorgd"   "$rootfs/usr/bin/beeldzorgd"
install -D -m0755 "$bins/beeldzorgctl" "$rootfs/usr/bin/beeldzorgctl"
missing_libs="$(chroot "$rootfs" ldd /usr/bin/beeldzorgd /usr/bin/beeldzorgctl | grep 'not found' || true)"
[ -z "$missing_libs" ] || die "libraries missing in the image: $missing_libs"
mkdir -p "$rootfs/usr/share/beeldzorg"
cp -r "$prompts" "$rootfs/usr/share/beeldzorg/prompts"
chmod -R u=rwX,go=rX "$rootfs/usr/share/beeldzorg"

# As systemd/README.md ("For the image") says.
install -m0644 "$repo/systemd/beeldzorgd.service"             "$rootfs/usr/lib/systemd/system/"
install -m0644 "$repo/systemd/sysusers.d/beeldzorg.conf"      "$rootfs/usr/lib/sysusers.d/"
install -m0644 "$repo/systemd/tmpfiles.d/beeldzorg.conf"      "$rootfs/usr/lib/tmpfiles.d/"
install -m0644 "$repo/udev/70-beeldzorg.rules"                "$rootfs/usr/lib/udev/rules.d/"
install -m0644 "$repo/udev/70-beeldzorg.hwdb"                 "$rootfs/usr/lib/udev/hwdb.d/"
# The image's own files (provisioning from the ESP, network, journal).
cp -a "$image_dir/rootfs/." "$rootfs/"
chmod 0755 "$rootfs/usr/libexec/beeldzorg/"*
systemd-sysusers --root="$rootfs"
systemd-tmpfiles --root="$rootfs" --create beeldzorg.conf beeldzorg-technician.conf
systemd-hwdb --root="$rootfs" update --usr
systemctl --root="$rootfs" enable beeldzorgd.service beeldzorg-provision.service \
    systemd-networkd.service systemd-resolved.service systemd-timesyncd.service
# No password logins: root is locked and no account has a password. The technician account
# `tech` (serial console only; image/rootfs/usr/lib/sysusers.d/) stays locked until
# provisioning sets its password (tech-password on the ESP). systemd-boot's editor is off
# (loader.conf), so nobody can add init=/bin/sh at the boot menu.
sed -i -E 's/^root:[^:]*:/root:*:/' "$rootfs/etc/shadow"
if awk -F: '$2 == "" {bad=1} END {exit !bad}' "$rootfs/etc/shadow"; then die "an account with an empty password"; fi
if awk -F: '$2 !~ /^[!*]/ {bad=1} END {exit !bad}' "$rootfs/etc/shadow"; then die "an account with a usable password"; fi
grep -q '^tech:' "$rootfs/etc/passwd" || die "no technician account tech"
# An empty machine-id: each tablet generates its own at its first boot and commits it
# (systemd-machine-id-commit), but that boot is not a systemd "first boot" (machine-id(5)),
# so systemd does not run `preset-all`, which would enable every unit that has an [Install]
# section (20 s under TCG). Which units run is decided here, at build time.
: > "$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
systemctl --root="$rootfs" mask systemd-firstboot.service
# The panel is the client's screen: no login prompt on it, not on tty1 at boot and not on
# another VT after a switch (logind starts autovt@ttyN then). The technician logs in on the
# serial console (serial-getty@ttyS0), which stays.
systemctl --root="$rootfs" mask getty@tty1.service autovt@.service
echo beeldzorg > "$rootfs/etc/hostname"
printf '127.0.1.1\tbeeldzorg\n' >> "$rootfs/etc/hosts"
ln -sf /usr/share/zoneinfo/Europe/Amsterdam "$rootfs/etc/localtime"
echo Europe/Amsterdam > "$rootfs/etc/timezone"
echo 'LANG=C.UTF-8' > "$rootfs/etc/locale.conf"
ln -sf /run/systemd/resolve/stub-resolv.conf "$rootfs/etc/resolv.conf"

# ------------------------------------------------------------------------------------------
step "kernel, initrd and boot loader"
kernel="$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -n 1)"
initrd="$(ls "$rootfs"/boot/initrd.img-* | sort -V | tail -n 1)"
kver="${kernel##*/vmlinuz-}"
echo "kernel $kver, initrd $(du -h "$initrd" | cut -f1)"
boot="$work/boot"
rm -rf "$boot"; mkdir -p "$boot"
cp "$kernel" "$boot/vmlinuz"
cp "$initrd" "$boot/initrd.img"
cp "$rootfs/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$boot/systemd-bootx64.efi"
# The ESP holds the only copy the firmware reads; the root file system does not need them.
rm -f "$rootfs"/boot/initrd.img-* "$rootfs"/boot/vmlinuz-* "$rootfs"/initrd.img* "$rootfs"/vmlinuz*

# Partition and file system identities: new ones per build; the loader entry and fstab name them.
uuid() { cat /proc/sys/kernel/random/uuid; }
disk_uuid=$(uuid); esp_uuid=$(uuid); root_uuid=$(uuid); state_uuid=$(uuid)
esp_fs_id=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')

cat > "$rootfs/etc/fstab" <<EOF
# Written by image/build.sh. Partitions by GPT partition UUID.
PARTUUID=$root_uuid   /                   ext4  defaults,noatime,errors=remount-ro  0 1
PARTUUID=$state_uuid  /var/lib/beeldzorg  ext4  defaults,noatime,nosuid,nodev,noexec  0 2
# The ESP: provisioning files arrive here (beeldzorg-provision.service). Never needed to run.
PARTUUID=$esp_uuid    /efi                vfat  umask=0077,noatime,nofail  0 0
EOF
mkdir -p "$rootfs/efi"

# ------------------------------------------------------------------------------------------
# One disk image from a root tree: $1 tree, $2 output .img, $3 kernel command-line extras.
make_disk() {
    local tree="$1" img="$2" extra="$3" parts="$work/parts"
    rm -rf "$parts"; mkdir -p "$parts"

    # State partition: /var/lib/beeldzorg as tmpfiles.d made it (owner beeldzorg, 0700).
    local state_tree="$parts/state"
    mkdir -p "$state_tree"
    cp -a "$tree/var/lib/beeldzorg/." "$state_tree/" 2>/dev/null || true
    chown --reference="$tree/var/lib/beeldzorg" "$state_tree"
    chmod --reference="$tree/var/lib/beeldzorg" "$state_tree"
    local state_mb=256
    truncate -s "${state_mb}M" "$parts/state.img"
    mkfs.ext4 -q -L bz-state -U "$state_uuid" -d "$state_tree" "$parts/state.img"

    # Root: the tree's size plus room for the journal and updates; sparse, so room costs nothing.
    local used_mb root_mb
    used_mb=$(( $(du -s --block-size=1M "$tree" | cut -f1) ))
    root_mb=$(( used_mb + used_mb / 4 + 256 ))
    truncate -s "${root_mb}M" "$parts/root.img"
    mkfs.ext4 -q -L bz-root -U "$root_uuid" -d "$tree" "$parts/root.img"

    # ESP: FAT32, systemd-boot at its own path and the removable-media fallback path (a new
    # tablet's firmware has no boot entry yet).
    local esp_mb=256
    mkfs.vfat -F 32 -n BZ-ESP -i "$esp_fs_id" -C "$parts/esp.img" $(( esp_mb * 1024 )) >/dev/null
    local e="$parts/esp.img"
    mmd -i "$e" ::/EFI ::/EFI/BOOT ::/EFI/systemd ::/loader ::/loader/entries ::/beeldzorg ::/beeldzorg/provision
    mcopy -i "$e" "$boot/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
    mcopy -i "$e" "$boot/systemd-bootx64.efi" ::/EFI/systemd/systemd-bootx64.efi
    mcopy -i "$e" "$boot/vmlinuz" ::/beeldzorg/vmlinuz
    mcopy -i "$e" "$boot/initrd.img" ::/beeldzorg/initrd.img
    printf 'default beeldzorg.conf\ntimeout 0\neditor no\nauto-entries no\nauto-firmware no\n' > "$parts/loader.conf"
    cat > "$parts/beeldzorg.conf" <<EOF
title   Beeldzorg tablet
version $kver
linux   /beeldzorg/vmlinuz
initrd  /beeldzorg/initrd.img
options root=PARTUUID=$root_uuid rw rootfstype=ext4 console=tty0 console=ttyS0,115200 $extra
EOF
    mcopy -i "$e" "$parts/loader.conf" ::/loader/loader.conf
    mcopy -i "$e" "$parts/beeldzorg.conf" ::/loader/entries/beeldzorg.conf
    printf 'Put beeldzorgd.yaml (and sip-password, centrale-ca.pem) here; the tablet\r\ninstalls them at the next boot and deletes them. See image/README.md.\r\n' > "$parts/README.txt"
    mcopy -i "$e" "$parts/README.txt" ::/beeldzorg/provision/LEESMIJ.txt

    # GPT: 1 MiB alignment, partitions in the order above, 1 MiB left for the backup GPT.
    local esp_start=1 root_start state_start total
    root_start=$(( esp_start + esp_mb ))
    state_start=$(( root_start + root_mb ))
    total=$(( state_start + state_mb + 1 ))
    rm -f "$img"
    truncate -s "${total}M" "$img"
    sfdisk -q "$img" <<EOF
label: gpt
label-id: $disk_uuid
unit: sectors
start=$(( esp_start * 2048 )), size=$(( esp_mb * 2048 )), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$esp_uuid, name="esp"
start=$(( root_start * 2048 )), size=$(( root_mb * 2048 )), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$root_uuid, name="root"
start=$(( state_start * 2048 )), size=$(( state_mb * 2048 )), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$state_uuid, name="beeldzorg-state"
EOF
    dd if="$parts/esp.img"   of="$img" bs=1M seek="$esp_start"   conv=notrunc,sparse status=none
    dd if="$parts/root.img"  of="$img" bs=1M seek="$root_start"  conv=notrunc,sparse status=none
    dd if="$parts/state.img" of="$img" bs=1M seek="$state_start" conv=notrunc,sparse status=none
    rm -rf "$parts"
    echo "$img: ${total} MiB (root ${root_mb} MiB with ${used_mb} MiB used, state ${state_mb} MiB, ESP ${esp_mb} MiB), $(du -h "$img" | cut -f1) allocated"
}

step "disk image"
make_disk "$rootfs" "$out/beeldzorg.img" ""
rm -f "$out/beeldzorg.img.bmap" "$out/beeldzorg.img.zst"
compressed_mb="(not made: --fast)"
if [ "$fast" -eq 0 ]; then
    bmaptool -q create -o "$out/beeldzorg.img.bmap" "$out/beeldzorg.img"
    step "zstd"
    zstd -q -T0 -12 "$out/beeldzorg.img" -o "$out/beeldzorg.img.zst"
    compressed_mb=$(( $(stat -c %s "$out/beeldzorg.img.zst") / 1024 / 1024 ))
fi

if [ "$test_image" -eq 1 ]; then
    # The test image: the same tree plus the boot-test unit and the kernel's stand-in
    # devices, with the serial getty and the clock sync masked (image/README.md).
    step "test image"
    cp -a "$image_dir/test/rootfs/." "$rootfs/"
    chmod 0755 "$rootfs/usr/libexec/beeldzorg/"*
    systemctl --root="$rootfs" enable beeldzorg-image-test.service
    systemctl --root="$rootfs" mask serial-getty@ttyS0.service systemd-timesyncd.service
    # The centrale's edge proxy on the test network (image/test/host-peers.sh): a name for
    # TLS to check, with no DNS on that network.
    printf '10.88.0.1\tsip.beeldzorg.test\n' >> "$rootfs/etc/hosts"
    make_disk "$rootfs" "$out/beeldzorg-test.img" "systemd.show_status=auto"
fi

step "done"
elapsed=$(( $(date +%s) - start_time ))
ls -l "$out"
echo "build time: $(( elapsed / 60 ))m$(( elapsed % 60 ))s"
echo "compressed image: $out/beeldzorg.img.zst ${compressed_mb} MiB (goal <= 250)"
