"""Every user-facing sentence of majicbot, in English and Simplified Chinese.

``translate(key, lang, **params)`` never raises: an unknown key gives a generic sentence, a
missing parameter shows as ``?``, and both are logged. Keys are grouped by prefix:

    parse.*     command-text errors raised by ``bots.parsing``
    error.*     ``UserError`` / ``EngineError`` keys raised by the backend (``backend.errors`` and
                ``backend.validation``)
    job.*       status-message lines while a job waits and runs
    caption.*   the photo caption
    status.*    the /status snapshot
    history.*   /history
    settings.*  /settings (per-user defaults)
    ban.*       /ban and /unban (admins)
    cmd.*       command descriptions registered with the platforms
    button.*    inline/message buttons
    cb.*        short answers to button presses
    unit.*      durations and sizes
    discord.*   Discord-only: localized command/option names, access, delivery notes
"""

from __future__ import annotations

import logging
import string
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("majicbot.i18n")

LANGUAGES = ("en", "zh")
FALLBACK_KEY = "error.generic"

_EN: dict[str, str] = {
    # --- parsing
    "parse.usage": (
        "Tell me what to draw, for example:\n"
        "/imagine a red fox in the snow, golden hour --ar 16:9 --seed 42\n"
        "Options: --seed N, --steps N, --ar W:H or --size WxH, --guidance X."
    ),
    "parse.unknown_option": "I don't know the option {option}. Valid options: {known}.",
    "parse.missing_value": "The option {option} needs a value, for example: {example}",
    "parse.bad_value": "“{value}” is not a valid value for {option}. Valid form: {example}",
    "parse.duplicate": "The option {option} is given twice; keep one.",
    "parse.conflict": "Use either {first} or {second}, not both.",
    "parse.settings_usage": (
        "/settings shows your defaults for /imagine; /settings --steps 20 --ar 16:9 --guidance 4 "
        "sets them; /settings reset clears them."
    ),
    "parse.settings_prompt": (
        "/settings takes options only, not a prompt (“{text}”). "
        "For example: /settings --steps 20 --ar 16:9, or /settings reset."
    ),
    "parse.settings_seed": (
        "A default seed would give every image the same picture, so /settings does not take "
        "--seed. Give --seed to /imagine instead."
    ),
    # --- backend errors (backend/errors.py defaults)
    "error.generic": "Something went wrong. Please try again in a moment.",
    "error.invalid": "This request cannot be accepted; check the options and try again.",
    "error.access_denied": "Sorry, you are not allowed to do that.",
    "error.limit": "You have reached a limit; please wait a little and try again.",
    "error.job_not_found": "I can't find job #{job_id}.",
    "error.job_not_cancellable": "Job #{job_id} has already finished.",
    "error.stopping": "The bot is restarting and not taking new images right now. Try again soon.",
    "error.engine": "The image could not be generated. Please try again.",
    "error.model_files": "The model files are missing on the server; an admin has to fix this.",
    "error.engine_unavailable": "The image model could not be started; an admin has to fix this.",
    "error.profile_fit": "The model does not fit in the server's memory; an admin must fix this.",
    "error.oom": "The server ran out of GPU memory. Try a smaller size or fewer steps.",
    "error.cancelled": "The job was cancelled.",
    "error.prompt_empty": "The prompt is empty. Tell me what to draw.",
    "error.prompt_too_long": "The prompt has {length} characters; at most {max} are allowed.",
    "error.steps_range": "Steps must be between {min} and {max} (you asked for {value}).",
    "error.seed_range": "The seed must be between {min} and {max} (you gave {value}).",
    "error.guidance_range": "Guidance must be between {min} and {max} (you gave {value}).",
    "error.size_invalid": (
        "Width and height must each be a multiple of {multiple} between {min_side} and "
        "{max_side}, given together as --size WxH (or use --ar W:H instead)."
    ),
    "error.size_too_large": (
        "{width}×{height} is {pixels} pixels; at most {max_pixels} are allowed. "
        "Pick a smaller size."
    ),
    "error.aspect_unknown": "The aspect ratio {value} is not offered. Choose one of: {allowed}.",
    "error.banned": "Sorry, you are not allowed to use this bot.",
    "error.not_allowed": "Sorry, this bot is not available here.",
    "error.not_your_job": "Job #{job_id} is not yours.",
    "error.admin_only": "Only admins can do that.",
    "error.cannot_ban_admin": "User {user_id} is an admin; admins cannot be banned.",
    "error.user_queue_full": (
        "You already have {limit} jobs waiting or running. Wait for one to finish."
    ),
    "error.hourly_quota": (
        "You have used your {limit} images for this hour. Try again in {retry_after_s} s."
    ),
    "error.queue_full": "The queue is full ({limit} jobs). Please try again later.",
    "error.interrupted_twice": "The server restarted twice while drawing this image; giving up.",
    # --- job progress
    "job.received": "Queued…",
    "job.queued": "Queued, position {position}, about {eta}",
    "job.queued_no_eta": "Queued, position {position}",
    "job.warming": "Warming up the model: {percent} %",
    "job.started": "Starting…",
    "job.progress": "Step {step}/{total} · {percent} % · about {eta} left",
    "job.progress_no_eta": "Step {step}/{total} · {percent} %",
    "job.done": "Done in {seconds} s.",
    "job.failed": "Sorry, the image failed: {reason}",
    "job.cancelled": "Cancelled.",
    "job.delivered_late": "Here is your image from before the restart.",
    # --- caption
    "caption.params": "Seed {seed} · {steps} steps · {width}×{height} · {seconds} s · #{job_id}",
    "caption.params_no_time": "Seed {seed} · {steps} steps · {width}×{height} · #{job_id}",
    # --- /status
    "status.title": "majicbot status",
    "status.admin_only": "Sorry, /status is only for the bot's admins.",
    "status.no_engines": "Engine: starting (importing libraries)…",
    "status.engine": "Engine {device} {name}",
    "status.profile": "Profile: {profile}",
    "status.profile_reason": "Profile: {profile} ({reason})",
    "status.engine_error": "Engine error: {error}",
    "status.vram": "VRAM: {used} / {total}",
    "status.warmed": "Ready",
    "status.warming": "Loading: {bar} {percent} %",
    "status.component": "{name}: {state}",
    "status.component_loading": "{name}: {bar} {percent} % ({read} / {total})",
    "status.component_ready": "{name}: ready in {seconds} s on {device} {dtype}",
    "status.component_failed": "{name}: failed: {error}",
    "status.state.pending": "waiting",
    "status.state.loading": "loading",
    "status.state.ready": "ready",
    "status.state.failed": "failed",
    "status.queue": "Queue: {count} waiting",
    "status.running": "Running: #{job_id} step {step}/{total} on {worker} for {user}",
    "status.running_none": "Running: nothing",
    "status.throughput": "Last hour: {done} done, {failed} failed, {mean} per image",
    "status.throughput_none": "Last hour: {done} done, {failed} failed",
    "status.uptime": "Uptime: {uptime} · memory {rss}",
    "status.stopping": "Not accepting new jobs (stopping).",
    # --- /history
    "history.empty": "No images yet. Try /imagine a cat wearing a tiny hat",
    "history.header": "Your last {count} jobs:",
    "history.header_chat": "Last {count} jobs in this chat:",
    "history.header_all": "Last {count} jobs of everyone:",
    "history.line": "#{job_id} · {status} · seed {seed} · {age} ago · {prompt}",
    "history.hint": "Press a button below to get an image again.",
    "history.usage": "Usage: /history [n] (admins: /history chat [n] or /history all [n])",
    "history.job.queued": "queued",
    "history.job.running": "running",
    "history.job.succeeded": "done",
    "history.job.failed": "failed",
    "history.job.cancelled": "cancelled",
    # --- /cancel
    "cancel.done": "Cancelling #{job_id}.",
    "cancel.nothing": "You have no queued or running job.",
    # --- /settings
    "settings.title": "Your defaults for /imagine:",
    "settings.steps": "Steps: {value} {source}",
    "settings.size": "Size: {width}×{height} {source}",
    "settings.size_aspect": "Size: {aspect}, {width}×{height} {source}",
    "settings.guidance": "Guidance: {value} {source}",
    "settings.yours": "(yours)",
    "settings.server": "(server default)",
    "settings.saved": "Saved. Options you give to /imagine still win over these.",
    "settings.reset_done": "Your defaults are cleared; /imagine uses the server's again.",
    "settings.hint": "Change: /settings --steps 20 --ar 16:9 --guidance 4 · clear: /settings reset",
    # --- /ban /unban
    "ban.done": "{user} is banned: their next /imagine will be refused.",
    "ban.undone": "{user} may use the bot again.",
    "ban.usage": "Usage: /ban <user id>, or reply /ban to one of their messages.",
    "ban.unban_usage": "Usage: /unban <user id>, or reply /unban to one of their messages.",
    # --- /start /help
    "help.text": (
        "I draw pictures from text with FLUX.1.\n\n"
        "/imagine a lighthouse on a cliff at dawn, oil painting\n"
        "/imagine a cyberpunk street at night --ar 16:9 --seed 7\n"
        "/imagine a bowl of ramen --size 1024x768 --steps 20 --guidance 4\n\n"
        "Options: --seed N, --steps N, --ar W:H or --size WxH, --guidance X.\n"
        "/settings --steps 20 --ar 16:9 makes those your defaults.\n"
        "/history shows your last images, /cancel stops your running job."
    ),
    # --- command descriptions (≤256 chars for Telegram, ≤100 for Discord)
    "cmd.imagine": "Generate an image from a text prompt",
    "cmd.status": "Show the model and queue status (admins)",
    "cmd.history": "Your last images",
    "cmd.cancel": "Cancel your queued or running job",
    "cmd.help": "How to use this bot",
    "cmd.start": "Start",
    "cmd.settings": "Your default steps, size and guidance",
    "cmd.ban": "Ban a user from the bot (admins)",
    "cmd.unban": "Lift a user's ban (admins)",
    # --- buttons
    "button.cancel": "Cancel",
    "button.reroll": "🎲 Reroll",
    "button.variations": "Variations",
    "button.original": "Original PNG",
    "button.delete": "Delete",
    "button.get": "#{job_id}",
    # --- button answers --------------------------------------------------------------------------
    "cb.cancelling": "Cancelling…",
    "cb.queued": "Queued.",
    "cb.sending": "Sending…",
    "cb.deleted": "Deleted.",
    "cb.expired": "This button no longer works.",
    "cb.not_ready": "That image is not ready.",
    # --- units -----------------------------------------------------------------------------------
    "unit.seconds": "{n} s",
    "unit.minutes": "{n} min",
    "unit.minutes_seconds": "{m} min {s} s",
    "unit.hours_minutes": "{h} h {m} min",
    "unit.days_hours": "{d} d {h} h",
    # --- Discord only: command/option names and descriptions, access, delivery ---------------
    "discord.name.imagine": "imagine",
    "discord.name.status": "status",
    "discord.name.history": "history",
    "discord.name.cancel": "cancel",
    "discord.name.settings": "settings",
    "discord.name.ban": "ban",
    "discord.name.unban": "unban",
    "discord.opt.user": "user",
    "discord.opt.reset": "reset",
    "discord.optdesc.user": "The user",
    "discord.optdesc.reset": "Clear your defaults (before setting any options given here)",
    "discord.settings_hint": (
        "Change: /settings with steps, aspect or guidance · clear: /settings reset: True"
    ),
    "discord.opt.prompt": "prompt",
    "discord.opt.seed": "seed",
    "discord.opt.steps": "steps",
    "discord.opt.aspect": "aspect",
    "discord.opt.guidance": "guidance",
    "discord.opt.count": "count",
    "discord.opt.job": "job",
    "discord.optdesc.prompt": "What to draw; --seed/--steps/--ar/--size/--guidance flags work too",
    "discord.optdesc.seed": "Random seed; the same seed and prompt give the same image",
    "discord.optdesc.steps": "Denoising steps: more is slower and more detailed",
    "discord.optdesc.aspect": "Aspect ratio (width:height)",
    "discord.optdesc.guidance": "How closely to follow the prompt",
    "discord.optdesc.count": "How many jobs to list",
    "discord.optdesc.job": "Job id (default: your latest queued or running job)",
    "discord.delivered_in_channel": "{mention} your image is ready.",
    "discord.recompressed": (
        "The PNG is larger than Discord allows here, so this is a high-quality {format} instead."
    ),
    "discord.field.seed": "Seed",
    "discord.field.steps": "Steps",
    "discord.field.size": "Size",
    "discord.field.guidance": "Guidance",
    "discord.field.seconds": "Seconds",
    "discord.field.job": "Job",
    "discord.field.requester": "Asked by",
}

_ZH: dict[str, str] = {
    "parse.usage": (
        "请告诉我要画什么，例如：\n"
        "/imagine 雪地里的一只红狐狸，黄金时刻 --ar 16:9 --seed 42\n"
        "选项：--seed N、--steps N、--ar 宽:高 或 --size 宽x高、--guidance X。"
    ),
    "parse.unknown_option": "不认识选项 {option}。可用选项：{known}。",
    "parse.missing_value": "选项 {option} 需要一个值，例如：{example}",
    "parse.bad_value": "“{value}” 不是 {option} 的有效值。正确写法：{example}",
    "parse.duplicate": "选项 {option} 出现了两次，请只保留一个。",
    "parse.conflict": "{first} 和 {second} 只能用其中一个。",
    "parse.settings_usage": (
        "/settings 查看你的 /imagine 默认设置；/settings --steps 20 --ar 16:9 --guidance 4 "
        "设置它们；/settings reset 清除它们。"
    ),
    "parse.settings_prompt": (
        "/settings 只接受选项，不接受提示词（“{text}”）。"
        "例如：/settings --steps 20 --ar 16:9，或 /settings reset。"
    ),
    "parse.settings_seed": (
        "默认种子会让每张图片都一样，所以 /settings 不接受 --seed。请在 /imagine 里使用 --seed。"
    ),
    "error.generic": "出了点问题，请稍后再试。",
    "error.invalid": "无法接受这个请求，请检查选项后重试。",
    "error.access_denied": "抱歉，你没有权限这样做。",
    "error.limit": "你已达到使用上限，请稍等再试。",
    "error.job_not_found": "找不到任务 #{job_id}。",
    "error.job_not_cancellable": "任务 #{job_id} 已经结束了。",
    "error.stopping": "机器人正在重启，暂时不接受新的图片请求，请稍后再试。",
    "error.engine": "图片生成失败，请重试。",
    "error.model_files": "服务器上缺少模型文件，需要管理员处理。",
    "error.engine_unavailable": "图像模型无法启动，需要管理员处理。",
    "error.profile_fit": "服务器内存放不下模型，需要管理员处理。",
    "error.oom": "服务器显存不足。请换小一点的尺寸或更少的步数。",
    "error.cancelled": "任务已取消。",
    "error.prompt_empty": "提示词是空的，请告诉我要画什么。",
    "error.prompt_too_long": "提示词有 {length} 个字符，最多允许 {max} 个。",
    "error.steps_range": "步数必须在 {min} 到 {max} 之间（你输入的是 {value}）。",
    "error.seed_range": "种子必须在 {min} 到 {max} 之间（你输入的是 {value}）。",
    "error.guidance_range": "引导系数必须在 {min} 到 {max} 之间（你输入的是 {value}）。",
    "error.size_invalid": (
        "宽和高都必须是 {multiple} 的倍数，在 {min_side} 到 {max_side} 之间，"
        "并以 --size 宽x高 一起给出（或者改用 --ar 宽:高）。"
    ),
    "error.size_too_large": (
        "{width}×{height} 共 {pixels} 像素，最多允许 {max_pixels}。请选小一点的尺寸。"
    ),
    "error.aspect_unknown": "不支持宽高比 {value}。可选：{allowed}。",
    "error.banned": "抱歉，你不能使用这个机器人。",
    "error.not_allowed": "抱歉，这个机器人在这里不可用。",
    "error.not_your_job": "任务 #{job_id} 不是你的。",
    "error.admin_only": "只有管理员可以这样做。",
    "error.cannot_ban_admin": "用户 {user_id} 是管理员，不能封禁管理员。",
    "error.user_queue_full": "你已经有 {limit} 个任务在排队或生成中，请等其中一个完成。",
    "error.hourly_quota": "你本小时的 {limit} 张图片额度已用完，请 {retry_after_s} 秒后再试。",
    "error.queue_full": "队列已满（{limit} 个任务），请稍后再试。",
    "error.interrupted_twice": "生成这张图片时服务器重启了两次，已放弃。",
    "job.received": "已收到，排队中…",
    "job.queued": "已排队，第 {position} 位，大约 {eta}",
    "job.queued_no_eta": "已排队，第 {position} 位",
    "job.warming": "模型预热中：{percent} %",
    "job.started": "开始生成…",
    "job.progress": "第 {step}/{total} 步 · {percent} % · 还需约 {eta}",
    "job.progress_no_eta": "第 {step}/{total} 步 · {percent} %",
    "job.done": "完成，用时 {seconds} 秒。",
    "job.failed": "抱歉，图片生成失败：{reason}",
    "job.cancelled": "已取消。",
    "job.delivered_late": "这是重启前生成的图片。",
    "caption.params": "种子 {seed} · {steps} 步 · {width}×{height} · {seconds} 秒 · #{job_id}",
    "caption.params_no_time": "种子 {seed} · {steps} 步 · {width}×{height} · #{job_id}",
    "status.title": "majicbot 状态",
    "status.admin_only": "抱歉，/status 仅限管理员使用。",
    "status.no_engines": "引擎：启动中（正在导入程序库）…",
    "status.engine": "引擎 {device} {name}",
    "status.profile": "方案：{profile}",
    "status.profile_reason": "方案：{profile}（{reason}）",
    "status.engine_error": "引擎错误：{error}",
    "status.vram": "显存：{used} / {total}",
    "status.warmed": "就绪",
    "status.warming": "加载中：{bar} {percent} %",
    "status.component": "{name}：{state}",
    "status.component_loading": "{name}：{bar} {percent} %（{read} / {total}）",
    "status.component_ready": "{name}：已就绪，用时 {seconds} 秒，位于 {device} {dtype}",
    "status.component_failed": "{name}：失败：{error}",
    "status.state.pending": "等待中",
    "status.state.loading": "加载中",
    "status.state.ready": "就绪",
    "status.state.failed": "失败",
    "status.queue": "队列：{count} 个等待中",
    "status.running": "运行中：#{job_id} 第 {step}/{total} 步，{worker}，用户 {user}",
    "status.running_none": "运行中：无",
    "status.throughput": "最近一小时：完成 {done}，失败 {failed}，每张 {mean}",
    "status.throughput_none": "最近一小时：完成 {done}，失败 {failed}",
    "status.uptime": "运行时间：{uptime} · 内存 {rss}",
    "status.stopping": "正在停止，不再接受新任务。",
    "history.empty": "还没有图片。试试 /imagine 一只戴小帽子的猫",
    "history.header": "你最近的 {count} 个任务：",
    "history.header_chat": "本群最近的 {count} 个任务：",
    "history.header_all": "所有人最近的 {count} 个任务：",
    "history.line": "#{job_id} · {status} · 种子 {seed} · {age}前 · {prompt}",
    "history.hint": "点击下面的按钮可以再次获取图片。",
    "history.usage": "用法：/history [n]（管理员：/history chat [n] 或 /history all [n]）",
    "history.job.queued": "排队中",
    "history.job.running": "生成中",
    "history.job.succeeded": "完成",
    "history.job.failed": "失败",
    "history.job.cancelled": "已取消",
    "cancel.done": "正在取消 #{job_id}。",
    "cancel.nothing": "你没有排队中或生成中的任务。",
    "settings.title": "你的 /imagine 默认设置：",
    "settings.steps": "步数：{value}{source}",
    "settings.size": "尺寸：{width}×{height}{source}",
    "settings.size_aspect": "尺寸：{aspect}，{width}×{height}{source}",
    "settings.guidance": "引导系数：{value}{source}",
    "settings.yours": "（你的设置）",
    "settings.server": "（服务器默认）",
    "settings.saved": "已保存。在 /imagine 里直接给出的选项仍然优先。",
    "settings.reset_done": "你的默认设置已清除，/imagine 重新使用服务器的默认值。",
    "settings.hint": "修改：/settings --steps 20 --ar 16:9 --guidance 4 · 清除：/settings reset",
    "ban.done": "{user} 已被封禁：其下一次 /imagine 将被拒绝。",
    "ban.undone": "{user} 可以再次使用机器人了。",
    "ban.usage": "用法：/ban <用户 ID>，或回复对方的消息发送 /ban。",
    "ban.unban_usage": "用法：/unban <用户 ID>，或回复对方的消息发送 /unban。",
    "help.text": (
        "我用 FLUX.1 根据文字画图。\n\n"
        "/imagine 黎明时悬崖上的灯塔，油画\n"
        "/imagine 夜晚的赛博朋克街道 --ar 16:9 --seed 7\n"
        "/imagine 一碗拉面 --size 1024x768 --steps 20 --guidance 4\n\n"
        "选项：--seed N、--steps N、--ar 宽:高 或 --size 宽x高、--guidance X"
        "（也可以输入 ——seed）。\n"
        "/settings --steps 20 --ar 16:9 把这些设为你的默认值。\n"
        "/history 查看最近的图片，/cancel 取消正在进行的任务。"
    ),
    "cmd.imagine": "根据文字生成图片",
    "cmd.status": "查看模型和队列状态（管理员）",
    "cmd.history": "你最近的图片",
    "cmd.cancel": "取消你排队中或生成中的任务",
    "cmd.help": "使用说明",
    "cmd.start": "开始",
    "cmd.settings": "你的默认步数、尺寸和引导系数",
    "cmd.ban": "封禁用户（管理员）",
    "cmd.unban": "解除封禁（管理员）",
    "button.cancel": "取消",
    "button.reroll": "🎲 重新生成",
    "button.variations": "变体",
    "button.original": "原图 PNG",
    "button.delete": "删除",
    "button.get": "#{job_id}",
    "cb.cancelling": "正在取消…",
    "cb.queued": "已排队。",
    "cb.sending": "正在发送…",
    "cb.deleted": "已删除。",
    "cb.expired": "这个按钮已失效。",
    "cb.not_ready": "这张图片还没有准备好。",
    "unit.seconds": "{n} 秒",
    "unit.minutes": "{n} 分钟",
    "unit.minutes_seconds": "{m} 分 {s} 秒",
    "unit.hours_minutes": "{h} 小时 {m} 分钟",
    "unit.days_hours": "{d} 天 {h} 小时",
    "discord.name.imagine": "画图",
    "discord.name.status": "状态",
    "discord.name.history": "历史",
    "discord.name.cancel": "取消",
    "discord.name.settings": "设置",
    "discord.name.ban": "封禁",
    "discord.name.unban": "解封",
    "discord.opt.user": "用户",
    "discord.opt.reset": "重置",
    "discord.optdesc.user": "用户",
    "discord.optdesc.reset": "清除你的默认设置（在应用这里给出的选项之前）",
    "discord.settings_hint": "修改：/设置 加上 步数、比例 或 引导 · 清除：/设置 重置: True",
    "discord.opt.prompt": "提示词",
    "discord.opt.seed": "种子",
    "discord.opt.steps": "步数",
    "discord.opt.aspect": "比例",
    "discord.opt.guidance": "引导",
    "discord.opt.count": "数量",
    "discord.opt.job": "任务",
    "discord.optdesc.prompt": "要画什么；也可以写 --seed/--steps/--ar/--size/--guidance 选项",
    "discord.optdesc.seed": "随机种子；相同的种子和提示词会得到相同的图片",
    "discord.optdesc.steps": "去噪步数：越多越慢、细节越多",
    "discord.optdesc.aspect": "宽高比（宽:高）",
    "discord.optdesc.guidance": "遵循提示词的程度",
    "discord.optdesc.count": "列出多少个任务",
    "discord.optdesc.job": "任务编号（默认：你最近排队中或生成中的任务）",
    "discord.delivered_in_channel": "{mention} 你的图片好了。",
    "discord.recompressed": "PNG 超过了 Discord 在这里允许的大小，所以发送的是高质量的 {format}。",
    "discord.field.seed": "种子",
    "discord.field.steps": "步数",
    "discord.field.size": "尺寸",
    "discord.field.guidance": "引导",
    "discord.field.seconds": "秒",
    "discord.field.job": "任务",
    "discord.field.requester": "请求者",
}

MESSAGES: Mapping[str, Mapping[str, str]] = {"en": _EN, "zh": _ZH}


class _Params(dict[str, Any]):
    """Format mapping that shows ``?`` for a missing parameter instead of raising."""

    def __init__(self, key: str, params: Mapping[str, Any]) -> None:
        # Floats such as retry_after_s=1234.567 or guidance=3.5 read best with 4 significant digits.
        super().__init__({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in params.items()})
        self.key = key

    def __missing__(self, name: str) -> str:
        log.warning("translation %r lacks parameter %r", self.key, name)
        return "?"


def placeholders(template: str) -> set[str]:
    """Names of the ``{fields}`` a template interpolates."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def pick_language(code: str | None, default: str) -> str:
    """Map a platform language tag ("zh-hans", "zh-CN", "en-US", None) to "en" or "zh"."""
    fallback = default if default in LANGUAGES else "en"
    if not code:
        return fallback
    primary = code.strip().lower().replace("_", "-").split("-")[0]
    return primary if primary in LANGUAGES else fallback


def has_key(key: str) -> bool:
    """Whether ``key`` is translated (in English, the reference language)."""
    return key in _EN


def translate(key: str, lang: str, **params: Any) -> str:
    """The sentence ``key`` in ``lang`` with ``params`` filled in; never raises."""
    table = MESSAGES.get(lang) or _EN
    template = table.get(key) or _EN.get(key)
    if template is None:
        log.warning("missing translation key %r (lang %s, params %s)", key, lang, sorted(params))
        template = table[FALLBACK_KEY]
    try:
        return template.format_map(_Params(key, params))
    except (ValueError, IndexError, AttributeError) as exc:
        log.warning("translation %r failed to format: %s", key, exc)
        return table[FALLBACK_KEY]
