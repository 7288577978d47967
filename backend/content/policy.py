"""What a safety verdict means in a chat: the delivery of one finished image (pure functions).

A chat's policy for flagged images is, in order of precedence:

1. the one an admin set for that chat or channel (``/policy``, stored in SQLite);
2. on Discord, in a channel marked age-restricted (NSFW): ``content.nsfw_channel_policy``;
3. ``content.default_policy``.

Discord allows sexual content only in age-restricted channels, so ``allow`` never applies in a
Discord channel that is not one: there a flagged image is blocked (and ``/policy allow`` is
refused). The user's own ``--spoiler`` can only hide an image more, never show one that a policy
hides.
"""

from __future__ import annotations

from backend.config import ContentConfig
from backend.domain import ChatPolicy, Delivery, Platform, Requester


def effective_policy(
    requester: Requester, stored: ChatPolicy | None, content: ContentConfig
) -> ChatPolicy:
    """The policy for flagged images in the chat ``requester`` asked from."""
    nsfw_discord = requester.platform is Platform.DISCORD and requester.nsfw_channel
    if stored is not None:
        policy = stored
    elif nsfw_discord:
        policy = ChatPolicy(content.nsfw_channel_policy)
    else:
        policy = ChatPolicy(content.default_policy)
    if policy is ChatPolicy.ALLOW and requester.platform is Platform.DISCORD and not nsfw_discord:
        return ChatPolicy.BLOCK
    return policy


def allow_needs_nsfw_channel(requester: Requester, policy: ChatPolicy) -> bool:
    """``/policy allow`` asked in a Discord channel that is not age-restricted."""
    return (
        policy is ChatPolicy.ALLOW
        and requester.platform is Platform.DISCORD
        and not requester.nsfw_channel
    )


def decide(flagged: bool, policy: ChatPolicy, *, spoiler_asked: bool) -> Delivery:
    """How an image is delivered, given the verdict, the chat's policy and the user's wish."""
    if flagged and policy is ChatPolicy.BLOCK:
        return Delivery.WITHHELD
    if spoiler_asked or (flagged and policy is ChatPolicy.SPOILER):
        return Delivery.SPOILER
    return Delivery.SHOW


def decide_unchecked(unchecked: str, policy: ChatPolicy, *, spoiler_asked: bool) -> Delivery:
    """An image the check could not score: ``content.unchecked`` says what to assume."""
    if unchecked == "block":
        return Delivery.WITHHELD
    if unchecked == "policy":
        return decide(True, policy, spoiler_asked=spoiler_asked)
    return Delivery.SPOILER
