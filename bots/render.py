"""Plain-text rendering shared by the chat adapters and the CLI: status, progress, captions.

Everything here is pure (no I/O, no clock: callers pass ``now``) and markup-agnostic; adapters
escape the result for their platform if they send it as HTML/Markdown.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from backend.domain import (
    Cancelled,
    ChatPolicy,
    ComponentState,
    ContentStatus,
    EngineState,
    Failed,
    Fault,
    Job,
    JobEvent,
    JobStatus,
    LoadState,
    Optimization,
    OptimizationState,
    Progress,
    Queued,
    RunningJob,
    Started,
    StatusSnapshot,
    Succeeded,
    UserSettings,
)
from bots.i18n import translate

CAPTION_LIMIT = 1024  # Telegram photo captions
ELLIPSIS = "…"


def format_duration(seconds: float, lang: str) -> str:
    """A short human duration: "40 s", "3 min 5 s", "2 h 5 min", "3 d 4 h" (localized)."""
    total = max(0, math.ceil(seconds))
    if total < 60:
        return translate("unit.seconds", lang, n=total)
    minutes, secs = divmod(total, 60)
    if minutes < 10:
        if secs == 0:
            return translate("unit.minutes", lang, n=minutes)
        return translate("unit.minutes_seconds", lang, m=minutes, s=secs)
    if minutes < 60:
        return translate("unit.minutes", lang, n=minutes)
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return translate("unit.hours_minutes", lang, h=hours, m=minutes)
    days, hours = divmod(hours, 24)
    return translate("unit.days_hours", lang, d=days, h=hours)


def format_bytes(count: int) -> str:
    """Binary units with one decimal: "512 B", "1.5 KiB", "23.8 GiB"."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_seconds(seconds: float) -> str:
    """Seconds with one decimal, as in captions: "12.3"."""
    return f"{seconds:.1f}"


def progress_bar(fraction: float, width: int = 10) -> str:
    """``█████░░░░░`` for 0.5; the fraction is clamped to 0..1."""
    filled = round(min(max(fraction, 0.0), 1.0) * width)
    return "█" * filled + "░" * (width - filled)


def percent(fraction: float) -> int:
    """Whole percent, clamped to 0..100, never showing 100 before the end."""
    value = math.floor(min(max(fraction, 0.0), 1.0) * 100)
    return value


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" when cut."""
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    return text[: limit - 1].rstrip() + ELLIPSIS


# ---- job progress -----------------------------------------------------------------------------


def render_event(event: JobEvent, lang: str) -> str:
    """The status-message line for one job event."""
    if isinstance(event, Queued):
        return render_queued(event, lang)
    if isinstance(event, Started):
        return translate("job.started", lang)
    if isinstance(event, Progress):
        return render_progress(event, lang)
    if isinstance(event, Succeeded):
        return translate("job.done", lang, seconds=format_seconds(event.timings.generate_s))
    if isinstance(event, Failed):
        return translate("job.failed", lang, reason=translate(event.reason_key, lang))
    if isinstance(event, Cancelled):
        return translate("job.cancelled", lang)
    raise TypeError(f"not a job event: {event!r}")  # programming error


def render_queued(event: Queued, lang: str) -> str:
    """ "Warming up the model: 63 %" while loading, else "Queued, position 3, about 40 s".

    When no engine can run (it failed to load), the user is told so, not "position 1" forever.
    """
    if event.unavailable is not None:
        return translate("job.unavailable", lang, reason=translate(event.unavailable, lang))
    if event.warming_percent is not None:
        return translate("job.warming", lang, percent=math.floor(event.warming_percent))
    if event.eta_s is None:
        return translate("job.queued_no_eta", lang, position=event.position)
    eta = format_duration(event.eta_s, lang)
    return translate("job.queued", lang, position=event.position, eta=eta)


def render_progress(event: Progress, lang: str) -> str:
    """ "Step 12/28 · 43 % · about 9 s left"; after the last step, "finishing…" (the decode)."""
    if event.total and event.step >= event.total:
        return translate("job.finishing", lang, step=event.step, total=event.total)
    done = percent(event.step / event.total if event.total else 0.0)
    if event.eta_s is None:
        return translate(
            "job.progress_no_eta", lang, step=event.step, total=event.total, percent=done
        )
    eta = format_duration(event.eta_s, lang)
    return translate(
        "job.progress", lang, step=event.step, total=event.total, percent=done, eta=eta
    )


def render_final(job: Job, lang: str) -> str:
    """The sentence for a job that ended without an image (failed or cancelled)."""
    if job.status is JobStatus.CANCELLED:
        return translate("job.cancelled", lang)
    if job.status is JobStatus.SUCCEEDED:  # issue 16: withheld by the chat's content policy
        return translate("content.withheld", lang, job_id=job.id)
    reason = translate(job.error_key or "error.engine", lang)
    return translate("job.failed", lang, reason=reason)


# ---- captions ---------------------------------------------------------------------------------


def render_caption(job: Job, lang: str, limit: int = CAPTION_LIMIT) -> str:
    """Prompt (shortened to fit ``limit``), then seed · steps · size · seconds · job id."""
    p = job.params
    common = {"seed": p.seed, "steps": p.steps, "width": p.width, "height": p.height}
    if job.timings is not None:
        seconds = format_seconds(job.timings.generate_s)
        details = translate("caption.params", lang, seconds=seconds, job_id=job.id, **common)
    else:
        details = translate("caption.params_no_time", lang, job_id=job.id, **common)
    room = limit - len(details) - 1  # the newline between prompt and details
    prompt = shorten(p.prompt, room)
    return f"{prompt}\n{details}" if prompt else details[:limit]


# ---- settings ---------------------------------------------------------------------------------


def render_settings(settings: UserSettings, lang: str) -> str:
    """The values a bare /imagine uses, each marked as the user's own or the server's default."""
    mine = settings.defaults

    def source(own: bool) -> str:
        return translate("settings.yours" if own else "settings.server", lang)

    own = {
        "steps": source(mine.steps is not None),
        "size": source(mine.aspect is not None or mine.width is not None),
        "guidance": source(mine.guidance is not None),
    }
    size = {"width": settings.width, "height": settings.height, "source": own["size"]}
    if mine.aspect is not None:
        size_line = translate("settings.size_aspect", lang, aspect=mine.aspect, **size)
    else:
        size_line = translate("settings.size", lang, **size)
    lines = [
        translate("settings.title", lang),
        translate("settings.steps", lang, value=settings.steps, source=own["steps"]),
        size_line,
        translate("settings.guidance", lang, value=settings.guidance, source=own["guidance"]),
    ]
    return "\n".join(lines)


# ---- history ----------------------------------------------------------------------------------


def render_history_line(job: Job, lang: str, now: float, prompt_chars: int = 60) -> str:
    """ "#abc123 · done · seed 42 · 5 min ago · a red fox…"."""
    return translate(
        "history.line",
        lang,
        job_id=job.id,
        status=translate(f"history.job.{job.status.value}", lang),
        seed=job.params.seed,
        age=format_duration(max(0.0, now - job.created_at), lang),
        prompt=shorten(job.params.prompt, prompt_chars),
    )


def render_history(
    jobs: Sequence[Job], lang: str, now: float, header_key: str = "history.header"
) -> str:
    """A header and one line per job, newest first as given; an invitation when empty."""
    if not jobs:
        return translate("history.empty", lang)
    lines = [translate(header_key, lang, count=len(jobs))]
    lines += [render_history_line(job, lang, now) for job in jobs]
    return "\n".join(lines)


# ---- status -----------------------------------------------------------------------------------


def render_component(component: ComponentState, lang: str) -> str:
    """One line per model component: a bar while loading, seconds and placement when ready."""
    name = component.name
    if component.state is LoadState.LOADING:
        return translate(
            "status.component_loading",
            lang,
            name=name,
            bar=progress_bar(component.fraction),
            percent=percent(component.fraction),
            read=format_bytes(component.bytes_read),
            total=format_bytes(component.bytes_total),
        )
    if component.state is LoadState.READY:
        return translate(
            "status.component_ready",
            lang,
            name=name,
            seconds=format_seconds(component.seconds),
            device=component.device,
            dtype=component.dtype,
        ).rstrip()
    if component.state is LoadState.FAILED:
        error = component.error or ""
        return translate("status.component_failed", lang, name=name, error=error)
    state = translate("status.state.pending", lang)
    return translate("status.component", lang, name=name, state=state)


def render_engine(engine: EngineState, lang: str) -> list[str]:
    """Header, profile, load state, VRAM and components of one engine."""
    lines = [translate("status.engine", lang, device=engine.device, name=engine.device_name)]
    if engine.node and engine.restarts:
        key = "status.node_restarted"
        lines.append(translate(key, lang, node=engine.node, restarts=engine.restarts))
    elif engine.node:
        lines.append(translate("status.node", lang, node=engine.node))
    if engine.profile:
        if engine.profile_reason:
            lines.append(
                translate(
                    "status.profile_reason",
                    lang,
                    profile=engine.profile,
                    reason=engine.profile_reason,
                )
            )
        else:
            lines.append(translate("status.profile", lang, profile=engine.profile))
    if engine.error:
        lines.append(translate("status.engine_error", lang, error=engine.error))
    elif engine.ready:
        lines.append(translate("status.warmed", lang))
    else:
        fraction = engine.load_fraction
        bar = progress_bar(fraction)
        lines.append(translate("status.warming", lang, bar=bar, percent=percent(fraction)))
    optimization = render_optimization(engine.optimization, lang)
    if optimization:
        lines.append(optimization)
    if engine.vram_used_bytes is not None and engine.vram_total_bytes:
        used, total = format_bytes(engine.vram_used_bytes), format_bytes(engine.vram_total_bytes)
        lines.append(translate("status.vram", lang, used=used, total=total))
    lines += ["  " + render_component(c, lang) for c in engine.components]
    return [line.rstrip() for line in lines]


def render_optimization(state: OptimizationState, lang: str) -> str:
    """ "Optimizing… (2/7 sizes)", "Optimized (compiled in 17.1 s)", or why it failed; "" if off."""
    if state.phase is Optimization.OPTIMIZING:
        return translate("status.optimizing", lang, done=state.sizes_done, total=state.sizes_total)
    if state.phase is Optimization.OPTIMIZED:
        seconds = format_seconds(state.compile_s or 0.0)
        return translate("status.optimized", lang, seconds=seconds, cache=state.cache)
    if state.phase is Optimization.FAILED:
        return translate("status.optimize_failed", lang, error=state.detail)
    return ""


def render_running(job: RunningJob, lang: str) -> str:
    """ "Running: #abc step 12/28 on cuda:0 for alice"."""
    user = job.requester.display_name or job.requester.user_id
    return translate(
        "status.running",
        lang,
        job_id=job.job_id,
        step=job.step,
        total=job.total,
        worker=job.worker,
        user=user,
    )


def render_status(snapshot: StatusSnapshot, lang: str) -> str:
    """The whole /status text: engines, queue, running jobs, last hour, uptime."""
    lines = [translate("status.title", lang)]
    if not snapshot.accepting:
        lines.append(translate("status.stopping", lang))
    lines += [render_fault(fault, snapshot.taken_at, lang) for fault in snapshot.faults]
    if not snapshot.engines:
        lines.append(translate("status.no_engines", lang))
    for engine in snapshot.engines:
        lines += render_engine(engine, lang)
    lines.append(translate("status.queue", lang, count=snapshot.queue_length))
    if snapshot.running:
        lines += [render_running(job, lang) for job in snapshot.running]
    else:
        lines.append(translate("status.running_none", lang))
    lines.append(_render_throughput(snapshot, lang))
    if snapshot.content is not None:
        lines += render_content_status(snapshot.content, lang)
    uptime = format_duration(snapshot.uptime_s, lang)
    rss = format_bytes(snapshot.process_rss_bytes)
    lines.append(translate("status.uptime", lang, uptime=uptime, rss=rss))
    return "\n".join(lines)


def render_fault(fault: Fault, now: float, lang: str) -> str:
    """One failing part: what, where, since when (UTC) and for how long, and the error."""
    values = {
        "component": translate(f"status.component.{fault.component.value}", lang),
        "since": time.strftime("%H:%M:%S UTC", time.gmtime(fault.since)),
        "age": format_duration(max(0.0, now - fault.since), lang),
        "detail": fault.detail,
    }
    if fault.where:
        return translate("status.fault", lang, where=fault.where, **values)
    return translate("status.fault_service", lang, **values)


def render_policy(
    stored: ChatPolicy | None, effective: ChatPolicy, lang: str, *, changed: bool
) -> str:
    """/policy's answer: what this chat does with flagged images, and whether it is the default."""
    name = translate(f"policy.name.{effective.value}", lang)
    source = translate("policy.own" if stored is not None else "policy.default", lang)
    key = "policy.changed" if changed else "policy.current"
    return translate(key, lang, policy=name, source=source)


def render_content_status(content: ContentStatus, lang: str) -> list[str]:
    """The content controls in /status: rules in force, the image check, the last hour."""
    check = translate(f"status.content.check_{content.image_check.value}", lang)
    if content.image_check_error:
        check = f"{check} ({content.image_check_error})"
    return [
        translate("status.content.rules", lang, count=content.prompt_rules),
        translate(
            "status.content.image_check",
            lang,
            state=check,
            policy=translate(f"policy.name.{content.default_policy.value}", lang),
        ),
        translate(
            "status.content.counts",
            lang,
            refused=content.prompts_refused_last_hour,
            flagged=content.images_flagged_last_hour,
            withheld=content.images_withheld_last_hour,
        ),
    ]


def _render_throughput(snapshot: StatusSnapshot, lang: str) -> str:
    counts = {"done": snapshot.done_last_hour, "failed": snapshot.failed_last_hour}
    mean = snapshot.mean_s_per_image_last_hour
    if mean is None:
        return translate("status.throughput_none", lang, **counts)
    return translate("status.throughput", lang, mean=format_duration(mean, lang), **counts)
