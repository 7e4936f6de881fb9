#!/usr/bin/env bash
# Builds everything and runs every test. README's test command (`make test`) and CI
# (`.ci/run`) both end here.
set -euo pipefail
cd "$(dirname "$0")/.."

# The units and udev rules, with systemd's and udev's own tools (seconds).
scripts/check-units.sh

swift build --build-tests
# Swift Testing runs tests in parallel; the summary line at the end is the verdict.
swift test --skip-build 2>&1 | tee .build/test-output.txt
