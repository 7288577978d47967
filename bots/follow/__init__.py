"""One job follower for every chat platform.

    Followers (one per adapter)
      └─ follow(job, surface)  ─▶  JobFollower: subscribe → render → budgeted edits → deliver
                                     │ waiting:  position pulled when it moved meaningfully
                                     │ running:  live progress, keep-alive (chat action)
                                     └ ended:    result / final line through the DeliveryPolicy
      └─ reattach() and the retry loop: jobs from before a restart, undelivered results

An adapter supplies only a :class:`~bots.follow.surface.Surface` per job (edit status, send result,
remove status, post anew) and the classification of its platform's errors
(:class:`~bots.follow.policy.Failure`); everything else — what to show, when, how often, how to
retry — lives here, once.
"""

from bots.follow.budget import EditBudget, Lane
from bots.follow.clock import Clock, MonotonicClock
from bots.follow.follower import FollowerTuning
from bots.follow.followers import Followers
from bots.follow.policy import DeliveryFailed, Failure
from bots.follow.surface import Surface

__all__ = [
    "Clock",
    "DeliveryFailed",
    "EditBudget",
    "Failure",
    "FollowerTuning",
    "Followers",
    "Lane",
    "MonotonicClock",
    "Surface",
]
