#!/usr/bin/env bash
# Screenshot a self-contained HTML report with headless Chromium.
#
# Usage: scripts/screenshot_report.sh REPORT.html OUT.png [WIDTH] [HEIGHT]
#   WIDTH x HEIGHT is the browser window in CSS pixels (default 1500 x 3200);
#   the screenshot shows that window from the top of the page.
# Needs chromium, chromium-browser or google-chrome on PATH
# (Debian/Ubuntu: apt-get install -y chromium). Runs offline: the report
# fetches nothing, and its Content-Security-Policy would refuse it anyway.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 4 ]]; then
    echo "usage: $0 REPORT.html OUT.png [WIDTH] [HEIGHT]" >&2
    exit 2
fi
report=$1
out=$2
width=${3:-1500}
height=${4:-3200}

if [[ ! -f "$report" ]]; then
    echo "error: report $report not found; write it with albsnn-compress report REPORT.json --format html -o REPORT.html" >&2
    exit 2
fi
browser=""
for candidate in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$candidate" >/dev/null 2>&1; then
        browser=$candidate
        break
    fi
done
if [[ -z "$browser" ]]; then
    echo "error: no chromium, chromium-browser or google-chrome on PATH; install one (apt-get install -y chromium)" >&2
    exit 2
fi

sandbox=()
if [[ $(id -u) -eq 0 ]]; then
    sandbox=(--no-sandbox)  # Chromium refuses to run its sandbox as root
fi
absolute=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")
out_dir=$(cd "$(dirname "$out")" && pwd)
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

shot="$out_dir/$(basename "$out")"
rm -f "$shot"
# Offline: without the network flags Chromium can wait on connections it cannot make.
status=0
timeout 120 "$browser" --headless "${sandbox[@]}" --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
    --user-data-dir="$profile" --window-size="${width},${height}" \
    --screenshot="$shot" "file://$absolute" >/dev/null 2>&1 || status=$?
if [[ $status -ne 0 || ! -s "$shot" ]]; then
    echo "error: $browser wrote no screenshot to $out (exit status $status; 124: gave up after 120 s)" >&2
    exit 1
fi
echo "$out"
