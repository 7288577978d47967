"""Typed values that cross layers: requests, jobs, job events and the status snapshot.

Everything here is a frozen dataclass or an enum; nothing here does I/O or imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path

SEED_MAX = 2**32 - 1  # seeds are 0..SEED_MAX
HISTORY_MAX = 20  # the most jobs one ``Service.history`` call returns (larger limits are clamped)


class Platform(StrEnum):
    """Where a request came from (and where its result goes back to)."""

    TELEGRAM = "telegram"
    DISCORD = "discord"
    CLI = "cli"


@dataclass(frozen=True)
class Requester:
    """Who asked. Ids are strings so that every platform fits."""

    platform: Platform
    user_id: str
    display_name: str = ""
    chat_id: str | None = None  # Telegram chat / Discord channel
    guild_id: str | None = None  # Discord guild; None in DMs and on Telegram
    language: str = "en"  # IETF tag as the platform reports it ("en", "zh-hans", "zh-CN")
    # Set by an adapter: the user holds Manage Server or a configured admin role *in guild_id*.
    # A guild admin may manage (cancel, delete) jobs of that guild only; it bypasses no allowlist,
    # cap or ban, and is not an admin of the service (``backend.access`` has the rules).
    guild_admin: bool = False
    # Set by the Discord adapter: the channel is age-restricted (``is_nsfw()``); content controls
    # may allow flagged images there (``backend.content.policy``). Stored with the job.
    nsfw_channel: bool = False


# Who the local status endpoint and the CLI act as: the machine's owner, an admin.
CLI_REQUESTER = Requester(Platform.CLI, "local", display_name="local")


@dataclass(frozen=True)
class ReplyTarget:
    """Where the adapter should deliver the result; opaque to the backend.

    ``message_id`` is the adapter's status message (Telegram) or original response; ``token`` is an
    adapter-specific handle such as a Discord interaction token (never logged).
    """

    chat_id: str
    message_id: str | None = None
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class MessageRef:
    """A message in a chat, as the platform reports it (where a button was pressed).

    Telegram: the callback query's message (chat id, message id); Discord: the interaction's
    channel id and message id. The platform fills these in, so unlike callback data or a custom
    id, they cannot be forged by the user.
    """

    chat_id: str
    message_id: str


class JobAction(StrEnum):
    """What a button asks to do with a job (``backend.access.check_action`` has the rules)."""

    CANCEL = "cancel"  # on the job's status message: owner, admins, guild admins of its guild
    REROLL = "reroll"  # on a result message: anyone in that chat (the new job is theirs)
    VARIATION = "variation"  # likewise, seed + 1
    ORIGINAL = "original"  # the PNG file, on a result message: anyone in that chat
    DELETE = "delete"  # the image, prompt and files, on a result message: owner and admins
    GET = "get"  # the image again (from /history): the owner and global admins, anywhere


@dataclass(frozen=True)
class Options:
    """Generation options as a user gave them; ``None`` = not given (a default applies).

    The one options type: parsed commands, requests, per-user defaults (which never carry a seed)
    and the store's encoding of defaults all use it. Size is either ``aspect`` ("16:9") or
    ``width``/``height``, and counts as one option: giving any part of it replaces a whole
    default size. Values are checked against the limits by the backend, not here.
    """

    seed: int | None = None
    steps: int | None = None
    width: int | None = None
    height: int | None = None
    aspect: str | None = None
    guidance: float | None = None
    spoiler: bool | None = None  # --spoiler: show the image behind a spoiler (issue 16)

    @property
    def is_empty(self) -> bool:
        return self == Options()

    @property
    def has_size(self) -> bool:
        return self.width is not None or self.height is not None or self.aspect is not None

    def given(self) -> dict[str, int | float | str]:
        """The options that are set, by field name."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: value for name, value in values.items() if value is not None}

    def over(self, base: Options) -> Options:
        """These options on top of ``base``: each given value wins; a given size wins whole."""
        size = self if self.has_size else base
        return Options(
            seed=self.seed if self.seed is not None else base.seed,
            steps=self.steps if self.steps is not None else base.steps,
            width=size.width,
            height=size.height,
            aspect=size.aspect,
            guidance=self.guidance if self.guidance is not None else base.guidance,
            spoiler=self.spoiler if self.spoiler is not None else base.spoiler,
        )


@dataclass(frozen=True)
class ImagineRequest:
    """A user's request as the adapter parsed it; the backend resolves and validates it.

    ``idempotency_key`` names the platform event that caused it (``"telegram:update:123"``,
    ``"discord:interaction:456"``): a second submit with the same key returns the first job.
    """

    prompt: str
    requester: Requester
    reply_to: ReplyTarget
    options: Options = Options()
    parent_job_id: str | None = None  # set for rerolls and variations
    idempotency_key: str | None = None


@dataclass(frozen=True)
class UserSettings:
    """What ``/settings`` shows: the user's defaults and the values ``/imagine`` will use."""

    defaults: Options  # never carries a seed
    steps: int
    width: int
    height: int
    guidance: float


@dataclass(frozen=True)
class GenerationParams:
    """Fully resolved, validated parameters of one generation: what the engine receives."""

    prompt: str
    seed: int
    steps: int
    width: int
    height: int
    guidance: float


class Delivery(StrEnum):
    """How a finished image reaches the chat; decided after the safety check, stored with the job.

    ``backend.content.policy`` decides it from the user's ``--spoiler``, the classifier's verdict
    and the chat's policy.
    """

    SHOW = "show"  # sent as is
    SPOILER = "spoiler"  # sent behind a spoiler (Telegram has_spoiler, Discord SPOILER_ file)
    WITHHELD = "withheld"  # kept on disk for admins, not sent; the user is told why


class JobStatus(StrEnum):
    """Lifecycle of a job. Terminal states never change again."""

    QUEUED = "queued"  # committed to SQLite, waiting for a worker
    RUNNING = "running"  # a worker's engine call is in progress
    SUCCEEDED = "succeeded"  # image written to disk and recorded
    FAILED = "failed"  # engine error, OOM, or interrupted twice; error_key says why
    CANCELLED = "cancelled"  # cancelled by its user or an admin

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class Timings:
    """Where the seconds of one job went."""

    wait_s: float = 0.0
    text_encode_s: float = 0.0
    denoise_s: float = 0.0
    decode_s: float = 0.0

    @property
    def generate_s(self) -> float:
        return self.text_encode_s + self.denoise_s + self.decode_s


@dataclass(frozen=True)
class Job:
    """One accepted request and everything that happened to it, as stored in SQLite."""

    id: str  # short, URL-safe, fits in Telegram callback_data and Discord custom_id
    params: GenerationParams
    requester: Requester
    reply_to: ReplyTarget
    status: JobStatus
    created_at: float  # unix seconds
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    result_path: Path | None = None
    error_key: str | None = None
    error_detail: str | None = None
    timings: Timings | None = None
    worker: str | None = None  # device that ran it
    prompt_truncated: bool = False
    delivered_at: float | None = None
    parent_job_id: str | None = None
    idempotency_key: str | None = None  # the platform event that asked for it (unique)
    # Content controls (issue 16): the user's --spoiler, the safety check's verdict (None: not
    # checked) and score, and how the image is delivered.
    spoiler: bool = False
    flagged: bool | None = None
    safety_score: float | None = None
    delivery: Delivery = Delivery.SHOW

    @property
    def shows_image(self) -> bool:
        """A finished image that may be sent to the chat (not withheld by the content policy)."""
        return (
            self.status is JobStatus.SUCCEEDED
            and self.result_path is not None
            and self.delivery is not Delivery.WITHHELD
        )


# ---- job events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    """Waiting. ``warming_percent`` is set while the engine is still loading; ``unavailable``
    once every engine failed to load (the jobs stay queued for a restart with working weights).
    """

    job_id: str
    position: int  # 1 = next to run
    eta_s: float | None  # seconds until the job finishes; None without any measurement yet
    warming_percent: float | None = None
    # A translation key (``error.model_files``, ``error.profile_fit``, ``error.engine``) saying
    # why no engine can run jobs: no paths or tracebacks (those are in /status for admins).
    unavailable: str | None = None


@dataclass(frozen=True)
class Started:
    job_id: str
    worker: str


@dataclass(frozen=True)
class Progress:
    """Denoising step ``step`` of ``total`` done; ``step == total`` means decoding/finishing."""

    job_id: str
    step: int  # 1-based, completed denoising steps
    total: int
    eta_s: float | None  # seconds left, the decode included; None without a measurement


@dataclass(frozen=True)
class Succeeded:
    job_id: str
    image_path: Path
    timings: Timings


@dataclass(frozen=True)
class Failed:
    job_id: str
    reason_key: str  # translation key
    detail: str  # for logs and admins


@dataclass(frozen=True)
class Cancelled:
    job_id: str


JobEvent = Queued | Started | Progress | Succeeded | Failed | Cancelled
TERMINAL_EVENTS = (Succeeded, Failed, Cancelled)


@dataclass(frozen=True)
class Submission:
    """What ``Service.submit`` returns once the job is on disk."""

    job: Job
    position: int
    eta_s: float | None
    existing: bool = False  # the idempotency key named a job submitted before


@dataclass(frozen=True)
class Availability:
    """Engine state every waiting job shares (what a follower re-reads when it changes)."""

    warming_percent: float | None  # 0..100 while no engine is ready yet, in coarse steps
    unavailable: str | None  # a user-safe key once every engine failed to load


# ---- status snapshot --------------------------------------------------------------------------


class LoadState(StrEnum):
    PENDING = "pending"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class ComponentState:
    """Load state of one model component (clip, t5, vae, dit) on one worker."""

    name: str
    state: LoadState = LoadState.PENDING
    bytes_read: int = 0
    bytes_total: int = 0
    seconds: float = 0.0
    device: str = ""  # where its weights rest: "cpu", "cuda:0"
    dtype: str = ""  # "bfloat16", "float8_e4m3fn"
    error: str | None = None

    @property
    def fraction(self) -> float:
        if self.state is LoadState.READY:
            return 1.0
        return self.bytes_read / self.bytes_total if self.bytes_total else 0.0


class Optimization(StrEnum):
    """Where an engine's compiled (faster) path stands. The engine serves from the moment it is
    ready, eager at first; compilation never blocks a job."""

    OFF = "off"  # not compiled: engine.compile = false, the CPU, or a streaming profile
    OPTIMIZING = "optimizing"  # compiling in a background thread; jobs run eager meanwhile
    OPTIMIZED = "optimized"  # compiled; jobs from the next one on run the compiled path
    FAILED = "failed"  # compilation failed; jobs keep running eager (detail says why)


@dataclass(frozen=True)
class OptimizationState:
    """What ``/status`` shows as "optimizing…" / "optimized" for one engine."""

    phase: Optimization = Optimization.OFF
    detail: str = ""  # what is compiled (path, mode, sizes) or why it is off / failed
    sizes_done: int = 0  # image sizes compiled so far (each aspect ratio is one shape)
    sizes_total: int = 0
    compile_s: float | None = None  # wall seconds of the background compile, once done
    cache: str = ""  # "cold", or "warm" when saved compile artefacts were loaded first


@dataclass(frozen=True)
class EngineState:
    """Snapshot of one engine (one worker's pipeline)."""

    device: str
    device_name: str = ""
    profile: str = ""  # chosen placement profile, e.g. "balanced"
    profile_reason: str = ""  # why auto chose it
    components: tuple[ComponentState, ...] = ()
    warmed_up: bool = False
    error: str | None = None
    vram_used_bytes: int | None = None
    vram_total_bytes: int | None = None
    optimization: OptimizationState = OptimizationState()
    node: str = ""  # the host of a Ray actor (``backend.cluster``); "" in this process
    restarts: int = 0  # times Ray restarted the actor after its process died

    @property
    def ready(self) -> bool:
        return self.warmed_up and self.error is None

    @property
    def load_fraction(self) -> float:
        """0..1 over all components by bytes; warm-up counts as the last 5 %."""
        total = sum(c.bytes_total for c in self.components)
        done = sum(
            c.bytes_total if c.state is LoadState.READY else c.bytes_read for c in self.components
        )
        loaded = done / total if total else 0.0
        return 1.0 if self.warmed_up else min(0.95 * loaded, 0.95)


@dataclass(frozen=True)
class RunningJob:
    job_id: str
    worker: str
    step: int
    total: int
    requester: Requester


class Component(StrEnum):
    """What part of the service a ``Fault`` is about."""

    STORE = "store"  # the SQLite job database: a write failed (locked, disk full, read-only)
    DISK = "disk"  # the image folder: writing a result PNG failed
    ENGINE = "engine"  # an engine call stalled (no denoising step within the stall timeout)
    WORKER = "worker"  # a worker's loop raised and was restarted


@dataclass(frozen=True)
class Fault:
    """Something failing now (``backend.health``); cleared by the next success of the same kind."""

    component: Component
    where: str  # the worker's name, or "" for the whole service
    detail: str  # for admins: the error, the path, the job
    since: float  # unix seconds of the first failure of this run of failures
    count: int = 1  # failures since then


@dataclass(frozen=True)
class StatusSnapshot:
    """Everything /status shows, in one frozen object. ``faults`` non-empty: degraded."""

    engines: tuple[EngineState, ...]
    queue_length: int
    running: tuple[RunningJob, ...]
    done_last_hour: int
    failed_last_hour: int
    mean_s_per_image_last_hour: float | None
    uptime_s: float
    process_rss_bytes: int
    accepting: bool
    versions: tuple[tuple[str, str], ...] = ()
    faults: tuple[Fault, ...] = ()
    taken_at: float = 0.0  # unix seconds (the ages of ``faults`` are counted from it)
    content: ContentStatus | None = None  # content controls (issue 16); None: not reported


class SafetyState(StrEnum):
    """The image safety check's state, for /status."""

    OFF = "off"  # content.image_check = false
    MISSING = "missing"  # enabled, but the classifier's files are absent (`majicbot download`)
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"  # the files are there but would not load


class ChatPolicy(StrEnum):
    """What a chat does with an image the safety check flags."""

    ALLOW = "allow"  # sent as is
    SPOILER = "spoiler"  # sent behind a spoiler
    BLOCK = "block"  # withheld (kept for admins), the user is told why


@dataclass(frozen=True)
class ContentStatus:
    """The content controls' part of /status: state of the checks and what they did lately."""

    prompt_rules: int  # blocked terms and patterns in force; 0 = prompt check off
    image_check: SafetyState
    image_check_error: str | None
    default_policy: ChatPolicy
    prompts_refused_last_hour: int
    images_flagged_last_hour: int
    images_withheld_last_hour: int


class HistoryScope(StrEnum):
    """Whose jobs ``Service.history`` lists; CHAT and ALL are for admins."""

    USER = "user"  # the requester's own jobs, wherever they asked
    USER_IN_CHAT = "user_in_chat"  # the requester's own jobs in this chat (a group's /history)
    CHAT = "chat"  # everyone's jobs in this chat (admins)
    ALL = "all"  # everyone's jobs (admins)
