"""LoRA finetuning (SFT, DPO) with TRL + PEFT.

``train`` is the child process (no Django): it reads a JSON config, trains and reports each step as
a JSON line on stdout. ``service`` is the parent: it starts the child, stores progress and loss,
cancels by killing the child, and registers the adapter as a new ModelVersion. A crash of the child
(OOM kill, segfault, Python error) fails the job with its reason and leaves the worker alive.
"""
