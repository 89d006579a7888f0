#!/usr/bin/with-contenv bashio
# shellcheck shell=bash
# Starts the Hearth hub as the add-on's main process. with-contenv passes the container
# environment (SUPERVISOR_TOKEN among it) through s6-overlay; the hub reads its options from
# /data/options.json itself and handles SIGTERM, so this script only hands over with exec.
set -euo pipefail

# Go's soft memory limit, unless the environment sets one (gomemlimit.sh says how).
GOMEMLIMIT="${GOMEMLIMIT:-$(/gomemlimit.sh)}"
export GOMEMLIMIT

bashio::log.info "Starting the Hearth hub (GOMEMLIMIT ${GOMEMLIMIT})"
exec /usr/bin/hearth-gateway serve --addon
