#!/usr/bin/env bash
# Debian packages ScanTrail needs beyond Python, Java, Go and Rust:
# libzbar0 for pyzbar, pkg-config for the libflux build of InfluxDB,
# chromium and chromium-driver for the browser tests of the web pages (Debian's
# builds: nothing is fetched from a browser vendor), poppler-utils (pdftoppm)
# to render the daily report's PDF to PNG in its test, fonts-wqy-zenhei so
# zh-CN pages and venue posters show Chinese rather than empty boxes.
set -euo pipefail
need=()
for pkg in libzbar0 pkg-config chromium chromium-driver poppler-utils fonts-wqy-zenhei; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${need[*]} (run: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
echo "[deps] installing ${need[*]} from Debian"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
