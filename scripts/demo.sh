#!/usr/bin/env bash
# The demo (`make demo`): beeldzorgd on this machine with config/demo.yaml — a demo centrale
# on loopback, the keyboard as the button, a test-pattern camera and a tone as microphone.
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p /tmp/beeldzorg-demo
bin=$(swift build --show-bin-path)
if [ ! -x "$bin/beeldzorgd" ]; then swift build; fi

cat <<TXT
Beeldzorg demo — the tablet daemon with a demo centrale on 127.0.0.1.

  Enter            press the button (call the centrale / answer a call)
  l then Enter     a long press (hang up / cancel)
  Ctrl-C           stop

In another terminal:
  export BEELDZORG_CONTROL_SOCKET=/tmp/beeldzorg-demo/control.sock
  $bin/beeldzorgctl status
  $bin/beeldzorgctl demo call-in --from sip:marieke@127.0.0.1
  $bin/beeldzorgctl calls --database /tmp/beeldzorg-demo/beeldzorg.sqlite

TXT
exec "$bin/beeldzorgd" --config config/demo.yaml --console --log-level "${LOG_LEVEL:-warning}"
