#!/usr/bin/env bash
# Prints the GOMEMLIMIT the add-on gives the hub: a quarter of the memory the container may
# use (its cgroup v2 limit, else the machine's MemTotal), at least 256 MiB, as "<n>MiB".
# Below the limit Go collects garbage as usual (GOGC 100); near it, more often instead of
# letting garbage grow the process, which measured cheap where a lower GOGC was not
# (README.md, Performance). It is not a cap: a hub whose live memory needs more gets it.
# HEARTH_CGROUP_MEMORY_MAX and HEARTH_MEMINFO name other files (for the test).
set -euo pipefail
mem=$(cat "${HEARTH_CGROUP_MEMORY_MAX:-/sys/fs/cgroup/memory.max}" 2>/dev/null || echo max)
case "${mem}" in
'' | max | *[!0-9]*) mem=$(($(awk '/^MemTotal:/ {print $2}' "${HEARTH_MEMINFO:-/proc/meminfo}") * 1024)) ;;
esac
limit=$((mem / 4 >> 20))
[ "${limit}" -ge 256 ] || limit=256
echo "${limit}MiB"
