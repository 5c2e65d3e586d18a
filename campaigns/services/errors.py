"""What a service refuses: the errors every service of this package raises."""

from __future__ import annotations


class Refusal(Exception):
    """A write that the present state of things does not allow; ``reasons`` says every why.
    (Invalid input is a ValidationError instead.)"""

    def __init__(self, *reasons: str) -> None:
        super().__init__(" ".join(reasons))
        self.reasons = list(reasons)


class CampaignStateError(Refusal):
    """The campaign cannot make the requested move; ``reasons`` says every why."""


class ContactStateError(Refusal):
    """The contact cannot be changed or removed now; ``reasons`` says every why."""


class DoNotCallProtected(Refusal):
    """The entry records a callee's own request and may not be removed by a partner."""
