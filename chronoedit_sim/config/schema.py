"""The one config schema: dataclasses with a comment above every field.

OmegaConf merges every layer into `Config` (see loader.py), so these types are also
the validation: an unknown key or a wrong type fails with the key and its layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from omegaconf import MISSING

from .vlm import EnhanceConfig, JudgeConfig, VlmConfig

IMAGE_FORMATS = ("png", "webp", "jpeg")
TRAJECTORY_STORAGE = ("frames", "video")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
INPUT_TYPES = ("auto", "images", "video", "parquet", "lerobot", "kitti", "nuscenes")
DTYPES = ("bfloat16", "float16", "float32")
# model.quantize: torchao's fp8 of the transformer's linear layers, weights only or weights and activations
QUANTIZE = ("none", "fp8_weight_only", "fp8_dynamic")
# model.step_cache: diffusers' transformer caches, made to run on ChronoEdit by engine/speed.py
STEP_CACHES = ("none", "first_block", "taylorseer", "magcache")
# the editor backends (engine/backends): ChronoEdit, the weight-free CPU corruptions, two diffusers editors
BACKENDS = ("chronoedit", "corruption", "qwen_image_edit", "flux_kontext")
# backends that need no weights and no GPU: their edits run as CPU tasks
CPU_BACKENDS = ("corruption",)
SCORES = (
    "clip_text",
    "clip_text_source",
    "clip_image",
    "clip_direction",
    "trajectory_min_adjacent",
    "trajectory_monotonic",
    "ssim",
    "psnr",
    "flow_warp_error",
    # the localize stage's, weight-free: fraction of the frame changed; of it changed outside the object's
    # box and the edit's region (unintended edits); share of the inserted box inside the region
    "change_area",
    "change_outside",
    "inserted_in_region",
    # the VLM judge's (judge.enabled), 0-10: the instruction followed without other changes; a natural image
    "vlm_consistency",
    "vlm_quality",
    # weight-free, sequence sources: how much more the edit changes from the previous frame of its camera stream
    # than the source does (warp error along the source's optical flow, minus the source's own; 0 = steady)
    "temporal_flicker",
)
# the scores the localize stage computes; a rescoring keeps them as the dataset has them
LOCALIZE_SCORES = ("change_area", "change_outside", "inserted_in_region")
# the VLM judge's (judge.enabled)
JUDGE_SCORES = ("vlm_consistency", "vlm_quality")
# computed where a row meets the previous frame of its sequence (the run's driver), after the score stage
SEQUENCE_SCORES = ("temporal_flicker",)
# the model components' calls an editor counts (engine.conditioning) and a row records (component_calls)
CALL_NAMES = ("text_encoder_calls", "image_encoder_calls", "vae_encode_calls", "transformer_forwards",
              "vae_decode_calls")


@dataclass
class LoraConfig:
    # LoRA safetensors file: absolute, or relative to the model root
    # (e.g. lora/chronoedit_distill_lora.safetensors inside the downloaded repo)
    path: str = MISSING
    # adapter strength passed to set_adapters
    scale: float = 1.0
    # adapter name; empty means the file stem
    name: str = ""


@dataclass
class ModelConfig:
    # preset that filled this section (configs/model/<preset>.yaml); recorded in results
    preset: str = "chronoedit-14b"
    # the editor (config.BACKENDS, engine/backends): a scenario or edit may name another with `backend:`;
    # corruption needs no weights (its preset sets model.path empty)
    backend: str = "chronoedit"
    # local diffusers-layout directory, a Hugging Face repo id resolved from the local cache, or a URL
    # (s3://bucket/ChronoEdit-14B-Diffusers): checked and hashed where it is, copied once to each node (cache_dir)
    path: str = MISSING
    # hub revision (branch, tag or commit) when path is a repo id
    revision: Optional[str] = None
    # let a repo id that is not cached be downloaded; off so runs never touch the network
    allow_download: bool = False
    # LoRAs stacked on the transformer, in order (the distill preset wires its own)
    loras: List[LoraConfig] = field(default_factory=list)
    # "auto" picks cuda when visible, else cpu; never a silent fallback for an explicit "cuda"
    device: str = "auto"
    # transformer and text-encoder dtype on GPU (VAE and image encoder stay fp32; CPU runs all fp32)
    dtype: str = "bfloat16"
    # diffusers' enable_model_cpu_offload: less VRAM, slower
    cpu_offload: bool = False
    # each node's copies of weights given as URLs (path, transformer_path, LoRAs): one folder per URL, fetched
    # once per node and again only for objects whose size or ETag changed
    cache_dir: str = "~/.cache/chronoedit-sim/models"
    # the transformer from this directory, repo id or URL instead of path's (a community distilled or
    # quantised copy in diffusers layout: a transformer/ folder, or the transformer's own files)
    transformer_path: Optional[str] = None
    # diffusers attention backend of the transformer (e.g. "_native_cudnn"), or "sageattention" (8-bit
    # SageAttention 1, CUDA); null keeps torch SDPA's own choice (docs/PERFORMANCE.md has the measurements)
    attention_backend: Optional[str] = None
    # fp8 of the transformer's linear layers through torchao (installed apart): "fp8_weight_only" halves its
    # weight memory, "fp8_dynamic" also computes in fp8 (docs/PERFORMANCE.md has the measured trade-offs)
    quantize: str = "none"
    # torch.compile of the transformer's repeated blocks (1.42x faster forwards on an H200); null = where it
    # pays: on a CUDA device, not on a CPU. The first edit of each shape compiles (about 19 s, cold cache)
    compile: Optional[bool] = None
    # compiled kernels shared by every actor and run on the node (inductor's caches, Triton's, a portable
    # mega-cache file per torch version and GPU): a shape compiles once per node and software version
    compile_cache_dir: Optional[str] = "~/.cache/chronoedit-sim/compile"
    # transformer step cache for many-step presets: none | first_block | taylorseer | magcache (diffusers'
    # hooks; skipped steps reuse cached block outputs; not with partial reasoning)
    step_cache: str = "none"
    # first_block: the first block's relative residual change under which a step reuses the rest (diffusers'
    # default 0.05); magcache: the accumulated error bound (default 0.06); null = the default
    step_cache_threshold: Optional[float] = None
    # magcache: the calibration JSON `chronoedit-sim calibrate-cache` writes (ratios are per checkpoint)
    step_cache_calibration: Optional[str] = None
    # distinct prompt texts whose embeddings each editor keeps (a negative prompt is one; about 4 MiB
    # each for the 14B model's UMT5-XXL); a text seen again is not encoded again
    cache_prompts: int = 64
    # distinct frames whose image embedding and VAE conditioning each editor keeps; a frame's jobs
    # reach one editor together, so a few suffice
    cache_frames: int = 4
    # encode the run's distinct prompts (known from the plan) when the editor starts, then move the
    # text encoder to the CPU: about 11 GB of GPU memory freed for the 14B model's UMT5-XXL
    offload_text_encoder: bool = False


@dataclass
class GenerationConfig:
    # denoising steps (reference: 50; distill LoRA: 8)
    num_inference_steps: int = 50
    # classifier-free guidance; <= 1 turns CFG off and halves transformer passes
    guidance_scale: float = 5.0
    # flow-matching shift of the UniPC scheduler
    flow_shift: float = 5.0
    # generate the in-between "reasoning" frames of the edit
    temporal_reasoning: bool = False
    # denoising steps run over the whole reasoning video before it is cut to [input, edit];
    # >= num_inference_steps keeps the whole video to the end ("full reasoning")
    reasoning_steps: int = 10
    # video length with reasoning (real model: 29 = 8 latent frames); forced to 5 without
    num_frames: int = 29
    # pixel area the frame is fitted into, aspect kept, sides rounded to 16
    max_area: int = 480 * 832
    # explicit output height; set together with width to bypass max_area
    height: Optional[int] = None
    # explicit output width; set together with height to bypass max_area
    width: Optional[int] = None
    # record the edited frame's clean (x0) estimate every N steps; 0 = off
    denoise_preview_every: int = 0


@dataclass
class TrajectoryConfig:
    # storage format of reasoning and preview frames: png | webp | jpeg
    image_format: str = "webp"
    # quality for webp/jpeg (ignored by png)
    quality: int = 90
    # longest side of stored reasoning frames in px; 0 keeps the generated size
    max_side: int = 0
    # storage format of the edited frame; png keeps it lossless
    edited_format: str = "png"
    # reasoning frames as "frames" (one image each, in reasoning_frames) or "video" (one H.264 MP4 per
    # row, in reasoning_video: about 10x smaller and 10x cheaper to encode than webp frames)
    storage: str = "frames"
    # video storage: x264 constant rate factor (0-51, lower is better and larger; 18 is visually lossless)
    video_crf: int = 18
    # video storage: exact RGB (libx264rgb, qp 0), several times larger than crf 18
    video_lossless: bool = False
    # video storage: x264 preset; veryfast encodes 29 frames at 832x480 in about a quarter of medium's
    # CPU time at a similar size, which is what keeps the encode stage beside a fast GPU
    video_preset: str = "veryfast"


@dataclass
class FilterConfig:
    # keep rows that fail a bound (keep=false) instead of dropping them
    write_rejected: bool = True
    # lower/upper bounds on each score; null = inactive
    clip_text_min: Optional[float] = 0.2
    clip_text_max: Optional[float] = None
    clip_text_source_min: Optional[float] = None
    clip_text_source_max: Optional[float] = None
    clip_image_min: Optional[float] = 0.7
    clip_image_max: Optional[float] = None
    clip_direction_min: Optional[float] = 0.2
    clip_direction_max: Optional[float] = None
    trajectory_min_adjacent_min: Optional[float] = None
    trajectory_min_adjacent_max: Optional[float] = None
    trajectory_monotonic_min: Optional[float] = None
    trajectory_monotonic_max: Optional[float] = None
    ssim_min: Optional[float] = None
    ssim_max: Optional[float] = None
    psnr_min: Optional[float] = None
    psnr_max: Optional[float] = None
    flow_warp_error_min: Optional[float] = None
    flow_warp_error_max: Optional[float] = None
    change_area_min: Optional[float] = None
    change_area_max: Optional[float] = None
    change_outside_min: Optional[float] = None
    change_outside_max: Optional[float] = None
    inserted_in_region_min: Optional[float] = None
    inserted_in_region_max: Optional[float] = None
    vlm_consistency_min: Optional[float] = None
    vlm_consistency_max: Optional[float] = None
    vlm_quality_min: Optional[float] = None
    vlm_quality_max: Optional[float] = None
    temporal_flicker_min: Optional[float] = None
    temporal_flicker_max: Optional[float] = None


@dataclass
class InputConfig:
    # image folder (recursive) or video file; the run's --input sets it
    path: str = ""
    # auto | images | video | parquet | lerobot | kitti | nuscenes ("auto" looks at the path)
    type: str = "auto"
    # keep every Nth frame (of a video, an episode, a sorted folder or a Parquet file)
    stride: int = 1
    # stop after this many frames; 0 = all
    max_frames: int = 0
    # images: only relative paths matching one of these globs (empty = all), e.g. ["cam_front/**"]
    include: List[str] = field(default_factory=list)
    # images: drop relative paths matching any of these globs
    exclude: List[str] = field(default_factory=list)
    # video: skip frames before this time (seconds)
    start_s: float = 0.0
    # video: stop at this time (seconds); null = the end
    end_s: Optional[float] = None
    # parquet: the image column (a Hugging Face Image struct {bytes, path} or raw bytes)
    image_column: str = "image"
    # parquet: a column whose value identifies the row (source_id); empty = the row index
    id_column: str = ""
    # parquet: a caption column; its text becomes the job's source_caption
    caption_column: str = ""
    # COCO instances JSON whose images are matched to frames by file name (image folders, Parquet);
    # empty = none (KITTI labels and nuScenes boxes are found beside the frames without it)
    annotations: str = ""
    # parquet: columns copied into each row's source_columns (JSON), e.g. [objects]
    keep_columns: List[str] = field(default_factory=list)
    # lerobot: camera video keys (e.g. observation.images.top); nuscenes: CAM_* names; kitti:
    # image_2 / image_3 / image_02 ...; empty = every camera
    cameras: List[str] = field(default_factory=list)
    # lerobot: episode indices to read; empty = all
    episodes: List[int] = field(default_factory=list)
    # use a caption the input provides (caption column, LeRobot task text) as source_caption
    use_input_captions: bool = True
    # frames per read task: neighbours share a video decode or a Parquet row group
    read_batch_size: int = 8
    # on each node, where read tasks keep the videos they fetch from an object store (OpenCV opens files by
    # name), so the many read tasks of one video fetch it once per node instead of once each
    video_cache_dir: str = "~/.cache/chronoedit-sim/videos"
    # that cache's bound per node in GB: the least recently used videos no task is reading are removed
    video_cache_gb: float = 50.0
    # decompression-bomb guard, checked from the image header before decoding
    max_pixels: int = 50_000_000
    # frames smaller than this on their short side are error rows, not model inputs
    min_side: int = 16


@dataclass
class FaultConfig:
    # the edit actor kills its process on its Nth job, once per output folder (0 = off)
    kill_actor_at_job: int = 0
    # the edit actor kills its process on every job of this source_id (a job that never succeeds)
    kill_actor_on_source: str = ""
    # the driver SIGKILLs itself once this many rows are in complete shards (0 = off)
    kill_driver_after_rows: int = 0
    # the driver SIGKILLs itself after writing its Nth shard's temporary file, before the rename (0 = off)
    kill_driver_before_rename: int = 0


@dataclass
class EncodeConfig:
    # CPUs per encode task; null = a share of what the actors leave (never all of it)
    cpus: Optional[float] = None
    # encode actors; 0 runs the stage as Ray tasks, which Ray Data scales to the free CPUs
    num_actors: int = 0
    # rows per encode call
    batch_size: int = 1


@dataclass
class RuntimeConfig:
    # Ray cluster to join ("auto", "ray://host:port", "host:port"); empty starts a private local instance
    address: str = ""
    # edit actors (one loaded model each); 0 = one per GPU in the cluster, 1 without GPUs
    num_actors: int = 0
    # GPUs per edit actor; null = 1 when CUDA is visible, else 0 (fractions share a GPU)
    gpus_per_actor: Optional[float] = None
    # CPUs per edit actor: keep below the node's count so Ray Data's read/write tasks always get a core
    cpus_per_actor: float = 1.0
    # times Ray restarts a dead actor and retries its work before the job becomes an error row
    max_restarts: int = 3
    # the run exits non-zero when more than this fraction of written jobs failed
    max_failed_fraction: float = 0.1
    # frames handed to an edit actor at once, each with all its jobs (they share its conditioning)
    batch_size: int = 1
    # the samples of one (frame, edit, prompt) in one pipeline call, as a batch: results match the
    # single calls to float noise, not bit for bit, and depend on which samples share the call (after
    # a resume, only the samples still to do)
    batch_samples: bool = False
    # jobs queued at each edit actor beyond the one it works on, so its next input is always decoded
    # and waiting (Ray Data's max_tasks_in_flight_per_actor = 1 + this)
    queue_per_actor: int = 2
    # place edit actors on different nodes first (Ray's SPREAD), so no node idles while another queues
    spread_actors: bool = True
    # deterministic fault injection for tests and drills; all off by default
    faults: FaultConfig = field(default_factory=FaultConfig)


@dataclass
class OutputConfig:
    # rows per Parquet shard before it is closed and made visible
    shard_max_rows: int = 512
    # approximate bytes per shard before it is closed (image data dominates)
    shard_max_bytes: int = 256 * 1024 * 1024
    # rows per row group: small, since one row carries dozens of images
    row_group_rows: int = 32
    # Parquet compression codec (images are already compressed; zstd still shrinks the rest)
    compression: str = "zstd"
    # storage format of the source frame in each row
    source_format: str = "png"


@dataclass
class ClipConfig:
    # compute the CLIP scores; off leaves only the weight-free ones (ssim, psnr, flow_warp_error)
    enabled: bool = True
    # open_clip architecture (ViT-L-14, ViT-B-32, ...) or "local-dir:PATH" (open_clip_config.json + weights)
    model: str = "ViT-L-14"
    # weights: a local file, or an open_clip pretrained tag resolved from the local cache (ignored for local-dir:)
    pretrained: str = "openai"
    # let a pretrained tag that is not cached be downloaded; off so runs never touch the network
    allow_download: bool = False
    # "auto" picks cuda when visible, else cpu
    device: str = "auto"
    # images per CLIP forward pass
    batch_size: int = 32


@dataclass
class ScoringConfig:
    # which CLIP scores the edits
    clip: ClipConfig = field(default_factory=ClipConfig)
    # GPUs per score actor; null = 0.25 when the cluster has GPUs (it shares a GPU with an editor), else 0
    gpus_per_actor: Optional[float] = None
    # CPUs per score actor
    cpus_per_actor: float = 0.5
    # score actors in the pool
    num_actors: int = 1
    # flow_warp_error and temporal_flicker compute optical flow on frames shrunk to this longest side (0 = full):
    # at 832x480 full-size Farneback over 29 frames costs about 4 CPU seconds per row
    flow_max_side: int = 256


@dataclass
class UpscaleConfig:
    # a second ChronoEdit pass over each edited frame with NVIDIA's Upscaler LoRA; its output is the stored
    # edit and the base-resolution edit is kept beside it (edited_base_image). Costs a second edit at the
    # larger size, so off unless asked
    enabled: bool = False
    # the LoRA: a file, relative to the model root, or <repo id>:<file> from the Hugging Face cache
    lora: str = "nvidia/ChronoEdit-14B-Diffusers-Upscaler-Lora:upsample_lora_diffusers.safetensors"
    # its adapter strength
    lora_scale: float = 1.0
    # the LoRA's trigger prompt
    prompt: str = ("The user want to enhance image clarity and resolution while keeping the content identical. "
                   "super-resolution, high detail, 4K clarity, same composition, natural texture.")
    # upscale to the source frame's size (KITTI 1242x375, nuScenes 1600x900), so the edit matches its camera
    to_source_size: bool = True
    # otherwise: the edit's aspect ratio fitted into this many pixels (e.g. 1584 * 1056)
    max_area: int = 0
    # denoising steps of the pass; null = the edit's own
    num_inference_steps: Optional[int] = None


@dataclass
class LocalizeConfig:
    # find inserted and removed objects and score change_area / change_outside (weight-free, CPU);
    # off: rows carry the source's boxes only
    enabled: bool = True
    # mean absolute difference (0-255) after the photometric fit above which a pixel counts as changed
    threshold: float = 24.0
    # blur (Gaussian sigma, px) before thresholding, so codec noise is not change
    blur_sigma: float = 1.5
    # smallest inserted or removed object, as a fraction of the frame
    min_area: float = 0.001


@dataclass
class ReportConfig:
    # write OUT/report/index.html at the end of every run and rescoring (`chronoedit-sim report OUT` builds
    # it any time); a failed report is one line and never fails the run
    enabled: bool = True
    # longest side in px of the thumbnails the encode stage stores in each row (source, edit, every reasoning
    # frame) for the report to lay out; 0 stores none, and the report makes them from the images instead
    thumbnail_side: int = 160
    # gallery cards per page: the page only ever holds this many images
    page_size: int = 48
    # copy each row's source and edited image, as stored, next to the report so that a card opens them full
    # size; costs about as much disk as those two columns (false: the cards open the thumbnails)
    full_images: bool = True


@dataclass
class Config:
    # run seed; every job's seed and variable choices derive from it and the job identity
    seed: int = 0
    # which weights, LoRAs and devices
    model: ModelConfig = field(default_factory=ModelConfig)
    # sampling settings (scenarios and edits may override)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    # how frames are encoded for storage
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    # keep/reject thresholds (scenarios and edits may override)
    filter: FilterConfig = field(default_factory=FilterConfig)
    # where frames come from
    input: InputConfig = field(default_factory=InputConfig)
    # Ray resources and failure handling
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    # the CPU stage that turns raw frames into stored bytes (images, video), beside the editors
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    # dataset shard layout
    output: OutputConfig = field(default_factory=OutputConfig)
    # consistency scoring (CLIP and weight-free metrics)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    # boxes of inserted and removed objects from the change between source and edit
    localize: LocalizeConfig = field(default_factory=LocalizeConfig)
    # a super-resolution pass over each edit (NVIDIA's Upscaler LoRA), in the edit actor
    upscale: UpscaleConfig = field(default_factory=UpscaleConfig)
    # the vision-language model behind the prompt enhancer and the judge
    vlm: VlmConfig = field(default_factory=VlmConfig)
    # the prompt enhancer stage (before the edit)
    enhance: EnhanceConfig = field(default_factory=EnhanceConfig)
    # the VLM judge's scores (in the score stage)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    # the static HTML report and the thumbnails it shows
    report: ReportConfig = field(default_factory=ReportConfig)
