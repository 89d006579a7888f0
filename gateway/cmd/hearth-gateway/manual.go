package main

import (
	"context"
	"errors"
	"io"

	"github.com/hearth-pki/hearth/gateway/internal/control"
)

// runManual implements `device import` and `device sign` (placeholder until written).
func runManual(ctx context.Context, client *control.Client, name, device, devName, family string, args []string, asJSON bool, stdout io.Writer) error {
	return errors.New(name + " is not available yet")
}
