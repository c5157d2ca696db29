// gitops-check evaluates Kubernetes objects the way Flux and Argo CD do, so that fhirlock's
// status conventions and its Argo CD health script are tested with the real libraries:
//
//	gitops-check kstatus FILE...            kstatus (sigs.k8s.io/cli-utils, and Flux's fork
//	                                         github.com/fluxcd/cli-utils, which must agree)
//	gitops-check argo-health SCRIPT FILE... the Argo CD health Lua SCRIPT under gopher-lua,
//	                                         set up as Argo CD sets up a resource customization
//	gitops-check argo-health-test DIR       Argo CD's own fixture format: DIR/health.lua,
//	                                         DIR/health_test.yaml (tests[].inputPath, healthStatus)
//
// Each FILE holds one object (YAML or JSON, as `kubectl get -o json` writes it). kstatus and
// argo-health print one JSON line per object: {"file","name","status","message"}.
package main

import (
	"encoding/json"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "kstatus":
		err = forEach(os.Args[2:], func(path string) (Result, error) { return KStatus(path) })
	case "argo-health":
		if len(os.Args) < 4 {
			usage()
		}
		script, rerr := os.ReadFile(os.Args[2])
		if rerr != nil {
			fail(rerr)
		}
		err = forEach(os.Args[3:], func(path string) (Result, error) { return ArgoHealthFile(string(script), path) })
	case "argo-health-test":
		var n int
		n, err = RunHealthTests(os.Args[2])
		if err == nil {
			fmt.Printf("argo-health-test: %d fixtures match\n", n)
		}
	default:
		usage()
	}
	if err != nil {
		fail(err)
	}
}

// Result is what one tool says about one object.
type Result struct {
	File    string `json:"file"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func forEach(paths []string, f func(string) (Result, error)) error {
	enc := json.NewEncoder(os.Stdout)
	for _, p := range paths {
		r, err := f(p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		r.File = p
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: gitops-check kstatus FILE... | argo-health SCRIPT FILE... | argo-health-test DIR")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gitops-check:", err)
	os.Exit(1)
}
