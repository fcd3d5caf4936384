"""Deployment files (Dockerfile, compose, Kubernetes) checked without a cluster or Docker engine."""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from streams.settings import Settings
from tests.conftest import need

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
K8S = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"

SETTINGS_ENV = {"WATCHFLOOR_" + f.name.upper() for f in dataclasses.fields(Settings)}
WATCHFLOOR_SERVICES = ("topics", "worker-1", "worker-2", "simulator")
WORKERS = ("worker-1", "worker-2")
# Kubernetes releases the manifests must validate against: the oldest we support and
# the newest the schema package knows.
K8S_VERSIONS = ("1.29", "1.37")
OVERLAYS = ("dev", "managed-kafka")
# Created out of band in the managed-kafka overlay (its kustomization says how).
OUT_OF_BAND = {"managed-kafka": {"Secret": {"watchfloor-credentials", "watchfloor-kafka-ca"}}}
# The job label every scrape config gives the workers; the alert rules select on it.
JOB = "watchfloor"


# --- helpers ----------------------------------------------------------------------------


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


_INTERP = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value: Any, environ: Mapping[str, str] | None = None) -> str:
    """Compose's variable interpolation for the forms this stack uses."""
    env = environ or {}

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name")
        return env.get(name) or (m.group("default") or "")

    return _INTERP.sub(sub, str(value))


def compose() -> dict[str, Any]:
    docs = load_yaml_docs(COMPOSE_FILE)
    assert len(docs) == 1
    return docs[0]


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: interpolate(v) for k, v in raw.items()}


def settings_from(env: Mapping[str, str]) -> Settings:
    """Build Settings exactly as a process would from these variables."""
    return Settings.from_env({k: v for k, v in env.items() if k.startswith("WATCHFLOOR_")})


@dataclasses.dataclass
class Instruction:
    stage: int
    keyword: str
    args: str


def dockerfile() -> list[Instruction]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    stage = -1
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def dockerfile_args() -> dict[str, str]:
    """Global ARG defaults (before the first FROM)."""
    values: dict[str, str] = {}
    for ins in dockerfile():
        if ins.keyword == "ARG" and ins.stage == -1 and "=" in ins.args:
            name, _, default = ins.args.partition("=")
            values[name] = default
    return values


def dockerfile_env(stage: int) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in dockerfile():
        if ins.keyword == "ENV" and ins.stage == stage:
            for name, value in re.findall(r"(\w+)=(\S+)", ins.args):
                env[name] = value
    return env


def dockerignore_allows(path: str) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent wins."""
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if p.strip() and not p.strip().startswith("#")
    ]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        if pat.startswith("**/"):
            matched = any(fnmatch.fnmatchcase(part, pat[3:]) for part in parts)
        else:
            matched = any(fnmatch.fnmatchcase(prefix, pat) for prefix in prefixes)
        if matched:
            included = negate
    return included


def k8s_file_docs() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in load_yaml_docs(path):
            yield path, doc


def k8s_object(kind: str, name: str | None = None) -> dict[str, Any]:
    """The one full object of that kind in the base or a component (overlays hold patches)."""
    found = [
        doc
        for path, doc in k8s_file_docs()
        if doc.get("kind") == kind
        and (name is None or doc["metadata"]["name"] == name)
        and path.relative_to(K8S).parts[0] in {"base", "components"}
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def worker_pod() -> tuple[dict[str, Any], dict[str, Any]]:
    sts = k8s_object("StatefulSet", "watchfloor-worker")
    pod = sts["spec"]["template"]
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "worker"]
    return pod, container


def kustomize_cmd() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    cmd = kustomize_cmd()
    need(cmd is not None, "neither kustomize nor kubectl (which bundles it) is installed")
    assert cmd is not None
    done = subprocess.run(
        [*cmd, str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"kustomize failed for {directory}:\n{done.stderr}"
    return [d for d in yaml.safe_load_all(done.stdout) if d is not None]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize_build(K8S / "overlays" / name) for name in OVERLAYS} | {
        "base": kustomize_build(K8S / "base")
    }


# --- Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_bases_are_pinned_by_tag_and_digest() -> None:
    args = dockerfile_args()
    froms = [ins.args.split()[0] for ins in dockerfile() if ins.keyword == "FROM"]
    assert len(froms) >= 2, "the image is built in stages so that compilers stay behind"
    for ref in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref)
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+@sha256:[0-9a-f]{64}", image), image


def test_final_stage_runs_as_a_numeric_non_root_user_without_compilers() -> None:
    instructions = dockerfile()
    final = max(ins.stage for ins in instructions)
    final_stage = [ins for ins in instructions if ins.stage == final]
    users = [ins.args for ins in final_stage if ins.keyword == "USER"]
    assert users, "the final stage never drops root"
    uid_args = {
        ins.args.split("=")[0]: ins.args.split("=")[1]
        for ins in final_stage
        if ins.keyword == "ARG" and "=" in ins.args
    }
    user = re.sub(r"\$\{(\w+)\}", lambda m: uid_args[m.group(1)], users[-1])
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000, user
    assert gid.isdigit() and int(gid) >= 1000, user
    runs = " ".join(ins.args for ins in final_stage if ins.keyword == "RUN")
    for tool in ("gcc", "g++", "build-essential", "libc6-dev", "make"):
        assert not re.search(rf"(^|\s){re.escape(tool)}(\s|$)", runs), tool
    copies = [ins.args for ins in final_stage if ins.keyword == "COPY"]
    assert copies and all("--from=build" in c for c in copies), copies
    # The user Kubernetes runs as must be the one the image was built for.
    pod, _ = worker_pod()
    assert pod["spec"]["securityContext"]["runAsUser"] == int(uid)
    assert pod["spec"]["securityContext"]["fsGroup"] == int(gid)


def test_healthcheck_asks_health_on_the_web_port() -> None:
    instructions = dockerfile()
    final = max(ins.stage for ins in instructions)
    (check,) = [ins.args for ins in instructions if ins.keyword == "HEALTHCHECK"]
    assert "/health" in check and "/ready" not in check
    assert "WATCHFLOOR_WEB_PORT" in check
    env = dockerfile_env(final)
    exposed = [ins.args for ins in instructions if ins.stage == final and ins.keyword == "EXPOSE"]
    assert exposed == [env["WATCHFLOOR_WEB_PORT"]]
    (entry,) = [ins.args for ins in instructions if ins.keyword == "ENTRYPOINT"]
    assert entry.startswith("["), "exec form, so the app itself receives SIGTERM"


def test_image_environment_is_valid_settings() -> None:
    final = max(ins.stage for ins in dockerfile())
    env = dockerfile_env(final)
    wf = {k: v for k, v in env.items() if k.startswith("WATCHFLOOR_")}
    assert set(wf) <= SETTINGS_ENV, set(wf) - SETTINGS_ENV
    settings = settings_from(wf)
    # Inside a container the web server must listen beyond loopback.
    assert settings.web_host == "0.0.0.0"


def test_dockerignore_sends_only_what_the_image_needs() -> None:
    copied = [
        "pyproject.toml",
        "setup.py",
        "streams/settings.py",
        "schemas/common.v1.json",
        "seeds/reference/city.json",
    ]
    for path in copied:
        assert (ROOT / path).exists(), path
        assert dockerignore_allows(path), f"{path} is ignored but the Dockerfile copies it"
    for path in (
        ".venv/bin/python",
        ".git/config",
        "deploy/kafka/.cache/x.jar",
        "deploy/kafka/.run/9092/server.properties",
        "tests/conftest.py",
        ".watchfloor/state",
        "streams/__pycache__/settings.cpython-311.pyc",
        "streams/state.cpython-311-x86_64-linux-gnu.so",
        "streams/native.json",
    ):
        assert not dockerignore_allows(path), f"{path} would be sent to the Docker daemon"


# --- compose --------------------------------------------------------------------------------


def test_compose_has_the_whole_stack() -> None:
    services = compose()["services"]
    assert set(services) == {
        "kafka",
        "topics",
        *WORKERS,
        "simulator",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    assert services["simulator"]["profiles"] == ["sim"]
    assert all("profiles" not in s for n, s in services.items() if n != "simulator")


def test_compose_images_are_pinned() -> None:
    services = compose()["services"]
    for name, service in services.items():
        image = interpolate(service["image"])
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image}"
    kafka = services["kafka"]["image"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka), kafka
    for name in WATCHFLOOR_SERVICES:
        build = services[name]["build"]
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert context == ROOT, name
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE
    images = {interpolate(services[n]["image"]) for n in WATCHFLOOR_SERVICES}
    assert len(images) == 1, images


def test_compose_environment_names_and_values_are_settings() -> None:
    services = compose()["services"]
    for name in WATCHFLOOR_SERVICES:
        env = service_env(services[name])
        unknown = {k for k in env if k.startswith("WATCHFLOOR_")} - SETTINGS_ENV
        assert not unknown, f"{name}: {unknown} are not fields of streams/settings.py"
        settings_from(env)  # raises SettingsError on a value a process would refuse


def test_compose_bootstrap_is_an_advertised_listener() -> None:
    services = compose()["services"]
    kafka = {k: interpolate(v) for k, v in services["kafka"]["environment"].items()}
    advertised: dict[str, str] = {}  # host:port -> listener name
    for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","):
        listener, _, address = item.partition("://")
        advertised[address] = listener
    protocols: dict[str, str] = {}  # listener name -> security protocol
    for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","):
        listener, _, protocol = item.partition(":")
        protocols[listener] = protocol
    for name in WATCHFLOOR_SERVICES:
        settings = settings_from(service_env(services[name]))
        for server in settings.bootstrap_list:
            assert server in advertised, f"{name}: {server} is not advertised by Kafka"
            assert protocols[advertised[server]] == settings.security_protocol
            assert server.split(":")[0] in {"kafka", services["kafka"].get("hostname")}


def test_compose_workers_have_distinct_reachable_identities() -> None:
    services = compose()["services"]
    urls, host_ports, volumes = set(), set(), set()
    for name in WORKERS:
        service = services[name]
        settings = settings_from(service_env(service))
        url = urlsplit(settings.canonical_url)
        assert url.hostname in {name, service.get("hostname")}, settings.canonical_url
        assert url.port == settings.web_port
        assert settings.web_host == "0.0.0.0"
        urls.add(settings.canonical_url)
        (port,) = service["ports"]
        host_ports.add(port.rsplit(":", 1)[0])
        assert port.endswith(f":{settings.web_port}")
        data = [v for v in service["volumes"] if v.endswith(":" + settings.data_dir)]
        assert len(data) == 1, f"{name}: the data dir {settings.data_dir} has no volume"
        volumes.add(data[0].split(":")[0])
        assert settings.store.startswith("rocksdb://")
        assert service["read_only"] is True and "/tmp" in service["tmpfs"]
        assert service["cap_drop"] == ["ALL"]
    assert len(urls) == len(host_ports) == len(volumes) == len(WORKERS)


def test_compose_dependencies_wait_for_health_and_topics() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            condition = spec["condition"]
            if condition == "service_healthy":
                has_check = "healthcheck" in services[dep] or dep in WATCHFLOOR_SERVICES
                assert has_check, f"{name} waits for {dep} to be healthy; it has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} is not a one-shot"
    for name in (*WORKERS, "simulator"):
        deps = services[name]["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps["topics"]["condition"] == "service_completed_successfully"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["topics"]["command"] == ["topics", "create"]
    for name in WORKERS:
        assert services[name]["command"] == ["worker"]
        grace = services[name]["stop_grace_period"]
        assert int(grace.rstrip("s")) >= 30
        # The worker ends by itself (drain, then its stop deadline) before Docker kills it.
        s = settings_from({k: str(v) for k, v in services[name]["environment"].items()})
        assert int(grace.rstrip("s")) > s.shutdown_drain_seconds + s.shutdown_timeout
    assert services["simulator"]["command"][0] == "simulate"


def test_every_watchfloor_command_is_accepted_by_the_cli() -> None:
    from streams.cli import build_parser

    commands = {f"compose {n}": compose()["services"][n]["command"] for n in WATCHFLOOR_SERVICES}
    for path, doc in k8s_file_docs():
        if doc.get("kind") in {"StatefulSet", "Job"} and path.parts[-3] != "overlays":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                commands[f"{path.name} {container['name']}"] = container["args"]
    assert len(commands) == len(WATCHFLOOR_SERVICES) + 2
    parser = build_parser()
    for where, command in commands.items():
        argv = [interpolate(arg) for arg in command]
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: watchfloor {' '.join(argv)} is not a valid command")
        assert callable(args.func), where


def test_compose_publishes_ports_on_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert interpolate(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_compose_bind_mounts_exist_in_the_repository() -> None:
    missing = []
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")) and not (COMPOSE_DIR / source).exists():
                missing.append(f"{name}: {source}")
    assert not missing, f"bind-mount sources missing: {missing}"


def test_compose_prometheus_scrapes_both_workers_and_loads_the_rules() -> None:
    services = compose()["services"]
    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])
    (config_src,) = [s for s, t in mounts.items() if t == "/etc/prometheus/prometheus.yml"]
    config = load_yaml_docs(COMPOSE_DIR / config_src)[0]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    expected = set()
    for name in WORKERS:
        settings = settings_from(service_env(services[name]))
        expected.add(f"{urlsplit(settings.canonical_url).hostname}:{settings.web_port}")
    assert targets == expected
    (am,) = config["alerting"]["alertmanagers"]
    assert am["static_configs"][0]["targets"] == ["alertmanager:9093"]
    # Every rule glob points into a mounted directory that holds rules.
    for pattern in config["rule_files"]:
        directory, _, glob = pattern.rpartition("/")
        (source,) = [s for s, t in mounts.items() if t == directory]
        assert sorted((COMPOSE_DIR / source).glob(glob)), f"no rule file matches {pattern}"


def test_alert_rules_select_the_job_our_scrape_configs_give() -> None:
    rules = sorted((COMPOSE_DIR / "../prometheus/rules").glob("*.yml"))
    assert rules, "no rule files in deploy/prometheus/rules"
    jobs = {j for f in rules for j in re.findall(r'job\s*=~?\s*"([^"]+)"', f.read_text())}
    assert jobs <= {JOB}, f"the rules select jobs {jobs}; compose and Kubernetes give {JOB!r}"


def test_compose_prometheus_keeps_the_reference_intervals() -> None:
    ours = load_yaml_docs(COMPOSE_DIR / "prometheus.yml")[0]["global"]
    reference = load_yaml_docs(COMPOSE_DIR / "../prometheus/prometheus.yml")[0]["global"]
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
        assert ours.get(key) == reference.get(key), key


def test_compose_grafana_provisioning_reads_the_mounted_dashboards() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    dashboards_target = mounts["../grafana/dashboards"]
    providers_dir = COMPOSE_DIR / "../grafana/provisioning/dashboards"
    providers = [
        p for f in sorted(providers_dir.glob("*.y*ml")) for p in load_yaml_docs(f)[0]["providers"]
    ]
    assert providers, "no dashboard provider under deploy/grafana/provisioning/dashboards"
    for provider in providers:
        path = provider["options"]["path"]
        assert path == dashboards_target or path.startswith(dashboards_target + "/"), path
    assert sorted((COMPOSE_DIR / "../grafana/dashboards").glob("*.json"))


def compose_cmd() -> list[str] | None:
    """Compose v2 or later: the docker CLI plugin, or the same binary standing alone."""
    candidates = [["docker", "compose"]] if shutil.which("docker") else []
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for cmd in candidates:
        probe = subprocess.run(
            [*cmd, "version"], capture_output=True, text=True, timeout=30, check=False
        )
        # Compose v1 (the Python docker-compose) reads the file differently.
        if probe.returncode == 0 and "version 1." not in probe.stdout:
            return cmd
    return None


def test_compose_file_is_valid_for_docker_compose(tmp_path: Path) -> None:
    cmd = compose_cmd()
    need(cmd is not None, "Docker Compose v2+ (docker compose, or docker-compose) is missing")
    assert cmd is not None
    for extra in ([], ["--profile", "sim"]):
        done = subprocess.run(
            [*cmd, "-f", str(COMPOSE_FILE), *extra, "config", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    # Compose's own resolution agrees with ours: merged anchors reach every worker.
    resolved = json.loads(done.stdout)["services"]
    for name in WORKERS:
        env = resolved[name]["environment"]
        assert env["WATCHFLOOR_BOOTSTRAP_SERVERS"] == "kafka:29092"
        assert resolved[name]["read_only"] is True


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    need(shutil.which("promtool") is not None, "promtool (Prometheus) is not installed")
    config = load_yaml_docs(COMPOSE_DIR / "prometheus.yml")[0]
    # Point the container path at the repository's rules so promtool checks them too.
    config["rule_files"] = [
        str((COMPOSE_DIR / "../prometheus/rules").resolve() / p.rpartition("/")[2])
        for p in config["rule_files"]
    ]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    done = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


# --- Kubernetes: the files ---------------------------------------------------------------


def test_every_kubernetes_yaml_parses_with_known_kinds() -> None:
    allowed = {
        ("v1", "ServiceAccount"),
        ("v1", "Secret"),
        ("v1", "Service"),
        ("v1", "Namespace"),
        ("apps/v1", "StatefulSet"),
        ("policy/v1", "PodDisruptionBudget"),
        ("batch/v1", "Job"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PodMonitor"),
        ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
        ("kustomize.config.k8s.io/v1alpha1", "Component"),
    }
    seen = 0
    for path, doc in k8s_file_docs():
        assert (doc.get("apiVersion"), doc.get("kind")) in allowed, f"{path}: {doc.get('kind')}"
        seen += 1
    assert seen >= 15


def test_every_kustomization_reference_exists() -> None:
    kustomizations = sorted(K8S.rglob("kustomization.yaml"))
    assert {p.parent.relative_to(K8S).as_posix() for p in kustomizations} >= {
        "base",
        "components/servicemonitor",
        "components/podmonitor",
        "components/create-topics",
        "components/networkpolicy",
        "overlays/dev",
        "overlays/managed-kafka",
    }
    for path in kustomizations:
        k = load_yaml_docs(path)[0]
        refs = [*k.get("resources", []), *k.get("components", [])]
        refs += [p["path"] for p in k.get("patches", []) if "path" in p]
        for gen in k.get("configMapGenerator", []) + k.get("secretGenerator", []):
            refs += gen.get("envs", []) + [f.split("=")[-1] for f in gen.get("files", [])]
        for ref in refs:
            target = path.parent / ref
            assert target.exists(), f"{path.relative_to(ROOT)} names {ref}, which does not exist"
            if target.is_dir():
                assert (target / "kustomization.yaml").exists(), f"{target} is no kustomization"


def test_statefulset_selector_services_and_pdb_agree() -> None:
    sts = k8s_object("StatefulSet", "watchfloor-worker")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    selector = sts["spec"]["selector"]["matchLabels"]
    assert matches(selector, pod_labels)
    peers = k8s_object("Service", sts["spec"]["serviceName"])
    assert peers["spec"]["clusterIP"] == "None"
    assert peers["spec"]["publishNotReadyAddresses"] is True
    api = k8s_object("Service", "watchfloor")
    assert "clusterIP" not in api["spec"] or api["spec"]["clusterIP"] != "None"
    _, container = worker_pod()
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    for service in (peers, api):
        assert matches(service["spec"]["selector"], pod_labels)
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names
    pdb = k8s_object("PodDisruptionBudget")
    assert matches(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert pdb["spec"]["maxUnavailable"] == 1


def test_worker_probes_ports_and_volumes() -> None:
    pod, container = worker_pod()
    config = env_file(K8S / "base" / "worker.env")
    settings = settings_from(config)
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port_names["http"] == settings.web_port
    probes = {
        k: container[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["readinessProbe"]["path"] == "/ready"
    assert probes["livenessProbe"]["path"] == "/health"
    assert probes["startupProbe"]["path"] == "/health"
    for probe in probes.values():
        assert probe["port"] in port_names or probe["port"] in port_names.values()
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    sts = k8s_object("StatefulSet", "watchfloor-worker")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]] == settings.data_dir
    assert settings.store.startswith("rocksdb://")
    assert mounts["tmp"] == "/tmp"
    # Graceful shutdown: several commit intervals and batches, and more than the default 30 s.
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > 30 and grace >= 10 * settings.commit_interval
    # Even with Kafka gone the worker ends by itself: drain, then its stop deadline.
    assert grace > settings.shutdown_drain_seconds + settings.shutdown_timeout


def test_worker_is_locked_down() -> None:
    pod, container = worker_pod()
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    # Service links would inject <SERVICE>_PORT style variables into our WATCHFLOOR_ space.
    assert spec["enableServiceLinks"] is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]


def _quantity(value: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3, "": 1}
    found = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert found, f"not a Kubernetes quantity: {value!r}"
    return float(found.group(1)) * units[found.group(2)]


def test_worker_resources_cover_the_memory_target() -> None:
    _, container = worker_pod()
    resources = container["resources"]
    target = 500 * 10**6  # one worker holds 1,000 districts in at most 500 MB RSS
    request = _quantity(resources["requests"]["memory"])
    limit = _quantity(resources["limits"]["memory"])
    assert request >= target
    assert limit >= 1.5 * target, "no headroom for a rebalance or RocksDB's cache"
    assert _quantity(resources["requests"]["cpu"]) > 0


def test_worker_environment_names_are_settings() -> None:
    _, container = worker_pod()
    names = [e["name"] for e in container["env"]]
    assert {n for n in names if n.startswith("WATCHFLOOR_")} <= SETTINGS_ENV
    assert set(env_file(K8S / "base" / "worker.env")) <= SETTINGS_ENV
    secret = k8s_object("Secret", "watchfloor-credentials")
    assert set(secret["stringData"]) <= SETTINGS_ENV
    for path, doc in k8s_file_docs():
        if path.name != "kustomization.yaml":
            continue
        for gen in doc.get("configMapGenerator", []):
            keys = {lit.split("=", 1)[0] for lit in gen.get("literals", [])}
            assert keys <= SETTINGS_ENV, f"{path}: {keys - SETTINGS_ENV}"
    # Secret references all point at keys the Secret has.
    for e in container["env"]:
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == "watchfloor-credentials"
            assert ref["key"] in secret["stringData"]


def test_canonical_url_is_the_pods_stable_peer_name() -> None:
    _, container = worker_pod()
    sts = k8s_object("StatefulSet", "watchfloor-worker")
    env = container["env"]
    names = [e["name"] for e in env]
    (url,) = [e["value"] for e in env if e["name"] == "WATCHFLOOR_CANONICAL_URL"]
    # Kubernetes expands $(VAR) only for variables defined earlier in the list.
    for var in re.findall(r"\$\((\w+)\)", url):
        assert names.index(var) < names.index("WATCHFLOOR_CANONICAL_URL"), var
    fields = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in env
        if "fieldRef" in e.get("valueFrom", {})
    }
    assert fields == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    web_port = settings_from(env_file(K8S / "base" / "worker.env")).web_port
    expected = f"http://$(POD_NAME).{sts['spec']['serviceName']}.$(POD_NAMESPACE).svc:{web_port}"
    assert url == expected


def test_placeholder_secret_is_marked_and_holds_no_credential() -> None:
    secret = k8s_object("Secret", "watchfloor-credentials")
    assert secret["metadata"]["annotations"]["watchfloor.dev/placeholder"] == "true"
    for key, value in secret["stringData"].items():
        assert value == "" or value.startswith("PLACEHOLDER"), key
    assert "PLACEHOLDER VALUES" in (K8S / "base" / "secret.yaml").read_text(encoding="utf-8")


def test_monitors_select_the_workers_with_the_rules_job_label() -> None:
    pod, container = worker_pod()
    pod_labels = pod["metadata"]["labels"]
    ports = {p["name"] for p in container["ports"]}
    sm = k8s_object("ServiceMonitor")
    services = [doc for _, doc in k8s_file_docs() if doc.get("kind") == "Service"]
    selected = [
        s
        for s in services
        if matches(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    assert [s["metadata"]["name"] for s in selected] == ["watchfloor-worker-peers"]
    (service,) = selected
    assert service["metadata"]["labels"][sm["spec"]["jobLabel"]] == JOB
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in sm["spec"]["endpoints"]:
        assert endpoint["port"] in service_ports and endpoint["path"] == "/metrics"
    pm = k8s_object("PodMonitor")
    assert matches(pm["spec"]["selector"]["matchLabels"], pod_labels)
    assert pod_labels[pm["spec"]["jobLabel"]] == JOB
    for endpoint in pm["spec"]["podMetricsEndpoints"]:
        assert endpoint["port"] in ports and endpoint["path"] == "/metrics"


# --- Kubernetes: what kustomize renders ----------------------------------------------------


def _workloads(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in {"StatefulSet", "Job"}:
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield doc, container


def test_rendered_overlays_pin_one_image(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        images = {c["image"] for _, c in _workloads(docs)}
        assert len(images) == 1, f"{name}: workloads disagree on the image: {images}"
        (image,) = images
        ref = image.split("@")[0]
        tag = ref.rpartition(":")[2] if ":" in ref.rpartition("/")[2] else ""
        assert "@sha256:" in image or (tag and tag != "latest"), f"{name}: {image}"


def test_rendered_references_resolve(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        present = {(d["kind"], d["metadata"]["name"]) for d in docs}
        extra = OUT_OF_BAND.get(name, {})

        def exists(
            kind: str,
            ref: str,
            present: set[tuple[str, str]] = present,
            extra: Mapping[str, set[str]] = extra,
        ) -> bool:
            return (kind, ref) in present or ref in extra.get(kind, set())

        for workload, container in _workloads(docs):
            spec = workload["spec"]["template"]["spec"]
            assert exists("ServiceAccount", spec["serviceAccountName"])
            for source in container.get("envFrom", []):
                assert exists("ConfigMap", source["configMapRef"]["name"]), (name, source)
            for e in container.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert exists("Secret", ref["name"]), (name, ref)
            for volume in spec.get("volumes", []):
                if "secret" in volume:
                    assert exists("Secret", volume["secret"]["secretName"]), (name, volume)
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            declared = {v["name"] for v in spec.get("volumes", [])}
            claims = workload["spec"].get("volumeClaimTemplates", [])
            declared |= {c["metadata"]["name"] for c in claims}
            assert mounts <= declared, (name, mounts - declared)
        monitors = [d["kind"] for d in docs if d["kind"] in {"ServiceMonitor", "PodMonitor"}]
        assert len(monitors) <= 1, f"{name} would scrape every worker twice: {monitors}"
        if name != "base":
            assert all(d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace")


def test_rendered_settings_are_accepted(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
        env = dict(config["data"])
        assert set(env) <= SETTINGS_ENV
        # Secrets come from the cluster; stand-ins show the settings would be accepted.
        env |= {"WATCHFLOOR_SASL_USERNAME": "u", "WATCHFLOOR_SASL_PASSWORD": "p"}
        settings = settings_from(env)
        (sts,) = [d for d in docs if d["kind"] == "StatefulSet"]
        assert sts["spec"]["replicas"] <= settings.partitions
        if name == "managed-kafka":
            assert settings.security_protocol == "SASL_SSL" and settings.tls_enabled
            assert settings.replication_factor >= 3
            assert not any(d["kind"] == "Secret" for d in docs), "placeholder Secret deployed"
            (_, container), *_ = list(_workloads([sts]))
            mounts = [m["mountPath"] for m in container["volumeMounts"]]
            assert any(settings.ssl_cafile.startswith(m + "/") for m in mounts)


def build_base_with(component: str, tmp_path: Path) -> list[dict[str, Any]]:
    """Render the base plus one component, as an overlay that chose it would."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize refuses absolute paths.
        "resources": [os.path.relpath(K8S / "base", overlay)],
        "components": [os.path.relpath(K8S / "components" / component, overlay)],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    return kustomize_build(overlay)


def test_podmonitor_component_builds_instead(tmp_path: Path) -> None:
    docs = build_base_with("podmonitor", tmp_path)
    assert [d["kind"] for d in docs].count("PodMonitor") == 1
    assert "ServiceMonitor" not in [d["kind"] for d in docs]


def test_networkpolicy_component_admits_peers_on_the_worker_port(tmp_path: Path) -> None:
    docs = build_base_with("networkpolicy", tmp_path)
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    (sts,) = [d for d in docs if d["kind"] == "StatefulSet"]
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"] for c in sts["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert matches(policy["spec"]["podSelector"]["matchLabels"], pod_labels)
    (rule,) = policy["spec"]["ingress"]
    assert {p["port"] for p in rule["ports"]} <= ports
    peers = [f["podSelector"]["matchLabels"] for f in rule["from"] if "podSelector" in f]
    assert any(matches(sel, pod_labels) for sel in peers), "workers could not reach each other"


def test_rendered_objects_validate_against_kubernetes_schemas(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    need(
        importlib.util.find_spec("kubernetes_validate") is not None,
        "kubernetes-validate (pip install kubernetes-validate) is not installed",
    )
    import kubernetes_validate

    checked = 0
    for name, docs in rendered.items():
        for doc in docs:
            if doc["apiVersion"].startswith("monitoring.coreos.com/"):
                continue  # CRDs: not in the schema set; checked structurally above
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    pytest.fail(
                        f"{name} {doc['kind']}/{doc['metadata']['name']} "
                        f"on Kubernetes {version}: {exc.path}: {exc.message}"
                    )
                checked += 1
    assert checked >= 2 * 15
