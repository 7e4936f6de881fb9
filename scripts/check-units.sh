#!/usr/bin/env bash
# Checks what systemd and udev will do with systemd/ and udev/, with the real tools, in
# throw-away trees (nothing on this machine is changed):
#   1. systemd-analyze verify of beeldzorgd.service, in a --root tree that has the unit, the
#      system's own units and an executable /usr/bin/beeldzorgd; any warning about our unit fails;
#      then the settings no analyser scores (Type=notify, WatchdogSec=, Restart=always, ...) are
#      present, and config/beeldzorgd.example.yaml uses the unit's directories and udev's names;
#   2. systemd-analyze security --offline: exposure must stay <= 2.0 (MAX_EXPOSURE);
#   3. systemd-sysusers and systemd-tmpfiles applied to a --root tree: the users, groups,
#      memberships, directories and modes the unit relies on;
#   4. systemd-hwdb: 70-beeldzorg.hwdb compiles (--strict) and marks exactly the stand-ins;
#   5. udev/70-beeldzorg.rules: parsed by udevadm without complaint, then run by `udevadm test`
#      against a fake sysfs (private mount namespace; needs root) with the image test's stand-ins
#      (uinput "beeldzorg-test-button", QEMU virtio keyboard, vivid), a USB camera matched by
#      vendor/product, and devices that must NOT be claimed.
# Exit status: 0 all good, 1 a check failed (each failure is printed), 2 a tool is missing.
# Needs: systemd (systemd-analyze, -sysusers, -tmpfiles) and udev (udevadm, systemd-hwdb).
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}
UNIT=systemd/beeldzorgd.service
failures=0
pass() { printf 'check-units: ok    %s\n' "$*"; }
fail() { printf 'check-units: FAIL  %s\n' "$*" >&2; failures=$((failures + 1)); }
need() {
    command -v "$1" >/dev/null 2>&1 && return
    printf 'check-units: %s not found; install the Debian package "%s"\n' "$1" "$2" >&2
    exit 2
}
need systemd-analyze systemd
need systemd-sysusers systemd
need systemd-tmpfiles systemd
need udevadm udev
need systemd-hwdb udev

work=$(mktemp -d /tmp/check-units.XXXXXX)
trap 'rm -rf "$work"' EXIT

# --- 1. systemd-analyze verify ------------------------------------------------------------------
# Without --root, verify looks for /usr/bin/beeldzorgd on this machine and fails for a reason
# that says nothing about the unit; with --root it also needs sysinit.target and friends.
root=$work/root
mkdir -p "$root/usr/lib/systemd/system" "$root/usr/bin" "$root/etc"
for dir in /usr/lib/systemd/system /lib/systemd/system; do
    [ -d "$dir" ] && cp -a "$dir/." "$root/usr/lib/systemd/system/"
done
ln -s usr/lib "$root/lib"
cp "$UNIT" "$root/usr/lib/systemd/system/"
printf '#!/bin/sh\nexit 0\n' >"$root/usr/bin/beeldzorgd"
chmod 0755 "$root/usr/bin/beeldzorgd"
# verify exits 0 on "Unknown key" and unparsable values (it only warns), so its output counts too.
if out=$(systemd-analyze verify --root="$root" --recursive-errors=no beeldzorgd.service 2>&1); then
    if printf '%s\n' "$out" | grep -q 'beeldzorgd'; then
        fail "systemd-analyze verify warns about $UNIT:"
        printf '%s\n' "$out" | grep 'beeldzorgd' | sed 's/^/    /' >&2
    else
        pass "systemd-analyze verify $UNIT"
    fi
else
    fail "systemd-analyze verify $UNIT:"
    printf '%s\n' "$out" | sed 's/^/    /' >&2
fi

# The promises the unit makes that no analyser scores: dropping one of these must fail here.
missing=""
while IFS= read -r line; do
    grep -qxF "$line" "$UNIT" || missing="$missing
    $line"
done <<'EOF'
Type=notify
ExecStart=/usr/bin/beeldzorgd --config /etc/beeldzorg/beeldzorgd.yaml --on-config-fault needs-service
Restart=always
RestartPreventExitStatus=78
StartLimitIntervalSec=0
WatchdogSec=30s
User=beeldzorg
Group=beeldzorg
StateDirectory=beeldzorg
RuntimeDirectory=beeldzorg
ConfigurationDirectory=beeldzorg
SystemCallFilter=@chown
EOF
if [ -n "$missing" ]; then fail "$UNIT lacks:$missing"; else pass "$UNIT: notify, watchdog, restart for ever, user, directories"; fi
# The start must not wait for a network (issue 16): the button works offline, and DNS and
# registration follow whenever a path appears, in the same process.
if grep -Eq '^(Wants|Requires|BindsTo|After)=.*network-online\.target' "$UNIT"; then
    fail "$UNIT waits for network-online.target: the button must work before any network"
else
    pass "$UNIT does not wait for network-online.target"
fi

# The example configuration (what the image installs) must use the paths the unit and the udev
# rules provide: the store in StateDirectory, the socket in RuntimeDirectory, the udev links.
example=config/beeldzorgd.example.yaml
if [ -f "$example" ]; then
    bad=""
    grep -Eq '^database: /var/lib/beeldzorg/' "$example" || bad="$bad database-not-in-/var/lib/beeldzorg"
    grep -Eq '^control_socket: /run/beeldzorg/' "$example" || bad="$bad control_socket-not-in-/run/beeldzorg"
    grep -Eq '^  device: /dev/beeldzorg/button( |$)' "$example" || bad="$bad button-not-/dev/beeldzorg/button"
    grep -Eq '^  device: /dev/beeldzorg/camera( |$)' "$example" || bad="$bad camera-not-/dev/beeldzorg/camera"
    if [ -n "$bad" ]; then fail "$example does not match the unit/udev paths:$bad"; else pass "$example uses the unit's directories and the udev names"; fi
fi

# --- 2. systemd-analyze security ----------------------------------------------------------------
# --threshold is in tenths of the printed figure (2.0 -> 20).
threshold=$(awk -v x="$MAX_EXPOSURE" 'BEGIN { printf "%d", x * 10 + 0.5 }')
status=0
out=$(systemd-analyze security --offline=true --threshold="$threshold" "$UNIT" 2>&1) || status=$?
exposure=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for beeldzorgd.service: \([0-9.]*\).*/\1/p')
if [ -z "$exposure" ]; then
    fail "systemd-analyze security printed no exposure figure:"
    printf '%s\n' "$out" | tail -5 | sed 's/^/    /' >&2
elif [ "$status" -ne 0 ] || awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e > m) }'; then
    fail "exposure $exposure > $MAX_EXPOSURE; what costs most:"
    printf '%s\n' "$out" | grep '✗' | sed 's/^/    /' >&2
else
    pass "systemd-analyze security: exposure $exposure (limit $MAX_EXPOSURE)"
fi

# --- 3. sysusers.d and tmpfiles.d -------------------------------------------------------------------
users=$work/users
mkdir -p "$users/etc" "$users/usr/lib/sysusers.d" "$users/usr/lib/tmpfiles.d"
# Start where a Debian image starts: base-passwd's users and groups, then systemd's basic.conf
# (it creates "input"), then ours; a group the unit names but nobody creates is then caught.
if [ -f /usr/share/base-passwd/group.master ]; then
    cp /usr/share/base-passwd/passwd.master "$users/etc/passwd"
    cp /usr/share/base-passwd/group.master "$users/etc/group"
else
    cp /etc/passwd /etc/group "$users/etc/"
fi
for conf in /usr/lib/sysusers.d/basic.conf /lib/sysusers.d/basic.conf; do
    if [ -f "$conf" ]; then cp "$conf" "$users/usr/lib/sysusers.d/"; break; fi
done
cp systemd/sysusers.d/beeldzorg.conf "$users/usr/lib/sysusers.d/"
cp systemd/tmpfiles.d/beeldzorg.conf "$users/usr/lib/tmpfiles.d/"
if ! out=$(systemd-sysusers --root="$users" 2>&1); then
    fail "systemd-sysusers: $out"
fi
user_line=$(grep '^beeldzorg:' "$users/etc/passwd" || true)
uid=$(printf '%s' "$user_line" | cut -d: -f3)
gid=$(printf '%s' "$user_line" | cut -d: -f4)
if [ -z "$user_line" ]; then
    fail "sysusers: no user beeldzorg"
elif [ "$(printf '%s' "$user_line" | cut -d: -f7)" != /usr/sbin/nologin ] || [ "$uid" -ge 1000 ]; then
    fail "sysusers: beeldzorg must be a system user without a login shell: $user_line"
elif ! grep -q "^beeldzorg:x:$gid:" "$users/etc/group"; then
    fail "sysusers: beeldzorg's primary group is not the group beeldzorg"
elif ! grep -Eq '^beeldzorg-tech:x:[0-9]+:(.*,)?beeldzorg(,.*)?$' "$users/etc/group"; then
    fail "sysusers: beeldzorg must be a member of beeldzorg-tech (it chgrps the control socket)"
else
    missing=""
    for group in $(sed -n 's/^SupplementaryGroups=//p' "$UNIT"); do
        grep -q "^$group:" "$users/etc/group" || missing="$missing $group"
    done
    if [ -n "$missing" ]; then
        fail "sysusers: SupplementaryGroups= names groups nobody creates:$missing"
    else
        pass "sysusers.d: system user beeldzorg, groups and memberships the unit names"
    fi
fi

if [ "$(id -u)" -ne 0 ]; then
    printf 'check-units: SKIP  tmpfiles.d tree (systemd-tmpfiles must chown: needs root)\n' >&2
elif [ -z "$uid" ]; then
    fail "tmpfiles.d: not checked, there is no user beeldzorg"
elif ! out=$(systemd-tmpfiles --root="$users" --create beeldzorg.conf 2>&1) || [ -n "$out" ]; then
    fail "systemd-tmpfiles: $out"
else
    bad=""
    while read -r path want_mode want_owner; do
        # stat on this machine cannot name the tree's users; compare numerically.
        got_ids=$(stat -c '%a %u:%g' "$users$path" 2>/dev/null) || got_ids="missing"
        case $want_owner in
        beeldzorg:beeldzorg) want_ids="$want_mode $uid:$gid" ;;
        root:root) want_ids="$want_mode 0:0" ;;
        esac
        [ "$got_ids" = "$want_ids" ] || bad="$bad $path(got $got_ids, want $want_mode $want_owner)"
    done <<'EOF'
/var/lib/beeldzorg 700 beeldzorg:beeldzorg
/etc/beeldzorg 755 root:root
/etc/beeldzorg/credentials 700 beeldzorg:beeldzorg
EOF
    if [ -n "$bad" ]; then fail "tmpfiles.d:$bad"; else pass "tmpfiles.d: state, configuration and credential directories"; fi
fi

# --- 4. hwdb ------------------------------------------------------------------------------------
hwdb=$work/hwdb
mkdir -p "$hwdb/etc/udev/hwdb.d"
cp udev/70-beeldzorg.hwdb "$hwdb/etc/udev/hwdb.d/"
# A fixture entry, as an installer would add one for a USB camera; step 5 checks it is found.
printf 'beeldzorg-camera:usb:v1D6Bp0104*\n BEELDZORG_CAMERA=1\n' >"$hwdb/etc/udev/hwdb.d/99-fixture.hwdb"
if ! out=$(systemd-hwdb --root="$hwdb" update --strict 2>&1); then
    fail "systemd-hwdb update --strict: $out"
else
    bad=""
    while IFS='|' read -r key want; do
        got=$(systemd-hwdb --root="$hwdb" query "$key" 2>/dev/null | tr '\n' ' ' | sed 's/ $//')
        [ "$got" = "$want" ] || bad="$bad [$key: got '$got', want '$want']"
    done <<'EOF'
beeldzorg-button:name:beeldzorg-test-button:|BEELDZORG_BUTTON=1
beeldzorg-button:input:b0006v0627p0001e0001-e0,1,14,k71,72,73|BEELDZORG_BUTTON=1
beeldzorg-button:input:b0006v0627p0002e0001-e0,1,2,14,k110,111|
beeldzorg-button:name:AT Translated Set 2 keyboard:|
beeldzorg-button:name:beeldzorg-test-button-2:|
beeldzorg-camera:name:vivid-000-vid-cap:|BEELDZORG_CAMERA=1
beeldzorg-camera:name:vivid-003-vid-cap:|BEELDZORG_CAMERA=1
beeldzorg-camera:name:vivid-000-vid-out:|
beeldzorg-camera:name:beeldzorg-test-button:|
EOF
    if [ -n "$bad" ]; then fail "hwdb lookups:$bad"; else pass "hwdb: compiles strictly; marks the stand-ins and nothing else"; fi
fi

# --- 5. udev rules ----------------------------------------------------------------------------------
# Debian 12's udevadm has no `verify` (systemd 254+); use it where it exists.
if udevadm verify --help >/dev/null 2>&1; then
    if out=$(udevadm verify --resolve-names=never udev/70-beeldzorg.rules 2>&1); then
        pass "udevadm verify udev/70-beeldzorg.rules"
    else
        fail "udevadm verify: $out"
    fi
fi

if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null 2>&1; then
    printf 'check-units: SKIP  udev rule run against a fake sysfs (needs root and unshare)\n' >&2
else
    udevtree=$work/udev
    mkdir -p "$udevtree/etc-udev/rules.d" "$udevtree/empty"
    cp "$hwdb/etc/udev/hwdb.bin" "$udevtree/etc-udev/hwdb.bin"
    cp udev/70-beeldzorg.rules "$udevtree/etc-udev/rules.d/"
    # input_id (ID_INPUT_KEY) is the real rule; v4l_id needs a real device, so a stand-in rule
    # gives ID_V4L_CAPABILITIES from a fake attribute, as 60-persistent-v4l.rules would.
    for rules in /usr/lib/udev/rules.d/60-input-id.rules /lib/udev/rules.d/60-input-id.rules; do
        [ -f "$rules" ] && cp "$rules" "$udevtree/etc-udev/rules.d/" && break
    done
    [ -f "$udevtree/etc-udev/rules.d/60-input-id.rules" ] || fail "udev: 60-input-id.rules not found"
    cat >"$udevtree/etc-udev/rules.d/60-fake-v4l.rules" <<'EOF'
SUBSYSTEM=="video4linux", TEST=="fake_v4l_capabilities", ENV{ID_V4L_CAPABILITIES}="$attr{fake_v4l_capabilities}"
EOF
    cp "$users/etc/group" "$udevtree/group"
    cp "$users/etc/passwd" "$udevtree/passwd"

    cat >"$udevtree/run.sh" <<'EOS'
#!/usr/bin/env bash
# Runs inside a private mount namespace: every mount below vanishes with it.
set -euo pipefail
tree=$1
mount -t tmpfs beeldzorg-sysfs /sys
mount -t tmpfs beeldzorg-dev /dev
mount -t tmpfs beeldzorg-run /run
mount --bind "$tree/etc-udev" /etc/udev
for dir in /usr/lib/udev/rules.d /lib/udev/rules.d /usr/local/lib/udev/rules.d; do
    [ -d "$dir" ] && mount --bind "$tree/empty" "$dir"
done
[ -e /etc/systemd/hwdb/hwdb.bin ] && mount --bind "$tree/etc-udev/hwdb.bin" /etc/systemd/hwdb/hwdb.bin
mount --bind "$tree/group" /etc/group
mount --bind "$tree/passwd" /etc/passwd
mkdir -p /sys/class/input /sys/class/video4linux /sys/bus/usb /dev/input
mknod -m 0666 /dev/null c 1 3

# A relative symlink from sysfs directory $1 to /sys/$2, as the kernel makes them.
link_up() { ln -s "$(printf '%s' "${1#/sys/}" | sed 's|[^/]*|..|g')/$2" "$1/subsystem"; }

input() { # N NAME BUS VENDOR PRODUCT EV KEY
    local n=$1 d=/sys/devices/virtual/input/input$1
    mkdir -p "$d/capabilities" "$d/id" "$d/event$n"
    printf '%s\n' "$2" >"$d/name"
    echo "$3" >"$d/id/bustype"; echo "$4" >"$d/id/vendor"; echo "$5" >"$d/id/product"; echo 0001 >"$d/id/version"
    echo "$6" >"$d/capabilities/ev"; echo "$7" >"$d/capabilities/key"
    for c in rel abs msc sw led snd ff; do echo 0 >"$d/capabilities/$c"; done
    echo 0 >"$d/properties"
    local alias="input:b${3}v${4}p${5}e0001-e0,1,k1C"
    printf 'PRODUCT=%s/%s/%s/1\nNAME="%s"\nMODALIAS=%s\n' "$3" "$4" "$5" "$2" "$alias" >"$d/uevent"
    echo "$alias" >"$d/modalias"
    link_up "$d" class/input
    printf 'MAJOR=13\nMINOR=%d\nDEVNAME=input/event%d\n' $((64 + n)) "$n" >"$d/event$n/uevent"
    echo "13:$((64 + n))" >"$d/event$n/dev"
    link_up "$d/event$n" class/input
    ln -s ../../input$n "$d/event$n/device"
    mknod -m 0600 "/dev/input/event$n" c 13 $((64 + n))
}
video() { # PARENT-DIR N NAME INDEX CAPABILITIES
    local d=$1/video4linux/video$2
    mkdir -p "$d"
    printf '%s\n' "$3" >"$d/name"; echo "$4" >"$d/index"; echo "$5" >"$d/fake_v4l_capabilities"
    printf 'MAJOR=81\nMINOR=%d\nDEVNAME=video%d\n' "$2" "$2" >"$d/uevent"
    echo "81:$2" >"$d/dev"
    link_up "$d" class/video4linux
    mknod -m 0600 "/dev/video$2" c 81 "$2"
}

# The image test's stand-ins, and what must stay alone.
input 1 beeldzorg-test-button 0006 0001 0001 3 10000000            # uinput, KEY_ENTER only
input 2 "QEMU Virtio Keyboard" 0006 0627 0001 3 "ffffffff fffffffe"  # virtio keyboard
input 3 "AT Translated Set 2 keyboard" 0011 0001 0001 3 "ffffffff fffffffe"
input 4 "QEMU Virtio Tablet" 0006 0627 0003 7 0                     # pointer, no keys
input 5 beeldzorg-test-button 0006 0001 0001 5 0                    # right name, but no keys
vivid=/sys/devices/platform/vivid.0
mkdir -p "$vivid"; echo "DRIVER=vivid" >"$vivid/uevent"
video "$vivid" 0 vivid-000-vid-cap 0 :capture:
video "$vivid" 1 vivid-000-vid-out 1 :video_output:
# A USB camera (fixture vendor/product 1d6b:0104 from step 4): capture node and metadata node.
usbdev=/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1
usbif=$usbdev/1-1:1.0
mkdir -p "$usbif"
printf 'DEVTYPE=usb_device\nPRODUCT=1d6b/104/100\n' >"$usbdev/uevent"
echo 1d6b >"$usbdev/idVendor"; echo 0104 >"$usbdev/idProduct"
link_up "$usbdev" bus/usb
printf 'DEVTYPE=usb_interface\nMODALIAS=usb:v1D6Bp0104d0100dcEFdsc02dp01ic0Eisc01ip00in00\n' >"$usbif/uevent"
link_up "$usbif" bus/usb
video "$usbif" 4 "USB Camera: USB Camera" 0 :capture:
video "$usbif" 5 "USB Camera: USB Camera" 1 ""
# A second capture node on the same device (an IR sensor, say): index 1, so not the camera.
video "$usbif" 6 "USB Camera: USB Camera" 1 :capture:

# LEDs: the status LED (a userspace LED, as the image test makes it with uleds) and a
# keyboard's LED, which is not ours.
led() { # DIR
    mkdir -p "$1"; echo 255 >"$1/max_brightness"; echo 0 >"$1/brightness"; : >"$1/uevent"
    link_up "$1" class/leds
}
led /sys/devices/virtual/misc/uleds/beeldzorg:status
led /sys/devices/virtual/input/input3/input3::capslock

for dev in /sys/devices/virtual/input/input*/event* /sys/devices/platform/vivid.0/video4linux/video* "$usbif"/video4linux/video* \
           /sys/devices/virtual/misc/uleds/beeldzorg:status /sys/devices/virtual/input/input3/input3::capslock; do
    SYSTEMD_DEVICE_VERIFY_SYSFS=0 udevadm test --action=add "$dev" >"$tree/out-$(basename "$dev")" 2>&1 || echo "udevadm test failed for $dev" >>"$tree/errors"
done
# What udev did, as the daemon will see it.
for node in /dev/input/event* /dev/video*; do
    printf '%s %s\n' "$node" "$(stat -c '%G %a' "$node")"
done >"$tree/nodes"
for link in /dev/beeldzorg/*; do
    [ -L "$link" ] && printf '%s %s\n' "$link" "$(readlink -f "$link")"
done >"$tree/links"
EOS
    chmod 0755 "$udevtree/run.sh"
    if ! out=$(unshare --mount --propagation private "$udevtree/run.sh" "$udevtree" 2>&1); then
        fail "udev: could not run udevadm test in a private mount namespace: $out"
    else
        complaints=$(cat "$udevtree"/out-* | grep -E '70-beeldzorg\.rules:[0-9]+ ' \
            | grep -Ev 'Importing properties|Failed to run builtin .hwdb|GROUP [0-9]+|MODE 0|LINK |RUN ' | sort -u || true)
        [ -f "$udevtree/errors" ] && fail "udev: $(cat "$udevtree/errors")"
        if [ -n "$complaints" ]; then
            fail "udev: udevadm complains about 70-beeldzorg.rules:"
            printf '%s\n' "$complaints" | sed 's/^/    /' >&2
        else
            pass "udev: 70-beeldzorg.rules parses cleanly"
        fi
        # The last device to claim a link owns it: event2 (virtio keyboard) after event1 (uinput).
        want_nodes=$(cat <<'EOF'
/dev/input/event1 beeldzorg 660
/dev/input/event2 beeldzorg 660
/dev/input/event3 root 600
/dev/input/event4 root 600
/dev/input/event5 root 600
/dev/video0 beeldzorg 660
/dev/video1 root 600
/dev/video4 beeldzorg 660
/dev/video5 root 600
/dev/video6 root 600
EOF
)
        if [ "$(cat "$udevtree/nodes")" != "$want_nodes" ]; then
            fail "udev: device groups and modes differ from what the daemon needs:"
            diff <(printf '%s\n' "$want_nodes") "$udevtree/nodes" | sed 's/^/    /' >&2
        else
            pass "udev: button stand-ins and cameras get group beeldzorg 0660; other devices untouched"
        fi
        for dev in event1 event2 video0 video4; do
            grep -q '^DEVLINKS=.*/dev/beeldzorg/\(button\|camera\)' "$udevtree/out-$dev" \
                || fail "udev: $dev gets no /dev/beeldzorg link"
        done
        for dev in event3 event4 event5 video1 video5 video6; do
            grep -q '^DEVLINKS=.*/dev/beeldzorg/' "$udevtree/out-$dev" \
                && fail "udev: $dev must not get a /dev/beeldzorg link"
        done
        # The status LED: the timer trigger selected and its two delays given to the daemon's
        # group, by one program (udevadm test lists RUN programs without running them).
        if grep -q "^run: '/bin/sh -c 'modprobe -q ledtrig-timer; echo timer > /sys/devices/virtual/misc/uleds/beeldzorg:status/trigger && chgrp beeldzorg .*delay_on .*delay_off && chmod 0664" "$udevtree/out-beeldzorg:status" \
            && ! grep -q "^run: " "$udevtree/out-input3::capslock"; then
            pass "udev: the status LED's delay_on/delay_off go to group beeldzorg; other LEDs untouched"
        else
            fail "udev: status LED rule: $(grep -h '^run: ' "$udevtree/out-beeldzorg:status" "$udevtree/out-input3::capslock" | tr '\n' ';')"
        fi
        if grep -q '^/dev/beeldzorg/button /dev/input/event' "$udevtree/links" \
            && grep -q '^/dev/beeldzorg/camera /dev/video[04]$' "$udevtree/links"; then
            pass "udev: /dev/beeldzorg/button and /dev/beeldzorg/camera point at claimed nodes"
        else
            fail "udev: links are wrong: $(tr '\n' ';' <"$udevtree/links")"
        fi
    fi
fi

if [ "$failures" -gt 0 ]; then
    printf 'check-units: %d check(s) failed\n' "$failures" >&2
    exit 1
fi
printf 'check-units: all checks passed\n'
