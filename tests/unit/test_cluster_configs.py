"""Static checks of the deployment files: ray_config.yaml, cluster/Dockerfile and the KubeRay manifests."""

import json
import re
import shlex
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
RAY_CONFIG = REPO / "ray_config.yaml"
DOCKERFILE = REPO / "cluster" / "Dockerfile"
RAYCLUSTER = REPO / "cluster" / "kuberay" / "raycluster.yaml"
RAYJOB = REPO / "cluster" / "kuberay" / "rayjob.yaml"
VERSION = re.compile(r"(\d+\.\d+\.\d+)")


def load_yaml(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def pyproject_ray_minimum() -> str:
    """The X.Y.Z in pyproject.toml's `ray[...]>=X.Y.Z` dependency."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    rays = [Requirement(d) for d in deps if Requirement(d).name == "ray"]
    assert len(rays) == 1, f"pyproject.toml should list ray exactly once in [project].dependencies, found {deps}"
    minimums = [s.version for s in rays[0].specifier if s.operator == ">="]
    assert minimums, f"pyproject.toml's ray requirement {rays[0]} has no >= minimum: pin one, e.g. ray[...]>=2.60.0"
    return minimums[0]


def dockerfile_base_ray_version() -> str:
    match = re.search(r"^FROM\s+rayproject/ray:(\d+\.\d+\.\d+)\S*", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, f"{DOCKERFILE} should start FROM rayproject/ray:X.Y.Z-..., so its Ray version is explicit"
    return match.group(1)


def cluster_spec(manifest: dict) -> dict:
    """The RayCluster spec of a RayCluster or of a RayJob's rayClusterSpec."""
    return manifest["spec"]["rayClusterSpec"] if manifest["kind"] == "RayJob" else manifest["spec"]


def containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def gpu_limit(container: dict) -> int:
    return int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def manifest_images(spec: dict) -> list[str]:
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c["image"] for g in groups for c in containers(g)]


def image_ray_version(image: str) -> str:
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    match = VERSION.search(tag)
    assert match, f"image {image!r} should carry its Ray version in its tag (e.g. :ray2.60.0-py311-gpu)"
    return match.group(1)


def entrypoint_args(entrypoint: str) -> tuple[str, list[str]]:
    """(--config value, [--set values]) of a `python pipelines/full_run.py ...` command line."""
    argv = shlex.split(entrypoint)
    config = argv[argv.index("--config") + 1]
    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    return config, overrides


# ---------------------------------------------------------------- ray_config.yaml (the `ray up` launcher config)


def test_ray_config_passes_the_launcher_schema_shipped_with_ray():
    config = load_yaml(RAY_CONFIG)
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    # What `ray up` itself does before launching anything: fill in the AWS defaults, then validate.
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(config))


def test_ray_config_gpu_workers_declare_gpus_and_the_head_declares_none():
    config = load_yaml(RAY_CONFIG)
    types = config["available_node_types"]
    head = config["head_node_type"]
    assert types[head]["resources"].get("GPU") == 0, "the head must declare GPU 0 so no Train worker lands on it"
    workers = {name: t for name, t in types.items() if name != head}
    assert workers, "ray_config.yaml needs at least one worker node type"
    for name, node_type in workers.items():
        assert node_type["resources"].get("GPU", 0) > 0, f"worker type {name} declares no GPU: {node_type}"
        assert node_type["min_workers"] == 0, f"worker type {name} should scale from 0 (idle GPUs cost money)"
        assert node_type["max_workers"] >= 1
    assert config["max_workers"] >= max(t["max_workers"] for t in workers.values())


def test_ray_config_setup_installs_this_project_from_its_synced_checkout():
    config = load_yaml(RAY_CONFIG)
    remote = [r for r, local in config["file_mounts"].items() if local in (".", "./")]
    assert len(remote) == 1, f"file_mounts should sync the repository root ('.'), got {config['file_mounts']}"
    setup = " && ".join(config["setup_commands"])
    assert re.search(rf"pip install\b.*-e {re.escape(remote[0])}\b", setup), setup
    assert re.search(r"pip install\b.*\btorch\b", setup), f"setup_commands should install torch: {setup}"
    assert setup.index("torch") < setup.index(f"-e {remote[0]}"), "torch goes first (its CUDA build, not a default)"


def test_ray_config_head_serves_the_job_api_where_ray_dashboard_forwards_it():
    start = " ".join(load_yaml(RAY_CONFIG)["head_start_ray_commands"])
    assert "--head" in start
    assert "--dashboard-host=0.0.0.0" in start, "inside the node the job server must listen beyond loopback"
    assert "--dashboard-port=8265" in start, "`ray dashboard ray_config.yaml` forwards port 8265"
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in start, "without it the GPU workers never start"


# ---------------------------------------------------------------- KubeRay manifests


@pytest.mark.parametrize("path, kind", [(RAYCLUSTER, "RayCluster"), (RAYJOB, "RayJob")])
def test_kuberay_manifest_has_the_fields_the_operator_needs(path, kind):
    manifest = load_yaml(path)
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == kind
    assert manifest["metadata"]["name"]
    spec = cluster_spec(manifest)
    assert VERSION.fullmatch(str(spec["rayVersion"])), f"rayVersion should be X.Y.Z, got {spec['rayVersion']!r}"
    head = spec["headGroupSpec"]
    assert containers(head) and all(gpu_limit(c) == 0 for c in containers(head)), "the head asks for no GPU"
    assert head["rayStartParams"].get("num-gpus") == "0", "num-gpus must be the string '0' (KubeRay wants strings)"
    assert spec["workerGroupSpecs"], "a GPU worker group is needed to train"
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and group["maxReplicas"] >= max(1, group["replicas"])
        for container in containers(group):
            limits, requests = container["resources"]["limits"], container["resources"]["requests"]
            assert gpu_limit(container) > 0, f"group {group['groupName']} has no nvidia.com/gpu limit"
            assert requests.get("nvidia.com/gpu") == limits["nvidia.com/gpu"], "Kubernetes wants GPU requests == limits"


def test_rayjob_runs_full_run_with_shared_storage_and_an_mlflow_server():
    entrypoint = load_yaml(RAYJOB)["spec"]["entrypoint"]
    assert entrypoint.startswith("python pipelines/full_run.py"), entrypoint
    _, overrides = entrypoint_args(entrypoint)
    values = dict(o.split("=", 1) for o in overrides)
    assert values.get("storage.root", "").startswith("s3://"), "nodes share no disk: set storage.root=s3://..."
    assert re.match(r"https?://", values.get("tracking.uri", "")), "several pods log at once: use an MLflow server"
    assert values.get("scaling.use_gpu") == "true", f"the GPU job should --set scaling.use_gpu=true: {overrides}"


def test_rayjob_entrypoint_names_a_preset_and_keys_that_exist():
    from pggan.config import load_config

    config_file, overrides = entrypoint_args(load_yaml(RAYJOB)["spec"]["entrypoint"])
    assert (REPO / config_file).is_file(), f"the RayJob's --config {config_file} is not in the repository"
    cfg = load_config(REPO / config_file, overrides)  # raises ConfigError naming any unknown key
    assert cfg.scaling.use_gpu is True
    assert cfg.storage.root.startswith("s3://")


def test_rayjob_cluster_matches_the_raycluster_manifest():
    job, standing = cluster_spec(load_yaml(RAYJOB)), cluster_spec(load_yaml(RAYCLUSTER))
    assert job["rayVersion"] == standing["rayVersion"]
    assert set(manifest_images(job)) == set(manifest_images(standing))
    assert [g["groupName"] for g in job["workerGroupSpecs"]] == [g["groupName"] for g in standing["workerGroupSpecs"]]


# ---------------------------------------------------------------- the image and one Ray version everywhere


def test_dockerfile_installs_this_project_from_files_that_exist():
    text = DOCKERFILE.read_text()
    assert re.search(r"^RUN pip install\b.*\btorch\b", text, re.MULTILINE), "the image needs torch"
    assert re.search(r"^RUN pip install\b.*(-e \.|\s\.)(\s|$)", text, re.MULTILINE), "the image installs ."
    for line in re.findall(r"^COPY\s+(.*)$", text, re.MULTILINE):
        sources = [a for a in shlex.split(line) if not a.startswith("--")][:-1]
        for source in sources:
            assert (REPO / source).exists(), f"cluster/Dockerfile copies {source}, which is not in the repository"


def test_every_deployment_file_runs_the_ray_version_pyproject_requires():
    minimum = pyproject_ray_minimum()
    found = {"cluster/Dockerfile FROM": dockerfile_base_ray_version()}
    found["ray_config.yaml docker.image"] = image_ray_version(load_yaml(RAY_CONFIG)["docker"]["image"])
    for path in (RAYCLUSTER, RAYJOB):
        spec = cluster_spec(load_yaml(path))
        found[f"{path.name} rayVersion"] = str(spec["rayVersion"])
        for image in manifest_images(spec):
            found[f"{path.name} image {image}"] = image_ray_version(image)
    wrong = {where: v for where, v in found.items() if v != minimum}
    assert not wrong, f"pyproject.toml requires ray>={minimum}, but these name another Ray: {wrong}"


def test_installed_ray_is_the_release_the_cluster_images_run():
    minimum = pyproject_ray_minimum()
    assert ray.__version__.split(".")[:2] == minimum.split(".")[:2], (
        f"ray {ray.__version__} is installed but the cluster images run {minimum}: jobs submitted from here "
        f"would meet another Ray; install ray=={minimum} or move the images to {ray.__version__}"
    )
