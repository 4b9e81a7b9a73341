"""Make a finetuned adapter available on a running vLLM server (runtime LoRA loading).

The server must run with ``--enable-lora`` (``VllmServer(enable_lora=True)``) and
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; then ``load_lora_adapter`` makes the adapter servable
under ``lora_name`` as a model name in ``/v1/chat/completions``.
"""
from __future__ import annotations

import httpx


def load_lora_adapter(*, base_url: str, lora_name: str, lora_path: str, api_key: str = "",
                      timeout: float = 120) -> None:
    """``base_url`` ends in /v1, as elsewhere in models_service."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.post(base_url.rstrip("/") + "/load_lora_adapter", headers=headers, timeout=timeout,
                          json={"lora_name": lora_name, "lora_path": lora_path})
    if response.status_code >= 400 and "already been loaded" not in response.text:
        raise RuntimeError(f"load_lora_adapter failed ({response.status_code}): {response.text[:500]}")
