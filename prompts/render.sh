#!/bin/sh
# Renders the spoken prompts to WAV (48 kHz, mono, signed 16-bit) with espeak-ng's Dutch
# voice and sox. Run at build/image time; needs the Debian packages espeak-ng and sox.
#
#   prompts/render.sh [TEXTFILE [OUTDIR]]     every spoken prompt without a {placeholder}
#                                             (screen_* lines are screen text, not rendered)
#                                             (default prompts/nl.txt -> prompts/wav/nl/KEY.wav;
#                                             DIR/LANG.txt -> DIR/wav/LANG/KEY.wav)
#   prompts/render.sh --text "Zin." OUT.wav   one sentence
#
# Prompts with a {placeholder} ({naam}, {seconden}) are rendered by the daemon at run time,
# whole sentence at once so the intonation stays natural, with exactly these settings
# (Devices/SpeechRenderer.swift mirrors them; a test checks both give the same samples).
# VOICE and SPEED may be overridden from the environment.
set -eu

VOICE="${VOICE:-nl}"
SPEED="${SPEED:-145}"   # words per minute; espeak-ng's 175 is too quick for our clients

render_one() {  # TEXT OUT
    tmp="$(mktemp --suffix=.wav)"
    printf '%s' "$1" | espeak-ng -v "$VOICE" -s "$SPEED" -w "$tmp"
    sox -D "$tmp" -r 48000 -c 1 -b 16 -e signed-integer "$2"   # -D: no dither, so output is reproducible
    rm -f "$tmp"
}

if [ "${1:-}" = "--text" ]; then
    [ $# -eq 3 ] || { echo "usage: $0 --text TEXT OUT.wav" >&2; exit 2; }
    render_one "$2" "$3"
    exit 0
fi

here="$(cd "$(dirname "$0")" && pwd)"
textfile="${1:-$here/nl.txt}"
# Default: next to the texts, DIR/wav/LANG/ — the layout PromptLibrary(promptsDirectory:) reads.
outdir="${2:-$(dirname "$textfile")/wav/$(basename "$textfile" .txt)}"
mkdir -p "$outdir"

n=0
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    case "$line" in ''|'#'*) continue ;; esac
    case "$line" in *=*) ;; *) echo "$textfile:$lineno: expected 'key = text'" >&2; exit 1 ;; esac
    key="$(printf '%s' "${line%%=*}" | sed 's/[[:space:]]*$//; s/^[[:space:]]*//')"
    text="$(printf '%s' "${line#*=}" | sed 's/[[:space:]]*$//; s/^[[:space:]]*//')"
    case "$text" in *'{'*) echo "skip $key (has a placeholder; rendered at run time)"; continue ;; esac
    # screen_* lines are words on the screen (Sources/Screen/ScreenTexts.swift), never spoken.
    case "$key" in screen_*) continue ;; esac
    render_one "$text" "$outdir/$key.wav"
    n=$((n + 1))
done < "$textfile"
echo "rendered $n prompts into $outdir"
