"""ops/k8s manifests: schema-valid (Kubernetes 1.30, strict) and wired the way the services expect."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from secrets import token_urlsafe
from typing import Any

import pytest
import yaml

from stagedoor.cli import COMPONENTS
from stagedoor.settings import Settings, SettingsError, load_settings
from tests.support.ops import OPS

K8S = OPS / "k8s"
K8S_VERSION = "1.30.0"
SERVICES = ("waitingroom", "ticketing", "admission", "worker")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (dev extra)")


def _documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


@pytest.fixture(scope="module")
def by_kind() -> dict[str, dict[str, dict[str, Any]]]:
    kinds: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for _, doc in _documents():
        kinds[doc["kind"]][doc["metadata"]["name"]] = doc
    return kinds


@pytest.mark.parametrize("path_doc", _documents(), ids=lambda pd: f"{pd[0].name}:{pd[1]['kind']}")
def test_manifest_validates_against_the_kubernetes_schema(path_doc: tuple[Path, dict[str, Any]]) -> None:
    _, doc = path_doc
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_schema_check_rejects_a_broken_manifest() -> None:
    deployment = next(doc for _, doc in _documents() if doc["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/readyz"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_probes_ports_resources_and_security(by_kind: dict[str, Any], name: str) -> None:
    deployment = by_kind["Deployment"][name]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    port = COMPONENTS[name].port(Settings())
    assert container["args"] == ["serve", name]
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    env_from = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert env_from == {"stagedoor-config", "stagedoor-secrets"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/keys"]]["secret"]["secretName"] == "stagedoor-signing-keys"
    selector = deployment["spec"]["selector"]["matchLabels"].items()
    assert selector <= deployment["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("name", SERVICES)
def test_service_hpa_and_pdb_target_the_deployment(by_kind: dict[str, Any], name: str) -> None:
    labels = by_kind["Deployment"][name]["spec"]["selector"]["matchLabels"]
    service = by_kind["Service"][name]
    assert service["spec"]["selector"] == labels
    assert service["spec"]["ports"][0]["port"] == COMPONENTS[name].port(Settings())
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    hpa = by_kind["HorizontalPodAutoscaler"][name]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    kinds = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    if name != "worker":  # request rate through the custom metrics API (prometheus-adapter, see README)
        assert kinds["Pods"]["pods"]["metric"]["name"] == "http_requests_per_second"
    pdb = by_kind["PodDisruptionBudget"][name]
    assert pdb["spec"]["selector"]["matchLabels"] == labels
    assert hpa["spec"]["minReplicas"] >= 2, "a PDB with one replica would block node drains"


def test_configmap_holds_only_valid_non_secret_settings(by_kind: dict[str, Any]) -> None:
    data = by_kind["ConfigMap"]["stagedoor-config"]["data"]
    settings = load_settings(environ=data)  # unknown names or bad values raise
    assert settings.host == "0.0.0.0" and settings.cookie_secure and settings.environment == "production"
    for field in ("admin_api_key", "queue_token_secret", "database_url", "redis_url"):
        assert f"STAGEDOOR_{field.upper()}" not in data


def test_secret_template_holds_placeholders_only(by_kind: dict[str, Any]) -> None:
    secrets = by_kind["Secret"]
    assert set(secrets) == {"stagedoor-secrets", "stagedoor-signing-keys"}
    for secret in secrets.values():
        assert "data" not in secret
        for value in secret["stringData"].values():
            assert "<" in value and ">" in value, "a Secret template must hold placeholders, never a value"
    values = secrets["stagedoor-secrets"]["stringData"]
    configmap = by_kind["ConfigMap"]["stagedoor-config"]["data"]
    filled = {k: v.replace("<", "x").replace(">", "x") for k, v in values.items()}
    filled |= {f"STAGEDOOR_{field.upper()}": token_urlsafe(32) for field in ("admin_api_key", "queue_token_secret")}
    settings = load_settings(environ=configmap | filled)
    assert settings.admin_api_key and settings.queue_token_secret and settings.database_url and settings.redis_url
    # a template applied unfilled does not start: each secret's placeholder is refused by name
    for field in ("admin_api_key", "queue_token_secret"):
        name = f"STAGEDOOR_{field.upper()}"
        with pytest.raises(SettingsError, match=rf"^invalid {name}: it is a placeholder"):
            load_settings(environ=configmap | filled | {name: values[name]})


def test_migrate_job_runs_the_cli_migration(by_kind: dict[str, Any]) -> None:
    job = by_kind["Job"]["stagedoor-migrate"]
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["migrate"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_kustomization_lists_existing_files_and_not_the_secret_template() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file()
    assert "secret.template.yaml" not in kustomization["resources"]
    assert {f"{name}.yaml" for name in SERVICES} <= set(kustomization["resources"])
