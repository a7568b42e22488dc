"""One loaded vision-language model serves the prompt enhancer and the judge.

The two stages sit on either side of the edit, so they cannot share an actor of their own: the VLM lives
in actors of its own (`vlm.num_actors`, each with `vlm.gpus_per_actor` of a GPU), started before the
pipeline and ended after it, and both stages call them through a VlmClient. Outside Ray (rescoring, tests)
the client loads the model in its own process instead.
"""

from __future__ import annotations

import json
import logging
import zlib
from contextlib import contextmanager

from ..config import Config, ConfigError, VlmConfig

log = logging.getLogger(__name__)


class VlmServer:
    """The Ray actor: one VisionLanguageModel; calls run one at a time (the actor's default)."""

    def __init__(self, cfg: VlmConfig, gpus: float = 0.0):
        import torch

        from ..engine.vlm import VisionLanguageModel

        if gpus and not torch.cuda.is_available():
            # Ray granted a GPU that torch cannot use: vlm.device=auto would quietly run a 30B model on the CPU
            raise RuntimeError(f"the VLM actor was given {gpus:g} GPU(s) but torch sees no CUDA device")
        self.model = VisionLanguageModel(cfg)

    def identity(self) -> str:
        return self.model.identity

    def enhance(self, items, max_new_tokens: int):
        return self.model.enhance(items, max_new_tokens)

    def judge(self, pairs):
        return self.model.judge(pairs)

    def calls(self) -> dict:
        return dict(self.model.calls)


class VlmClient:
    """What a stage holds: the run's VLM actors, or (actors=None) a model loaded in this process at connect()."""

    def __init__(self, cfg: VlmConfig, actors: list | None = None):
        self.cfg, self.actors = cfg, actors
        self.model = None
        self.identity: str | None = None

    def connect(self) -> None:
        """In the stage's setup: load the model here, or ask an actor who it is."""
        if self.actors is None:
            from ..engine.vlm import VisionLanguageModel

            self.model = VisionLanguageModel(self.cfg)
            self.identity = self.model.identity
        else:
            import ray

            self.identity = ray.get(self.actors[0].identity.remote())

    def _call(self, method: str, key: str, *args):
        if self.model is not None:
            return getattr(self.model, method)(*args)
        import ray

        actor = self.actors[zlib.crc32(key.encode()) % len(self.actors)]  # a frame's calls go to one actor
        return ray.get(getattr(actor, method).remote(*args))

    def enhance(self, key: str, items, max_new_tokens: int) -> list[str]:
        return self._call("enhance", key, items, max_new_tokens)

    def judge(self, key: str, pairs) -> list[tuple[float, float]]:
        return self._call("judge", key, pairs)


def vlm_gpus(cfg: Config, cluster_gpus: float) -> float:
    """GPUs per VLM actor: as set, else a whole GPU on a GPU cluster (the 30B model needs about 60 GB)."""
    if cfg.vlm.gpus_per_actor is not None:
        return cfg.vlm.gpus_per_actor
    return 1.0 if cluster_gpus else 0.0


def uses_vlm(cfg: Config) -> bool:
    return cfg.enhance.enabled or cfg.judge.enabled


@contextmanager
def vlm_service(cfg: Config, cluster_gpus: float, record: dict):
    """The run's VLM actors and a client for them (None when neither stage is on); `record` receives, for
    run.json, the model's identity, the actors, and what they were asked (summed) when the run ends."""
    if not uses_vlm(cfg):
        yield None
        return
    import ray

    gpus = vlm_gpus(cfg, cluster_gpus)
    if gpus > cluster_gpus:
        raise ConfigError(f"vlm.gpus_per_actor={gpus}: the cluster has {cluster_gpus:g} GPU(s)")
    remote = ray.remote(num_cpus=cfg.vlm.cpus_per_actor, num_gpus=gpus, max_restarts=cfg.runtime.max_restarts,
                        max_task_retries=cfg.runtime.max_restarts)(VlmServer)
    actors = [remote.remote(cfg.vlm, gpus) for _ in range(cfg.vlm.num_actors)]
    try:
        yield VlmClient(cfg.vlm, actors)
        try:  # bookkeeping: an actor lost at the end costs run.json its counts, never the run's rows
            calls: dict = {}
            for counted in ray.get([a.calls.remote() for a in actors]):
                for name, n in counted.items():
                    calls[name] = calls.get(name, 0) + n
            record.update(identity=json.loads(ray.get(actors[0].identity.remote())), actors=len(actors), calls=calls)
        except Exception as exc:  # noqa: BLE001
            log.warning("the VLM actors' counts are lost (%s: %s)", type(exc).__name__, exc)
            record.update(actors=len(actors), calls=None, error=f"{type(exc).__name__}: {exc}")
    finally:
        for actor in actors:
            ray.kill(actor)
