"""The Qwen-VL wrapper on tiny RANDOM checkpoints written offline: loading both families, the offline
weight resolution and its messages, greedy rewrites, and ratings read off the digit probabilities. The
tiny models' text is noise; what is checked is plumbing and arithmetic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chronoedit_sim.config import VlmConfig
from chronoedit_sim.engine.tiny_vlm import write_tiny_vlm
from chronoedit_sim.engine.vlm import VisionLanguageModel, resolve_vlm_root
from chronoedit_sim.errors import MissingWeightsError

RNG = np.random.default_rng(0)
A = RNG.integers(0, 255, (96, 160, 3), dtype=np.uint8)
B = RNG.integers(0, 255, (96, 160, 3), dtype=np.uint8)


def test_the_tiny_model_says_it_is_random_and_rewrites_greedily(tiny_vlm):
    identity = json.loads(tiny_vlm.identity)
    assert identity["random_weights"] is True and len(identity["model_hash"]) == 16
    batch = tiny_vlm.enhance([(A, "add a car"), (A, "make it rain"), (B, "add a car")], 8)
    # one call with several pairs says what one call per pair says (left padding), and greedy is repeatable
    assert batch == [tiny_vlm.enhance([item], 8)[0] for item in ((A, "add a car"), (A, "make it rain"), (B, "add a car"))]
    assert all(batch) and tiny_vlm.calls["enhance"] == 6


def test_the_rewrite_sees_the_official_enhancer_text_with_the_instruction_then_the_image(tiny_vlm, monkeypatch):
    seen = []
    generate = tiny_vlm.model.generate
    monkeypatch.setattr(tiny_vlm.model, "generate", lambda **kw: seen.append(kw) or generate(**kw))
    tiny_vlm.enhance([(A, "add a car")], 2)
    text = tiny_vlm.processor.tokenizer.decode(seen[0]["input_ids"][0])
    assert text.startswith("<|im_start|>system\nYou are a professional edit instruction rewriter")
    assert "2. question text: add a car\n" in text
    assert text.endswith("<|im_start|>user\n<|vision_start|>" + "<|image_pad|>" * 15 + "<|vision_end|><|im_end|>\n"
                         "<|im_start|>assistant\n")  # 96x160 in 16 px patches, merged 2x2: 3 x 5 tokens
    assert seen[0]["do_sample"] is False and seen[0]["max_new_tokens"] == 2


def test_a_rating_is_the_expected_answer_over_the_digit_tokens(tiny_vlm):
    """The generate() with a forced "1" and raw logits equals two plain forward passes."""
    import torch

    from chronoedit_sim.engine import vlm_prompts
    from chronoedit_sim.engine.vlm import _image

    (value,) = tiny_vlm.rate([([B], vlm_prompts.QUALITY)])
    conv = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": vlm_prompts.QUALITY}]}]]
    inputs = tiny_vlm._inputs(conv, [_image(B, 1080)])
    with torch.no_grad():
        first = tiny_vlm.model(**inputs).logits[0, -1]
        longer = dict(inputs, input_ids=torch.cat([inputs["input_ids"], torch.tensor([[tiny_vlm.digit_ids[1]]])], 1),
                      attention_mask=torch.cat([inputs["attention_mask"], torch.ones(1, 1, dtype=torch.long)], 1),
                      mm_token_type_ids=torch.cat([inputs["mm_token_type_ids"], torch.zeros(1, 1, dtype=torch.long)], 1))
        second = tiny_vlm.model(**longer).logits[0, -1]
    p = torch.softmax(first[tiny_vlm.digit_ids], 0)
    q = torch.softmax(second[[tiny_vlm.digit_ids[0], *tiny_vlm.end_ids]], 0)[0]
    expected = float((p * torch.arange(10)).sum() + p[1] * q * 9)
    assert value == pytest.approx(expected, abs=1e-3) and 0 <= value <= 10
    pairs = tiny_vlm.judge([(A, B, "add a car"), (A, A, "add a car")])
    # alone or batched (padded beside another pair): the same judgment, to float noise at the 4th decimal
    assert pairs[0] == pytest.approx(tiny_vlm.judge([(A, B, "add a car")])[0], abs=2e-4) and pairs[0] != pairs[1]


def test_qwen2_5_vl_loads_through_the_same_code(tmp_path):
    folder = write_tiny_vlm(tmp_path / "qwen25", family="qwen2_5_vl")
    model = VisionLanguageModel(VlmConfig(path=str(folder), dtype="float32"))
    assert type(model.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert len(model.enhance([(A, "add a car")], 4)) == 1
    ((consistency, quality),) = model.judge([(A, B, "add a car")])
    assert 0 <= consistency <= 10 and 0 <= quality <= 10


def test_missing_and_incomplete_weights_say_how_to_get_them(tmp_path, tiny_vlm_dir, monkeypatch):
    with pytest.raises(MissingWeightsError) as err:
        resolve_vlm_root(VlmConfig(path="Qwen/Qwen2.5-VL-7B-Instruct"))
    msg = str(err.value)
    assert "not in the local Hugging Face cache and vlm.allow_download is false" in msg
    assert "hf download Qwen/Qwen2.5-VL-7B-Instruct" in msg and "make-tiny-model" in msg
    partial = tmp_path / "partial"
    partial.mkdir()
    for f in tiny_vlm_dir.iterdir():
        if not f.name.startswith("tokenizer"):
            (partial / f.name).write_bytes(f.read_bytes())
    with pytest.raises(MissingWeightsError, match="has no tokenizer files"):
        resolve_vlm_root(VlmConfig(path=str(partial)))
    # a missing folder is no repo id to download (#24: it suggested `hf download .demo/tiny-chronoedit-vlm`);
    # from an empty folder: `make demo` writes .demo/ in the checkout
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingWeightsError) as err:
        resolve_vlm_root(VlmConfig(path=".demo/tiny-chronoedit-vlm"))
    assert "does not exist" in str(err.value) and "hf download Qwen/Qwen3-VL-30B-A3B-Instruct" in str(err.value)
