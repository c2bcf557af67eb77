"""docker-compose.yml and the Dockerfile agree with the code: services, settings, commands, health.

There is no Docker engine where these tests run, so they read the files: each assertion names
something that would break a real ``docker compose up`` (a setting the code never reads, a
command that does not exist, a dependency that cannot become healthy, a port nobody listens on).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from pipeline.config import Settings

ROOT: Final = Path(__file__).resolve().parents[2]
COMPOSE_FILE: Final = ROOT / "docker-compose.yml"
DOCKERFILE: Final = ROOT / "Dockerfile"
DOCKERIGNORE: Final = ROOT / ".dockerignore"
KAFKA_SCRIPT: Final = ROOT / "scripts" / "kafka.sh"

PREFIX: Final = "COMPUTEWATCH_"
# The command line of DESIGN.md.
DESIGN_COMMANDS: Final = frozenset(
    {"demo", "worker", "simulate", "replay", "evaluate", "migrate", "usage", "dashboard", "bench"}
)
# service -> the computewatch subcommand it runs.
APP_SERVICES: Final = {
    "migrate": "migrate",
    "worker": "worker",
    "simulator": "simulate",
    "dashboard": "dashboard",
}
INFRA_SERVICES: Final = frozenset({"kafka", "clickhouse", "prometheus", "grafana"})
# service -> {dependency: condition} that must hold (more dependencies are allowed).
REQUIRED_DEPENDENCIES: Final = {
    "migrate": {"clickhouse": "service_healthy"},
    "worker": {"kafka": "service_healthy", "migrate": "service_completed_successfully"},
    "simulator": {"kafka": "service_healthy"},
    "dashboard": {"migrate": "service_completed_successfully"},
}

_REFERENCE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>.*))?", re.S)


# --- helpers ---------------------------------------------------------------------------------


def interpolate(value: object, env: Mapping[str, str]) -> str:
    """``value`` as Compose hands it to the container: ``${X:-d}``, ``${X-d}``, ``${X}``, ``$$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        expression = match.group("braced") or match.group("named") or ""
        parts = _BRACED.fullmatch(expression)
        assert parts is not None, f"unsupported interpolation ${{{expression}}}"
        name, op, default = parts.group("name", "op", "default")
        current = env.get(name)
        if op == ":-" and not current:
            return str(default)
        if op == "-" and current is None:
            return str(default)
        assert current is not None, f"${{{name}}} has no default: compose would substitute ''"
        return current

    return _REFERENCE.sub(replace, str(value))


def settings_env_names() -> dict[str, tuple[str, ...]]:
    """Every variable Settings reads -> the attribute path it sets.

    ``COMPUTEWATCH_<SECTION>_<FIELD>`` for fields of nested models, ``COMPUTEWATCH_<FIELD>`` for
    top-level scalars (and JSON for top-level dicts, such as ``COMPUTEWATCH_PRICES``).
    """
    names: dict[str, tuple[str, ...]] = {}
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for sub in annotation.model_fields:
                names[f"{PREFIX}{name}_{sub}".upper()] = (name, sub)
        else:
            names[f"{PREFIX}{name}".upper()] = (name,)
    return names


def setting_at(settings: Settings, path: tuple[str, ...]) -> object:
    value: object = settings
    for part in path:
        value = getattr(value, part)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def literal_choices(path: tuple[str, ...]) -> tuple[str, ...]:
    """The values a ``Literal`` setting allows (empty for any other type)."""
    model: Any = Settings
    for part in path[:-1]:
        model = model.model_fields[part].annotation
    annotation = model.model_fields[path[-1]].annotation
    return get_args(annotation) if get_origin(annotation) is Literal else ()


def as_setting(raw: str, like: object) -> object:
    """``raw`` converted to the type of the setting's current value (for comparison)."""
    if isinstance(like, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(like, int | float):
        return type(like)(raw)
    return raw


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment, list or mapping form, uninterpolated."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def command_words(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command")
    assert command, "service has no command"
    return [str(word) for word in command] if isinstance(command, list) else shlex.split(command)


def flag_value(words: list[str], flag: str) -> str | None:
    for i, word in enumerate(words):
        if word == flag and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


def healthcheck_text(service: Mapping[str, Any]) -> str:
    check = service.get("healthcheck") or {}
    assert not check.get("disable"), "healthcheck is disabled"
    test = check.get("test")
    assert test, "no healthcheck test"
    return " ".join(str(word) for word in test) if isinstance(test, list) else str(test)


def container_ports(service: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(published, target) port pairs from short (``[ip:]host:container``) or long syntax."""
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            yield str(entry.get("published", "")), str(entry["target"])
        else:
            parts = str(entry).split("/", 1)[0].rsplit(":", 2)
            yield (parts[-2] if len(parts) > 1 else ""), parts[-1]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict)
    return found


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No COMPUTEWATCH_* from the outer environment, and a cwd without surprises."""
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


# --- services and settings -------------------------------------------------------------------


def test_expected_services_exist(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= INFRA_SERVICES | set(APP_SERVICES)


def test_shared_environment_is_stated_once_and_used_by_every_app_service(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    shared = compose.get("x-computewatch-env")
    assert isinstance(shared, dict) and shared, "x-computewatch-env extension is missing"
    assert all(str(key).startswith(PREFIX) for key in shared)
    for name in APP_SERVICES:
        env = environment(services[name])
        missing = {key for key in shared if env.get(key) != str(shared[key])}
        assert not missing, f"{name} lacks the shared settings {sorted(missing)}"


def test_every_computewatch_variable_in_the_file_is_a_setting() -> None:
    # Any mention counts: environment keys, ${...} references and comments.
    mentioned = set(re.findall(r"\bCOMPUTEWATCH_[A-Z0-9_]+", COMPOSE_FILE.read_text()))
    assert mentioned, "no COMPUTEWATCH_* variables: the services are not wired to the settings"
    unknown = mentioned - set(settings_env_names())
    assert not unknown, f"Settings would silently ignore {sorted(unknown)}"


def test_settings_env_names_follow_the_settings_rule(clean_env: pytest.MonkeyPatch) -> None:
    # The name rule above, checked against pydantic-settings for every scalar field: each name
    # moves its field off the default.
    names = settings_env_names()
    assert names["COMPUTEWATCH_KAFKA_BOOTSTRAP"] == ("kafka", "bootstrap")
    assert names["COMPUTEWATCH_DASHBOARD_PORT"] == ("dashboard_port",)
    defaults = Settings()
    for name, path in names.items():
        default = setting_at(defaults, path)
        if isinstance(default, bool):
            raw = str(not default).lower()
        elif isinstance(default, int | float):
            raw = str(default + 1)
        elif isinstance(default, str):
            allowed = literal_choices(path)  # a choice among names, or any string
            raw = next(c for c in allowed if c != default) if allowed else default + "-changed"
        else:
            continue  # None-valued optionals and dicts take JSON or are covered by their type
        clean_env.setenv(name, raw)
        assert setting_at(Settings(), path) == as_setting(raw, default), name
        clean_env.delenv(name)


@pytest.mark.parametrize("host_env", [{}, {"COMPUTEWATCH_CLICKHOUSE_PASSWORD": "s3cret"}])
def test_each_service_environment_arrives_in_settings(
    services: dict[str, dict[str, Any]],
    clean_env: pytest.MonkeyPatch,
    host_env: dict[str, str],
) -> None:
    names = settings_env_names()
    for service_name in APP_SERVICES:
        variables = {
            key: interpolate(value, host_env)
            for key, value in environment(services[service_name]).items()
            if key.startswith(PREFIX)
        }
        for key, value in variables.items():
            clean_env.setenv(key, value)
        settings = Settings()
        for key, value in variables.items():
            actual = setting_at(settings, names[key])
            assert actual == as_setting(value, actual), f"{service_name}: {key}={value!r}"
            clean_env.delenv(key)
    # The concrete wiring the containers rely on.
    worker = {k: interpolate(v, host_env) for k, v in environment(services["worker"]).items()}
    for key, value in worker.items():
        clean_env.setenv(key, value)
    settings = Settings()
    assert settings.kafka.bootstrap == "kafka:9092"
    assert settings.clickhouse.url == "http://clickhouse:8123"
    assert settings.clickhouse.password.get_secret_value() == host_env.get(
        "COMPUTEWATCH_CLICKHOUSE_PASSWORD", worker["COMPUTEWATCH_CLICKHOUSE_PASSWORD"]
    )


@pytest.mark.parametrize(
    "host_env",
    [{}, {"COMPUTEWATCH_CLICKHOUSE_USERNAME": "ops", "COMPUTEWATCH_CLICKHOUSE_PASSWORD": "pw"}],
)
def test_clickhouse_server_and_clients_share_the_credentials(
    services: dict[str, dict[str, Any]], host_env: dict[str, str]
) -> None:
    server = {k: interpolate(v, host_env) for k, v in environment(services["clickhouse"]).items()}
    for name in APP_SERVICES:
        client = {k: interpolate(v, host_env) for k, v in environment(services[name]).items()}
        assert client["COMPUTEWATCH_CLICKHOUSE_USERNAME"] == server["CLICKHOUSE_USER"]
        assert client["COMPUTEWATCH_CLICKHOUSE_PASSWORD"] == server["CLICKHOUSE_PASSWORD"]
    # The server must not fall back to a passwordless `default` user the image locks to localhost.
    assert server["CLICKHOUSE_PASSWORD"]
    if host_env:
        assert server["CLICKHOUSE_USER"] == host_env["COMPUTEWATCH_CLICKHOUSE_USERNAME"]


def test_clients_point_at_the_compose_servers(services: dict[str, dict[str, Any]]) -> None:
    env = {k: interpolate(v, {}) for k, v in environment(services["worker"]).items()}
    url = urlsplit(env["COMPUTEWATCH_CLICKHOUSE_URL"])
    assert url.scheme == "http" and url.hostname == "clickhouse" and url.port == 8123
    kafka_env = environment(services["kafka"])
    bootstrap = env["COMPUTEWATCH_KAFKA_BOOTSTRAP"]
    assert bootstrap.split(":")[0] in services
    # The broker must advertise exactly the address the clients bootstrap from.
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert any(listener.endswith("://" + bootstrap) for listener in advertised), advertised
    assert (
        interpolate(kafka_env["KAFKA_NUM_PARTITIONS"], {}) == env["COMPUTEWATCH_KAFKA_PARTITIONS"]
    )


# --- commands --------------------------------------------------------------------------------


@pytest.mark.parametrize(("service", "subcommand"), sorted(APP_SERVICES.items()))
def test_app_service_runs_a_computewatch_command(
    services: dict[str, dict[str, Any]], service: str, subcommand: str
) -> None:
    words = command_words(services[service])
    assert words[0] == "computewatch"
    assert words[1] in DESIGN_COMMANDS
    assert words[1] == subcommand


def test_every_service_built_from_the_image_runs_computewatch(
    services: dict[str, dict[str, Any]],
) -> None:
    built = {name for name, service in services.items() if "build" in service}
    assert built >= set(APP_SERVICES)
    for name in built:
        words = command_words(services[name])
        assert words[0] == "computewatch" and words[1] in DESIGN_COMMANDS, name


def test_simulator_sends_to_kafka_in_real_time(services: dict[str, dict[str, Any]]) -> None:
    words = command_words(services["simulator"])
    rate = flag_value(words, "--rate")
    assert rate is not None and float(rate) > 0
    assert flag_value(words, "--out") is None, "--out writes files instead of sending to Kafka"


def test_migrate_runs_once(services: dict[str, dict[str, Any]]) -> None:
    # A restarting one-shot never reaches service_completed_successfully for its dependants.
    assert services["migrate"].get("restart", "no") in ("no", "on-failure")


# --- health and ordering ---------------------------------------------------------------------


def test_kafka_healthcheck_asks_the_broker(services: dict[str, dict[str, Any]]) -> None:
    text = healthcheck_text(services["kafka"])
    assert re.search(r"kafka-(broker-api-versions|topics)(\.sh)?\b", text)
    assert "--bootstrap-server" in text


def test_clickhouse_healthcheck_asks_the_server(services: dict[str, dict[str, Any]]) -> None:
    text = healthcheck_text(services["clickhouse"])
    assert "SELECT 1" in text or "/ping" in text


def test_dashboard_port_health_and_publication_agree_with_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    port = str(Settings.model_fields["dashboard_port"].default)
    dashboard = services["dashboard"]
    assert flag_value(command_words(dashboard), "--port") == port
    assert (port, port) in set(container_ports(dashboard))
    assert f"localhost:{port}/_stcore/health" in healthcheck_text(dashboard)
    # Inside a container a loopback-only Streamlit cannot be reached through a published port.
    assert environment(dashboard).get("COMPUTEWATCH_DASHBOARD_HOST") == "0.0.0.0"


def test_dependencies_wait_for_health_and_completion(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, required in REQUIRED_DEPENDENCIES.items():
        depends = services[name].get("depends_on")
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions (mapping form)"
        for dependency, condition in required.items():
            assert (depends.get(dependency) or {}).get("condition") == condition, (
                f"{name} -> {dependency}"
            )


def test_every_health_condition_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if (spec or {}).get("condition") == "service_healthy":
                healthcheck_text(services[dependency])


# --- images and volumes ----------------------------------------------------------------------


def test_kafka_image_matches_the_development_broker(services: dict[str, dict[str, Any]]) -> None:
    image = services["kafka"]["image"]
    assert image.startswith("apache/kafka:4.1.")
    found = re.search(r'VERSION="\$\{KAFKA_SH_VERSION:-([0-9.]+)\}"', KAFKA_SCRIPT.read_text())
    assert found, "scripts/kafka.sh no longer states its default Kafka version"
    assert image == f"apache/kafka:{found.group(1)}"
    env = environment(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}  # KRaft
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]


def test_clickhouse_keeps_its_data_in_a_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    clickhouse = services["clickhouse"]
    assert clickhouse["image"].startswith("clickhouse/clickhouse-server:")
    mounts = [str(volume).split(":") for volume in clickhouse.get("volumes") or []]
    sources = [source for source, target, *_ in mounts if target == "/var/lib/clickhouse"]
    assert sources and sources[0] in (compose.get("volumes") or {})


def test_dockerfile_builds_one_runnable_image() -> None:
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(froms) == 1 and re.fullmatch(r"python:3\.11(-slim)?(\S*)?", froms[0].split()[0])
    # The whole context is copied, then the project itself is pip-installed from it.
    copies = [
        i for i, (k, args) in enumerate(instructions) if k == "COPY" and args.split()[0] == "."
    ]
    assert copies, "the project sources are never copied into the image"
    installs_project = re.compile(r"pip install\b[^&|;]*?\s(-e\s+|--editable\s+)?\.(\s|$)")
    assert any(
        keyword == "RUN" and installs_project.search(args)
        for keyword, args in instructions[copies[-1] :]
    )
    users = [args.split(":")[0] for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    cmd = [args for keyword, args in instructions if keyword == "CMD"]
    assert cmd and json.loads(cmd[-1]) == ["computewatch", "--help"]


def test_dockerignore_keeps_environments_data_and_history_out() -> None:
    entries = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert entries >= {".venv", ".cache", "data", "artifacts", ".git"}
    # What the image runs must stay in the context.
    assert not entries & {"pipeline", "schemas", "dashboards", "pyproject.toml", "*", "**"}


def test_the_worker_is_restarted_when_it_exits(services: dict[str, dict[str, Any]]) -> None:
    """A bug in a batch ends the worker (exit code 70, the batch unacknowledged): it must come
    back by itself to process that batch."""
    assert services["worker"].get("restart") in ("always", "unless-stopped", "on-failure")


# --- operations: Prometheus and Grafana ------------------------------------------------------


def _mounted(service: Mapping[str, Any], target: str) -> Path:
    """The file or folder of this repository that ``service`` mounts at ``target``."""
    for volume in service.get("volumes", []):
        source, _, rest = str(volume).partition(":")
        inside = rest.split(":")[0]
        if source.startswith("./") and (target == inside or target.startswith(inside + "/")):
            found = ROOT / source[2:] / target.removeprefix(inside).lstrip("/")
            assert found.exists(), f"{found} is mounted but missing"
            return found
    raise AssertionError(f"nothing is mounted at {target}")


def test_prometheus_scrapes_the_workers_metrics_port_and_loads_the_alert_rules(
    services: dict[str, dict[str, Any]],
) -> None:
    prometheus = services["prometheus"]
    flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config = yaml.safe_load(_mounted(prometheus, flag.split("=", 1)[1]).read_text())
    [job] = config["scrape_configs"]
    [target] = [t for c in job["static_configs"] for t in c["targets"]]
    env = services["worker"]["environment"]
    assert target == f"worker:{env['COMPUTEWATCH_WORKER_METRICS_PORT']}"
    assert env["COMPUTEWATCH_WORKER_METRICS_HOST"] == "0.0.0.0", "reachable from prometheus"
    [rules] = config["rule_files"]
    assert _mounted(prometheus, rules) == ROOT / "dashboards" / "prometheus" / "alerts.yml"
    assert "localhost:9090/-/ready" in healthcheck_text(prometheus)


def test_grafana_shows_the_dashboard_on_the_compose_prometheus(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    provisioning = _mounted(grafana, "/etc/grafana/provisioning")
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "computewatch.yml").read_text())[
        "providers"
    ]
    folder = provider["options"]["path"]
    dashboard = json.loads(_mounted(grafana, f"{folder}/computewatch.json").read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {source["uid"]}

