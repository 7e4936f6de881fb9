#!/usr/bin/env bash
# Installs the Debian packages beeldzorg builds and tests against. Idempotent; needs root
# (or sudo). Swift itself is expected on PATH (Swift 6.1 or newer; /opt/swift/usr/bin here).
set -euo pipefail

packages=(
    # C libraries behind the system-library targets (pkg-config names in Package.swift)
    pkg-config libevdev-dev libv4l-dev libasound2-dev libopus-dev libvpx-dev libsrtp2-dev
    libssl-dev  # libcrypto (EVP MD5/SHA-256) for SIP digest auth
    libwebrtc-audio-processing-dev  # echo cancellation (C++, wrapped by Sources/CEchoCanceller)
    libsqlite3-dev
    # the screen (Sources/Screen): text, snapshots, DRM/KMS output, and the font it uses
    libfreetype-dev libpng-dev libdrm-dev fonts-dejavu-core
    libyuv-dev  # I420 scaling and conversion for the screen (no pkg-config file; Sources/CYUV)
    # spoken prompts, rendered at build time
    espeak-ng sox
    # real peers the tests run against
    kamailio kamailio-tls-modules baresip-core sip-tester ffmpeg openssl python3 python3-jsonschema sqlite3
    dnsmasq-base  # the DNS server of the RFC 3263 scenario tests (SRV, A, TTLs) in a netns
    # the ALSA mixer tests: a private PulseAudio server's mixer through alsa-lib's pulse
    # control plugin (no sound card needed), read back with amixer
    alsa-utils pulseaudio libasound2-plugins
    iproute2  # ip netns / veth for the SIP network-change tests (they run as root)
    # systemd-analyze, udevadm, systemd-hwdb for the unit and rule checks (scripts/check-units.sh)
    systemd udev
)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages present"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get -o DPkg::Lock::Timeout=600 update -q
$sudo apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
