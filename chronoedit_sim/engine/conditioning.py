"""Never twice: the pipeline's conditioning computed once per prompt and per frame, and every
component's calls counted.

ChronoEditPipeline accepts prompt_embeds and negative_prompt_embeds, so the text encoder runs here,
once per distinct prompt, through the pipeline's own `encode_prompt` (the very call it would make
itself, so the tensors, and the edit, are bit-identical to passing the text). The image embedding
and the VAE's encoding of the conditioning video ([frame, zeros...]) are made inside the call, and
the pipeline refuses `image_embeds` beside the `image` it still needs; rather than copy its loop,
caching wrappers stand in for `pipe.encode_image` and `vae.encode` on the instances, keyed by the
frame the editor declares around each call (`frame`): its digest, then resolution and frame count.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from contextlib import contextmanager

from ..config import CALL_NAMES as CALLS


class LRU:
    """A bounded cache: the least recently used entry leaves first."""

    def __init__(self, size: int):
        self.size = size
        self.items: OrderedDict = OrderedDict()

    def get(self, key, make):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = make()
        self.items[key] = value
        if len(self.items) > self.size:
            self.items.popitem(last=False)
        return value


def frame_digest(pil) -> str:
    """What identifies a (resized) frame for the caches: its size and pixels."""
    return f"{pil.size[0]}x{pil.size[1]}:" + hashlib.blake2b(pil.tobytes(), digest_size=16).hexdigest()


class Conditioning:
    """One editor's caches and call counters, installed on its pipeline."""

    def __init__(self, pipe, prompts: int, frames: int):
        self.pipe = pipe
        self.calls = dict.fromkeys(CALLS, 0)
        self.text, self.images, self.latents = LRU(prompts), LRU(frames), LRU(frames)
        # prompts encoded ahead (offload_text_encoder): never evicted, the encoder is gone afterwards
        self.pinned: dict | None = None
        self._frame_key = None
        for name, counter in (("text_encoder", "text_encoder_calls"), ("image_encoder", "image_encoder_calls"),
                              ("transformer", "transformer_forwards")):
            getattr(pipe, name).register_forward_pre_hook(self._counting(counter))
        vae = pipe.vae
        encode, decode = vae.encode, vae.decode  # bound methods, with diffusers' offload hooks
        encode_image = pipe.encode_image

        def cached_encode(x, *args, **kwargs):
            key = self._frame_key
            if key is None or tuple(x.shape[-3:]) != key[1:]:  # not the conditioning video of this call
                self.calls["vae_encode_calls"] += 1
                return encode(x, *args, **kwargs)

            def make():
                self.calls["vae_encode_calls"] += 1
                return encode(x, *args, **kwargs)
            return self.latents.get(key, make)

        def cached_encode_image(image, device=None):
            if self._frame_key is None:
                return encode_image(image, device)
            return self.images.get(self._frame_key[0], lambda: encode_image(image, device))

        def counted_decode(*args, **kwargs):
            self.calls["vae_decode_calls"] += 1
            return decode(*args, **kwargs)

        vae.encode, vae.decode = cached_encode, counted_decode
        pipe.encode_image = cached_encode_image

    def _counting(self, counter: str):
        def hook(module, args):
            self.calls[counter] += 1
        return hook

    def prompt_embeds(self, prompt: str, negative_prompt: str, guidance: bool, max_sequence_length: int):
        """(prompt_embeds, negative_prompt_embeds or None) as the pipeline computes them: each text
        alone, so a negative prompt shared by every edit is encoded once too."""
        negative = self._text(negative_prompt, max_sequence_length) if guidance else None
        return self._text(prompt, max_sequence_length), negative

    def _text(self, text: str, max_sequence_length: int):
        key = (text, max_sequence_length)
        if self.pinned is not None:
            if key not in self.pinned:
                raise RuntimeError(f"prompt {text!r} was not among the run's prompts encoded before the text "
                                   "encoder left the GPU (model.offload_text_encoder)")
            return self.pinned[key]
        return self.text.get(key, lambda: self._encode_text(*key))

    def _encode_text(self, text: str, max_sequence_length: int):
        import torch

        with torch.no_grad():
            return self.pipe.encode_prompt(prompt=text, do_classifier_free_guidance=False,
                                           max_sequence_length=max_sequence_length,
                                           device=self.pipe._execution_device)[0]

    def pin_texts(self, texts: list[str], max_sequence_length: int, device) -> None:
        """Encode the run's texts ahead, then move the text encoder to `device` (the CPU)."""
        self.pinned = {(text, max_sequence_length): self._encode_text(text, max_sequence_length)
                       for text in dict.fromkeys(texts)}
        self.pipe.text_encoder.to(device)

    @contextmanager
    def frame(self, digest: str, num_frames: int, height: int, width: int):
        """Within: the pipeline's image embedding and conditioning-video encode come from the caches."""
        self._frame_key = (digest, num_frames, height, width)
        try:
            yield
        finally:
            self._frame_key = None

    def clear(self) -> None:
        for cache in (self.text, self.images, self.latents):
            cache.items.clear()

    def snapshot(self) -> dict:
        return dict(self.calls)

    def since(self, before: dict) -> dict:
        return {name: self.calls[name] - before[name] for name in CALLS}
