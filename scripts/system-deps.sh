#!/usr/bin/env bash
# Install the Debian packages the node and its tests use, when missing and running as root;
# otherwise print one line saying what to install. Fast when nothing is missing.
set -euo pipefail

declare -A package_for=(
  [redis-server]=redis-server   # embedded Redis
  [ffmpeg]=ffmpeg               # video and audio steps
  [chromium]=chromium           # browser tests of the web UI
  [docker-compose]=docker-compose  # checks docker-compose.yml (`docker-compose config`)
)
missing=()
for command in redis-server ffmpeg chromium docker-compose; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${package_for[$command]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "missing system packages; install them with: sudo apt-get install ${missing[*]}" >&2
fi
