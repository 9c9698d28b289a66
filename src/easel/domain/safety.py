"""What a client asked of the safety checks and the provenance of its images, in the core's
terms (the dialects spell them their own way; services/images/safety.py applies them)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class SafetyLevel(StrEnum):
    """How strict the check of the outputs is: Imagen's safety settings. The detector's score
    at which each level flags is one table in the catalog (`[safety]`)."""

    BLOCK_NONE = "block_none"  # no content check
    BLOCK_LOW_AND_ABOVE = "block_low_and_above"  # strictest
    BLOCK_MEDIUM_AND_ABOVE = "block_medium_and_above"
    BLOCK_ONLY_HIGH = "block_only_high"


# From the most lenient to the strictest.
STRICTNESS = (SafetyLevel.BLOCK_NONE, SafetyLevel.BLOCK_ONLY_HIGH,
              SafetyLevel.BLOCK_MEDIUM_AND_ABOVE, SafetyLevel.BLOCK_LOW_AND_ABOVE)


class CheckFloor(StrEnum):
    """The least content check the operator has every job get, whatever its caller asks
    (EASEL_CONTENT_CHECK_FLOOR)."""

    OFF = "off"  # the caller decides
    FLAG = "flag"  # every image checked, at least at FLOOR_LEVEL
    WITHHOLD = "withhold"  # and every flagged image withheld


# The floor's level: the one each provider that checks by default checks at.
FLOOR_LEVEL = SafetyLevel.BLOCK_MEDIUM_AND_ABOVE


class PersonGeneration(StrEnum):
    """Imagen's person_generation. easel detects people but cannot tell an adult from a child,
    so allow_adult allows what allow_all allows (docs/safety.md)."""

    DONT_ALLOW = "dont_allow"
    ALLOW_ADULT = "allow_adult"
    ALLOW_ALL = "allow_all"


class OnFlagged(StrEnum):
    """What becomes of a flagged image: each provider does one or the other."""

    FLAG = "flag"  # delivered, marked (Runware NSFWContent, WaveSpeed has_nsfw_contents)
    WITHHOLD = "withhold"  # never stored nor delivered (OpenAI, AIML, Google)


class Withheld(StrEnum):
    """Why an image was withheld."""

    NSFW = "nsfw"
    PERSON = "person"


@dataclass(frozen=True)
class SafetyInput:
    level: SafetyLevel = SafetyLevel.BLOCK_NONE
    on_flagged: OnFlagged = OnFlagged.FLAG
    person_generation: PersonGeneration = PersonGeneration.ALLOW_ALL

    @property
    def checks_content(self) -> bool:
        return self.level is not SafetyLevel.BLOCK_NONE

    @property
    def checks_people(self) -> bool:
        return self.person_generation is PersonGeneration.DONT_ALLOW

    def raised_to(self, floor: CheckFloor) -> SafetyInput:
        """These settings, made at least as strict as the operator's floor: never less strict
        than the caller asked (a stricter level, or withholding, stands)."""
        if floor is CheckFloor.OFF:
            return self
        level = max(self.level, FLOOR_LEVEL, key=STRICTNESS.index)
        on_flagged = OnFlagged.WITHHOLD if floor is CheckFloor.WITHHOLD else self.on_flagged
        return replace(self, level=level, on_flagged=on_flagged)

    def to_json(self) -> dict[str, str]:
        return {"level": self.level.value, "on_flagged": self.on_flagged.value,
                "person_generation": self.person_generation.value}

    @classmethod
    def from_json(cls, raw: dict[str, str] | None) -> SafetyInput:
        if not raw:
            return cls()
        return cls(SafetyLevel(raw["level"]), OnFlagged(raw["on_flagged"]),
                   PersonGeneration(raw["person_generation"]))


class EnhancementState(StrEnum):
    """What became of a prompt-enhancement request (`enhance_prompt` / `enhancePrompt`)."""

    OFF = "off"  # not asked
    REWRITTEN = "rewritten"
    FALLBACK = "fallback"  # the endpoint failed or timed out: the original prompt was used
    NOT_CONFIGURED = "not_configured"  # the operator configured no endpoint: original used
