#!/usr/bin/env bash
# Debian packages the Python ones cannot bring: graphviz (the `dot` binary that renders graphs)
# and chromium (the headless browser the HTML player's test drives).
# Usage: tools/system-packages.sh PROGRAM:PACKAGE ...   e.g. dot:graphviz chromium:chromium
# Installs the missing ones with apt-get when run as root on Debian/Ubuntu; otherwise says how.
set -u
missing=()
for pair in "$@"; do
  program=${pair%%:*} package=${pair#*:}
  command -v "$program" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "note: missing system packages: ${missing[*]}. Install them yourself (Debian/Ubuntu:" \
       "sudo apt-get install ${missing[*]}; macOS: brew install graphviz and a Chromium)." \
       "Without them the tests that need them skip and say why."
fi
exit 0
