#!/usr/bin/env bash
# Installs the Debian packages the kit's tests and demo need, only those missing:
# Node.js and npm (solc-js, anvil, Hardhat 2), Python's venv module, Mosquitto (the
# MQTT broker the cloud bridge's tests run against) and openssl (their TLS certificates),
# and the AVR toolchain, Arduino core, simavr and avrdude for the Uno firmware.
# Runs apt-get as root, or through sudo; says what it needs when it can do neither.
set -euo pipefail
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing+=(mosquitto)
command -v openssl >/dev/null || missing+=(openssl)
# Arduino Uno firmware: compiler, C library, Arduino core, simulator, uploader.
for pkg in gcc-avr avr-libc arduino-core-avr simavr libsimavr-dev avrdude; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "error: need root or sudo to install: ${missing[*]}" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
