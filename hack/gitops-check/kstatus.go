package main

import (
	"fmt"

	fluxstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// KStatus computes the kstatus of the object in path with sigs.k8s.io/cli-utils and with Flux's
// fork of it (what kustomize-controller links today), and fails if the two disagree.
func KStatus(path string) (Result, error) {
	u, err := readObject(path)
	if err != nil {
		return Result{}, err
	}
	res, err := status.Compute(u)
	if err != nil {
		return Result{}, fmt.Errorf("kstatus: %w", err)
	}
	flux, err := fluxstatus.Compute(u)
	if err != nil {
		return Result{}, fmt.Errorf("kstatus (fluxcd/cli-utils): %w", err)
	}
	if string(flux.Status) != string(res.Status) {
		return Result{}, fmt.Errorf("sigs.k8s.io/cli-utils says %s but fluxcd/cli-utils says %s", res.Status, flux.Status)
	}
	return Result{Name: u.GetNamespace() + "/" + u.GetName(), Status: string(res.Status), Message: res.Message}, nil
}
