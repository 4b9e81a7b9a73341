"""Run the model server for the configured model in the foreground (the README run command's
`model` process). Ctrl-C or SIGTERM stops it cleanly."""
import signal
import time
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from models_service.model_files import is_ready, model_dir
from models_service.vllm_server import VllmServer, VllmServerError, default_python


class Command(BaseCommand):
    help = "Start the vLLM OpenAI-compatible server for the configured model, wait for /health, serve until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--compile", action="store_true",
                            help="Let vLLM compile (slower start, ~10%% faster decoding); default is --enforce-eager.")
        parser.add_argument("--timeout", type=float, default=600, help="Seconds to wait for the server.")

    def handle(self, *args, compile=False, timeout=600, **options):
        host = urlparse(settings.MODEL_BASE_URL).hostname
        if settings.MODEL_BACKEND == "transformers":
            return self._idle("MODEL_BACKEND=transformers: the model runs inside the worker; no server to start.")
        if host not in ("127.0.0.1", "localhost", "::1"):
            return self._idle(f"Using the model server at {settings.MODEL_BASE_URL}; nothing to start here.")
        python = default_python()
        if not Path(python).exists():
            raise CommandError(
                f"vLLM is not installed ({python} is missing). Build it with `bash scripts/vllm_venv.sh`, point "
                "MODEL_BASE_URL at a running OpenAI-compatible server, or set MODEL_BACKEND=transformers to "
                "generate inside the worker instead."
            )
        path = Path(settings.MODEL_PATH) if settings.MODEL_PATH else model_dir()
        if not settings.MODEL_PATH and not is_ready(path):
            raise CommandError("The model is not prepared yet: run `python manage.py prepare_model`.")
        server = VllmServer(path, port=urlparse(settings.MODEL_BASE_URL).port or settings.MODEL_PORT, python=python,
                            served_model_name=settings.MODEL_NAME, enable_lora=True, enforce_eager=not compile,
                            max_model_len=settings.MODEL_MAX_CONTEXT)
        signal.signal(signal.SIGTERM, _interrupt)  # honcho and docker stop with SIGTERM
        try:
            server.start()
            self.stdout.write(f"Starting vLLM for {settings.MODEL_NAME} from {path} (log: {server.log_path}) ...")
            seconds = server.wait_ready(timeout=timeout)
            self.stdout.write(self.style.SUCCESS(f"Model server ready at {settings.MODEL_BASE_URL} in {seconds:.0f}s"))
            while server.is_running():
                time.sleep(1)
            raise CommandError(f"vLLM exited:\n{server.log_tail()}")
        except VllmServerError as exc:
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:
            self.stdout.write("Stopping the model server ...")
        finally:
            server.stop()

    def _idle(self, message):
        # Stay up so a process manager running web + worker + model does not stop the others.
        self.stdout.write(message)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return


def _interrupt(signum, frame):
    raise KeyboardInterrupt
