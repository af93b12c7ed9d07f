#!/usr/bin/env bash
# Validates deploy/kubernetes offline: every manifest against the Kubernetes schemas
# (kubernetes-validate from PyPI, strict: unknown fields fail), the ConfigMap's hrwproxy.yaml
# with `hrwproxy check`, and no subPath mount (it would freeze the config file).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v kubernetes-validate >/dev/null || pip install -q kubernetes-validate
kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml
if grep -n "^[^#]*subPath:" deploy/kubernetes/*.yaml; then
    echo "subPath mounts freeze the config file; mount the ConfigMap as a directory" >&2
    exit 1
fi
config=$(mktemp)
trap 'rm -f "$config"' EXIT
python3 - "$config" <<'PY'
import sys, yaml
for doc in yaml.safe_load_all(open("deploy/kubernetes/hrwproxy.yaml")):
    if doc and doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] == "hrwproxy":
        open(sys.argv[1], "w").write(doc["data"]["hrwproxy.yaml"])
PY
cargo run --release -q -- check --config "$config"
echo "deploy/kubernetes: valid"
