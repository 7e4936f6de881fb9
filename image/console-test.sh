#!/usr/bin/env bash
# Boots the installers' image itself (not the test image) under QEMU, as a new tablet whose
# installer provisioned only the technician's password (tech-password on the ESP, no
# configuration), and drives its serial console like a technician with a laptop would:
#   - root cannot log in ("Login incorrect");
#   - `tech` logs in with the provisioned password (serial-getty, login, PAM);
#   - beeldzorgd was skipped, not started and restarted in a loop (ConditionPathExists on its
#     configuration): ActiveState=inactive, ConditionResult=no, NRestarts=0;
#   - as tech, `beeldzorgctl doctor` runs and says what is missing.
#
#   image/console-test.sh [IMAGE]        default image/out/beeldzorg.img
#
# No network at all (no NIC). QEMU runs under timeout(1) and is stopped by its PID; the
# console transcript is kept in image/out/console-test-serial.log. Exit status 0 only if
# every check passed.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${BZ_OUT:-$repo/image/out}"
image="${1:-$out/beeldzorg.img}"
timeout_s="${BZ_TIMEOUT:-480}"
ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd

[ "$(id -u)" -eq 0 ] || { echo "console-test: needs root (like image/boot-test.sh)" >&2; exit 2; }
[ -f "$image" ] || { echo "console-test: no image at $image (run image/build.sh)" >&2; exit 2; }
for tool in qemu-system-x86_64 mcopy sfdisk python3 timeout; do
    command -v "$tool" >/dev/null 2>&1 || { echo "console-test: $tool missing (see image/README.md)" >&2; exit 2; }
done

tmp="$(mktemp -d /tmp/bz-console-test.XXXXXX)"
qemu_pid=""
cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    mkdir -p "$out"
    [ -f "$tmp/console.log" ] && cp "$tmp/console.log" "$out/console-test-serial.log"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp --sparse=always "$image" "$tmp/disk.img"
esp_start=$(sfdisk -d "$tmp/disk.img" | sed -n 's/^[^ ]*1 : start= *\([0-9]*\),.*/\1/p')
[ -n "$esp_start" ] || { echo "console-test: no partition 1 in $image" >&2; exit 2; }
# Only the technician's password, as its hash (what the installers' instructions suggest).
password="$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')"
python3 -c 'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_SHA512)))' "$password" \
    > "$tmp/tech-password" 2>/dev/null \
    || perl -e 'my @c = ("a".."z", 0..9); my $s = join "", map { $c[rand @c] } 1..16; print crypt($ARGV[0], "\$6\$$s\$"), "\n"' "$password" > "$tmp/tech-password"
grep -q '^\$6\$' "$tmp/tech-password" || { echo "console-test: could not hash the password" >&2; exit 2; }
mcopy -o -i "$tmp/disk.img@@$(( esp_start * 512 ))" "$tmp/tech-password" ::/beeldzorg/provision/tech-password
cp "$ovmf_vars" "$tmp/OVMF_VARS.fd"

start_s=$(date +%s)
# The serial port on a socket QEMU waits on (wait=on): nothing is printed before we listen.
timeout --kill-after=10 "$timeout_s" \
    qemu-system-x86_64 -machine q35,i8042=off,vmport=off -accel tcg,thread=multi -cpu max -smp 2 -m 1024 \
    -nodefaults -no-user-config -display none -nic none \
    -drive if=pflash,format=raw,unit=0,readonly=on,file="$ovmf_code" \
    -drive if=pflash,format=raw,unit=1,file="$tmp/OVMF_VARS.fd" \
    -drive if=none,id=disk0,format=raw,file="$tmp/disk.img",cache=unsafe \
    -device virtio-blk-pci,drive=disk0 -device virtio-rng-pci \
    -chardev socket,id=ser0,path="$tmp/serial.sock",server=on,wait=on \
    -serial chardev:ser0 &
qemu_pid=$!
for _ in $(seq 1 100); do [ -S "$tmp/serial.sock" ] && break; sleep 0.1; done
echo "console-test: qemu pid $qemu_pid, timeout ${timeout_s}s"

# The technician at the console. Prints what it found as KEY=VALUE lines.
status=0
python3 - "$tmp/serial.sock" "$tmp/console.log" "$password" "$timeout_s" > "$tmp/results" <<'EOF' || status=1
import re, socket, sys, time
sock_path, log_path, password, limit = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
s = socket.socket(socket.AF_UNIX)
s.connect(sock_path)
s.settimeout(0.5)
log = open(log_path, "wb")
buf = b""
deadline = time.monotonic() + limit - 20
started = time.monotonic()

def wait_for(pattern, seconds):
    """Reads the console until pattern (bytes regex) shows up after the current mark."""
    global buf, mark
    end = min(deadline, time.monotonic() + seconds)
    rx = re.compile(pattern)
    while time.monotonic() < end:
        m = rx.search(buf, mark)
        if m:
            mark = m.end()
            return m
        try:
            data = s.recv(4096)
        except socket.timeout:
            continue
        if not data:
            break
        log.write(data); log.flush()
        buf += data
    return None

def send(text):
    for ch in text:  # a typist, not a paste: agetty and login read a line at a time
        s.sendall(ch.encode())
        time.sleep(0.01)

mark = 0
if not wait_for(rb"beeldzorg login: ", 400):
    print("LOGIN_PROMPT=no"); sys.exit(1)
print(f"LOGIN_PROMPT_S={time.monotonic() - started:.1f}")
time.sleep(1)
send("root\r")
wait_for(rb"Password: ", 30)
send("root\r")
print("ROOT=" + ("refused" if wait_for(rb"Login incorrect", 30) else "not-refused"))
if not wait_for(rb"beeldzorg login: ", 60):
    print("LOGIN_PROMPT_AGAIN=no"); sys.exit(1)
time.sleep(1)
send("tech\r")
wait_for(rb"Password: ", 30)
send(password + "\r")
if not wait_for(rb"tech@beeldzorg[^\r\n]*\$ ", 60):
    print("TECH_LOGIN=no"); sys.exit(1)
print("TECH_LOGIN=yes")
send("echo BZC-BEGIN-$((40+2)); id; systemctl show -p ActiveState -p ConditionResult -p NRestarts beeldzorgd; "
     "beeldzorgctl doctor; echo doctor_rc=$?; echo BZC-END-$((40+2))\r")
m = wait_for(rb"(?s)BZC-BEGIN-42\r?\n(.*?)BZC-END-42\r?\n", 180)
if not m:
    print("COMMANDS=no"); sys.exit(1)
for line in m.group(1).decode(errors="replace").replace("\r", "").split("\n"):
    line = line.strip()
    if line:
        print("OUT " + line)
send("exit\r")
EOF
kill "$qemu_pid" 2>/dev/null || true
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=""

sed 's/^/  /' "$tmp/results"
res() { sed -n "s/^$1=//p" "$tmp/results" | head -n 1; }
check() { if eval "$2"; then echo "console-test: ok    $1"; else echo "console-test: FAIL  $1"; status=1; fi; }
check "login prompt on the serial console ($(res LOGIN_PROMPT_S) s after power-on)" '[ -n "$(res LOGIN_PROMPT_S)" ]'
check "root cannot log in" '[ "$(res ROOT)" = refused ]'
check "tech logs in with the password provisioned on the ESP" '[ "$(res TECH_LOGIN)" = yes ]'
check "tech is in group beeldzorg-tech" 'grep -q "^OUT uid=.*(tech).*beeldzorg-tech" "$tmp/results"'
check "unconfigured: beeldzorgd skipped (ConditionResult=no), inactive, never restarted" \
    'grep -qx "OUT ActiveState=inactive" "$tmp/results" && grep -qx "OUT ConditionResult=no" "$tmp/results" && grep -qx "OUT NRestarts=0" "$tmp/results"'
check "beeldzorgctl doctor runs for tech and reports failures" 'grep -q "^OUT doctor_rc=[1-9]" "$tmp/results"'
echo "console-test: $(( $(date +%s) - start_s )) s"
exit "$status"
