"""Child process: one LoRA training run with TRL. No Django here.

    python -m models_service.finetune.train CONFIG.json

Reports on stdout, one JSON object per line prefixed with ``EVENT_PREFIX``::

    {"event": "start", "max_steps": 8, "device": "cpu", "trainable_params": 460800}
    {"event": "step", "step": 1, "loss": 3.9, "tokens": 412, "seconds": 1.3, ...}
    {"event": "done", "adapter": "...", "tokens": 3310, "train_seconds": 9.8, "tokens_per_second": 337.7}

Everything else on stdout/stderr is log text. CPU by default (fp32, gradient checkpointing off,
which the measurements in shared/notes/trl-cpu.md found 30-40 % faster); bf16 on a GPU that has
it. Same code either way.
"""
from __future__ import annotations

import collections
import json
import math
import sys
import time

EVENT_PREFIX = "@@finetune "

DEFAULTS = {
    "method": "sft",
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "target_modules": ["q_proj", "v_proj"],
    "learning_rate": 2e-4,  # chosen deliberately: DPOConfig's 1e-6 default does not move in short runs
    "batch_size": 4,
    "grad_accum": 1,
    "max_steps": 30,
    "num_train_epochs": 1,
    "max_length": 256,
    "beta": 0.1,
    "seed": 42,
    "gradient_checkpointing": False,
    "device": "auto",  # auto | cpu | cuda
}


def emit(event: str, **data) -> None:
    sys.stdout.write(EVENT_PREFIX + json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


def count_tokens(batch) -> int:
    """Real (unpadded) tokens in a collated batch, whatever the trainer's keys."""
    masks = [v for k, v in batch.items() if k.endswith("attention_mask") and hasattr(v, "sum")]
    if masks:
        return int(sum(int(m.sum()) for m in masks))
    ids = [v for k, v in batch.items() if k.endswith("input_ids") and hasattr(v, "numel")]
    return int(sum(int(v.numel()) for v in ids))


def run(config: dict) -> dict:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    cfg = {**DEFAULTS, **config}
    cuda = torch.cuda.is_available() and cfg["device"] != "cpu"
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    torch.manual_seed(cfg["seed"])

    tokenizer = AutoTokenizer.from_pretrained(cfg["model_path"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(cfg["model_path"], dtype=torch.bfloat16 if bf16 else torch.float32)
    dataset = load_dataset("json", data_files=cfg["train_file"], split="train")
    peft_config = LoraConfig(r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"], lora_dropout=cfg["lora_dropout"],
                             target_modules=cfg["target_modules"], task_type="CAUSAL_LM")
    common = dict(
        output_dir=cfg["output_dir"], max_steps=cfg["max_steps"], num_train_epochs=cfg["num_train_epochs"],
        per_device_train_batch_size=cfg["batch_size"], gradient_accumulation_steps=cfg["grad_accum"],
        learning_rate=cfg["learning_rate"], logging_steps=1, save_strategy="no", report_to="none",
        max_length=cfg["max_length"], bf16=bf16, use_cpu=not cuda,
        gradient_checkpointing=cfg["gradient_checkpointing"], disable_tqdm=True, seed=cfg["seed"],
        dataloader_num_workers=0,
    )
    if cfg["method"] == "sft":
        from trl import SFTConfig, SFTTrainer

        trainer = SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=dataset,
                             processing_class=tokenizer, peft_config=peft_config)
    elif cfg["method"] == "dpo":
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(model=model, args=DPOConfig(beta=cfg["beta"], **common), train_dataset=dataset,
                             processing_class=tokenizer, peft_config=peft_config)
    else:
        raise ValueError(f"unknown method {cfg['method']!r}")

    # The collator may run ahead of the optimiser (prefetch): queue each batch's count and take
    # grad_accum of them at every step end.
    seen = {"tokens": 0}
    pending: collections.deque[int] = collections.deque()
    collate = trainer.data_collator

    def counting_collator(features):
        batch = collate(features)
        pending.append(count_tokens(batch))
        return batch

    trainer.data_collator = counting_collator
    started = {"t": time.monotonic()}

    class Report(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            started["t"] = time.monotonic()
            trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
            emit("start", max_steps=state.max_steps, device="cuda" if cuda else "cpu", bf16=bf16,
                 trainable_params=trainable, rows=len(dataset))

        def on_step_end(self, args, state, control, **kwargs):
            for _ in range(min(cfg["grad_accum"], len(pending))):
                seen["tokens"] += pending.popleft()

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" not in logs:
                return
            extra = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)
                     and k not in ("loss", "step")}
            emit("step", step=state.global_step, max_steps=state.max_steps,
                 loss=logs["loss"] if math.isfinite(logs["loss"]) else None, tokens=seen["tokens"],
                 seconds=round(time.monotonic() - started["t"], 3), **extra)

    trainer.add_callback(Report())
    trainer.train()
    seconds = time.monotonic() - started["t"]
    trainer.save_model(cfg["output_dir"])
    tokenizer.save_pretrained(cfg["output_dir"])
    result = {"adapter": cfg["output_dir"], "tokens": seen["tokens"], "train_seconds": round(seconds, 3),
              "tokens_per_second": round(seen["tokens"] / seconds, 2) if seconds else None,
              "steps": trainer.state.global_step}
    emit("done", **result)
    return result


def exit_with_parent(parent: int, every: float = 1.0) -> None:
    """The child runs in its own session so a cancel can kill its whole group, which also means a
    SIGKILL of the worker does not reach it. Left alone it would train on for nobody (and the run
    that recovers the job would find it in the way): leave as soon as the parent is gone."""
    import os
    import threading

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(70)
            time.sleep(every)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv=None) -> int:
    import os

    argv = argv if argv is not None else sys.argv[1:]
    with open(argv[0]) as f:
        config = json.load(f)
    if os.environ.get("LSW_FINETUNE_PARENT_PID"):
        exit_with_parent(int(os.environ["LSW_FINETUNE_PARENT_PID"]))
    run(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
