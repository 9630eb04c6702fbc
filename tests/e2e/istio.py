"""Istio helpers for the tests: `switchyard render istio`, the CRD schema check,
and an Envoy bootstrap built from the rendered objects the way istiod and
istio-agent would configure a proxy (no Kubernetes here).

Schema check: the API server validates a custom resource against the
`openAPIV3Schema` of its CRD version. Istio's schemas do not forbid unknown
fields (the server prunes them, and `kubectl apply --validate=strict` refuses
them), so `validate` also refuses any field the schema does not declare — the
strict behaviour. CEL rules are not JSON schema; the two that matter here (the
WasmPlugin URL scheme, selector vs targetRefs) are checked by hand.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from functools import lru_cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CRDS = Path(os.environ.get("SWITCHYARD_ISTIO_CRDS", ROOT.parent / "shared" / "istio" / "crds.yaml"))


def render(switchyard: Path, config: Path, *args: str) -> list[dict]:
    """`switchyard render istio --config CONFIG ARGS…` → the objects it prints."""
    argv = [str(switchyard), "render", "istio", "--config", str(config), *args]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def render_text(switchyard: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [str(switchyard), "render", "istio", "--config", str(config), *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _strict(schema: dict) -> dict:
    """The schema with unknown fields refused wherever it lists properties."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    # apiVersion, kind, metadata are the API server's, not the CRD's.
    s.setdefault("properties", {}).update(
        {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}})
    return s


@lru_cache(maxsize=1)
def schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) → strict JSON schema, from crds.yaml."""
    if not CRDS.is_file():
        raise FileNotFoundError(f"Istio CRDs not found at {CRDS} (set SWITCHYARD_ISTIO_CRDS)")
    out = {}
    for crd in yaml.safe_load_all(CRDS.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            out[(f"{group}/{v['name']}", kind)] = _strict(v["schema"]["openAPIV3Schema"])
    return out


def validate(obj: dict) -> list[str]:
    """Every problem the API server (strict field validation) would report."""
    import jsonschema

    key = (obj.get("apiVersion"), obj.get("kind"))
    schema = schemas().get(key)
    if schema is None:
        return [f"no CRD serves {key}"]
    validator = jsonschema.Draft7Validator(schema)
    problems = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in validator.iter_errors(obj)]
    meta = obj.get("metadata") or {}
    if not meta.get("name") or not meta.get("namespace"):
        problems.append("metadata: name and namespace are required")
    spec = obj.get("spec") or {}
    if obj.get("kind") == "WasmPlugin":
        # CEL rules of the WasmPlugin CRD.
        if spec.get("url", "").split("://")[0] not in ("http", "https", "file", "oci"):
            problems.append("spec.url: url must have schema one of [http, https, file, oci]")
        if "selector" in spec and ("targetRefs" in spec or "targetRef" in spec):
            problems.append("spec: only one of targetRefs or selector can be set")
    return problems


# ------------------------------------------------------------------ istiod's view


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def subset_cluster(port: int, subset: str, host: str) -> str:
    """Istio's Envoy cluster of a subset (pilot/pkg/model/service.go BuildSubsetKey)."""
    return f"outbound|{port}|{subset}|{host}"


def plugin_ecds(obj: dict, wasm_path: Path) -> dict:
    """The TypedExtensionConfig istiod serves for a WasmPlugin, after istio-agent
    rewrote its remote code to the local file it fetched
    (pilot/pkg/model/extensions.go buildWasmConfig/buildVMConfig,
    pkg/wasm/convert.go): name `<ns>.<name>`, root id = pluginName, no vm_id,
    the pluginConfig as a JSON StringValue, failStrategy → failure_policy."""
    spec, meta = obj["spec"], obj["metadata"]
    name = f"{meta['namespace']}.{meta['name']}"
    policy = {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN",
              "FAIL_RELOAD": "FAIL_RELOAD"}[spec.get("failStrategy", "FAIL_CLOSE")]
    return {
        "name": name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": spec.get("pluginName", ""),
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": json.dumps(spec["pluginConfig"])},
                "failure_policy": policy,
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(wasm_path)}},
                    "environment_variables": {"key_values": {
                        "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": "1"}},
                },
            },
        },
    }


def routes_of(vs: dict, hosts: dict[str, int]) -> list[dict]:
    """A VirtualService's http routes as istiod translates them
    (pilot/pkg/networking/core/route/route.go): header matches, destination
    subset → `outbound|port|subset|host`, `headers.request.remove` →
    request_headers_to_remove, the subset's consistentHash → the route's hash
    policy, directResponse as is."""
    drs = hosts["_drs"]
    out = []
    for r in vs["spec"]["http"]:
        envoy_route: dict = {"name": r.get("name", "")}
        headers = []
        for m in r.get("match", []):
            for h, cond in m.get("headers", {}).items():
                headers.append({"name": h, "string_match": {"exact": cond["exact"]}})
        envoy_route["match"] = {"prefix": "/", **({"headers": headers} if headers else {})}
        if "directResponse" in r:
            envoy_route["direct_response"] = {"status": r["directResponse"]["status"],
                                              "body": {"inline_string": r["directResponse"]["body"]["string"]}}
            envoy_route["response_headers_to_add"] = [
                {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                for k, v in r.get("headers", {}).get("response", {}).get("set", {}).items()]
        else:
            dest = r["route"][0]["destination"]
            port = dest["port"]["number"]
            action: dict = {"cluster": subset_cluster(port, dest["subset"], dest["host"]), "timeout": "0s"}
            subset = next(s for s in drs[dest["host"]]["spec"]["subsets"] if s["name"] == dest["subset"])
            ch = subset.get("trafficPolicy", {}).get("loadBalancer", {}).get("consistentHash")
            if ch:
                action["hash_policy"] = [{"header": {"header_name": ch["httpHeaderName"]}}]
            envoy_route["route"] = action
            removed = r.get("headers", {}).get("request", {}).get("remove", [])
            if removed:
                envoy_route["request_headers_to_remove"] = removed
        out.append(envoy_route)
    return out


def clusters_of(objs: list[dict], endpoints: dict[tuple[str, str], list[tuple[str, int]]]) -> list[dict]:
    """Istio's subset clusters from the DestinationRules (LB policy per subset,
    Maglev with the DR's table size) with the EnvoyFilter CLUSTER patches
    merged (hash_balance_factor). `endpoints`: (host, version) → the pods."""
    balance = {}
    for ef in by_kind(objs, "EnvoyFilter"):
        for p in ef["spec"]["configPatches"]:
            if p["applyTo"] == "CLUSTER":
                c = p["match"]["cluster"]
                key = subset_cluster(c["portNumber"], c["subset"], c["service"])
                balance[key] = p["patch"]["value"]["common_lb_config"]
    out = []
    for dr in by_kind(objs, "DestinationRule"):
        host = dr["spec"]["host"]
        port = next(r["route"][0]["destination"]["port"]["number"]
                    for vs in by_kind(objs, "VirtualService")
                    for r in vs["spec"]["http"] if "route" in r and r["route"][0]["destination"]["host"] == host)
        for s in dr["spec"]["subsets"]:
            name = subset_cluster(port, s["name"], host)
            version = next(iter(s["labels"].values()))
            lb = s["trafficPolicy"]["loadBalancer"]
            c: dict = {"name": name, "type": "STATIC", "connect_timeout": "10s",
                       "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                           {"endpoint": {"address": {"socket_address": {"address": a, "port_value": p}}}}
                           for a, p in endpoints[(host, version)]]}]}}
            if "consistentHash" in lb:
                c["lb_policy"] = "MAGLEV"
                c["maglev_lb_config"] = {"table_size": lb["consistentHash"]["maglev"]["tableSize"]}
            else:
                c["lb_policy"] = lb["simple"]
            if name in balance:
                c["common_lb_config"] = balance[name]
            out.append(c)
    return out


# ------------------------------------------------------------------ the OCI image


def package(switchyard: Path, wasm: Path, out: Path, tag: str) -> dict:
    """`switchyard package` → its JSON report."""
    argv = [str(switchyard), "--output", "json", "package", "--wasm", str(wasm), "--out", str(out), "--tag", tag]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout)


def unpack_like_istio_agent(layout: Path, tag: str, expected_sha256: str, dest: Path) -> Path:
    """What istio-agent does with `oci://…:tag` and `sha256` (pkg/wasm/cache.go,
    pkg/wasm/imagefetcher.go): the manifest's digest must equal `sha256`; a
    manifest that is not Docker's is read as the OCI "compat" variant — the
    last layer must be `application/vnd.oci.image.layer.v1.tar+gzip`, gunzipped
    and untarred, and the entry whose base name is `plugin.wasm` is the module,
    which must start with the wasm magic number. Returns the file it writes."""
    import gzip
    import hashlib
    import io
    import tarfile

    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    blob = lambda digest: (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()  # noqa: E731
    manifest_bytes = blob(desc["digest"])
    actual = hashlib.sha256(manifest_bytes).hexdigest()
    if actual != expected_sha256:
        raise ValueError(f"module has checksum {actual}, which does not match: {expected_sha256}")
    manifest = json.loads(manifest_bytes)
    assert manifest.get("mediaType") != "application/vnd.docker.distribution.manifest.v2+json"
    layer = manifest["layers"][-1]
    if layer["mediaType"] != "application/vnd.oci.image.layer.v1.tar+gzip":
        raise ValueError(f"invalid media type {layer['mediaType']}")
    data = blob(layer["digest"])
    assert hashlib.sha256(data).hexdigest() == layer["digest"].split(":", 1)[1]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        member = next(m for m in tar.getmembers() if Path(m.name).name == "plugin.wasm")
        module = tar.extractfile(member).read()
    if module[:4] != b"\0asm":
        raise ValueError("fetched Wasm binary is invalid")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # istio-agent names the cached module by its checksum.
    out = dest.parent / f"{hashlib.sha256(module).hexdigest()}.wasm"
    out.write_bytes(module)
    return out
