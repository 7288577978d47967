"""Configuration: one TOML file loaded once into frozen dataclasses, validated with clear messages.

Every key, its default and its allowed range is declared here once (``field(metadata=...)``) and
documented for users in ``config.example.toml``. Secrets come from the environment
(``TELEGRAM_BOT_TOKEN``, ``DISCORD_BOT_TOKEN``, ``MAJICBOT_STATUS_TOKEN``) or the file and are
never shown in a repr or a log.

Besides each key's own range, the checks across keys refuse what the limits could never serve:
non-finite numbers (``nan``, ``inf``), empty lists where one item is needed, a default size
outside the side bounds, ``max_pixels`` below ``min_side²``, an aspect ratio whose size cannot fit
``max_side``, admin ids that are not numeric ids, and a non-loopback ``status_host`` without
``service.status_token``.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import ConfigError

PROFILES = ("auto", "gpu", "gpu-fp8", "balanced", "lowvram")
MODELS = ("majicflus_v1", "flux1-dev")
CHAT_POLICIES = ("allow", "spoiler", "block")


def _range(lo: float | None = None, hi: float | None = None, **extra: Any) -> dict[str, Any]:
    return {"lo": lo, "hi": hi, **extra}


def _choice(*options: str) -> dict[str, Any]:
    return {"choices": options}


class Secret(str):
    """A string that never shows itself in repr/str formatting of containers."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


@dataclass(frozen=True)
class EngineConfig:
    model: str = field(default="majicflus_v1", metadata=_choice(*MODELS))
    models_dir: Path = Path("models")
    # Override single files; empty = the ModelScope layout under models_dir.
    dit_path: str = ""
    # "auto" = every visible CUDA device, else the CPU; or a list like ["cuda:0", "cuda:1"].
    devices: tuple[str, ...] = field(default=("auto",), metadata={"nonempty": True})
    profile: str = field(default="auto", metadata=_choice(*PROFILES))
    # Memory kept free by auto profile selection, GiB.
    vram_margin_gb: float = field(default=2.0, metadata=_range(0, 64))
    # Run a tiny generation after loading so the first user does not pay for lazy init.
    warmup: bool = True
    # torch.compile the repeated DiT blocks of the resident profiles (gpu, gpu-fp8) in a
    # background thread; jobs run eager until the compiled path takes over (never blocks
    # readiness). Artefacts persist under <storage.data_dir>/compile. Ignored on the CPU.
    compile: bool = True
    # "auto" = "default": Inductor's default mode, compiled in seconds beside the serving engine.
    # max-autotune is not offered: compiled in-process beside a serving engine it broke jobs on
    # torch 2.11 (FX tracing patches torch.nn.Module.__call__ process-wide; BENCHMARKS.md).
    compile_mode: str = field(default="auto", metadata=_choice("auto", "default"))
    # fp8 weights *and* fp8 matmuls for the DiT (lossy; cards of compute capability >= 8.9):
    # gpu-fp8 computes in fp8 and auto prefers it. Elsewhere refused with a note in /status.
    fp8_compute: bool = False
    # Text embeddings kept per prompt for Reroll/Variations (~4 MB of VRAM each); 0 = off.
    prompt_cache_entries: int = field(default=32, metadata=_range(0, 1024))
    # Tokens kept of the prompt by T5 (FLUX.1 was trained with 512).
    t5_max_tokens: int = field(default=512, metadata=_range(64, 512))


@dataclass(frozen=True)
class StorageConfig:
    data_dir: Path = Path("data")
    # Days a finished job keeps its prompt, name and image; then only ids, times and settings
    # stay (what quotas and statistics need). 0 = keep them until deleted.
    keep_days: int = field(default=30, metadata=_range(0, 36500))


@dataclass(frozen=True)
class LimitsConfig:
    max_prompt_chars: int = field(default=1000, metadata=_range(1, 6000))
    default_steps: int = field(default=28, metadata=_range(1, 200))
    max_steps: int = field(default=50, metadata=_range(1, 200))
    default_guidance: float = field(default=3.5, metadata=_range(0, 30))
    min_guidance: float = field(default=1.0, metadata=_range(0, 30))
    max_guidance: float = field(default=10.0, metadata=_range(0, 30))
    # Default image: square of this side; aspect ratios keep about this many pixels.
    default_side: int = field(default=1024, metadata=_range(64, 2048, multiple=16))
    aspect_ratios: tuple[str, ...] = field(
        default=("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3"), metadata={"nonempty": True}
    )
    # Explicit --size WxH: each side a multiple of 16 within [min_side, max_side] and at most
    # max_pixels pixels.
    min_side: int = field(default=256, metadata=_range(16, 4096, multiple=16))
    max_side: int = field(default=2048, metadata=_range(16, 4096, multiple=16))
    # Also sizes the VRAM the engine keeps for activations (about 2.4 GiB per megapixel): raising
    # it can move `auto` to a slower profile on a small card.
    max_pixels: int = field(default=1024 * 1024, metadata=_range(16 * 16, 4096 * 4096))
    per_user_queue: int = field(default=3, metadata=_range(1, 1000))
    per_user_hourly: int = field(default=60, metadata=_range(1, 100000))
    queue_max: int = field(default=200, metadata=_range(1, 1000000))
    # Seconds without a denoising step before a running job counts as stalled (the engine is
    # stuck); 0 = derived from the measured step time (``backend.watchdog``).
    stall_timeout_s: float = field(default=0.0, metadata=_range(0, 86400))


@dataclass(frozen=True)
class TelegramConfig:
    enabled: bool = False
    token: Secret = field(default=Secret(""), repr=False)
    mode: str = field(default="polling", metadata=_choice("polling", "webhook"))
    webhook_url: str = ""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = field(default=8443, metadata=_range(1, 65535))
    webhook_secret: Secret = field(default=Secret(""), repr=False)
    # Local Bot API server; empty = api.telegram.org.
    base_url: str = ""
    base_file_url: str = ""
    admins: tuple[str, ...] = ()
    allowed_users: tuple[str, ...] = ()  # empty = everyone
    allowed_chats: tuple[str, ...] = ()  # empty = everyone
    banned_users: tuple[str, ...] = ()
    default_language: str = field(default="en", metadata=_choice("en", "zh"))


@dataclass(frozen=True)
class DiscordConfig:
    enabled: bool = False
    token: Secret = field(default=Secret(""), repr=False)
    # Guild ids to sync commands to instantly; empty = global commands.
    test_guilds: tuple[str, ...] = ()
    admins: tuple[str, ...] = ()  # user ids
    admin_roles: tuple[str, ...] = ()  # role ids
    allowed_guilds: tuple[str, ...] = ()  # empty = every guild the bot is in
    banned_users: tuple[str, ...] = ()
    allow_dms: bool = True
    default_language: str = field(default="en", metadata=_choice("en", "zh"))


@dataclass(frozen=True)
class ServiceConfig:
    # Local status endpoint used by `majicbot status` (loopback unless status_token is set).
    status_host: str = "127.0.0.1"
    status_port: int = field(default=8765, metadata=_range(0, 65535))
    # Bearer token of the status endpoint (env MAJICBOT_STATUS_TOKEN): needed for detail (user
    # ids, errors), and for every request when status_host is not a loopback address.
    status_token: Secret = field(default=Secret(""), repr=False)
    # On stop: seconds the running job may keep going before it is cancelled (and re-queued).
    stop_grace_s: float = field(default=30.0, metadata=_range(0, 3600))
    log_level: str = field(default="INFO", metadata=_choice("DEBUG", "INFO", "WARNING", "ERROR"))


@dataclass(frozen=True)
class ContentConfig:
    """Content controls (issue 16; ``backend.content``). Checked further in ``_check_content``."""

    # Prompt rules: the built-in list (``backend.content.rules.DEFAULT_TERMS``) plus these terms;
    # matched on whole words after folding case, width, accents, look-alikes and spacing.
    use_default_terms: bool = True
    blocked_terms: tuple[str, ...] = ()
    # Python regular expressions searched in the folded prompt (validated at load).
    blocked_patterns: tuple[str, ...] = ()
    # Configured admins may use any prompt (their images still follow the chat's policy).
    admins_exempt: bool = True
    # The image safety check after each generation.
    image_check: bool = True
    classifier_model: str = "Falconsai/nsfw_image_detection"  # a ModelScope id
    classifier_path: str = ""  # a folder to use instead of models_dir/<classifier_model>
    classifier_device: str = "cpu"  # "cpu" or "cuda:N"
    # bfloat16 halves the CPU cost where the CPU has bf16 instructions (AVX512-BF16, AMX).
    classifier_dtype: str = field(default="bfloat16", metadata=_choice("bfloat16", "float32"))
    flagged_labels: tuple[str, ...] = ("nsfw",)
    threshold: float = field(default=0.5, metadata=_range(0, 1))
    # What a chat does with a flagged image unless an admin set its own (/policy).
    default_policy: str = field(default="block", metadata=_choice(*CHAT_POLICIES))
    # The same for Discord channels marked age-restricted (NSFW).
    nsfw_channel_policy: str = field(default="allow", metadata=_choice(*CHAT_POLICIES))
    # An image the check could not score (classifier missing or failed): "spoiler", "block", or
    # "policy" (treated as flagged: the chat's policy decides).
    unchecked: str = field(default="spoiler", metadata=_choice("spoiler", "block", "policy"))


@dataclass(frozen=True)
class ClusterConfig:
    """Where the GPU workers run (issue 15; ``backend.cluster``). Checked in ``_check_cluster``."""

    # "local": one worker thread per device of this host; "ray": one Ray actor per GPU of a
    # Ray cluster (README: "More GPUs on more hosts").
    backend: str = field(default="local", metadata=_choice("local", "ray"))
    # ray: "" starts a private Ray on this host; "auto" joins the one `ray start --head` started
    # here; "host:6379" or "ray://host:10001" joins another head.
    address: str = ""
    # ray: how many actors; 0 = one per gpus_per_worker GPUs of the cluster, more as nodes join.
    workers: int = field(default=0, metadata=_range(0, 1024))
    gpus_per_worker: float = field(default=1.0, metadata=_range(0, 16))
    cpus_per_worker: float = field(default=1.0, metadata=_range(0, 256))
    # ray: restarts of a dead actor (-1 = always); its running job is re-queued either way.
    max_restarts: int = field(default=-1, metadata=_range(-1, 1_000_000))
    # ray, workers = 0: seconds between looks for new GPUs (0 = only at start).
    discover_every_s: float = field(default=10.0, metadata=_range(0, 86400))


@dataclass(frozen=True)
class Config:
    engine: EngineConfig = EngineConfig()
    storage: StorageConfig = StorageConfig()
    limits: LimitsConfig = LimitsConfig()
    telegram: TelegramConfig = TelegramConfig()
    discord: DiscordConfig = DiscordConfig()
    service: ServiceConfig = ServiceConfig()
    content: ContentConfig = ContentConfig()
    cluster: ClusterConfig = ClusterConfig()

    @property
    def db_path(self) -> Path:
        return self.storage.data_dir / "majicbot.sqlite3"

    @property
    def outputs_dir(self) -> Path:
        return self.storage.data_dir / "outputs"


@dataclass(frozen=True)
class EngineSettings:
    """What an engine needs from the config, and nothing more (no bot tokens, no limits).

    ``max_pixels`` is the largest image a job can ask for: ``limits.max_pixels``, or about
    ``default_side²`` for aspect-ratio sizes, whichever is larger (it sizes the VRAM kept for
    activations when ``auto`` chooses a profile).
    """

    engine: EngineConfig
    max_pixels: int
    # (height, width) the background compile prepares: the default square, then every ratio.
    compile_sizes: tuple[tuple[int, int], ...] = ()
    data_dir: Path = Path("data")  # compile artefacts persist under data_dir / "compile"

    @classmethod
    def of(cls, config: Config) -> EngineSettings:
        from backend.validation import aspect_size  # validation imports this module

        limits = config.limits
        sizes = [(limits.default_side, limits.default_side)]
        for ratio in limits.aspect_ratios:
            width, height = aspect_size(ratio, limits)
            sizes.append((height, width))
        return cls(
            config.engine,
            max(limits.max_pixels, limits.default_side**2),
            tuple(sizes),
            config.storage.data_dir,
        )


_TOKEN_ENV = {"telegram": "TELEGRAM_BOT_TOKEN", "discord": "DISCORD_BOT_TOKEN"}
# (section, key) of other secrets read from the environment.
_SECRET_ENV = {("service", "status_token"): "MAJICBOT_STATUS_TOKEN"}


def load_config(
    path: Path | None, env: Mapping[str, str] | None = None, *, require_tokens: bool = True
) -> Config:
    """Read ``path`` (None = all defaults), apply token environment variables, validate.

    ``require_tokens=False`` skips the check that each enabled bot has a token, for commands
    that never talk to a chat platform (`status`, `download`, `imagine`).
    """
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(
                f"config file {path} does not exist (copy config.example.toml to start)"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for section, var in _TOKEN_ENV.items():
        if env.get(var):
            raw.setdefault(section, {})
            if not isinstance(raw[section], dict):
                raise ConfigError(f"[{section}] must be a table")
            raw[section]["token"] = env[var]
    for (section, key), var in _SECRET_ENV.items():
        if env.get(var):
            raw.setdefault(section, {})
            if not isinstance(raw[section], dict):
                raise ConfigError(f"[{section}] must be a table")
            raw[section][key] = env[var]
    config: Config = _build(Config, raw, "")
    if require_tokens:
        _check_tokens(config)
    _check_cross_fields(config)
    return config


def _build(cls: type[Any], raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'} must be a table, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{where}.{key}" if where else key
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            allowed = ", ".join(fields)
            raise ConfigError(f"unknown key '{name}'{hint}; allowed here: {allowed}")
        values[key] = _coerce(hints[key], value, name, fields[key].metadata)
    return cls(**values)


def _coerce(hint: Any, value: Any, name: str, meta: Mapping[str, Any]) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, name)
    shown = "<redacted>" if hint is Secret else repr(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} = {shown}: must be true or false")
        return value
    if hint in (int, float):
        ok = isinstance(value, int | float) if hint is float else isinstance(value, int)
        if isinstance(value, bool) or not ok:
            kind = "an integer" if hint is int else "a number"
            raise ConfigError(f"{name} = {shown}: must be {kind}{_describe(meta)}")
        if not math.isfinite(value):
            raise ConfigError(f"{name} = {shown}: must be a finite number{_describe(meta)}")
        _check_range(hint(value), name, meta)
        return hint(value)
    if hint in (str, Secret, Path):
        if not isinstance(value, str):
            raise ConfigError(f"{name} = {shown}: must be a string{_describe(meta)}")
        if "choices" in meta and value not in meta["choices"]:
            choices = ", ".join(repr(c) for c in meta["choices"])
            raise ConfigError(f"{name} = {shown}: must be one of {choices}")
        return hint(value)
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{name} = {shown}: must be a list of strings")
        items = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        if not all(isinstance(v, str) for v in items):
            raise ConfigError(f"{name} = {shown}: must be a list of strings (or numeric ids)")
        if meta.get("nonempty") and not items:
            raise ConfigError(f"{name} = []: must name at least one item")
        return tuple(items)
    raise TypeError(f"unsupported config type {hint!r} for {name}")  # programming error


def _describe(meta: Mapping[str, Any]) -> str:
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and hi is not None:
        return f" between {lo} and {hi}"
    if "choices" in meta:
        return " (one of " + ", ".join(repr(c) for c in meta["choices"]) + ")"
    return ""


def _check_range(value: float, name: str, meta: Mapping[str, Any]) -> None:
    lo, hi, multiple = meta.get("lo"), meta.get("hi"), meta.get("multiple")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{name} = {value!r}: must be between {lo} and {hi}")
    if multiple and value % multiple:
        raise ConfigError(f"{name} = {value!r}: must be a multiple of {multiple}")


def _check_tokens(config: Config) -> None:
    for section, var in _TOKEN_ENV.items():
        bot = getattr(config, section)
        if bot.enabled and not bot.token:
            raise ConfigError(
                f"{section}.enabled = true but no token: set the environment variable {var} "
                f"or {section}.token in the config file"
            )


def _check_cross_fields(config: Config) -> None:
    lim = config.limits
    if lim.default_steps > lim.max_steps:
        raise ConfigError(
            f"limits.default_steps = {lim.default_steps}: must not exceed limits.max_steps "
            f"({lim.max_steps})"
        )
    if not lim.min_guidance <= lim.default_guidance <= lim.max_guidance:
        raise ConfigError(
            f"limits.default_guidance = {lim.default_guidance}: must be between "
            f"limits.min_guidance ({lim.min_guidance}) and limits.max_guidance ({lim.max_guidance})"
        )
    _check_sizes(lim)
    _check_admin_ids(config)
    _check_status_host(config.service)
    tg = config.telegram
    if tg.enabled and tg.mode == "webhook" and not tg.webhook_url.startswith("https://"):
        raise ConfigError(
            f"telegram.webhook_url = {tg.webhook_url!r}: webhook mode needs an https:// URL"
        )
    for device in config.engine.devices:
        if device not in ("auto", "cpu") and not _is_cuda_device(device):
            raise ConfigError(
                f'engine.devices: {device!r} is not a device; use "auto", "cpu" or "cuda:N"'
            )
    _check_content(config.content)  # issue 16
    _check_cluster(config.cluster)  # issue 15


def _check_cluster(cluster: ClusterConfig) -> None:
    if cluster.backend == "ray" and cluster.workers == 0 and cluster.gpus_per_worker == 0:
        raise ConfigError(
            "cluster.gpus_per_worker = 0 (CPU actors) needs cluster.workers: the number of "
            "actors to start (workers = 0 counts the cluster's GPUs)"
        )


def _check_content(content: ContentConfig) -> None:
    from backend.content.rules import check_rules_config

    device = content.classifier_device
    if device != "cpu" and not _is_cuda_device(device):
        raise ConfigError(f'content.classifier_device = {device!r}: use "cpu" or "cuda:N"')
    if content.image_check and not content.flagged_labels:
        raise ConfigError("content.flagged_labels: name at least one label of the classifier")
    check_rules_config(content)


def _is_cuda_device(device: str) -> bool:
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and (index == "" or index.isdigit())


def _check_sizes(lim: LimitsConfig) -> None:
    if lim.min_side > lim.max_side:
        raise ConfigError(f"limits.min_side = {lim.min_side}: must not exceed limits.max_side")
    if not lim.min_side <= lim.default_side <= lim.max_side:
        raise ConfigError(
            f"limits.default_side = {lim.default_side}: must be between limits.min_side "
            f"({lim.min_side}) and limits.max_side ({lim.max_side})"
        )
    if lim.max_pixels < lim.min_side**2:
        raise ConfigError(
            f"limits.max_pixels = {lim.max_pixels}: must be at least limits.min_side² "
            f"({lim.min_side**2}), or no --size could ever pass"
        )
    for ratio in lim.aspect_ratios:
        parts = ratio.split(":")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ConfigError(f"limits.aspect_ratios: {ratio!r} is not of the form W:H, e.g. 16:9")
        width, height = _ratio_size(int(parts[0]) / int(parts[1]), lim.default_side)
        if max(width, height) > lim.max_side:
            raise ConfigError(
                f"limits.aspect_ratios: {ratio!r} gives {width}x{height} at limits.default_side "
                f"= {lim.default_side}, a side over limits.max_side ({lim.max_side}); remove it, "
                f"or raise limits.max_side"
            )


def _ratio_size(ratio: float, side: int) -> tuple[int, int]:
    """The size ``backend.validation.aspect_size`` gives (kept in step with it by a test)."""

    def rounded(value: float) -> int:
        return max(16, round(value / 16) * 16)

    return rounded(side * math.sqrt(ratio)), rounded(side / math.sqrt(ratio))


def _check_admin_ids(config: Config) -> None:
    for name, ids in (
        ("telegram.admins", config.telegram.admins),
        ("discord.admins", config.discord.admins),
        ("discord.admin_roles", config.discord.admin_roles),
    ):
        for value in ids:
            if not value.isascii() or not value.isdigit():
                raise ConfigError(
                    f"{name}: {value!r} is not an id; give numeric ids (a Telegram username "
                    f"such as '@ada' matches nobody: ask @userinfobot, or Discord's "
                    f"Developer Mode → Copy ID)"
                )


def _check_status_host(service: ServiceConfig) -> None:
    host = service.status_host
    if host == "localhost" or service.status_token:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"service.status_host = {host!r}: the status endpoint is unauthenticated on a "
            f"loopback address only; use 127.0.0.1, or set MAJICBOT_STATUS_TOKEN "
            f"(service.status_token) to protect it"
        )
