"""Finetune throughput: the job's trainer child (models_service.finetune.train, with its progress
callback and token-counting collator) vs a bare TRL SFTTrainer script, same data and settings.

    python bench/finetune.py [--steps 10] [--rows 64]

Tokens/s = real (attention-mask) tokens / train seconds, both sides counted the same way.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BARE = r'''
import json, sys, time, torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer
cfg = json.load(open(sys.argv[1]))
tok = AutoTokenizer.from_pretrained(cfg["model_path"])
model = AutoModelForCausalLM.from_pretrained(cfg["model_path"], dtype=torch.float32)
ds = load_dataset("json", data_files=cfg["train_file"], split="train")
args = SFTConfig(output_dir=cfg["output_dir"] + "-bare", max_steps=cfg["max_steps"], per_device_train_batch_size=cfg["batch_size"],
                 learning_rate=cfg["learning_rate"], logging_steps=1, save_strategy="no", report_to="none",
                 max_length=cfg["max_length"], bf16=False, use_cpu=True, gradient_checkpointing=False, disable_tqdm=True)
tr = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
tokens = 0
collate = tr.data_collator
def counting(f):
    global tokens
    b = collate(f); tokens += int(b["attention_mask"].sum()); return b
tr.data_collator = counting
t = time.monotonic(); tr.train(); s = time.monotonic() - t
# the dataloader may prefetch one batch beyond the last step
print(json.dumps({"tokens": tokens, "seconds": s}))
'''


def main() -> None:
    from models_service.model_files import prepare_model

    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rows", type=int, default=64)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ft-bench-"))
    rows = [{"messages": [{"role": "user", "content": f"Explain idea number {i} in one sentence."},
                          {"role": "assistant", "content": f"Idea {i} is about doing one small thing well, every day."}]}
            for i in range(a.rows)]
    (work / "sft.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = {"method": "sft", "model_path": str(prepare_model()), "train_file": str(work / "sft.jsonl"),
           "output_dir": str(work / "out"), "max_steps": a.steps, "batch_size": 4, "max_length": 256,
           "learning_rate": 2e-4}
    (work / "cfg.json").write_text(json.dumps(cfg))
    (work / "bare.py").write_text(BARE)
    t = time.monotonic()
    job = subprocess.run([sys.executable, "-m", "models_service.finetune.train", str(work / "cfg.json")], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    done = json.loads([ln for ln in job.stdout.splitlines() if '"event": "done"' in ln][-1].split(" ", 1)[1])
    job_wall = time.monotonic() - t
    t = time.monotonic()
    bare = json.loads(subprocess.run([sys.executable, str(work / "bare.py"), str(work / "cfg.json")], cwd=ROOT,
                                     capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    bare_wall = time.monotonic() - t
    bare_tps = bare["tokens"] / bare["seconds"]
    print(json.dumps({"job_tokens_per_s": done["tokens_per_second"], "job_wall_s": round(job_wall, 1),
                      "bare_tokens_per_s": round(bare_tps, 1), "bare_wall_s": round(bare_wall, 1),
                      "ratio": round(done["tokens_per_second"] / bare_tps, 3)}))


if __name__ == "__main__":
    main()
