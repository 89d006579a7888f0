package testkit

import (
	"os"
	"testing"
)

// writeFile writes data to path with mode 0600 or fails the test.
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
