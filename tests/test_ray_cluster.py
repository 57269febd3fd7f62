"""``ray_cluster.yaml``, the cluster launcher's configuration: it passes Ray's
own validation, the one ``ray up`` runs before it launches anything, and its
node types advertise the custom resources the platform's actors ask for
(``actors.runtime.placement``).

``prepare_config`` and ``validate_config`` are Ray's private functions (ray is
pinned below 3): ``prepare_config`` merges the provider's defaults, as ``ray
up`` does, and ``validate_config`` checks the result against
``ray/autoscaler/ray-schema.json``. Neither reaches the cloud.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from actors.runtime.placement import SLOT_RESOURCE, STATE_RESOURCE

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "ray_cluster.yaml"


def cluster_config() -> dict[str, Any]:
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    assert isinstance(config, dict)
    return config


def validate(config: dict[str, Any]) -> None:
    """What ``ray up`` checks before anything else, on a copy of ``config``."""
    validate_config(prepare_config(copy.deepcopy(config)))


def node_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    types = config["available_node_types"]
    assert isinstance(types, dict)
    return types


def test_the_cluster_yaml_passes_rays_validation() -> None:
    validate(cluster_config())


def test_only_the_worker_types_advertise_slots_and_one_node_the_state() -> None:
    config = cluster_config()
    types = node_types(config)
    head = config["head_node_type"]
    resources = {name: spec["resources"] for name, spec in types.items()}

    assert SLOT_RESOURCE not in resources[head]
    assert STATE_RESOURCE not in resources[head]

    state = [name for name, res in resources.items() if STATE_RESOURCE in res]
    assert len(state) == 1, f"one node type advertises {STATE_RESOURCE}: {state}"
    (state_type,) = state
    assert resources[state_type][STATE_RESOURCE] == 1
    assert types[state_type]["min_workers"] == 1
    assert types[state_type]["max_workers"] == 1

    workers = set(types) - {head, state_type}
    slots = {name for name, res in resources.items() if SLOT_RESOURCE in res}
    assert workers, "a worker node type for the hosts, routers and controller"
    assert slots == workers
    for name in slots:
        assert resources[name][SLOT_RESOURCE] >= 1


def misspell_max_workers(config: dict[str, Any]) -> None:
    config["max_wrokers"] = config.pop("max_workers")


def halve_the_state_resource(config: dict[str, Any]) -> None:
    for spec in node_types(config).values():
        if STATE_RESOURCE in spec["resources"]:
            spec["resources"][STATE_RESOURCE] = 0.5


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (misspell_max_workers, "Additional properties are not allowed"),
        (halve_the_state_resource, "0.5 is not of type 'integer'"),
    ],
)
def test_the_validation_fails_on_a_spoilt_copy(
    spoil: Callable[[dict[str, Any]], None], message: str
) -> None:
    """The passing test above is not vacuous: the same validation rejects this
    file with one key misspelt, or one resource that is not an integer."""
    config = cluster_config()
    spoil(config)
    with pytest.raises(jsonschema.ValidationError, match=message):
        validate(config)


def test_every_relative_file_mount_exists_in_the_repository() -> None:
    """``ray up`` runs from the repository root: each relative local path must be
    there. Paths under ``~`` are the operator's own (the Ray auth token)."""
    mounts = cluster_config()["file_mounts"]
    relative = [src for src in mounts.values() if not src.startswith(("~", "/"))]
    assert relative, "the project directory is shipped"
    for source in relative:
        assert (ROOT / source).exists(), source


def test_setup_installs_the_project_where_it_is_mounted() -> None:
    config = cluster_config()
    (project,) = [dst for dst, src in config["file_mounts"].items() if src == "."]
    installs = [cmd for cmd in config["setup_commands"] if "pip install" in cmd]
    assert any(f"-e {project}" in cmd for cmd in installs), installs


COMMAND_LISTS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)


def shell_commands(config: dict[str, Any]) -> list[str]:
    lists = [config.get(key, []) for key in COMMAND_LISTS]
    for spec in node_types(config).values():
        lists += [spec.get(key, []) for key in COMMAND_LISTS]
    return [command for commands in lists for command in commands]


def test_every_command_is_well_formed_shell() -> None:
    """The launcher runs each command with ``bash -c`` on the node; in YAML a
    `` #`` outside quotes starts a comment and cuts a command short silently."""
    commands = shell_commands(cluster_config())
    assert commands
    for command in commands:
        checked = subprocess.run(
            ["bash", "-n", "-c", command], capture_output=True, text=True
        )
        assert checked.returncode == 0, f"{command!r}: {checked.stderr}"
