"""The content controls the service holds: prompt rules, the image safety check, chat policies.

    admission ─▶ check_prompt(request)      PromptRefused before any job exists (admins exempt
                                            when content.admins_exempt)
    results   ─▶ judge(job, image)          after the PNG is written, before the job is recorded
                                            as succeeded: classifier score (in its own thread),
                                            the chat's policy, the user's --spoiler → Verdict
    service   ─▶ set_policy / policy_of     per-chat policies (SQLite table chat_policies)
    service   ─▶ status()                   what /status shows

The classifier loads in the background when the service opens (its own thread, the same one that
later scores images, so a score asked for while it loads simply waits for it). Missing files or a
failed load leave the check unavailable: /status says so, the log has one WARNING/ERROR line, and
``content.unchecked`` decides what happens to images meanwhile.

Every refusal is logged at INFO with the request's key or the job id and the rule's index — never
the prompt or the term.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend import keys
from backend.config import Config
from backend.content.classifier import ImageClassifier, check_classifier, classifier_folder
from backend.content.policy import (
    allow_needs_nsfw_channel,
    decide,
    decide_unchecked,
    effective_policy,
)
from backend.content.rules import PromptRules
from backend.domain import (
    ChatPolicy,
    ContentStatus,
    Delivery,
    ImagineRequest,
    Job,
    Requester,
    SafetyState,
)
from backend.errors import AccessDenied, InvalidRequest, PromptRefused
from backend.store import Store
from backend.worker import EngineThread

if TYPE_CHECKING:
    from PIL.Image import Image

    from backend.access import Access

log = logging.getLogger("majicbot.content")

HOUR_S = 3600.0


@dataclass(frozen=True)
class Verdict:
    """What the safety check found and how the image will be delivered."""

    flagged: bool | None  # None: not checked (check off, or the classifier unavailable)
    score: float | None
    delivery: Delivery


PLAIN = Verdict(None, None, Delivery.SHOW)  # not checked, sent as is: the stored default


@dataclass(frozen=True)
class PolicyView:
    """A chat's policy as /policy shows it: the stored one (None: default) and the effective one."""

    stored: ChatPolicy | None
    effective: ChatPolicy


class ContentControls:
    """Prompt rules, the image safety check and per-chat policies, bound to config and store."""

    def __init__(self, config: Config, store: Store, access: Access) -> None:
        self._content = config.content
        self._store = store
        self._access = access
        self._rules = PromptRules.of(config.content)
        self._folder = classifier_folder(config)
        self._refusals: deque[float] = deque()
        self._policies: dict[tuple[str, str], ChatPolicy] = {}
        self._state = SafetyState.OFF
        self._error: str | None = None
        self._classifier: ImageClassifier | None = None
        self._thread: EngineThread | None = None
        self._loading: asyncio.Task[None] | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Read the stored chat policies; start loading the classifier (when the service opens)."""
        for platform, chat_id, policy in await self._store.content.chat_policies():
            self._policies[(platform.value, chat_id)] = policy
        self._start_classifier()

    def _start_classifier(self) -> None:
        """Load the classifier in its thread when the check is on and its files exist."""
        if not self._content.image_check:
            return
        problems = check_classifier(self._folder, self._content.flagged_labels)
        if problems:
            self._state = SafetyState.MISSING
            self._error = "; ".join(p.describe(self._folder) for p in problems)
            log.warning(
                "image safety check unavailable (%s); images are delivered as content.unchecked "
                "= %r says until `majicbot download` fetches the classifier",
                self._error,
                self._content.unchecked,
            )
            return
        self._state = SafetyState.LOADING
        self._thread = EngineThread("majicbot-safety")
        self._loading = asyncio.get_running_loop().create_task(self._load_classifier())

    async def close(self) -> None:
        """Stop waiting for a load; let the thread end after its current call."""
        if self._loading is not None:
            self._loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loading
        if self._thread is not None:
            self._thread.stop()

    async def _load_classifier(self) -> None:
        assert self._thread is not None
        content = self._content
        try:
            self._classifier = await self._thread.run(
                ImageClassifier.load,
                self._folder,
                content.flagged_labels,
                content.classifier_device,
                content.classifier_dtype,
            )
        except Exception as exc:
            self._state, self._error = SafetyState.FAILED, repr(exc)
            log.error("image safety check failed to load from %s: %r", self._folder, exc)
            return
        self._state, self._error = SafetyState.READY, None

    # ---- prompts ------------------------------------------------------------------------------

    def check_prompt(self, request: ImagineRequest) -> None:
        """Raise ``PromptRefused`` if the prompt breaks a rule (configured admins may be exempt)."""
        requester = request.requester
        if self._content.admins_exempt and self._access.is_admin(requester):
            return
        match = self._rules.match(request.prompt)
        if match is None:
            return
        self._refusals.append(time.time())
        log.info(
            "prompt refused by %s rule #%d: user=%s:%s request=%s",
            match.kind,
            match.index,
            requester.platform.value,
            requester.user_id,
            request.idempotency_key or "-",
        )
        raise PromptRefused()

    # ---- images -------------------------------------------------------------------------------

    async def judge(self, job: Job, image: Image | Callable[[], Image]) -> Verdict:
        """Score ``image`` (in the classifier's thread) and decide how it is delivered.

        ``image`` may be a function that makes it (a Ray result decodes its PNG only when the
        check runs, and then in the classifier's thread)."""
        spoiler = job.spoiler
        if not self._content.image_check:
            return Verdict(None, None, Delivery.SPOILER if spoiler else Delivery.SHOW)
        policy = self.policy_of(job.requester).effective
        score = await self._score(job, image)
        if score is None:
            delivery = decide_unchecked(self._content.unchecked, policy, spoiler_asked=spoiler)
            verdict = Verdict(None, None, delivery)
        else:
            flagged = score >= self._content.threshold
            verdict = Verdict(flagged, score, decide(flagged, policy, spoiler_asked=spoiler))
        if verdict.flagged or verdict.delivery is Delivery.WITHHELD:
            log.info(
                "job %s: image %s (score %s, policy %s): %s",
                job.id,
                "flagged" if verdict.flagged else "not checked",
                "-" if score is None else f"{score:.3f}",
                policy.value,
                verdict.delivery.value,
            )
        return verdict

    async def _score(self, job: Job, image: Image | Callable[[], Image]) -> float | None:
        """The classifier's score, or None when it is unavailable or fails on this image."""
        if self._thread is None or self._state in (SafetyState.MISSING, SafetyState.FAILED):
            return None
        if self._loading is not None and not self._loading.done():
            await asyncio.shield(self._loading)
        classifier = self._classifier
        if classifier is None:
            return None
        try:
            return await self._thread.run(
                lambda: classifier.score(image() if callable(image) else image)
            )
        except Exception:
            log.exception("job %s: the safety check failed on this image", job.id)
            return None

    # ---- policies -----------------------------------------------------------------------------

    def policy_of(self, requester: Requester) -> PolicyView:
        """The chat's stored and effective policy (the chat ``requester`` is in)."""
        stored = self._policies.get((requester.platform.value, requester.chat_id or ""))
        return PolicyView(stored, effective_policy(requester, stored, self._content))

    async def set_policy(self, requester: Requester, policy: ChatPolicy | None) -> PolicyView:
        """Set (None: forget) the policy of the requester's chat; admins and guild admins only."""
        self._access.check(requester)
        guild_admin = requester.guild_admin and requester.guild_id is not None
        if not (self._access.is_admin(requester) or guild_admin):
            raise AccessDenied(keys.ADMIN_ONLY)
        if policy is not None and allow_needs_nsfw_channel(requester, policy):
            raise InvalidRequest(keys.POLICY_NEEDS_NSFW)
        chat = (requester.platform.value, requester.chat_id or "")
        who = f"{requester.platform.value}:{requester.user_id}"
        await self._store.content.put_chat_policy(
            requester.platform, chat[1], policy, who, time.time()
        )
        if policy is None:
            self._policies.pop(chat, None)
        else:
            self._policies[chat] = policy
        log.info("chat %s:%s: policy %s set by %s", *chat, policy or "default", who)
        return self.policy_of(requester)

    # ---- status -------------------------------------------------------------------------------

    async def status(self) -> ContentStatus:
        """The checks' state and what they did in the last hour."""
        since = time.time() - HOUR_S
        while self._refusals and self._refusals[0] < since:
            self._refusals.popleft()
        flagged, withheld = await self._store.content.counts(since)
        return ContentStatus(
            prompt_rules=len(self._rules),
            image_check=self._state,
            image_check_error=self._error,
            default_policy=ChatPolicy(self._content.default_policy),
            prompts_refused_last_hour=len(self._refusals),
            images_flagged_last_hour=flagged,
            images_withheld_last_hour=withheld,
        )

    def check_deliverable(self, job: Job, requester: Requester, *, unblurred: bool) -> None:
        """Raise ``AccessDenied`` when a non-admin asks again for a withheld image, or for a
        spoilered one in a form that cannot be blurred (``unblurred``: the original file)."""
        if self._access.is_admin(requester):
            return
        if job.delivery is Delivery.WITHHELD:
            raise AccessDenied(keys.WITHHELD, job_id=job.id)
        if unblurred and job.delivery is Delivery.SPOILER:
            raise AccessDenied(keys.SPOILER_ONLY, job_id=job.id)
