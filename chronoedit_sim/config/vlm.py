"""Config sections of the vision-language model (Qwen-VL) and the two stages that use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class VlmConfig:
    # the model the prompt enhancer and the judge share (one loaded copy serves both): a local directory in
    # transformers layout, or a Hugging Face repo id resolved from the local cache. Qwen3-VL and Qwen2.5-VL,
    # e.g. Qwen/Qwen2.5-VL-7B-Instruct (the official scripts' smaller choice)
    path: str = "Qwen/Qwen3-VL-30B-A3B-Instruct"
    # hub revision (branch, tag or commit) when path is a repo id
    revision: Optional[str] = None
    # let a repo id that is not cached be downloaded; off so runs never touch the network
    allow_download: bool = False
    # "auto" picks cuda when visible, else cpu
    device: str = "auto"
    # weight dtype (bfloat16 as the official scripts load it; float32 for the tiny model on CPU)
    dtype: str = "bfloat16"
    # the shortest side of an image the model sees is capped at this, as in the official scripts
    max_side: int = 1080
    # GPUs per VLM actor; null = a whole GPU on a GPU cluster (Qwen3-VL-30B-A3B takes about 60 GB in bf16,
    # more than an H100 has beside the editor), 0 without GPUs
    gpus_per_actor: Optional[float] = None
    # CPUs per VLM actor (it feeds its GPU; the stages that call it hold their own small CPU share)
    cpus_per_actor: float = 0.5
    # VLM actors; the enhance and judge calls are spread over them
    num_actors: int = 1


@dataclass
class EnhanceConfig:
    # rewrite each job's instruction for its frame before the edit (the official prompt enhancer's chain-of-
    # thought rewrite); the row keeps the original in prompt_original. Off: the editor gets the scenario's text
    enabled: bool = False
    # tokens generated per rewrite (greedy decoding); the official script's 512
    max_new_tokens: int = 512
    # frames per enhance task; the distinct instructions of a task's frames go to the model in one call
    batch_size: int = 1


@dataclass
class JudgeConfig:
    # rate each (source, edit) pair against its instruction with the VLM, VIEScore-style: vlm_consistency
    # (the instruction followed, nothing else changed) and vlm_quality (natural, no artifacts), 0-10,
    # scores like CLIP's (filter bounds, rescoring, report, stats)
    enabled: bool = False
