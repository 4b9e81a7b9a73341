"""Model backends behind one interface: ``chat(messages, sampling, response_format) -> [Completion]``.

- ``openai`` (also used for ``vllm``): an OpenAI-compatible HTTP server — the vLLM server we start,
  a GPU box, or any hosted endpoint (``MODEL_BASE_URL``, ``MODEL_API_KEY``).
- ``transformers``: the model in this process, for machines without vLLM. It does not enforce
  ``response_format``; callers validate the JSON they get either way.

A finetuned model version is a base model plus a LoRA adapter (``adapter_path``). Through an
OpenAI-compatible vLLM server it is served by runtime LoRA loading (``--enable-lora`` and
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``): ``servable_backend`` loads the adapter under the
version's name, and every request names that model, so the adapter answers. In-process, the
adapter is applied to the base weights with PEFT.
"""
from __future__ import annotations

import asyncio
import threading
from functools import lru_cache

import httpx
from django.conf import settings

from annotations.models import ModelVersion

from .client import ChatClient, Completion, ModelServerError, Sampling
from .finetune.serving import load_lora_adapter


class OpenAICompatibleBackend:
    name = "openai"

    def __init__(self, *, base_url: str, model: str, api_key: str = ""):
        self.client = ChatClient(base_url=base_url, model=model, api_key=api_key)
        self.model = model

    def chat(self, messages, sampling: Sampling | None = None, *, response_format=None) -> list[Completion]:
        return self.client.chat(messages, sampling, response_format=response_format)

    async def achat(self, http, messages, sampling: Sampling | None = None, *, response_format=None):
        return await self.client.achat(http, messages, sampling, response_format=response_format)

    def async_http(self, concurrency: int):
        return self.client.async_http(concurrency)


class TransformersBackend:
    """In-process generation with Hugging Face transformers (float32 on CPU: bf16 is emulated
    there and measured 2.3x slower in shared/notes/vllm-cpu.md)."""

    name = "transformers"
    _lock = threading.Lock()

    def __init__(self, *, model_path: str, model: str, adapter_path: str = ""):
        self.model_path = model_path
        self.model = model
        self.adapter_path = adapter_path

    @staticmethod
    @lru_cache(maxsize=2)
    def _load(path: str, adapter_path: str = ""):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer.padding_side = "left"
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        if adapter_path:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter_path).merge_and_unload()
        model.eval()
        return tokenizer, model

    def chat(self, messages, sampling: Sampling | None = None, *, response_format=None) -> list[Completion]:
        return self.chat_batch([messages], sampling)[0]

    def chat_batch(self, conversations: list[list[dict]], sampling: Sampling | None = None) -> list[list[Completion]]:
        """Several prompts in one padded batch: the in-process path's fastest shape."""
        import torch

        sampling = sampling or Sampling()
        tokenizer, model = self._load(self.model_path, self.adapter_path)
        texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in conversations]
        with self._lock, torch.inference_mode():
            batch = tokenizer(texts, return_tensors="pt", padding=True)
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            greedy = sampling.temperature <= 0
            out = model.generate(
                **batch, max_new_tokens=sampling.max_tokens, do_sample=not greedy,
                temperature=None if greedy else sampling.temperature, top_p=None if greedy else sampling.top_p,
                num_return_sequences=sampling.n, pad_token_id=tokenizer.pad_token_id,
            )
        prompt_len = batch["input_ids"].shape[1]
        results: list[list[Completion]] = []
        for i in range(len(conversations)):
            row = []
            for j in range(sampling.n):
                tokens = out[i * sampling.n + j][prompt_len:]
                ended = (tokens == tokenizer.eos_token_id).nonzero()
                length = int(ended[0]) if len(ended) else len(tokens)
                row.append(Completion(text=tokenizer.decode(tokens[:length], skip_special_tokens=True),
                                      finish_reason="stop" if len(ended) else "length", completion_tokens=length))
            results.append(row)
        return results

    async def achat(self, http, messages, sampling: Sampling | None = None, *, response_format=None):
        return await asyncio.to_thread(self.chat, messages, sampling, response_format=response_format)

    def async_http(self, concurrency: int):
        return _NullAsyncContext()


class _NullAsyncContext:
    async def __aenter__(self):
        return None

    async def __aexit__(self, *exc):
        return False


def backend_for(model_version: ModelVersion):
    """The backend that serves ``model_version``: its own endpoint if it names one, else the
    configured default server."""
    kind = model_version.backend or settings.MODEL_BACKEND
    if kind == "transformers":
        return TransformersBackend(model_path=model_version.base_model or settings.MODEL_PATH, model=model_version.name,
                                   adapter_path=model_version.adapter_path)
    return OpenAICompatibleBackend(base_url=model_version.endpoint or settings.MODEL_BASE_URL,
                                   model=model_version.name, api_key=settings.MODEL_API_KEY)


def servable_backend(model_version: ModelVersion):
    """``backend_for(model_version)``, ready to answer as that version: a LoRA adapter is loaded
    into the model server under the version's name first (idempotent: a server that has it already
    says so and that is fine). A server that cannot load it (no ``--enable-lora``, a path it cannot
    read, a rank above its ``--max-lora-rank``) raises ``ModelServerError`` with the server's words."""
    backend = backend_for(model_version)
    if model_version.adapter_path and isinstance(backend, OpenAICompatibleBackend):
        try:
            load_lora_adapter(base_url=backend.client.base_url, lora_name=model_version.name,
                              lora_path=model_version.adapter_path, api_key=settings.MODEL_API_KEY)
        except (RuntimeError, httpx.HTTPError) as exc:
            raise ModelServerError(f"could not load the LoRA adapter {model_version.name} into the model server at "
                                   f"{backend.client.base_url}: {exc}") from exc
    return backend


def default_model_version() -> ModelVersion:
    """The configured model (``MODEL_NAME`` at ``MODEL_BASE_URL``), recorded once as a ModelVersion."""
    backend = "transformers" if settings.MODEL_BACKEND == "transformers" else "vllm"
    version, _ = ModelVersion.objects.get_or_create(
        name=settings.MODEL_NAME,
        defaults={"backend": backend, "endpoint": "" if backend == "transformers" else settings.MODEL_BASE_URL,
                  "base_model": settings.MODEL_PATH},
    )
    return version
