#!/usr/bin/env bash
# Builds everything and runs every test target. README's test command (`make test`) and
# CI (`.ci/run`) both end here.
set -euo pipefail
cd "$(dirname "$0")/.."

swift build --build-tests
swift test --skip-build 2>&1 | tee .build/test-output.txt
