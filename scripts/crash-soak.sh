#!/usr/bin/env bash
# Crash soak for the Store: SIGKILL store-crash-writer at random moments, N times (default
# 1000), and after each kill check with the sqlite3 command-line tool (not our code) that
#   - PRAGMA integrity_check says ok, and
#   - every call id the writer printed (it prints only after the commit returned) is in
#     callRecord with its final outcome and has its outbox row.
# Each new writer reopens the same file, so WAL recovery after a kill is exercised too.
#
# Usage: scripts/crash-soak.sh [ITERATIONS] [DBDIR]
# Needs: swift (builds the writer), sqlite3 (Debian package sqlite3).
# The same check, fewer times, runs in CI as StoreTests' CrashSafetyTests;
# `STORE_CRASH_ITERATIONS=1000 swift test --filter CrashSafetyTests` runs that one longer.
set -euo pipefail

iterations=${1:-1000}
dir=${2:-$(mktemp -d /tmp/beeldzorg-crash-soak.XXXXXX)}
cd "$(dirname "$0")/.."
command -v sqlite3 >/dev/null || { echo "sqlite3 not found (apt-get install sqlite3)" >&2; exit 2; }

swift build --product store-crash-writer >&2
writer="$(swift build --show-bin-path)/store-crash-writer"
db="$dir/soak.sqlite"
out="$dir/out.txt"
mkdir -p "$dir"

total=0
after_commit=0
for ((i = 1; i <= iterations; i++)); do
    "$writer" "$db" >"$out" 2>>"$dir/stderr.txt" &
    pid=$!
    # 5…150 ms: from before the first commit to dozens of commits in.
    sleep "$(printf '0.%03d' $((RANDOM % 146 + 5)))"
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null && { echo "iteration $i: writer exited by itself" >&2; exit 1; } || true

    # Only complete lines count: a line cut short by the kill was never fully reported.
    if [[ -s "$out" && "$(tail -c 1 "$out" | od -An -c | tr -d ' ')" != '\n' ]]; then
        sed -i '$d' "$out"
    fi
    reported=$(grep -c . "$out" || true)
    total=$((total + reported))
    ((reported > 0)) && after_commit=$((after_commit + 1))

    check=$(sqlite3 "$db" "PRAGMA integrity_check")
    if [[ "$check" != "ok" ]]; then
        echo "iteration $i: integrity_check: $check" >&2
        exit 1
    fi
    if ((reported > 0)); then
        missing=$(sort "$out" | comm -23 - <(sqlite3 "$db" \
            "SELECT c.id FROM callRecord c JOIN outbox o ON o.id = c.id WHERE c.outcome = 'answered'" | sort))
        if [[ -n "$missing" ]]; then
            echo "iteration $i: reported but missing:" >&2
            echo "$missing" >&2
            exit 1
        fi
    fi
    ((i % 100 == 0)) && echo "$i kills, $total reported commits verified" >&2
done
echo "ok: $iterations kills ($after_commit after at least one commit), $total reported commits verified in $db"
