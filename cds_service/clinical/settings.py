"""Settings of the fasciculation topic, apart from the core's ``Settings``.

The core (HTTP, trust, data, storage) has no business knowing a card budget or a lab look-back;
the topic reads its own from the same ``CDS_`` environment variables as before, so deployments
keep working unchanged (``CDS_CARD_BUDGET``, ``CDS_ORDER_INTENT``, ``CDS_LAB_LOOKBACK_DAYS``,
``CDS_TRIGGER_FREE_TEXT``; docs/configuration.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cds_service.clinical.rules.base import DEFAULT_LOOKBACKS


class TopicSettings(BaseSettings):
    """What a clinician or site may tune about the fasciculation cards."""

    model_config = SettingsConfigDict(env_prefix="CDS_", extra="ignore", env_file=None, frozen=True)

    card_budget: int = Field(4, ge=1, le=20, description="Most cards per response, ranked by severity")
    order_intent: Literal["proposal", "order"] = Field(
        "proposal", description="ServiceRequest.intent of suggested orders (EHR convention)"
    )
    lab_lookback_days: dict[str, int] = Field(
        default_factory=dict,
        description='Per-test look-back overrides in days, JSON, e.g. {"tsh": 180}; defaults in docs',
    )
    trigger_free_text: bool = Field(
        False, description="Also treat 'fascicul'/'twitch' in Condition.code.text as a trigger"
    )

    @property
    def lookbacks(self) -> dict[str, int]:
        """The look-back window of every lab, defaults overridden by ``lab_lookback_days``."""
        return {**DEFAULT_LOOKBACKS, **self.lab_lookback_days}
