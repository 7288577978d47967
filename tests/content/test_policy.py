"""What a verdict means in a chat: the delivery table and the policy precedence."""

from __future__ import annotations

import pytest

from backend.config import ContentConfig
from backend.content.policy import decide, decide_unchecked, effective_policy
from backend.domain import ChatPolicy, Delivery, Platform, Requester

ALLOW, SPOILER, BLOCK = ChatPolicy.ALLOW, ChatPolicy.SPOILER, ChatPolicy.BLOCK
SHOW, HIDE, WITHHELD = Delivery.SHOW, Delivery.SPOILER, Delivery.WITHHELD


@pytest.mark.parametrize(
    ("flagged", "policy", "asked", "expected"),
    [
        (False, BLOCK, False, SHOW),
        (False, BLOCK, True, HIDE),  # the user's --spoiler
        (True, ALLOW, False, SHOW),
        (True, ALLOW, True, HIDE),
        (True, SPOILER, False, HIDE),
        (True, BLOCK, False, WITHHELD),
        (True, BLOCK, True, WITHHELD),  # --spoiler never shows what a policy hides
    ],
)
def test_delivery_table(flagged: bool, policy: ChatPolicy, asked: bool, expected: Delivery) -> None:
    assert decide(flagged, policy, spoiler_asked=asked) is expected


def test_unchecked_images_follow_the_unchecked_setting() -> None:
    assert decide_unchecked("spoiler", ALLOW, spoiler_asked=False) is HIDE
    assert decide_unchecked("block", ALLOW, spoiler_asked=False) is WITHHELD
    assert decide_unchecked("policy", BLOCK, spoiler_asked=False) is WITHHELD
    assert decide_unchecked("policy", ALLOW, spoiler_asked=False) is SHOW


def _who(platform: Platform, *, nsfw: bool = False) -> Requester:
    return Requester(platform, "1", chat_id="9", nsfw_channel=nsfw)


def test_policy_precedence_and_discord_nsfw_channels() -> None:
    content = ContentConfig(default_policy="spoiler", nsfw_channel_policy="allow")
    telegram, discord = _who(Platform.TELEGRAM), _who(Platform.DISCORD)
    nsfw = _who(Platform.DISCORD, nsfw=True)
    assert effective_policy(telegram, None, content) is SPOILER
    assert effective_policy(discord, None, content) is SPOILER
    assert effective_policy(nsfw, None, content) is ALLOW
    assert effective_policy(nsfw, BLOCK, content) is BLOCK  # the chat's own setting wins
    assert effective_policy(telegram, ALLOW, content) is ALLOW
    # Discord allows sexual content only in age-restricted channels.
    assert effective_policy(discord, ALLOW, content) is BLOCK
    permissive = ContentConfig(default_policy="allow")
    assert effective_policy(discord, None, permissive) is BLOCK
    assert effective_policy(telegram, None, permissive) is ALLOW
