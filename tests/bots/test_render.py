"""``bots.render``: whole rendered texts for status, progress lines, captions and history."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.domain import (
    Cancelled,
    ComponentState,
    EngineState,
    Failed,
    GenerationParams,
    Job,
    JobStatus,
    LoadState,
    Platform,
    Progress,
    Queued,
    ReplyTarget,
    Requester,
    RunningJob,
    Started,
    StatusSnapshot,
    Succeeded,
    Timings,
)
from bots.render import (
    CAPTION_LIMIT,
    format_bytes,
    format_duration,
    progress_bar,
    render_caption,
    render_event,
    render_history,
    render_status,
)

GIB = 1024**3
ALICE = Requester(Platform.TELEGRAM, "1", display_name="alice", chat_id="1")


def _job(prompt: str = "a red fox", **changes: object) -> Job:
    params = GenerationParams(
        prompt=prompt, seed=42, steps=28, width=1024, height=768, guidance=3.5
    )
    values: dict[str, object] = {
        "id": "abc123",
        "params": params,
        "requester": ALICE,
        "reply_to": ReplyTarget("1"),
        "status": JobStatus.SUCCEEDED,
        "created_at": 1000.0,
        "timings": Timings(wait_s=1, text_encode_s=0.5, denoise_s=10.0, decode_s=1.8),
        "result_path": Path("x.png"),
    }
    values.update(changes)
    return Job(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "en", "zh"),
    [
        (0, "0 s", "0 秒"),
        (39.2, "40 s", "40 秒"),
        (60, "1 min", "1 分钟"),
        (185, "3 min 5 s", "3 分 5 秒"),
        (1500, "25 min", "25 分钟"),
        (7500, "2 h 5 min", "2 小时 5 分钟"),
        (90000, "1 d 1 h", "1 天 1 小时"),
    ],
)
def test_format_duration(seconds: float, en: str, zh: str) -> None:
    assert (format_duration(seconds, "en"), format_duration(seconds, "zh")) == (en, zh)


def test_format_bytes_and_bar() -> None:
    sizes = (512, 1536, int(23.8 * GIB))
    assert [format_bytes(n) for n in sizes] == ["512 B", "1.5 KiB", "23.8 GiB"]
    assert [progress_bar(f) for f in (0, 0.5, 1, 7)] == [
        "░░░░░░░░░░",
        "█████░░░░░",
        "██████████",
        "██████████",
    ]


@pytest.mark.parametrize(
    ("event", "en", "zh"),
    [
        (Queued("j", 3, 40.0), "Queued, position 3, about 40 s", "已排队，第 3 位，大约 40 秒"),
        (Queued("j", 1, None), "Queued, position 1", "已排队，第 1 位"),
        (Queued("j", 1, None, 63.7), "Warming up the model: 63 %", "模型预热中：63 %"),
        (
            Queued("j", 1, None, None, "error.model_files"),
            "The image service is not available right now, so your request stays queued (an "
            "admin has been told): The model files are missing on the server; an admin has to "
            "fix this.",
            "图片服务暂时不可用，你的请求会继续排队（已通知管理员）：服务器上缺少模型文件，需要管理员处理。",
        ),
        (Started("j", "cuda:0"), "Starting…", "开始生成…"),
        (
            Progress("j", 12, 28, 9.0),
            "Step 12/28 · 42 % · about 9 s left",
            "第 12/28 步 · 42 % · 还需约 9 秒",
        ),
        (Progress("j", 28, 28, 3.0), "Step 28/28 · finishing…", "第 28/28 步 · 正在收尾…"),
        (
            Succeeded("j", Path("x"), Timings(denoise_s=12.34)),
            "Done in 12.3 s.",
            "完成，用时 12.3 秒。",
        ),
        (
            Failed("j", "error.oom", "CUDA"),
            "Sorry, the image failed: The server ran out of GPU memory. "
            "Try a smaller size or fewer steps.",
            "抱歉，图片生成失败：服务器显存不足。请换小一点的尺寸或更少的步数。",
        ),
        (Cancelled("j"), "Cancelled.", "已取消。"),
    ],
)
def test_event_lines(event: Queued, en: str, zh: str) -> None:
    assert (render_event(event, "en"), render_event(event, "zh")) == (en, zh)


def test_caption() -> None:
    assert render_caption(_job(), "en") == (
        "a red fox\nSeed 42 · 28 steps · 1024×768 · 12.3 s · #abc123"
    )
    assert render_caption(_job(timings=None), "zh") == (
        "a red fox\n种子 42 · 28 步 · 1024×768 · #abc123"
    )


def test_long_prompt_is_shortened_to_fit_the_caption_limit() -> None:
    caption = render_caption(_job("word " * 400), "en")
    assert len(caption) == CAPTION_LIMIT
    first, details = caption.split("\n")
    assert first.endswith("word…")
    assert details == "Seed 42 · 28 steps · 1024×768 · 12.3 s · #abc123"


def test_history() -> None:
    jobs = [_job(), _job("a very long prompt " * 10, id="def456", status=JobStatus.FAILED)]
    assert render_history(jobs, "en", now=1300.0) == "\n".join(
        [
            "Your last 2 jobs:",
            "#abc123 · done · seed 42 · 5 min ago · a red fox",
            "#def456 · failed · seed 42 · 5 min ago · "
            "a very long prompt a very long prompt a very long prompt a…",
        ]
    )
    assert render_history([], "zh", now=0) == "还没有图片。试试 /imagine 一只戴小帽子的猫"


def test_status_while_loading() -> None:
    engine = EngineState(
        device="cuda:0",
        device_name="NVIDIA H100",
        profile="balanced",
        profile_reason="79 GiB free",
        components=(
            ComponentState("clip", LoadState.READY, 246, 246, 0.4, "cpu", "bfloat16"),
            ComponentState("t5", LoadState.LOADING, 3 * GIB, 9 * GIB),
            ComponentState("dit", LoadState.PENDING, 0, 12 * GIB),
        ),
        vram_used_bytes=2 * GIB,
        vram_total_bytes=80 * GIB,
    )
    snapshot = StatusSnapshot(
        engines=(engine,),
        queue_length=2,
        running=(RunningJob("abc", "cuda:0", 3, 28, ALICE),),
        done_last_hour=5,
        failed_last_hour=1,
        mean_s_per_image_last_hour=12.0,
        uptime_s=3700,
        process_rss_bytes=3 * GIB,
        accepting=True,
    )
    assert render_status(snapshot, "en") == "\n".join(
        [
            "majicbot status",
            "Engine cuda:0 NVIDIA H100",
            "Profile: balanced (79 GiB free)",
            "Loading: █░░░░░░░░░ 13 %",
            "VRAM: 2.0 GiB / 80.0 GiB",
            "  clip: ready in 0.4 s on cpu bfloat16",
            "  t5: ███░░░░░░░ 33 % (3.0 GiB / 9.0 GiB)",
            "  dit: waiting",
            "Queue: 2 waiting",
            "Running: #abc step 3/28 on cuda:0 for alice",
            "Last hour: 5 done, 1 failed, 12 s per image",
            "Uptime: 1 h 1 min · memory 3.0 GiB",
        ]
    )


def test_status_before_engines_exist_in_chinese() -> None:
    snapshot = StatusSnapshot(
        engines=(),
        queue_length=0,
        running=(),
        done_last_hour=0,
        failed_last_hour=0,
        mean_s_per_image_last_hour=None,
        uptime_s=2,
        process_rss_bytes=100 * 1024**2,
        accepting=False,
    )
    assert render_status(snapshot, "zh") == "\n".join(
        [
            "majicbot 状态",
            "正在停止，不再接受新任务。",
            "引擎：启动中（正在导入程序库）…",
            "队列：0 个等待中",
            "运行中：无",
            "最近一小时：完成 0，失败 0",
            "运行时间：2 秒 · 内存 100.0 MiB",
        ]
    )


def test_status_shows_the_background_optimization() -> None:
    from backend.domain import Optimization, OptimizationState
    from bots.render import render_optimization

    optimizing = OptimizationState(Optimization.OPTIMIZING, sizes_done=2, sizes_total=7)
    optimized = OptimizationState(Optimization.OPTIMIZED, compile_s=17.14, cache="warm")
    failed = OptimizationState(Optimization.FAILED, detail="inductor: out of memory")
    assert render_optimization(optimizing, "en") == (
        "Optimizing in the background (jobs run meanwhile): 2/7 sizes"
    )
    assert render_optimization(optimized, "en") == "Optimized: compiled in 17.1 s (warm cache)"
    assert render_optimization(failed, "en").endswith("inductor: out of memory")
    assert render_optimization(OptimizationState(), "en") == ""


def test_status_names_each_ray_actor_with_its_node_and_restarts() -> None:
    from bots.render import render_engine

    placed = EngineState(
        device="ray-1 (GPU 3)", device_name="NVIDIA H200", node="gpu-box-2 10.0.0.7",
        warmed_up=True,
    )  # fmt: skip
    restarted = EngineState(device="ray-2 (GPU 0)", node="gpu-box-3 10.0.0.8", restarts=2)
    assert render_engine(placed, "en")[:3] == [
        "Engine ray-1 (GPU 3) NVIDIA H200",
        "Node: gpu-box-2 10.0.0.7",
        "Ready",
    ]
    assert render_engine(restarted, "en")[1] == (
        "Node: gpu-box-3 10.0.0.8 (its process was restarted 2 times)"
    )
    assert render_engine(restarted, "zh")[1] == "节点：gpu-box-3 10.0.0.8（进程已重启 2 次）"
    once = EngineState(device="ray-2 (GPU 0)", node="n 10.0.0.8", restarts=1)
    assert render_engine(once, "en")[1] == "Node: n 10.0.0.8 (its process was restarted once)"
    assert render_engine(EngineState(device="cuda:0"), "en")[1].startswith("Loading")
