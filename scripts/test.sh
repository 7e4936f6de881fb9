#!/usr/bin/env bash
# Builds everything and runs every test. README's test command (`make test`) and CI
# (`.ci/run`) both end here.
set -euo pipefail
cd "$(dirname "$0")/.."

# The units and udev rules, with systemd's and udev's own tools (seconds).
scripts/check-units.sh

swift build --build-tests
# One test at a time: many tests start real peers (beeldzorgd, sipp, Kamailio, ffmpeg, a
# SIGKILLed writer) whose timing on 2 cores should not depend on what else runs beside them.
swift test --skip-build --no-parallel 2>&1 | tee .build/test-output.txt
