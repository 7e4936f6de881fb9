#!/usr/bin/env bash
# Boots the test image (image/build.sh makes it) under QEMU with software emulation and
# checks, from the guest's serial console and the host-side peers, that the tablet works end
# to end:
#   power-on -> provisioning from the ESP -> beeldzorgd READY=1 -> registered at Kamailio over
#   TLS (a test CA made here, digest auth) -> a button press (virtio keyboard, `sendkey ret`
#   on the monitor) -> a baresip post behind Kamailio answers -> SRTP media both ways (the
#   post records the guest's tone; the guest decodes the post's audio and video) ->
#   `beeldzorgctl doctor --json` -> a long press hangs up -> clean power-off. The screen is
#   QEMU's VGA (bochs DRM, 1280x800): screendumps idle and in the call, checked by
#   image/test/check-screen.py and kept as image/out/screen-{idle,call}.png.
#
#   image/boot-test.sh [TEST-IMAGE]        default image/out/beeldzorg-test.img
#
# The image itself is not changed: a sparse copy gets the test configuration on its ESP
# (image/test/provision/, plus the SIP password and the test CA made here, where an installer
# puts a tablet's provisioning files). The guest sits on a tap in a network namespace this
# script creates and deletes (10.88.0.0/24, no route anywhere else); Kamailio and baresip
# (image/test/host-peers.sh) run in that namespace on 10.88.0.1. Exit status 0 only if every
# step passed. Kept in image/out/ (BZ_OUT overrides it): boot-test-serial.log and the peers'
# logs and recording (boot-test-peers/).
# Environment: BZ_TIMEOUT (seconds for the whole boot, default 480), BZ_QEMU_MEM (MiB, 1536).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${BZ_OUT:-$repo/image/out}"
image="${1:-$out/beeldzorg-test.img}"
timeout_s="${BZ_TIMEOUT:-480}"
mem="${BZ_QEMU_MEM:-1536}"
ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd

missing=()
for pair in qemu-system-x86_64:qemu-system-x86 mcopy:mtools sfdisk:fdisk ip:iproute2 python3:python3 timeout:coreutils \
            kamailio:kamailio baresip:baresip-core openssl:openssl; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
[ -f "$ovmf_code" ] || missing+=(ovmf)
[ -f /usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so ] || missing+=(kamailio-tls-modules)
if [ ${#missing[@]} -gt 0 ]; then
    echo "boot-test: missing host packages: ${missing[*]}" >&2; exit 2
fi
[ "$(id -u)" -eq 0 ] || { echo "boot-test: needs root (network namespace, tap)" >&2; exit 2; }
[ -f "$image" ] || { echo "boot-test: no image at $image (run image/build.sh)" >&2; exit 2; }

tmp="$(mktemp -d /tmp/bz-boot-test.XXXXXX)"
ns="bztest-$$"
tap=bztap0
serial="$tmp/serial.log"
monitor="$tmp/monitor.sock"
peers="$tmp/peers"
peers_sh="$repo/image/test/host-peers.sh"
# The centrale's name and address on the test network; the test image's /etc/hosts has them.
centrale_name=sip.beeldzorg.test
centrale_addr=10.88.0.1
# The tone the guest plays into its microphone (test/rootfs/.../image-test).
guest_tone_hz=1000
qemu_pid=""

cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    "$peers_sh" stop "$peers" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    mkdir -p "$out"
    [ -f "$serial" ] && cp "$serial" "$out/boot-test-serial.log"
    rm -rf "$out/boot-test-peers"
    if [ -d "$peers" ]; then
        mkdir -p "$out/boot-test-peers"
        cp -r "$peers"/*.log "$peers"/*.cfg "$peers/recordings" "$out/boot-test-peers/" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The disk: a sparse copy with the test configuration on its ESP (partition 1), written with
# mtools at the partition's byte offset: no mount, no loop device.
cp --sparse=always "$image" "$tmp/disk.img"
esp_start=$(sfdisk -d "$tmp/disk.img" | sed -n 's/^[^ ]*1 : start= *\([0-9]*\),.*/\1/p')
[ -n "$esp_start" ] || { echo "boot-test: no partition 1 in $image" >&2; exit 2; }
esp="$tmp/disk.img@@$(( esp_start * 512 ))"
# The centrale's test CA and the tablet's SIP password, made now (nothing secret is committed).
"$peers_sh" certs "$peers" "$centrale_name" "$centrale_addr"
cp "$peers/ca.crt" "$tmp/centrale-ca.pem"
# The technician's password, as an installer provides it; the guest test checks it against
# /etc/shadow with the copy in a file provisioning leaves alone.
head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$tmp/tech-password"
cp "$tmp/tech-password" "$tmp/image-test-tech-password"
for f in "$repo"/image/test/provision/* "$tmp/centrale-ca.pem" "$peers/sip-password" \
         "$tmp/tech-password" "$tmp/image-test-tech-password"; do
    mcopy -o -i "$esp" "$f" "::/beeldzorg/provision/$(basename "$f")"
done
cp "$ovmf_vars" "$tmp/OVMF_VARS.fd"

# The test network: a namespace holding the guest's tap (host side 10.88.0.1/24), no routes.
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" tuntap add dev "$tap" mode tap
ip -n "$ns" addr add 10.88.0.1/24 dev "$tap"
ip -n "$ns" link set "$tap" up

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
start_ms=$(now_ms)
# i8042=off: no PS/2 keyboard, so `sendkey` on the monitor reaches the one keyboard there is,
# the virtio keyboard (with the PS/2 one present, QEMU delivered the key there, not to the button).
ip netns exec "$ns" timeout --kill-after=10 "$timeout_s" \
    qemu-system-x86_64 -machine q35,i8042=off,vmport=off -accel tcg,thread=multi -cpu max -smp 2 -m "$mem" \
    -nodefaults -no-user-config -display none \
    -drive if=pflash,format=raw,unit=0,readonly=on,file="$ovmf_code" \
    -drive if=pflash,format=raw,unit=1,file="$tmp/OVMF_VARS.fd" \
    -drive if=none,id=disk0,format=raw,file="$tmp/disk.img",cache=unsafe \
    -device virtio-blk-pci,drive=disk0 \
    -device virtio-keyboard-pci,id=button \
    -device virtio-rng-pci \
    -device VGA,xres=1280,yres=800,edid=on \
    -netdev tap,id=net0,ifname="$tap",script=no,downscript=no \
    -device virtio-net-pci,netdev=net0 \
    -serial file:"$serial" \
    -monitor unix:"$monitor",server=on,wait=off &
qemu_pid=$!
echo "boot-test: qemu pid $qemu_pid, namespace $ns, timeout ${timeout_s}s, serial $serial"
# The centrale on the host side, once QEMU holds the tap (baresip takes its address from it);
# the guest needs half a minute to boot and retries its REGISTER anyway.
peers_ok=1
if ! ip netns exec "$ns" "$peers_sh" start "$peers" "$centrale_name" "$centrale_addr" "$tap"; then
    echo "boot-test: FAIL: the host-side peers did not start"
    peers_ok=0
    kill "$qemu_pid" 2>/dev/null || true
fi
# TCG timings depend on what else the host runs; say how busy it was.
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"

monitor_cmd() {
    python3 - "$monitor" "$1" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(2)
try:
    s.recv(4096)  # the "QEMU ... monitor" banner
except socket.timeout:
    pass
s.sendall((sys.argv[2] + "\n").encode())
time.sleep(0.3)
s.close()
EOF
}

seen=0
ready_ms=""
result=""
presses=0
declare -A marks=()
# Reads new BZTEST lines from the serial log, prints them, answers *-NOW with key presses.
handle_markers() {
    local lines n line word
    [ -f "$serial" ] || return 0
    mapfile -t lines < <(tr -d '\r' < "$serial" | grep -a -o 'BZTEST .*' || true)
    n=${#lines[@]}
    while [ "$seen" -lt "$n" ]; do
        line="${lines[$seen]}"
        seen=$((seen + 1))
        echo "  $line"
        word="$(echo "$line" | cut -d' ' -f2)"
        marks[$word]="$line"
        case "$word" in
            READY) [ -n "$ready_ms" ] || ready_ms=$(( $(now_ms) - start_ms )) ;;
            # Held 500 ms, not QEMU's default 100 ms: under TCG the guest may handle the down
            # and up events so late that they land within the daemon's debounce time.
            PRESS-NOW) monitor_cmd "sendkey ret 500"; presses=$((presses + 1)); echo "  (host: sendkey ret, held 0.5 s)" ;;
            # The screen: QEMU's own copy of what the VGA shows (PPM), checked after the boot.
            SCREEN-IDLE-NOW) monitor_cmd "screendump $tmp/screen-idle.ppm"; echo "  (host: screendump, idle)" ;;
            SCREEN-CALL-NOW) monitor_cmd "screendump $tmp/screen-call.ppm"; echo "  (host: screendump, in call)" ;;
            LONGPRESS-NOW) monitor_cmd "sendkey ret 2500"; presses=$((presses + 1)); echo "  (host: sendkey ret, held 2.5 s)" ;;
            RESULT) result="${line#BZTEST RESULT }" ;;
        esac
    done
}

while kill -0 "$qemu_pid" 2>/dev/null; do
    handle_markers
    sleep 0.2
done
qemu_rc=0
wait "$qemu_pid" || qemu_rc=$?
qemu_pid=""
handle_markers
total_ms=$(( $(now_ms) - start_ms ))

echo
echo "boot-test: host load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
echo "boot-test: qemu exited with $qemu_rc after $((total_ms / 1000)).$(printf %03d $((total_ms % 1000))) s"
status=0
if [ -n "$ready_ms" ]; then
    echo "boot-test: power-on -> READY=1: $((ready_ms / 1000)).$(printf %03d $((ready_ms % 1000))) s (host clock, QEMU start to the READY marker; the guest's own clock, kernel start -> READY=1: ${marks[READY]#BZTEST READY } s)"
else
    echo "boot-test: FAIL: beeldzorgd never reported READY=1"; status=1
fi
[ -n "${marks[INCALL]:-}" ] && echo "boot-test: button press -> in call: ${marks[INCALL]#BZTEST INCALL } s (guest clock)"
case "$result" in
    PASS) echo "boot-test: guest result PASS" ;;
    "") echo "boot-test: FAIL: no result from the guest (see $out/boot-test-serial.log)"; status=1 ;;
    *) echo "boot-test: FAIL: guest result $result"; status=1 ;;
esac
case "$qemu_rc" in
    0) echo "boot-test: guest powered off cleanly" ;;
    124|137) echo "boot-test: FAIL: timed out after ${timeout_s}s"; status=1 ;;
    *) echo "boot-test: FAIL: qemu exit status $qemu_rc"; status=1 ;;
esac
# The other end of the call: Kamailio saw the tablet register and call over TLS, and the post
# established an SRTP call and recorded the guest's tone.
if [ "$peers_ok" -eq 1 ]; then
    "$peers_sh" stop "$peers"
    if grep -q -i "REGISTER accepted for tablet-test over TLS" "$peers/kamailio.log"; then
        echo "boot-test: kamailio: tablet-test registered over TLS"
    else
        echo "boot-test: FAIL: kamailio never accepted a TLS REGISTER from tablet-test"; status=1
    fi
    if grep -q -i "INVITE authenticated for tablet-test over TLS" "$peers/kamailio.log"; then
        echo "boot-test: kamailio: tablet-test's INVITE authenticated over TLS"
    else
        echo "boot-test: FAIL: kamailio never authenticated an INVITE from tablet-test over TLS"; status=1
    fi
    "$peers_sh" check "$peers" "$guest_tone_hz" || status=1
else
    status=1
fi
# The screen the client saw: idle (clock, date, button sentence) and in the call (the post's
# picture with the self view). The dumps are kept as PNGs in $out for people to look at.
mkdir -p "$out"
for shot in idle call; do
    rm -f "$out/screen-$shot.png"
    if [ -f "$tmp/screen-$shot.ppm" ]; then
        python3 "$repo/image/test/check-screen.py" "$shot" "$tmp/screen-$shot.ppm" "$out/screen-$shot.png" || status=1
    else
        echo "boot-test: FAIL: no screendump of the $shot screen"; status=1
    fi
done
exit "$status"
