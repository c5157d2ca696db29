package main

import (
	"path/filepath"
	"testing"
)

// TestArgoHealthFixtures runs deploy/argocd/health.lua against its fixtures with gopher-lua,
// the interpreter Argo CD uses (`go test ./...` in hack/gitops-check).
func TestArgoHealthFixtures(t *testing.T) {
	n, err := RunHealthTests(filepath.Join("..", "..", "deploy", "argocd"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d fixtures match", n)
}
