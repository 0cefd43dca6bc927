"""The Kubernetes manifests in deploy/cluster/ are consistent with each other and the code.

Static checks only (no cluster): every document parses and names itself in the
``scantrail`` namespace, every ConfigMap/Secret reference resolves (Secrets to
the ones documented in deploy/cluster/README.md, since no Secret lives in the
repository), no secret value is written down, probes hit declared ports, the
ConfigMap holds only real settings that the settings classes accept, the worker
does not outnumber the partitions, and the pager's roster is wired to its
secrets.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "deploy" / "cluster"
NAMESPACE = "scantrail"
IMAGE = "registry.example/scantrail:0.1.0"
SECRETISH = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|PRIVATE|CREDENTIAL|(^|_)KEY$", re.I)

Obj = dict[str, Any]


def manifest_files() -> list[Path]:
    return sorted(p for p in CLUSTER.glob("*.yaml") if p.name != "kustomization.yaml")


def load_objects() -> list[Obj]:
    objects: list[Obj] = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                objects.append(doc)
    return objects


OBJECTS = load_objects()
README = (CLUSTER / "README.md").read_text(encoding="utf-8")


def by_kind(kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in OBJECTS if o.get("kind") == kind}


def config() -> dict[str, str]:
    return by_kind("ConfigMap")["scantrail-config"]["data"]


def pod_specs() -> Iterator[tuple[str, Obj]]:
    for obj in OBJECTS:
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


def containers() -> Iterator[tuple[str, Obj, Obj]]:
    for where, spec in pod_specs():
        for c in spec.get("initContainers", []) + spec["containers"]:
            yield f"{where}/{c['name']}", c, spec


def workload(kind: str, name: str) -> Obj:
    return by_kind(kind)[name]


def only_container(obj: Obj) -> Obj:
    (container,) = obj["spec"]["template"]["spec"]["containers"]
    return container


def documented_secrets() -> dict[str, set[str]]:
    """Secrets named in the README's table, with their keys, each also in a create command."""
    secrets: dict[str, set[str]] = {}
    for match in re.finditer(r"^\s*\| `(scantrail-[\w-]+)` \| (.+?) \|", README, re.M):
        name, keys = match.group(1), match.group(2)
        if f"create secret generic {name}" in README:
            secrets[name] = set(re.findall(r"`([\w.-]+)`", keys))
    return secrets


# -- every document ------------------------------------------------------------------


def test_every_yaml_file_parses_and_is_in_the_kustomization() -> None:
    assert len(OBJECTS) >= 10
    kustomization = yaml.safe_load((CLUSTER / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["namespace"] == NAMESPACE
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    for path in ROOT.joinpath("deploy", "kiosk").glob("*"):
        assert path.stat().st_size > 0


def test_every_object_names_itself_in_the_namespace() -> None:
    for obj in OBJECTS:
        assert obj.get("apiVersion"), obj
        assert obj.get("kind"), obj
        name = obj.get("metadata", {}).get("name")
        assert name, obj
        if obj["kind"] == "Namespace":
            assert name == NAMESPACE
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{obj['kind']}/{name}"
    keys = [(o["kind"], o["metadata"]["name"]) for o in OBJECTS]
    assert len(keys) == len(set(keys)), "duplicate objects"


def test_the_expected_workloads_exist() -> None:
    assert set(by_kind("StatefulSet")) == {"scantrail-worker", "scantrail-sink-influx"}
    assert set(by_kind("Deployment")) == {"scantrail-pager"}
    assert set(by_kind("Job")) == {"scantrail-topics"}
    assert set(by_kind("ConfigMap")) == {"scantrail-config", "scantrail-pager-roster"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_renders_the_same_objects() -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(CLUSTER)], capture_output=True, text=True, check=True
    ).stdout
    rendered = {(o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(out) if o}
    assert rendered == {(o["kind"], o["metadata"]["name"]) for o in OBJECTS}


# -- references and secrets ------------------------------------------------------------


def test_configmap_and_secret_references_resolve() -> None:
    configmaps = {name: set(o.get("data", {})) for name, o in by_kind("ConfigMap").items()}
    secrets = documented_secrets()
    assert set(secrets) == {
        "scantrail-influx",
        "scantrail-pager-webhooks",
        "scantrail-pager-smtp",
        "scantrail-pager-ack",
        "scantrail-kafka",
    }

    def check(kind: str, name: str, key: str | None, where: str) -> None:
        known = configmaps if kind == "ConfigMap" else secrets
        assert name in known, f"{where}: {kind} {name} is neither defined nor documented"
        if key is not None:
            assert key in known[name], f"{where}: {kind} {name} has no key {key}"

    for where, c, _spec in containers():
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                check("ConfigMap", source["configMapRef"]["name"], None, where)
            if "secretRef" in source:
                check("Secret", source["secretRef"]["name"], None, where)
        for env in c.get("env", []):
            ref = env.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                r = ref["configMapKeyRef"]
                check("ConfigMap", r["name"], r["key"], f"{where} {env['name']}")
            if "secretKeyRef" in ref:
                r = ref["secretKeyRef"]
                check("Secret", r["name"], r["key"], f"{where} {env['name']}")
    for where, spec in pod_specs():
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                cm = volume["configMap"]
                for item in cm.get("items", [{"key": None}]):
                    check("ConfigMap", cm["name"], item["key"], where)
            if "secret" in volume:
                s = volume["secret"]
                for item in s.get("items", [{"key": None}]):
                    check("Secret", s["secretName"], item["key"], where)


def test_no_secret_value_is_written_down() -> None:
    assert "Secret" not in {o["kind"] for o in OBJECTS}, "Secrets are created by hand"
    for name, cm in by_kind("ConfigMap").items():
        for key, value in cm.get("data", {}).items():
            if key.endswith("_FILE"):  # where a mounted Secret's file is, not its value
                assert value.startswith("/etc/scantrail/"), f"ConfigMap {name}: {key}={value}"
                continue
            assert not SECRETISH.search(key), f"ConfigMap {name} holds {key}"
    for where, c, _ in containers():
        for env in c.get("env", []):
            if SECRETISH.search(env["name"]):
                assert "valueFrom" in env and "value" not in env, f"{where} {env['name']}"
    texts = [p.read_text(encoding="utf-8") for p in CLUSTER.iterdir() if p.is_file()]
    texts += [p.read_text(encoding="utf-8") for p in (ROOT / "deploy" / "kiosk").glob("*")]
    for text in texts:
        assert "PRIVATE KEY" not in text
        assert not re.search(r"\b(?:stringData|data):\s*\n\s+\w*(?:token|password)\w*:", text)
        # long base64/hex runs look like keys or tokens; in an env file only the
        # value of a KEY=value line can be one (SCANTRAIL_..._PROTOCOL=SASL_SSL is not)
        for row in text.splitlines():
            value = m.group(1) if (m := re.match(r"^\s*[A-Z][A-Z0-9_]*=(.*)$", row)) else row
            assert not re.search(r"(?<![\w/.-])[A-Za-z0-9+/_=-]{40,}(?![\w/.-])", value), row


def test_roster_parses_and_every_webhook_secret_is_wired() -> None:
    from sinks.routing import parse_roster

    roster_cm = by_kind("ConfigMap")["scantrail-pager-roster"]
    raw = yaml.safe_load(roster_cm["data"]["roster.yaml"])
    roster = parse_roster(raw)
    pager = workload("Deployment", "scantrail-pager")
    container, spec = only_container(pager), pager["spec"]["template"]["spec"]
    env = {e["name"]: e for e in container.get("env", [])}

    roster_path = Path(container["args"][container["args"].index("--roster") + 1])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    roster_volume = next(n for n, v in volumes.items() if "configMap" in v)
    assert volumes[roster_volume]["configMap"]["name"] == "scantrail-pager-roster"
    assert roster_path == Path(mounts[roster_volume]) / "roster.yaml"

    secret_files: set[Path] = set()
    for name, volume in volumes.items():
        if "secret" in volume:
            for item in volume["secret"]["items"]:
                secret_files.add(Path(mounts[name]) / item["path"])
    hooks = [o.webhook for officers in roster.sites.values() for o in officers if o.webhook]
    assert hooks
    for hook in hooks:
        if hook.secret_env is not None:
            assert "secretKeyRef" in env[hook.secret_env]["valueFrom"], hook.secret_env
        else:
            assert Path(str(hook.secret_file)) in secret_files, hook.secret_file


# -- probes, ports, settings -----------------------------------------------------------


def test_probes_point_at_declared_ports() -> None:
    probed = 0
    for where, c, _ in containers():
        ports = c.get("ports", [])
        names = {p["name"] for p in ports if "name" in p}
        numbers = {p["containerPort"] for p in ports}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.get(kind)
            if probe is None:
                continue
            target = (probe.get("httpGet") or probe.get("tcpSocket") or {}).get("port")
            assert target is not None, f"{where} {kind} has no port"
            assert target in names or target in numbers, f"{where} {kind} -> {target}"
            probed += 1
    assert probed >= 5
    worker = only_container(workload("StatefulSet", "scantrail-worker"))
    # Ready only once the tables are restored (/ready); alive while the web server answers.
    assert worker["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert worker["livenessProbe"]["httpGet"]["path"] == "/stats"
    served = (ROOT / "processors" / "worker.py").read_text(encoding="utf-8")
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert f'@app.page("{worker[kind]["httpGet"]["path"]}")' in served, kind


def test_container_ports_agree_with_the_settings() -> None:
    worker = only_container(workload("StatefulSet", "scantrail-worker"))
    pager = only_container(workload("Deployment", "scantrail-pager"))
    assert [p["containerPort"] for p in worker["ports"]] == [
        int(config()["SCANTRAIL_WORKER_WEB_PORT"])
    ]
    assert [p["containerPort"] for p in pager["ports"]] == [int(config()["SCANTRAIL_PAGER_PORT"])]
    # the pager binds loopback unless told otherwise; kubelet and the Service need the pod IP
    host = {e["name"]: e.get("value") for e in pager["env"]}["SCANTRAIL_PAGER_HOST"]
    assert host == "0.0.0.0"  # noqa: S104 - checks the manifest, binds nothing


def test_services_and_budgets_select_pods_and_ports() -> None:
    templates = [
        (o["spec"]["template"]["metadata"]["labels"], only_container(o))
        for o in OBJECTS
        if o["kind"] in ("Deployment", "StatefulSet")
    ]

    def selected(selector: dict[str, str]) -> list[Obj]:
        return [c for labels, c in templates if selector.items() <= labels.items()]

    for name, svc in by_kind("Service").items():
        matched = selected(svc["spec"]["selector"])
        assert matched, f"Service {name} selects no pod"
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            for c in matched:
                declared = {p.get("name") for p in c["ports"]} | {
                    p["containerPort"] for p in c["ports"]
                }
                assert target in declared, f"Service {name} -> {target}"
    for name, pdb in by_kind("PodDisruptionBudget").items():
        assert selected(pdb["spec"]["selector"]["matchLabels"]), f"PDB {name} selects no pod"
    for name, sts in by_kind("StatefulSet").items():
        governing = by_kind("Service")[sts["spec"]["serviceName"]]
        assert governing["spec"].get("clusterIP") == "None", name
        labels = sts["spec"]["template"]["metadata"]["labels"]
        assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_configmap_holds_only_real_settings_that_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    from scantrail.settings import (
        InfluxSettings,
        KafkaSettings,
        RetentionSettings,
        TraceAccessSettings,
        WorkerSettings,
    )
    from sinks.channels import PagerSettings

    known = {"SCANTRAIL_STATE"}
    settings_classes = (
        KafkaSettings,
        InfluxSettings,
        WorkerSettings,
        TraceAccessSettings,
        RetentionSettings,
        PagerSettings,
    )
    for cls in settings_classes:
        prefix = cls.model_config["env_prefix"]
        known |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    data = config()
    for key, value in data.items():
        assert key in known, f"{key} is no ScanTrail setting"
        assert isinstance(value, str), f"{key}: ConfigMap values must be strings"
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    # Under SASL_SSL each pod names its principal and mounts its password file;
    # here the password comes from the environment instead of the (absent) file.
    monkeypatch.setenv("SCANTRAIL_KAFKA_SASL_USERNAME", "worker")
    monkeypatch.setenv("SCANTRAIL_KAFKA_SASL_PASSWORD", "not-a-real-password")
    kafka = KafkaSettings()
    assert kafka.security_protocol == "SASL_SSL" and kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert kafka.replication == 3
    assert len(kafka.servers) >= 3
    assert InfluxSettings().url.startswith("http")
    assert WorkerSettings().resolved_data_dir() == Path(data["SCANTRAIL_WORKER_DATA_DIR"])
    PagerSettings()


def test_worker_does_not_outnumber_the_partitions() -> None:
    worker = workload("StatefulSet", "scantrail-worker")
    assert 1 <= worker["spec"]["replicas"] <= int(config()["SCANTRAIL_KAFKA_PARTITIONS"])


# -- each role's shape -------------------------------------------------------------------


def test_every_pod_runs_the_one_image_safely() -> None:
    for where, c, spec in containers():
        assert c["image"] == IMAGE, where
        assert c.get("resources", {}).get("requests"), f"{where} has no resource requests"
        assert c["resources"].get("limits", {}).get("memory"), f"{where} has no memory limit"
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        # service links would put SCANTRAIL_*_PORT=tcp://... into the settings' env namespace
        assert spec.get("enableServiceLinks") is False, where
    dockerfile = (CLUSTER / "Dockerfile").read_text(encoding="utf-8")
    assert "FROM python:3.11-slim" in dockerfile
    assert "libzbar0" in dockerfile
    assert 'ENTRYPOINT ["scantrail"]' in dockerfile
    uids = {spec["securityContext"]["runAsUser"] for _, spec in pod_specs()}
    assert uids == {10001}
    assert "USER 10001" in dockerfile


def test_worker_has_identity_state_and_time_to_stop() -> None:
    worker = workload("StatefulSet", "scantrail-worker")
    spec = worker["spec"]["template"]["spec"]
    container = only_container(worker)
    assert container["args"][0] == "worker"
    assert spec["terminationGracePeriodSeconds"] >= 60
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["CONSUMER_GROUP_INSTANCE_ID"]["value"] == "$(POD_NAME)"
    claims = {t["metadata"]["name"] for t in worker["spec"]["volumeClaimTemplates"]}
    mounts = {m["name"]: Path(m["mountPath"]) for m in container["volumeMounts"]}
    data_dir = Path(config()["SCANTRAIL_WORKER_DATA_DIR"])
    assert any(n in claims and data_dir.is_relative_to(p) for n, p in mounts.items())
    budget = by_kind("PodDisruptionBudget")["scantrail-worker"]
    assert budget["spec"]["maxUnavailable"] == 1


def cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("1", "1.5", "500m") in cores."""
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_worker_gets_the_core_its_loop_thread_needs_and_is_never_throttled() -> None:
    resources = only_container(workload("StatefulSet", "scantrail-worker"))["resources"]
    assert cores(str(resources["requests"]["cpu"])) >= 1.0, resources
    assert "cpu" not in resources.get("limits", {}), resources


def test_sink_influx_keeps_its_state_on_a_claim() -> None:
    sink = workload("StatefulSet", "scantrail-sink-influx")
    container = only_container(sink)
    assert sink["spec"]["replicas"] == 1
    assert container["args"][:2] == ["sink", "influx"]
    claims = {t["metadata"]["name"] for t in sink["spec"]["volumeClaimTemplates"]}
    state = Path(config()["SCANTRAIL_STATE"])
    assert any(
        m["name"] in claims and state.is_relative_to(m["mountPath"])
        for m in container["volumeMounts"]
    )
    env = {e["name"]: e for e in container["env"]}
    assert env["SCANTRAIL_INFLUX_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "scantrail-influx"


def test_exactly_one_pager_even_during_a_rollout() -> None:
    pager = workload("Deployment", "scantrail-pager")
    assert pager["spec"]["replicas"] == 1
    assert pager["spec"]["strategy"]["type"] == "Recreate"
    assert only_container(pager)["args"][:2] == ["sink", "pager"]
    ack = by_kind("Service")["scantrail-pager-ack"]
    assert ack["spec"]["type"] == "ClusterIP"


def test_topics_job_creates_replicated_topics() -> None:
    job = workload("Job", "scantrail-topics")
    container = only_container(job)
    assert container["args"] == ["topics", "--acls"]  # the principals' ACLs too
    assert {"configMapRef": {"name": "scantrail-config"}} in container["envFrom"]
    assert config()["SCANTRAIL_KAFKA_REPLICATION"] == "3"
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


def test_every_kafka_client_pod_can_read_the_sasl_password_file() -> None:
    """Switching the ConfigMap to SASL must be all a cluster needs, besides the Secret."""
    password_file = Path(config()["SCANTRAIL_KAFKA_SASL_PASSWORD_FILE"])
    kafka_pods = 0
    for where, c, spec in containers():
        sources = {s.get("configMapRef", {}).get("name") for s in c.get("envFrom", [])}
        if "scantrail-config" not in sources:
            continue
        kafka_pods += 1
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        readable = {
            Path(m["mountPath"]) / item["path"]
            for m in c.get("volumeMounts", [])
            if "secret" in volumes.get(m["name"], {})
            and volumes[m["name"]]["secret"]["secretName"] == "scantrail-kafka"
            for item in volumes[m["name"]]["secret"]["items"]
        }
        assert password_file in readable, f"{where} cannot read {password_file}"
        for volume in volumes.values():
            if volume.get("secret", {}).get("secretName") == "scantrail-kafka":
                assert volume["secret"]["optional"] is True, f"{where}: PLAINTEXT needs no Secret"
    assert kafka_pods == 4  # worker, sink-influx, pager, topics job


def test_every_kafka_client_pod_is_its_own_principal() -> None:
    """SASL_SSL by default, one principal per role: its name in env, its password by key."""
    principals = {}
    for where, c, spec in containers():
        sources = {s.get("configMapRef", {}).get("name") for s in c.get("envFrom", [])}
        if "scantrail-config" not in sources:
            continue
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        user = env["SCANTRAIL_KAFKA_SASL_USERNAME"]
        keys = {
            item["key"]
            for v in spec.get("volumes", [])
            if v.get("secret", {}).get("secretName") == "scantrail-kafka"
            for item in v["secret"]["items"]
        }
        assert keys == {f"{user}-password", "ca.crt"}, where
        principals[where] = user
    assert sorted(principals.values()) == ["admin", "pager", "sink", "worker"]
