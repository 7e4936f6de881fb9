#!/usr/bin/env bash
# Build and run the libFuzzer target for the SIP parser, stream framer and SDP.
#   fuzz/run.sh [seconds]        (default 600)
# Builds .build/fuzz/sip-fuzz with -sanitize=fuzzer,address from the SIP module's pure-Swift
# sources, copies the seed corpus to .build/fuzz/corpus (so the repo's seeds stay small), and
# runs it; crashes land in .build/fuzz/ as crash-* files. Exit status is libFuzzer's.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
out=.build/fuzz
mkdir -p "$out/corpus"
cp -n fuzz/corpus/* "$out/corpus/" 2>/dev/null || true
swiftc -O -g -sanitize=fuzzer,address -parse-as-library -module-name SIPFuzz -I Sources/CCrypto -lcrypto \
    fuzz/FuzzSIP.swift \
    Sources/SIP/SIPMessage.swift Sources/SIP/SIPParser.swift Sources/SIP/SIPHeaderValues.swift \
    Sources/SIP/SIPStreamFramer.swift Sources/SIP/SDP.swift Sources/SIP/SDPNegotiation.swift \
    Sources/SIP/Digest.swift \
    -o "$out/sip-fuzz"
exec "$out/sip-fuzz" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus"
