"""The one place that speaks HTTP to a model server (vLLM, or any OpenAI-compatible endpoint).

Every request sets ``max_tokens``: an unbounded generation on a CPU server can hold a worker for
minutes. Connection errors, 429 and 5xx answers are retried with exponential backoff; a 4xx answer
is a bug in the request and is raised at once with the server's message.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import httpx

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


class ModelServerError(RuntimeError):
    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass
class Completion:
    text: str
    finish_reason: str
    completion_tokens: int = 0


@dataclass
class Sampling:
    n: int = 1
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int | None = None
    extra: dict = field(default_factory=dict)

    def as_params(self) -> dict:
        params = {"n": self.n, "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}
        if self.seed is not None:
            params["seed"] = self.seed
        return {**params, **self.extra}


def json_schema_format(name: str, schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


class ChatClient:
    """Chat completions against ``base_url`` (ending in /v1). Sync and async, same behaviour."""

    def __init__(self, *, base_url: str, model: str, api_key: str = "", timeout: float = 300.0,
                 retries: int = 4, backoff: float = 0.5):
        if not base_url:
            raise ValueError("A model server URL is required (MODEL_BASE_URL).")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    # -- request building and parsing, shared by both paths --------------------------------------
    def _payload(self, messages: list[dict], sampling: Sampling, response_format: dict | None, model: str | None):
        if sampling.max_tokens is None or sampling.max_tokens <= 0:
            raise ValueError("max_tokens must be set to a positive number")
        payload = {"model": model or self.model, "messages": messages, **sampling.as_params()}
        if response_format is not None:
            payload["response_format"] = response_format
        return payload

    @staticmethod
    def _parse(response: httpx.Response) -> list[Completion]:
        if response.status_code >= 400:
            try:
                detail = response.json().get("error", {}) or response.json()
                message = detail.get("message") if isinstance(detail, dict) else str(detail)
            except ValueError:
                message = response.text[:500]
            raise ModelServerError(f"model server answered {response.status_code}: {message}",
                                   status=response.status_code, retryable=response.status_code in RETRYABLE_STATUS)
        try:
            body = response.json()
            usage = body.get("usage") or {}
            choices = sorted(body["choices"], key=lambda c: c.get("index", 0))
            tokens = int(usage.get("completion_tokens") or 0)
            out = [Completion(text=c["message"].get("content") or "", finish_reason=c.get("finish_reason") or "",
                              completion_tokens=0) for c in choices]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelServerError(f"model server sent an unreadable reply: {exc}", retryable=True) from exc
        if out:
            # usage is per request; spread it so per-draft figures add up to the request's.
            for i, completion in enumerate(out):
                completion.completion_tokens = tokens // len(out) + (1 if i < tokens % len(out) else 0)
        return out

    def _delay(self, attempt: int) -> float:
        return self.backoff * (2 ** attempt) * (0.5 + random.random() / 2)

    # -- sync ------------------------------------------------------------------------------------
    def chat(self, messages: list[dict], sampling: Sampling | None = None, *, response_format: dict | None = None,
             model: str | None = None) -> list[Completion]:
        payload = self._payload(messages, sampling or Sampling(), response_format, model)
        last: Exception | None = None
        with httpx.Client(timeout=self.timeout, headers=self.headers) as http:
            for attempt in range(self.retries + 1):
                try:
                    return self._parse(http.post(f"{self.base_url}/chat/completions", json=payload))
                except httpx.TransportError as exc:
                    last = ModelServerError(f"cannot reach the model server at {self.base_url}: {exc}",
                                            retryable=True)
                except ModelServerError as exc:
                    if not exc.retryable:
                        raise
                    last = exc
                if attempt < self.retries:
                    time.sleep(self._delay(attempt))
        raise last  # type: ignore[misc]

    # -- async -----------------------------------------------------------------------------------
    async def achat(self, http: httpx.AsyncClient, messages: list[dict], sampling: Sampling | None = None, *,
                    response_format: dict | None = None, model: str | None = None) -> list[Completion]:
        payload = self._payload(messages, sampling or Sampling(), response_format, model)
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                return self._parse(await http.post(f"{self.base_url}/chat/completions", json=payload))
            except httpx.TransportError as exc:
                last = ModelServerError(f"cannot reach the model server at {self.base_url}: {exc}", retryable=True)
            except ModelServerError as exc:
                if not exc.retryable:
                    raise
                last = exc
            if attempt < self.retries:
                await asyncio.sleep(self._delay(attempt))
        raise last  # type: ignore[misc]

    def async_http(self, concurrency: int) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        return httpx.AsyncClient(timeout=self.timeout, headers=self.headers, limits=limits)

    def health(self) -> bool:
        try:
            root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
            return httpx.get(f"{root}/health", timeout=5, headers=self.headers).status_code == 200
        except httpx.HTTPError:
            return False

    def models(self) -> list[str]:
        response = httpx.get(f"{self.base_url}/models", timeout=10, headers=self.headers)
        response.raise_for_status()
        return [m["id"] for m in response.json().get("data", [])]
