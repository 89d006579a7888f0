#!/bin/sh
# Builds the hub the add-on image runs: build-hub.sh SRC OUT, where SRC holds protocol/ and
# gateway/ side by side. The Dockerfile runs exactly this, and so does the test suite
# (gateway/internal/config, TestAddonRelease), so the binary the tests start is built with the
# image's commands and flags. cgo is on: the inventory's SQLite driver is C.
set -eu
src=$1
out=$2
cd "$src/gateway"
CGO_ENABLED=1 GOWORK=off go build -trimpath -ldflags '-s -w' -o "$out" ./cmd/hearth-gateway
