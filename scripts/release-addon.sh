#!/usr/bin/env bash
# Writes the Home Assistant add-on repository of this checkout into OUT, ready to be pushed to
# a git repository and added to the add-on store (Settings › Add-ons › Add-on store ›
# Repositories), or copied to the machine's /addons folder as a local add-on:
#
#   OUT/repository.yaml     the store's manifest, at the repository's root
#   OUT/hearth/             the add-on: addon/ of this checkout (config.yaml has no image: key,
#                           so the Supervisor builds it on the machine) plus
#   OUT/hearth/src/         the hub's sources, protocol/ and gateway/ (tracked files, tests left
#                           out), which the Dockerfile builds with build-hub.sh
#
# Usage: scripts/release-addon.sh OUT     (OUT must not exist or be empty)
set -euo pipefail
out=${1:?usage: scripts/release-addon.sh OUT}
cd "$(dirname "$0")/.."
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
	echo "release-addon: $out is not empty" >&2
	exit 1
fi
addon="$out/hearth"
mkdir -p "$addon/src"
# Tracked files only: nothing built, nothing local. The add-on's folder keeps its file modes
# (run.sh and build-hub.sh are executable).
git ls-files -z -- addon | grep -zv '^addon/repository.yaml$' |
	tar --null -T - -cf - | tar -xf - -C "$addon" --strip-components=1
cp addon/repository.yaml "$out/repository.yaml"
git ls-files -z -- protocol gateway | grep -zv -e '_test\.go$' -e '/testdata/' |
	tar --null -T - -cf - | tar -xf - -C "$addon/src"
echo "add-on repository written to $out (add-on $(sed -n 's/^version: "\(.*\)"$/\1/p' addon/config.yaml))"
