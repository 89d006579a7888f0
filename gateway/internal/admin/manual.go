package admin

import (
	"context"
	"errors"
)

// Import records a device without an agent from its certificate (placeholder until written).
func (s *Service) Import(ctx context.Context, payload []byte) (any, error) {
	return nil, errors.New("device/import is not available yet")
}

// SignCSR signs an uploaded CSR for a device without an agent (placeholder until written).
func (s *Service) SignCSR(ctx context.Context, payload []byte) (any, error) {
	return nil, errors.New("device/sign is not available yet")
}
