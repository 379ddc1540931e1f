"""The container stack as docker-compose.yml declares it, checked without a container engine.

The file is read with PyYAML (merge keys resolved, as Compose resolves them) and every `${VAR...}`
is replaced as Compose replaces it when the environment sets nothing: by the value in the `.env`
file beside it, else by its default (`${VAR:-x}`), so the tests see the stack that boots when
nothing is overridden.
They check the topology the README promises: 3 client + 3 server workers, a 3-node KRaft Kafka
cluster, a 3-member MongoDB replica set with keyfile auth, the init one-shots and their ordering,
healthchecks, loopback-only ports, the Prometheus scrape targets and the OpenTelemetry defaults.
Booting the stack (image build, replica-set init, healthchecks at run time) needs Docker and is
not checked here.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from jobstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOTENV = ROOT / ".env"
DOCKERFILE = ROOT / "Dockerfile"
INFRA_COMMON = ROOT / "scripts" / "infra" / "common.sh"

CLIENTS = [f"client-application-{n}" for n in (1, 2, 3)]
SERVERS = [f"server-application-{n}" for n in (1, 2, 3)]
WORKERS = CLIENTS + SERVERS
KAFKA_NODES = ["kafka-1", "kafka-2", "kafka-3"]
MONGO_MEMBERS = ["mongo-1", "mongo-2", "mongo-3"]
#: Services that run once and exit; every other service is long-running.
ONE_SHOTS = {"mongo-keyfile", "mongo-init", "topics-init"}
API_PORTS = {
    "client-application-1": 8080,
    "client-application-2": 8081,
    "client-application-3": 8082,
}

_VARIABLE = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?])(?P<argument>[^}]*))?\}"
)


def _yaml() -> Any:
    """PyYAML, which the test extras must provide; a missing one fails (never skips) the tests."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - depends on the environment
        pytest.fail(
            "PyYAML is not installed: it is needed to read docker-compose.yml "
            "(install the test extras: pip install -e '.[test]')"
        )
    return yaml


@cache
def dotenv() -> dict[str, str]:
    """The `.env` file Compose reads beside docker-compose.yml: `NAME=value` lines, # comments."""
    values = {}
    for line in DOTENV.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, separator, value = line.partition("=")
            assert separator, f".env: {line!r} is not NAME=value"
            values[name.strip()] = value.strip()
    return values


def _substitute(match: re.Match[str]) -> str:
    """One `${VAR}`, `${VAR-x}`, `${VAR:-x}`, `${VAR?error}` or `${VAR:?error}`, as Compose reads
    it with nothing set in the environment."""
    name, operator, argument = match.group("name", "operator", "argument")
    value = dotenv().get(name)
    if operator and operator.endswith("?"):
        assert value is not None and (value or operator == "?"), f"{name}: {argument}"
        return value
    if value is None or (value == "" and operator == ":-"):
        return argument or ""
    return value


def with_defaults(value: Any) -> Any:
    """`value` with every variable replaced as Compose replaces it (.env, then defaults)."""
    if isinstance(value, str):
        return _VARIABLE.sub(_substitute, value)
    if isinstance(value, Mapping):
        return {key: with_defaults(item) for key, item in value.items()}
    if isinstance(value, list):
        return [with_defaults(item) for item in value]
    return value


@cache
def raw_compose() -> dict[str, Any]:
    """docker-compose.yml as written (merge keys resolved, variables not)."""
    return _yaml().safe_load(COMPOSE_FILE.read_text())


@cache
def compose() -> dict[str, Any]:
    """docker-compose.yml with every variable at its default."""
    return with_defaults(raw_compose())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def service(name: str) -> dict[str, Any]:
    assert name in services(), f"docker-compose.yml has no service {name!r}"
    return services()[name]


def environment(name: str) -> dict[str, str]:
    """A service's environment as strings (list or mapping form)."""
    env = service(name).get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command(name: str) -> list[str]:
    """A service's command as a list of words (string or list form)."""
    value = service(name).get("command") or []
    return shlex.split(value) if isinstance(value, str) else [str(word) for word in value]


def depends_on(name: str) -> dict[str, str]:
    """`{dependency: condition}` of a service (the short list form means service_started)."""
    value = service(name).get("depends_on") or {}
    if isinstance(value, list):
        return dict.fromkeys(value, "service_started")
    return {dep: (spec or {}).get("condition", "service_started") for dep, spec in value.items()}


def published(name: str) -> list[tuple[str, int, int]]:
    """`(host_ip, host_port, container_port)` of each published port of a service."""
    result = []
    for port in service(name).get("ports") or []:
        if isinstance(port, Mapping):
            host_ip = str(port.get("host_ip", ""))
            host_port, target = int(port["published"]), int(port["target"])
        else:
            parts = str(port).split("/")[0].rsplit(":", 2)
            assert len(parts) == 3, f"{name}: port {port!r} does not name a host address"
            host_ip, host_port, target = parts[0], int(parts[1]), int(parts[2])
        result.append((host_ip, host_port, target))
    return result


def volume_source(name: str, target: str) -> str:
    """The source of the volume or bind mount a service has at `target`."""
    for volume in service(name).get("volumes") or []:
        if isinstance(volume, Mapping):
            source, mounted = volume.get("source", ""), volume.get("target")
        else:
            source, _, rest = str(volume).partition(":")
            mounted = rest.partition(":")[0]
        if mounted == target:
            return str(source)
    raise AssertionError(f"{name} mounts nothing at {target}")


def image_tag(name: str) -> tuple[str, str]:
    repository, _, tag = service(name)["image"].rpartition(":")
    return repository, tag


# --- the file itself ----------------------------------------------------------------------------


def test_compose_file_uses_the_compose_spec_without_version_key() -> None:
    assert "version" not in raw_compose()
    assert set(services()) == set(
        WORKERS + KAFKA_NODES + MONGO_MEMBERS + sorted(ONE_SHOTS) + ["prometheus", "jaeger"]
    )


def test_named_volumes_hold_mongo_kafka_data_and_the_keyfile() -> None:
    volumes = set(compose().get("volumes") or {})
    for member in MONGO_MEMBERS:
        assert volume_source(member, "/data/db") in volumes
    for node in KAFKA_NODES:
        assert volume_source(node, "/var/lib/kafka/data") in volumes
    assert volume_source("mongo-keyfile", "/keyfile") in volumes
    # and no two nodes share a data volume
    data = [volume_source(m, "/data/db") for m in MONGO_MEMBERS]
    data += [volume_source(k, "/var/lib/kafka/data") for k in KAFKA_NODES]
    assert len(set(data)) == len(data)


# --- workers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", WORKERS)
def test_every_worker_runs_the_jobstream_image_in_its_role(name: str) -> None:
    # Given a worker service
    role = "client" if name in CLIENTS else "server"
    worker = service(name)
    env = environment(name)

    # Then it is built from the Dockerfile, as jobstream:local, in the role its name says
    assert worker.get("build") in (".", {"context": "."})
    assert worker["image"] == "jobstream:local"
    assert env["JOBSTREAM_ROLE"] == role
    assert env["OTEL_SERVICE_NAME"] == f"{role}-application"
    assert env["JOBSTREAM_KAFKA_BROKERS"] == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
    assert env["JOBSTREAM_WEB_HOST"] == "0.0.0.0"
    assert env["JOBSTREAM_WEB_PORT"] == "8080"
    assert env["JOBSTREAM_DATA_DIR"] == "/tmp/jobstream"


@pytest.mark.parametrize("name", WORKERS)
def test_every_worker_environment_is_accepted_by_settings(name: str) -> None:
    # When the project's own settings are built from the worker's environment
    settings = Settings.from_env(environment(name))

    # Then they are valid and say what the compose file means
    assert settings.role == ("client" if name in CLIENTS else "server")
    assert settings.bootstrap_servers == ["kafka-1:9092", "kafka-2:9092", "kafka-3:9092"]
    assert settings.web_port == 8080
    assert settings.mongo_database == "jobstream"
    if name in SERVERS:
        assert settings.compute_concurrency == 20


def test_there_are_three_client_and_three_server_workers() -> None:
    roles = [environment(n).get("JOBSTREAM_ROLE") for n in services() if n.startswith("client-")]
    roles += [environment(n).get("JOBSTREAM_ROLE") for n in services() if n.startswith("server-")]
    assert sorted(roles) == ["client"] * 3 + ["server"] * 3


@pytest.mark.parametrize("name", WORKERS)
def test_every_worker_waits_for_the_topic_init_to_succeed(name: str) -> None:
    assert depends_on(name).get("topics-init") == "service_completed_successfully"


# --- init one-shots -----------------------------------------------------------------------------


def test_topic_init_runs_the_project_bootstrap_once_kafka_and_mongo_are_ready() -> None:
    # The project's own code creates the topics (60 partitions, RF 3, min ISR 2) and the indexes
    init = service("topics-init")
    assert command("topics-init") == ["python", "-m", "jobstream.bootstrap"]
    assert init["image"] == "jobstream:local"
    assert init.get("restart", "no") == "no"
    env = environment("topics-init")
    assert (
        env["JOBSTREAM_KAFKA_BROKERS"]
        == environment("client-application-1")["JOBSTREAM_KAFKA_BROKERS"]
    )
    assert env["JOBSTREAM_MONGO_URL"] == environment("client-application-1")["JOBSTREAM_MONGO_URL"]
    deps = depends_on("topics-init")
    for node in KAFKA_NODES:
        assert deps[node] == "service_healthy"
    assert deps["mongo-init"] == "service_completed_successfully"


def test_mongo_init_runs_the_replica_set_script_once_every_member_is_healthy() -> None:
    deps = depends_on("mongo-init")
    for member in MONGO_MEMBERS:
        assert deps[member] == "service_healthy"
    script = volume_source("mongo-init", "/deploy/mongo/init-replica-set.sh")
    assert (ROOT / script).resolve() == ROOT / "deploy" / "mongo" / "init-replica-set.sh"
    assert (ROOT / script).is_file()
    env = environment("mongo-init")
    assert env["MONGO_REPLICA_SET"] == "rs0"
    assert env["MONGO_MEMBERS"].split(",") == [f"{m}:27017" for m in MONGO_MEMBERS]


# --- Kafka --------------------------------------------------------------------------------------


def test_kafka_is_a_three_node_kraft_cluster_with_one_cluster_id_and_quorum() -> None:
    # Given the three Kafka services
    envs = {node: environment(node) for node in KAFKA_NODES}

    # Then each is a combined broker+controller with its own node id ...
    assert sorted(int(env["KAFKA_NODE_ID"]) for env in envs.values()) == [1, 2, 3]
    for node, env in envs.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{node}:9092"
        assert "PLAINTEXT://:9092" in env["KAFKA_LISTENERS"]
        assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"]
        assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"

    # ... all in one cluster whose quorum lists all three controllers
    assert len({env["CLUSTER_ID"] for env in envs.values()}) == 1
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", envs["kafka-1"]["CLUSTER_ID"])
    expected_voters = {f"{n}@kafka-{n}:9093" for n in (1, 2, 3)}
    for env in envs.values():
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == expected_voters
        assert env["KAFKA_NODE_ID"] + "@" in env["KAFKA_CONTROLLER_QUORUM_VOTERS"]


@pytest.mark.parametrize("node", KAFKA_NODES)
def test_kafka_durability_settings_match_the_local_stack(node: str) -> None:
    env = environment(node)
    assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
    assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    # Kafka is reachable on the compose network only
    assert published(node) == []


def test_kafka_image_version_equals_the_local_stack_version() -> None:
    # Given the version the local stack installs
    match = re.search(r'^KAFKA_VERSION="([^"]+)"', INFRA_COMMON.read_text(), re.MULTILINE)
    assert match, f"no KAFKA_VERSION in {INFRA_COMMON}"

    # Then every Kafka container runs that same version
    for node in KAFKA_NODES:
        assert image_tag(node) == ("apache/kafka", match.group(1))


# --- MongoDB ------------------------------------------------------------------------------------


@pytest.mark.parametrize("member", MONGO_MEMBERS)
def test_mongo_members_form_replica_set_rs0_with_keyfile_auth(member: str) -> None:
    # Given a member
    words = command(member)

    # Then it is a real MongoDB in replica set rs0, authenticating members with the shared keyfile
    assert image_tag(member) == ("mongo", "8.0")
    assert words[0] == "mongod"
    assert words[words.index("--replSet") + 1] == "rs0"
    keyfile = words[words.index("--keyFile") + 1]
    assert "--bind_ip_all" in words
    assert volume_source(member, str(Path(keyfile).parent)) == volume_source(
        "mongo-keyfile", "/keyfile"
    )
    assert depends_on(member)["mongo-keyfile"] == "service_completed_successfully"
    assert published(member) == []


def test_keyfile_is_generated_once_with_the_permissions_mongod_requires() -> None:
    script = "\n".join(command("mongo-keyfile"))
    assert "chmod 400" in script
    assert "chown 999:999" in script
    assert "if [ ! -s /keyfile/key ]" in script  # kept when it exists


def test_root_credentials_have_defaults_and_are_shared_with_the_init() -> None:
    root = environment("mongo-1")
    init = environment("mongo-init")
    assert root["MONGO_INITDB_ROOT_USERNAME"] == init["MONGO_ROOT_USERNAME"] != ""
    assert root["MONGO_INITDB_ROOT_PASSWORD"] == init["MONGO_ROOT_PASSWORD"] != ""
    # and they come from the environment, so they can (and must) be changed
    raw = raw_compose()["services"]["mongo-1"]["environment"]
    assert raw["MONGO_INITDB_ROOT_PASSWORD"].startswith("${MONGO_ROOT_PASSWORD:-")


def test_application_mongo_url_targets_the_replica_set_with_majority_writes() -> None:
    # Given the URL the workers use
    url = urlsplit(environment("client-application-1")["JOBSTREAM_MONGO_URL"])
    query = {key: values[-1] for key, values in parse_qs(url.query).items()}
    init = environment("mongo-init")

    # Then it lists the three members, rs0, majority writes ...
    assert url.scheme == "mongodb"
    assert url.netloc.rpartition("@")[2].split(",") == [f"{m}:27017" for m in MONGO_MEMBERS]
    assert query["replicaSet"] == "rs0"
    assert query["w"] == "majority"
    assert url.path == "/jobstream"

    # ... and the user and password mongo-init creates, in the database it creates them in
    user, _, password = url.netloc.rpartition("@")[0].partition(":")
    assert user == init["JOBSTREAM_MONGO_USERNAME"] == "jobstream"
    assert password == init["JOBSTREAM_MONGO_PASSWORD"] != ""
    assert query["authSource"] == init["JOBSTREAM_MONGO_DATABASE"] == "jobstream"

    # ... identically for every worker
    for name in WORKERS:
        assert environment(name)["JOBSTREAM_MONGO_URL"] == url.geturl()


# --- healthchecks and ports ---------------------------------------------------------------------


def test_every_long_running_service_has_a_healthcheck() -> None:
    long_running = sorted(set(services()) - ONE_SHOTS)
    assert len(long_running) == 14
    for name in long_running:
        check = service(name).get("healthcheck") or {}
        assert not check.get("disable"), f"{name} disables its healthcheck"
        assert check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


@pytest.mark.parametrize("name", WORKERS)
def test_worker_healthcheck_asks_the_readiness_endpoint(name: str) -> None:
    # Healthy means ready: database, brokers and partition assignment usable, not merely alive
    test = " ".join(service(name)["healthcheck"]["test"])
    assert "http://127.0.0.1:8080/ready" in test
    assert "/health" not in test


# --- access control -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", WORKERS)
def test_every_worker_takes_its_api_tokens_from_the_environment_or_env_file(name: str) -> None:
    # Given the worker's environment as written: the tokens are required to be set (empty allowed)
    raw = raw_compose()["services"][name]["environment"]["JOBSTREAM_API_TOKENS"]
    assert raw.startswith("${JOBSTREAM_API_TOKENS?")

    # When nothing overrides it, the .env default applies, and the settings accept it
    settings = Settings.from_env(environment(name))
    assert settings.api_tokens == (dotenv()["JOBSTREAM_API_TOKENS"],)


def test_env_file_holds_a_token_marked_for_change() -> None:
    # The shipped default protects the API, and says it is not a secret
    token = dotenv()["JOBSTREAM_API_TOKENS"]
    assert Settings.from_env({"JOBSTREAM_API_TOKENS": token}).api_tokens
    assert "change-me" in token


def test_probes_and_metrics_stay_reachable_without_a_token() -> None:
    # Prometheus has no token: it scrapes /metrics, which the tokens do not cover
    source = volume_source("prometheus", "/etc/prometheus/prometheus.yml")
    config = _yaml().safe_load((ROOT / source).read_text())
    for job in config["scrape_configs"]:
        assert "authorization" not in job and "bearer_token" not in job
        assert not job.get("metrics_path", "/metrics").startswith("/api")


def test_one_shots_do_not_restart() -> None:
    for name in ONE_SHOTS:
        assert str(service(name).get("restart", "no")) == "no"


def test_every_published_port_is_bound_to_loopback() -> None:
    ports = {name: published(name) for name in services() if published(name)}
    assert ports, "nothing is published"
    for name, entries in ports.items():
        for host_ip, host_port, _ in entries:
            assert host_ip == "127.0.0.1", f"{name} publishes {host_port} on {host_ip or 'all'}"
    # and only the API, Prometheus and the Jaeger UI are published
    assert set(ports) == set(CLIENTS) | {"prometheus", "jaeger"}
    assert ports["prometheus"] == [("127.0.0.1", 9090, 9090)]
    assert ports["jaeger"] == [("127.0.0.1", 16686, 16686)]


def test_the_api_is_published_on_8080_to_8082_one_client_behind_each() -> None:
    for name, port in API_PORTS.items():
        assert published(name) == [("127.0.0.1", port, 8080)]
    for name in SERVERS:
        assert published(name) == []


# --- observability ------------------------------------------------------------------------------


def test_prometheus_scrapes_all_six_workers_by_service() -> None:
    # Given the Prometheus configuration mounted into the prometheus service
    source = volume_source("prometheus", "/etc/prometheus/prometheus.yml")
    config = _yaml().safe_load((ROOT / source).read_text())
    assert image_tag("prometheus") == ("prom/prometheus", "v3.5.0")
    assert "--web.enable-otlp-receiver" in command("prometheus")

    # When its targets are collected with their service label
    targets: dict[str, str] = {}
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for group in job.get("static_configs", []):
            for target in group["targets"]:
                targets[target] = group.get("labels", {}).get("service", "")

    # Then every worker is scraped on its web port, labelled with its role's service name
    for name in WORKERS:
        role = environment(name)["JOBSTREAM_ROLE"]
        target = f"{name}:{environment(name)['JOBSTREAM_WEB_PORT']}"
        assert targets.get(target) == f"{role}-application", target


@pytest.mark.parametrize("name", WORKERS)
def test_trace_sampling_is_off_by_default_and_exported_to_jaeger(name: str) -> None:
    env = environment(name)
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert float(env["OTEL_TRACES_SAMPLER_ARG"]) == 0.0
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
    # metrics are pulled by Prometheus from /metrics; a push interval would be a dead setting
    assert "OTEL_METRIC_EXPORT_INTERVAL" not in env


def test_jaeger_is_the_v2_all_in_one_with_only_its_ui_published() -> None:
    assert image_tag("jaeger") == ("jaegertracing/jaeger", "2.11.0")
    config_path = volume_source(
        "jaeger", command("jaeger")[command("jaeger").index("--config") + 1]
    )
    config = _yaml().safe_load((ROOT / config_path).read_text())
    otlp = config["receivers"]["otlp"]["protocols"]
    assert otlp["grpc"]["endpoint"].endswith(":4317")
    assert otlp["http"]["endpoint"].endswith(":4318")


# --- the image ----------------------------------------------------------------------------------


def test_dockerfile_builds_a_slim_non_root_image_with_a_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    assert "python:3.11.7-slim-bookworm" in text
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) == 2  # builder + final
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "ENV PYTHONUNBUFFERED=1" in text
    assert re.search(r"^EXPOSE 8080$", text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\\\n.*/health", text, re.MULTILINE)
    assert 'CMD ["python", "-m", "jobstream", "worker", "--loglevel", "info"]' in text
