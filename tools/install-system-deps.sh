#!/usr/bin/env bash
# Installs the Debian packages the kit's tests and demo need, only those missing.
# Runs apt-get as root, or through sudo; says what it would install when it cannot.
set -euo pipefail
pkgs=(gcc-avr avr-libc arduino-core-avr simavr libsimavr-dev mosquitto chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "error: need root or sudo to install: ${missing[*]}" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
