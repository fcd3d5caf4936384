"""Subject ids: numbered per prefix and district, tagged so that two runs never share one."""

from __future__ import annotations

# cases, disputes, hazards, patrols, extras, accidents
PREFIXES = ("cs", "dp", "hz", "pr", "xx", "ac")


def id_tag(tag: str) -> str:
    """The tag as it stands in an id: with a trailing hyphen, unless empty."""
    return tag + "-" if tag and not tag.endswith("-") else tag


class Subjects:
    def __init__(self, tag: str) -> None:
        self.tag = id_tag(tag)
        self.counters = dict.fromkeys(PREFIXES, 0)

    def new(self, prefix: str, district: str) -> str:
        n = self.counters[prefix] = self.counters[prefix] + 1
        return f"{prefix}-{district}-{self.tag}{n:07d}"
