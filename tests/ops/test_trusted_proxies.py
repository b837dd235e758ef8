"""The shipped deployment files never trust X-Forwarded-For from a whole private range: a peer
in STAGEDOOR_TRUSTED_PROXIES can claim any client address and so choose its rate-limit bucket,
and in a /8 that is every pod and node of a cluster."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stagedoor.client_ip import IPNetwork, parse_networks
from tests.support.ops import OPS, ROOT

# The widest network a shipped file may trust: one ingress pod range or load-balancer range.
MIN_PREFIX = {4: 16, 6: 48}
PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                             "fc00::/7", "fe80::/10")]
PLACEHOLDER = "192.0.2.0/24"  # RFC 5737: matches no real peer until the operator sets the real range
DOCS = [ROOT / "docs" / "operations.md", OPS / "k8s" / "README.md"]


def _values(node: Any) -> list[str]:
    """Every STAGEDOOR_TRUSTED_PROXIES value in a parsed YAML document (maps and "K=V" lists)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "STAGEDOOR_TRUSTED_PROXIES":
                found.append(str(value))
            elif key == "name" and value == "STAGEDOOR_TRUSTED_PROXIES" and "value" in node:
                found.append(str(node["value"]))  # a container's env: [{name, value}]
            else:
                found += _values(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, str) and item.startswith("STAGEDOOR_TRUSTED_PROXIES="):
                found.append(item.split("=", 1)[1])
            else:
                found += _values(item)
    return found


def _shipped() -> list[tuple[str, str]]:
    files = [ROOT / "docker-compose.yml", *sorted(OPS.rglob("*.yaml")), *sorted(OPS.rglob("*.yml"))]
    found: list[tuple[str, str]] = []
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            found += [(str(path.relative_to(ROOT)), value) for value in _values(doc)]
    return found


def _too_wide(net: IPNetwork) -> bool:
    return net.prefixlen < MIN_PREFIX[net.version] or any(
        net.version == block.version and net.supernet_of(block) for block in PRIVATE)  # type: ignore[arg-type]


def test_the_k8s_configmap_ships_the_documented_placeholder() -> None:
    # docker-compose.yml sets none: nothing in front of its published ports writes the header
    assert dict(_shipped()) == {"ops/k8s/configmap.yaml": PLACEHOLDER}


@pytest.mark.parametrize(("path", "value"), _shipped())
def test_no_shipped_file_trusts_a_whole_private_range(path: str, value: str) -> None:
    networks = parse_networks(value)
    assert networks, f"{path}: an empty STAGEDOOR_TRUSTED_PROXIES reads as 'trust nobody'; leave it out instead"
    for net in networks:
        assert not _too_wide(net), f"{path} trusts {net}: name the ingress pods' or load balancer's range"


def test_the_width_check_refuses_what_the_manifest_used_to_ship() -> None:
    for wide in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "0.0.0.0/0", "10.0.0.0/15", "::/0", "fc00::/7",
                 "2001:db8::/32"):
        assert _too_wide(parse_networks(wide)[0]), wide
    for narrow in (PLACEHOLDER, "10.244.3.0/24", "10.42.0.0/16", "130.211.0.0/22", "192.168.1.7",
                   "2001:db8:1::/48"):
        assert not _too_wide(parse_networks(narrow)[0]), narrow


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_docs_tell_the_operator_to_set_it(doc: Path) -> None:
    text = doc.read_text()
    assert "STAGEDOOR_TRUSTED_PROXIES" in text and PLACEHOLDER in text
    assert re.search(r"never[^.]*whole private range", text, re.I | re.S), doc
