#!/usr/bin/env bash
# make demo: a real local control plane (etcd + kube-apiserver built from Go modules), the
# SecuredFhirEndpoint CRD, the example endpoint applied, then `kubectl get` and `kubectl describe`.
# Everything it starts is stopped on exit; DEMO_KEEP=1 keeps it running until Ctrl-C.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bins=$(hack/k8s-bins/build.sh)
cargo build --quiet -p testenv -p fhirlock
work=$(mktemp -d -t fhirlock-demo-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
  echo "demo: stopped everything it started"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FHIRLOCK_K8S_BINS="$bins" target/debug/testenv > "$work/testenv.json" &
pids+=($!)
for _ in $(seq 1 120); do [ -s "$work/testenv.json" ] && break; sleep 0.5; done
[ -s "$work/testenv.json" ] || { echo "demo: the control plane did not start" >&2; exit 1; }
export KUBECONFIG
KUBECONFIG=$(sed -n 's/.*"kubeconfig":"\([^"]*\)".*/\1/p' "$work/testenv.json")
kubectl=("$bins/kubectl" "--cache-dir=$work/kube-cache")

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "control plane: $("${kubectl[@]}" version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -1) at $(sed -n 's/.*"server":"\([^"]*\)".*/\1/p' "$work/testenv.json")"
step "kubectl apply -f crds/"
"${kubectl[@]}" apply -f crds/
"${kubectl[@]}" wait --for=condition=Established --timeout=60s crd/securedfhirendpoints.fhirlock.io
"${kubectl[@]}" api-resources --api-group=fhirlock.io
step "kubectl apply -f examples/fhir-endpoint.yaml"
"${kubectl[@]}" apply -f examples/fhir-endpoint.yaml
step "admission rejects a gateway IP outside its subnet (tests/fixtures/invalid/19-private-ip-outside-subnet.yaml)"
"${kubectl[@]}" apply -f tests/fixtures/invalid/19-private-ip-outside-subnet.yaml 2>&1 || true
step "kubectl get sfe"
"${kubectl[@]}" get sfe
step "kubectl describe sfe patient-records"
"${kubectl[@]}" describe sfe patient-records

if [ "${DEMO_KEEP:-}" = 1 ]; then
  step "still running: export KUBECONFIG=$KUBECONFIG (kubectl: $bins/kubectl); Ctrl-C stops everything"
  wait "${pids[0]}"
fi
