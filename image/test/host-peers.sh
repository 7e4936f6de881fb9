#!/usr/bin/env bash
# The boot test's host side of the test network (image/boot-test.sh runs it inside its
# network namespace): a real Kamailio as the centrale's registrar and edge proxy (TLS with a
# test CA made here by openssl, digest authentication) and a baresip post behind it
# (auto-answer, mandatory SDES-SRTP, Opus/G.711 and VP8, a sine tone as its microphone,
# what it receives recorded to WAV by baresip's sndfile module).
#
#   host-peers.sh certs DIR NAME ADDR   test CA, server certificate for NAME and ADDR, and the
#                                       SIP password (DIR/ca.crt, DIR/sip-password); the guest
#                                       gets the CA and the password on its ESP
#   host-peers.sh start DIR NAME ADDR IF   Kamailio on ADDR (UDP 5060, TLS 5061) and baresip
#                                       (post1, on interface IF); waits until the post is
#                                       registered; PIDs in DIR/*.pid
#   host-peers.sh stop DIR              stops both by their PIDs
#   host-peers.sh check DIR HZ          checks what the post saw: a call established with
#                                       SRTP, and received audio that is not silence and
#                                       carries a tone of HZ (the guest's microphone)
# Nothing here leaves DIR; nothing listens outside ADDR.
set -euo pipefail

realm=beeldzorg.test
post_tone_hz=440      # what the post sends: the guest can tell it from its own tone
kamailio_modules=/usr/lib/x86_64-linux-gnu/kamailio/modules

die() { echo "host-peers: $*" >&2; exit 1; }

certs() {
    local d="$1" name="$2" addr="$3"
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Beeldzorg Image Test CA" \
        -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s,IP:%s\nextendedKeyUsage=serverAuth\n' "$name" "$addr" > "$d/ext.cnf"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
        -extfile "$d/ext.cnf" -out "$d/server.crt" 2>/dev/null
    # One digest password for every account (Kamailio checks it without a database).
    head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$d/sip-password"
    echo >> "$d/sip-password"
}

kamailio_config() {
    local d="$1" addr="$2" password="$3"
    cat > "$d/tls.cfg" <<EOF
[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
private_key = $d/server.key
certificate = $d/server.crt

[client:default]
verify_certificate = no
require_certificate = no
EOF
    # As Tests/SIPTests/KamailioHarness.swift: registrar with digest auth, INVITEs challenged
    # (407), nathelper so the tablet is reached over its own TLS connection, double
    # record-route for the TLS <-> UDP hop to the post.
    cat > "$d/kamailio.cfg" <<EOF
#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
enable_tls=yes
listen=udp:$addr:5060
listen=tls:$addr:5061
tcp_connection_lifetime=3605
tcp_accept_no_cl=yes
mpath="$kamailio_modules/"

loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"
loadmodule "nathelper.so"
loadmodule "ctl.so"
loadmodule "tls.so"

modparam("ctl", "binrpc", "unix:$d/kamailio_ctl")
modparam("tls", "config", "$d/tls.cfg")
modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", 3600)
modparam("registrar", "received_avp", "\$avp(RECEIVED)")
modparam("nathelper", "received_avp", "\$avp(RECEIVED)")
modparam("rr", "enable_double_rr", 1)

request_route {
    xlog("L_NOTICE", "request \$rm \$ru from \$si:\$sp over \$proto\n");
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (is_method("REGISTER")) {
        if (!pv_www_authenticate("$realm", "$password", "0")) {
            www_challenge("$realm", "1");
            exit;
        }
        xlog("L_NOTICE", "REGISTER accepted for \$au over \$proto contact \$ct\n");
        fix_nated_register();
        if (!save("location")) { sl_reply_error(); }
        exit;
    }
    if (has_totag()) {
        if (loose_route()) {
            handle_ruri_alias();
            t_relay();
            exit;
        }
        if (is_method("ACK")) {
            if (t_check_trans()) { t_relay(); }
            exit;
        }
        sl_send_reply("404", "Not here");
        exit;
    }
    if (is_method("CANCEL")) {
        if (t_check_trans()) { t_relay(); }
        exit;
    }
    if (is_method("INVITE")) {
        if (!pv_proxy_authenticate("$realm", "$password", "0")) {
            proxy_challenge("$realm", "1");
            exit;
        }
        xlog("L_NOTICE", "INVITE authenticated for \$au over \$proto to \$ru\n");
        consume_credentials();
    }
    remove_hf("Route");
    if (proto == TCP || proto == TLS) { add_contact_alias(); }
    record_route();
    if (!lookup("location")) {
        sl_send_reply("404", "Not Found");
        exit;
    }
    t_relay();
}
EOF
}

baresip_config() {
    local d="$1" addr="$2" iface="$3" password="$4"
    local b="$d/baresip"
    mkdir -p "$b" "$d/recordings"
    # Only what the post needs; no UI module reading a terminal. The sine source needs
    # 48 kHz stereo; baresip resamples to the negotiated codec.
    cat > "$b/config" <<EOF
poll_method		epoll
sip_listen		$addr:5070
net_interface		$iface
call_local_timeout	120
call_max_calls		4
audio_player		aubridge,nil
audio_source		ausine,$post_tone_hz
audio_alert		aubridge,nil
ausrc_srate		48000
ausrc_channels		2
audio_buffer		40-200
video_source		fakevideo,nil
video_display		fakevideo,nil
video_size		320x240
video_bitrate		300000
video_fps		15.00
rtcp_mux		no
jitter_buffer_delay	2-10
rtp_stats		yes
rtp_ports		20000-20099
snd_path		$d/recordings
module_path		/usr/lib/baresip/modules
module			opus.so
module			g711.so
module			sndfile.so
module			aubridge.so
module			ausine.so
module			vp8.so
module			fakevideo.so
module			srtp.so
module_tmp		uuid.so
module_tmp		account.so
module_app		menu.so
EOF
    # The post registers at Kamailio over UDP (the tablet's leg is the TLS one). It takes
    # only SRTP calls (mandatory SDES) and answers them at once.
    printf '<sip:post1@%s>;auth_user=post1;auth_pass=%s;outbound="sip:%s:5060";answermode=auto;mediaenc=srtp-mand;regint=300;ptime=20;audio_codecs=opus/48000/2,PCMA,PCMU\n' \
        "$addr" "$password" "$addr" > "$b/accounts"
    : > "$b/contacts"
}

start() {
    local d="$1" name="$2" addr="$3" iface="$4" password
    [ -f "$d/sip-password" ] || certs "$d" "$name" "$addr"
    password="$(tr -d '\n' < "$d/sip-password")"
    kamailio_config "$d" "$addr" "$password"
    baresip_config "$d" "$addr" "$iface" "$password"
    /usr/sbin/kamailio -DD -E -f "$d/kamailio.cfg" -Y "$d" -m 64 -M 8 -w "$d" \
        < /dev/null > "$d/kamailio.log" 2>&1 &
    echo $! > "$d/kamailio.pid"
    # Kamailio's TLS port, then the post.
    local i
    for i in $(seq 1 100); do
        kill -0 "$(cat "$d/kamailio.pid")" 2>/dev/null || { cat "$d/kamailio.log" >&2; die "kamailio exited"; }
        (exec 3<>"/dev/tcp/$addr/5061") 2>/dev/null && break
        sleep 0.1
    done
    baresip -f "$d/baresip" < /dev/null > "$d/baresip.log" 2>&1 &
    echo $! > "$d/baresip.pid"
    for i in $(seq 1 150); do
        kill -0 "$(cat "$d/baresip.pid")" 2>/dev/null || { cat "$d/baresip.log" >&2; die "baresip exited"; }
        grep -q "REGISTER accepted for post1" "$d/kamailio.log" && { echo "host-peers: kamailio $(cat "$d/kamailio.pid") on $addr (udp 5060, tls 5061), post1 (baresip $(cat "$d/baresip.pid")) registered"; return 0; }
        sleep 0.2
    done
    tail -n 30 "$d/baresip.log" "$d/kamailio.log" >&2
    die "post1 did not register at kamailio in 30 s"
}

stop() {
    local d="$1" p pid
    for p in baresip kamailio; do
        [ -f "$d/$p.pid" ] || continue
        pid="$(cat "$d/$p.pid")"
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$d/$p.pid"
    done
}

# What the post received: the call (baresip's log) and the audio (sndfile's "-dec" WAV, the
# decoded stream from the tablet).
check() {
    local d="$1" hz="$2" status=0 wav
    if grep -a -q -i "call established" "$d/baresip.log"; then
        echo "host-peers: post: call established"
    else
        echo "host-peers: FAIL: the post never established a call"; status=1
    fi
    # srtp-mand: baresip refuses a call without SRTP, so an established call was encrypted;
    # say which suite it used.
    grep -a -i -o "srtp.*\(AES_CM_128_HMAC_SHA1_[0-9]*\|AES_[0-9A-Z_]*GCM\)[^ ]*" "$d/baresip.log" | sort -u | head -n 2 | sed 's/^/host-peers: post: /' || true
    wav="$(ls -S "$d"/recordings/*dec*.wav 2>/dev/null | head -n 1 || true)"
    if [ -z "$wav" ]; then
        echo "host-peers: FAIL: the post recorded nothing (no $d/recordings/*dec*.wav)"; return 1
    fi
    if ! python3 - "$wav" "$hz" <<'EOF'
import math, struct, sys, wave
path, hz = sys.argv[1], float(sys.argv[2])
with wave.open(path) as w:
    rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
    data = w.readframes(w.getnframes())
if width != 2:
    print(f"host-peers: FAIL: {path}: {8 * width}-bit samples, expected 16"); sys.exit(1)
samples = struct.unpack(f"<{len(data) // 2}h", data)[::channels]
seconds = len(samples) / rate
# Loud frames (20 ms, RMS above -40 dBFS): the tone, not comfort noise or silence.
frame = rate // 50
loud = [samples[i:i + frame] for i in range(0, len(samples) - frame, frame)
        if math.sqrt(sum(s * s for s in samples[i:i + frame]) / frame) > 32768 * 0.01]
rms = math.sqrt(sum(s * s for s in samples) / max(1, len(samples))) / 32768
# Frequency of the loud part from its zero crossings.
crossings = sum(1 for f in loud for a, b in zip(f, f[1:]) if (a < 0) != (b < 0))
measured = crossings / 2 / (len(loud) * frame / rate) if loud else 0.0
print(f"host-peers: post received {seconds:.1f} s of audio ({rate} Hz), {len(loud) * 0.02:.1f} s of it loud, "
      f"RMS {20 * math.log10(rms) if rms > 0 else -math.inf:.1f} dBFS, tone {measured:.0f} Hz (expected {hz:.0f})")
ok = len(loud) * 0.02 >= 1.0 and abs(measured - hz) <= 0.05 * hz
if not ok:
    print("host-peers: FAIL: the post's recording does not carry the tablet's tone")
sys.exit(0 if ok else 1)
EOF
    then status=1; fi
    return "$status"
}

case "${1:-}" in
    certs) [ $# -eq 4 ] || die "usage: certs DIR NAME ADDR"; certs "$2" "$3" "$4" ;;
    start) [ $# -eq 5 ] || die "usage: start DIR NAME ADDR IF"; start "$2" "$3" "$4" "$5" ;;
    stop) [ $# -eq 2 ] || die "usage: stop DIR"; stop "$2" ;;
    check) [ $# -eq 3 ] || die "usage: check DIR HZ"; check "$2" "$3" ;;
    *) sed -n '2,20p' "$0"; exit 64 ;;
esac
