"""The deploy/ files: YAML that parses and hangs together, an nginx config nginx accepts,
and a gunicorn config that sets up graceful shutdown and multiprocess metrics."""

from __future__ import annotations

import gc
import re
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml

from tests.conftest import nginx_binary

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
HSTS_MIN_AGE_SECONDS = 365 * 24 * 3600
K8S_KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
             "ConfigMap", "Secret", "Ingress", "Job"}


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_objects() -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in documents(path):
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path
            found.setdefault(doc["kind"], []).append(doc)
    return found


def test_kubernetes_manifests_cover_every_kind():
    assert set(k8s_objects()) == K8S_KINDS


def test_deployment_probes_health_and_readiness_and_shuts_down_gracefully(
    monkeypatch, tmp_path
):
    deployment = k8s_objects()["Deployment"][0]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # A set folder keeps the config from making (and the environment from keeping) its own.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gunicorn = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    assert pod["terminationGracePeriodSeconds"] > gunicorn["graceful_timeout"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    objects = k8s_objects()
    for kind in ("Service", "PodDisruptionBudget"):
        spec = objects[kind][0]["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= labels.items(), kind
    assert objects["HorizontalPodAutoscaler"][0]["spec"]["scaleTargetRef"]["name"] == \
        deployment["metadata"]["name"]


def test_config_and_secret_name_only_settings_the_service_reads(tmp_path):
    from service.infra import config

    objects = k8s_objects()
    settings = {**objects["ConfigMap"][0]["data"], **objects["Secret"][0]["stringData"]}
    settings.pop("DATABASE_DIRECT_URL")  # the migration Job's DATABASE_URL
    read = config.from_environ(settings, str(tmp_path))
    assert read["TRUSTED_PROXY_COUNT"] == 1
    assert read["LOG_FORMAT"] == "json"


def test_compose_runs_proxy_two_replicas_redis_with_aof_postgres_and_migrations():
    compose = documents(DEPLOY / "docker-compose.yml")[0]
    services = compose["services"]
    assert {"nginx", "app1", "app2", "migrate", "redis", "postgres"} <= services.keys()
    assert "--appendonly" in services["redis"]["command"]
    assert services["migrate"]["command"][-2:] == ["db", "upgrade"]
    for app in ("app1", "app2"):
        assert services[app]["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully"
        assert services[app]["environment"]["TRUSTED_PROXY_COUNT"] == "1"


def test_dockerfile_runs_as_non_root_with_a_healthcheck():
    text = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "\nUSER 10001" in text
    assert "HEALTHCHECK" in text and "/healthz" in text


def test_nginx_config_is_accepted_by_nginx(tmp_path):
    nginx = nginx_binary()
    text = (DEPLOY / "nginx.conf").read_text()
    assert "client_max_body_size" in text
    assert "proxy_buffering off" in text
    # The compose service names do not resolve here; the syntax check needs addresses.
    conf = tmp_path / "nginx.conf"
    conf.write_text(text.replace("app1:8000", "127.0.0.1:8001")
                    .replace("app2:8000", "127.0.0.1:8002"))
    result = subprocess.run([nginx, "-t", "-q", "-c", str(conf), "-p", str(tmp_path),
                             "-g", "error_log stderr;"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def nginx_blocks(text: str, name: str) -> list[str]:
    """The bodies of the blocks opened by `name` (`server`, `location`), nested ones kept."""
    text = re.sub(r"#[^\n]*", "", text)
    bodies = []
    for start in re.finditer(rf"(?m)^\s*{name}\b[^{{;]*{{", text):
        depth, end = 1, start.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        bodies.append(text[start.end():end - 1])
    return bodies


def test_nginx_tells_browsers_to_keep_to_https():
    [server] = nginx_blocks((DEPLOY / "nginx.conf").read_text(), "server")
    match = re.search(r'add_header\s+Strict-Transport-Security\s+"max-age=(\d+)[^"]*"\s+always;',
                      server)
    assert match, "the server sends Strict-Transport-Security, on every status"
    assert int(match.group(1)) >= HSTS_MIN_AGE_SECONDS
    # A location with an add_header of its own would not inherit the server's.
    for location in nginx_blocks(server, "location"):
        assert "add_header" not in location


def test_gunicorn_config_sets_up_multiprocess_metrics(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    gunicorn = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    try:
        folder = Path(gunicorn["os"].environ["PROMETHEUS_MULTIPROC_DIR"])
        assert folder.is_dir()
        for hook in ("on_starting", "child_exit", "post_worker_init", "on_exit"):
            assert callable(gunicorn[hook])
    finally:
        gunicorn["on_exit"](None)
        gunicorn["os"].environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    assert not folder.exists()


def test_a_worker_sets_its_loaded_app_aside_from_garbage_collection(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gunicorn = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    worker = SimpleNamespace(wsgi=SimpleNamespace())  # not Pollbox: no reconciliation
    assert gc.get_freeze_count() == 0
    try:
        gunicorn["post_worker_init"](worker)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_webhook_deliveries_run_in_their_own_worker_in_compose_and_kubernetes():
    worker = ["flask", "--app", "wsgi", "webhooks", "worker"]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert any(service.get("command") == worker for service in compose["services"].values())
    commands = [
        container.get("command")
        for deployment in k8s_objects()["Deployment"]
        for container in deployment["spec"]["template"]["spec"]["containers"]
    ]
    assert worker in commands


def test_a_worker_with_redis_url_set_loads_no_stand_in_and_no_captcha_client(tmp_path):
    # Each is megabytes of every worker's memory (fakeredis brings numpy, lupa and
    # valkey: ~13 MB; httpx ~5 MB), wanted only without REDIS_URL or with a captcha.
    probe = ("import sys, wsgi; "
             "print(sorted(m for m in ('fakeredis', 'numpy', 'lupa', 'httpx') "
             "if m in sys.modules))")
    root = Path(__file__).resolve().parents[1]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root),
           "REDIS_URL": "redis://127.0.0.1:6379/15",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'probe.db'}",
           "SECRET_KEY": "probe-" * 8}
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
