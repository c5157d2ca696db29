#!/usr/bin/env bash
# make demo: a real local control plane (etcd + kube-apiserver built from Go modules), the
# emulated Azure seeded with a wide-open FHIR estate, the fhirlock operator, and
# examples/fhir-endpoint.yaml driven to Ready. Shows the audit before, kubectl get and describe,
# and the audit after; stops everything it started. DEMO_KEEP=1 keeps it running until Ctrl-C.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bins=$(hack/k8s-bins/build.sh)
cargo build --quiet -p testenv -p fhirlock -p arm-emulator
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

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
json() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" "$2"; }
wait_line() { for _ in $(seq 1 240); do [ -s "$1" ] && return 0; sleep 0.5; done; echo "demo: $2 did not start" >&2; exit 1; }

# 1. Kubernetes.
FHIRLOCK_K8S_BINS="$bins" target/debug/testenv up > "$work/testenv.json" &
pids+=($!)
wait_line "$work/testenv.json" "the control plane"
export KUBECONFIG
KUBECONFIG=$(json kubeconfig "$work/testenv.json")
kubectl=("$bins/kubectl" "--cache-dir=$work/kube-cache")

# 2. Azure, emulated: a VNet, a site with default Allow, SCM open and an office IP rule, and a
#    Cosmos account open to public IP rules and Azure services. A gateway takes 300 s of Azure
#    time; time-scale 0.02 plays it in 6 s.
target/debug/arm-emulator --addr 127.0.0.1:0 --data-dir "$work/azure" --config examples/arm-emulator-estate.yaml \
  --time-scale 0.02 > "$work/emulator.json" 2> "$work/emulator.log" &
pids+=($!)
wait_line "$work/emulator.json" "the emulator"
arm=$(json arm_endpoint "$work/emulator.json")
export FHIRLOCK_ARM_ENDPOINT="$arm" AZURE_AUTHORITY_HOST="$(json authority_host "$work/emulator.json")"
export FHIRLOCK_CA_BUNDLE="$(json ca_path "$work/emulator.json")" FHIRLOCK_ARM_AUDIENCE=https://management.azure.com
# The emulator's development operator principal (docs/emulator.md).
export AZURE_TENANT_ID=6f1c2a52-0000-4000-8000-00000000a001 AZURE_CLIENT_ID=6f1c2a52-0000-4000-8000-00000000c001
export AZURE_CLIENT_SECRET=fhirlock-dev-secret
# fhirlock gives a Cosmos DB firewall change 15 minutes to arrive; the emulator's 900 s, at 0.02.
export FHIRLOCK_COSMOS_FIREWALL_PROPAGATION_SECONDS=19
step "control plane $("${kubectl[@]}" version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -1); emulated Azure at $arm"

step "fhirlock audit -f examples/fhir-endpoint.yaml   (before)"
target/debug/fhirlock audit -f examples/fhir-endpoint.yaml || true

# 3. The operator.
"${kubectl[@]}" apply -f crds/ >/dev/null
"${kubectl[@]}" wait --for=condition=Established --timeout=60s crd/securedfhirendpoints.fhirlock.io >/dev/null
target/debug/fhirlock run --config examples/tenancy.yaml --metrics-addr 127.0.0.1:0 --resync-seconds 30 \
  --log-format text > "$work/operator.log" 2>&1 &
pids+=($!)

# 4. The endpoint: its certificate (what cert-manager would write), then the resource.
target/debug/testenv cert fhir.trust.nhs.uk "$work/tls"
"${kubectl[@]}" create secret tls fhir-tls --cert "$work/tls/tls.crt" --key "$work/tls/tls.key" >/dev/null
step "kubectl apply -f examples/fhir-endpoint.yaml"
"${kubectl[@]}" apply -f examples/fhir-endpoint.yaml
step "waiting for Ready"
if ! "${kubectl[@]}" wait --for=condition=Ready --timeout=180s sfe/patient-records; then
  tail -40 "$work/operator.log"
  exit 1
fi

step "waiting for Reachable (the gateway's backend health, read once the endpoint is Ready)"
"${kubectl[@]}" wait --for=condition=Reachable --timeout=60s sfe/patient-records || true

step "kubectl get sfe"
"${kubectl[@]}" get sfe
step "kubectl describe sfe patient-records"
"${kubectl[@]}" describe sfe patient-records
step "fhirlock audit -f examples/fhir-endpoint.yaml   (after)"
target/debug/fhirlock audit -f examples/fhir-endpoint.yaml

if [ "${DEMO_KEEP:-}" = 1 ]; then
  step "still running: export KUBECONFIG=$KUBECONFIG (kubectl: $bins/kubectl); Ctrl-C stops everything"
  wait "${pids[0]}"
fi
