import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docker_compose_file_is_valid():
    # The test command installs Debian's docker-compose, which validates the file offline.
    assert shutil.which("docker-compose"), "docker-compose missing: scripts/system_packages.sh installs it"
    result = subprocess.run(["docker-compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_compose_has_the_services_and_health_checks():
    import yaml

    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = spec["services"]
    assert {"web", "worker", "beat", "postgres", "redis", "vllm"} <= set(services)
    for name in ("web", "worker", "beat", "postgres", "redis", "vllm"):
        assert "healthcheck" in services[name], name
    # one image for web, the workers and beat
    assert len({services[n]["image"] for n in ("web", "worker", "critic", "beat")}) == 1
    # jobs on the default queue; critiques on the background one, in a thread pool
    assert "--queues celery " in services["worker"]["command"]
    assert "--queues celery.background " in services["critic"]["command"] and "--pool threads" in services[
        "critic"]["command"]
    assert "healthcheck" in services["critic"]


def test_vllm_service_reserves_a_gpu_and_enables_lora():
    import yaml

    vllm = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["vllm"]
    assert vllm["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "--enable-lora" in vllm["command"]
