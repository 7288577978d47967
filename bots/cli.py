"""The ``majicbot`` command line: serve, imagine, download, status.

Exit status: 0 success, 1 runtime failure (generation failed, the engine cannot load or got
stuck, instance not running), 2 usage, configuration or start-up error (a sentence naming the
path, port or host and the fix: another instance on the data directory, a read-only or
unusable data directory, a status port in use, an unresolvable status host).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from backend.config import Config, load_config
from backend.domain import (
    CLI_REQUESTER,
    Cancelled,
    Failed,
    ImagineRequest,
    Platform,
    Progress,
    Queued,
    ReplyTarget,
    Requester,
    Started,
    Submission,
    Succeeded,
)
from backend.errors import ConfigError, MajicbotError, StartupError, UserError
from backend.logs import setup_logging

if TYPE_CHECKING:
    from backend.service import Service
    from bots.parsing import ParsedImagine

DEFAULT_CONFIG = Path("config.toml")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="majicbot",
        description="Self-hosted FLUX.1 text-to-image service for Telegram and Discord.",
    )
    config_help = f"TOML config file (default: {DEFAULT_CONFIG} if present, else built-in defaults)"
    parser.add_argument("--config", type=Path, default=None, help=config_help)
    # Also accepted after the command (`majicbot serve --config x.toml`); SUPPRESS keeps a value
    # given before the command when none is given after it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=config_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, parents=[common])

    serve = command("serve", "run the backend and every bot enabled in the config")
    serve.add_argument(
        "--backend-only",
        action="store_true",
        help="run without any chat bot (backend and status endpoint only)",
    )

    imagine = command("imagine", "generate one image from the command line")
    imagine.add_argument("prompt", help="what to draw")
    # Values are strings here: bots.parsing reads them by the same rules as the chat commands.
    imagine.add_argument("--seed", help="0..4294967295 (default: random)")
    imagine.add_argument("--steps", help="denoising steps (default from config)")
    size = imagine.add_mutually_exclusive_group()
    size.add_argument("--size", help="WIDTHxHEIGHT, multiples of 16, e.g. 1024x768")
    size.add_argument("--ar", help="aspect ratio such as 16:9 (about the default pixel count)")
    imagine.add_argument("--guidance", help="embedded guidance (default from config)")
    imagine.add_argument("-o", "--output", type=Path, help="copy the PNG here")

    download = command("download", "fetch the configured model weights into models/")
    download.add_argument(
        "--check", action="store_true", help="only verify the files already present"
    )

    command("status", "show the state of a running instance")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``majicbot`` console script."""
    args = build_parser().parse_args(argv)
    try:
        config = _load(args.config, require_tokens=args.command == "serve")
    except ConfigError as exc:
        print(f"majicbot: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    level = config.service.log_level
    if args.command != "serve" and level == "INFO":
        level = "WARNING"  # one-shot commands print their own progress
    setup_logging(level, _secrets(config))
    command = args.command
    if command == "serve":
        return _serve(config, backend_only=args.backend_only)
    if command == "imagine":
        return asyncio.run(_imagine(config, args, sys.stdout))
    if command == "download":
        from backend.download import run_download

        return run_download(config, check_only=args.check, out=sys.stdout)
    return asyncio.run(_status(config, sys.stdout))


def _load(path: Path | None, *, require_tokens: bool) -> Config:
    if path is None:
        path = DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None
    return load_config(path, require_tokens=require_tokens)


def _secrets(config: Config) -> list[str]:
    return [
        str(s)
        for s in (
            config.telegram.token,
            config.telegram.webhook_secret,
            config.discord.token,
            config.service.status_token,
        )
        if s
    ]


def _serve(config: Config, *, backend_only: bool) -> int:
    if not (config.telegram.enabled or config.discord.enabled or backend_only):
        print(
            "majicbot: no chat bot is enabled. In config.toml set telegram.enabled = true and "
            "export TELEGRAM_BOT_TOKEN, and/or discord.enabled = true and export "
            "DISCORD_BOT_TOKEN (or pass --backend-only).",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return asyncio.run(_serve_until_signal(config))


async def _serve_until_signal(config: Config) -> int:
    from bots.app import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await serve(config, stop)
    except ConfigError as exc:
        print(f"majicbot: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StartupError as exc:
        print(f"majicbot: cannot start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MajicbotError as exc:
        logging.getLogger("majicbot.cli").error("%s", exc)
        return EXIT_FAILED
    return EXIT_OK


def _parsed(args: argparse.Namespace) -> ParsedImagine:
    """Prompt and options by the chat commands' rules (``bots.parsing``): one grammar."""
    from bots.parsing import merge_options, parse_imagine, parse_value

    raw = {"seed": args.seed, "steps": args.steps, "size": args.size, "ar": args.ar}
    raw["guidance"] = args.guidance
    values: dict[str, Any] = {k: parse_value(k, v) for k, v in raw.items() if v is not None}
    width, height = values.pop("size", (None, None))
    return merge_options(
        parse_imagine(args.prompt),
        seed=values.get("seed"),
        steps=values.get("steps"),
        width=width,
        height=height,
        aspect=values.get("ar"),
        guidance=values.get("guidance"),
    )


async def _imagine(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    from backend.service import Service
    from bots.app import default_engine_factory

    user = getpass.getuser()
    try:
        parsed = _parsed(args)
        request = ImagineRequest(
            parsed.prompt,
            Requester(Platform.CLI, user_id=user, display_name=user),
            ReplyTarget(chat_id="cli"),
            parsed.options,
        )
        async with Service.open(config, default_engine_factory(config)) as service:
            submission = await service.submit(request)
            print(f"job {submission.job.id}: seed {submission.job.params.seed}", file=out)
            return await _until_done_or_hopeless(service, submission, args.output, out)
    except UserError as exc:
        print(f"majicbot: {_user_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except StartupError as exc:
        print(f"majicbot: cannot start: {exc}", file=sys.stderr)
        return EXIT_USAGE


async def _until_done_or_hopeless(
    service: Service, submission: Submission, output: Path | None, out: TextIO
) -> int:
    """Show the job's progress until it ends, or until no engine can ever run it here."""
    follow = asyncio.create_task(_show_events(service, submission, output, out))
    hopeless = asyncio.create_task(_hopeless(service))
    try:
        done, _ = await asyncio.wait({follow, hopeless}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (follow, hopeless):
            task.cancel()
        await asyncio.gather(follow, hopeless, return_exceptions=True)
    if follow in done:
        return follow.result()
    print(f"majicbot: {hopeless.result()}", file=sys.stderr)
    return EXIT_FAILED


async def _hopeless(service: Service) -> str:
    """Returns why no engine can run the job in this process (failed to load, or stuck)."""
    seen = service.queue_version
    while True:
        if service.watchdog.stuck.is_set():
            return f"the engine is stuck: {service.watchdog.stuck_reason}"
        if service.availability().unavailable is not None:
            snapshot = await service.status(CLI_REQUESTER)
            errors = [f"{e.device}: {e.error}" for e in snapshot.engines if e.error]
            return "the engine cannot load: " + ("; ".join(errors) or "no engine is available")
        moved = asyncio.create_task(service.queue_moved(seen))
        stuck = asyncio.create_task(service.watchdog.stuck.wait())
        await asyncio.wait({moved, stuck}, return_when=asyncio.FIRST_COMPLETED)
        for task in (moved, stuck):
            task.cancel()
        seen = service.queue_version


async def _show_events(
    service: Service, submission: Submission, output: Path | None, out: TextIO
) -> int:
    from tqdm import tqdm

    bar: tqdm[None] | None = None
    try:
        async for event in service.subscribe(submission.job.id):
            if isinstance(event, Queued) and event.warming_percent is not None:
                bar = bar or tqdm(total=100, desc="loading model", unit="%")
                bar.n = int(event.warming_percent)
                bar.refresh()
            elif isinstance(event, Started):
                if bar is not None:
                    bar.close()
                bar = tqdm(total=submission.job.params.steps, desc="denoising", unit="step")
            elif isinstance(event, Progress) and bar is not None:
                bar.n = event.step
                bar.refresh()
            elif isinstance(event, Succeeded):
                if bar is not None:
                    bar.close()
                return _report_image(event, output, out)
            elif isinstance(event, Failed | Cancelled):
                reason = event.detail if isinstance(event, Failed) else "cancelled"
                print(f"majicbot: generation failed: {reason}", file=sys.stderr)
                return EXIT_FAILED
    finally:
        if bar is not None:
            bar.close()
    return EXIT_FAILED


def _user_message(error: UserError) -> str:
    """The same sentence the chat bots show, in the terminal's language."""
    from bots.i18n import pick_language, translate

    lang = pick_language(os.environ.get("LANG", "").split(".")[0], "en")
    return translate(error.key, lang, **error.params)


def _report_image(event: Succeeded, output: Path | None, out: TextIO) -> int:
    path = event.image_path
    if output is not None:
        shutil.copyfile(path, output)
        path = output
    t = event.timings
    print(
        f"{path}  (text {t.text_encode_s:.2f} s, denoise {t.denoise_s:.2f} s, "
        f"decode {t.decode_s:.2f} s)",
        file=out,
    )
    return EXIT_OK


async def _status(config: Config, out: TextIO) -> int:
    from backend.status_server import NotRunning, StatusRefused, fetch_status
    from bots.render import render_status

    try:
        status = config.service
        snapshot = await fetch_status(
            status.status_host, status.status_port, token=status.status_token
        )
    except NotRunning as exc:
        print(f"majicbot is not running: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except StatusRefused as exc:
        print(f"majicbot status: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(render_status(snapshot, "en"), file=out)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
