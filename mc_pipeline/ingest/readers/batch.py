"""What a source asset hands downstream: its call records, its quarantine and how each file reconciled."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from mc_pipeline.tables.schemas import CALL_RECORDS, FILE_COUNTS, QUARANTINE


@dataclass
class SourceBatch:
    records: pl.DataFrame  # CALL_RECORDS
    quarantine: pl.DataFrame  # QUARANTINE
    file_counts: pl.DataFrame  # FILE_COUNTS
    problems: list[str] = field(default_factory=list)  # unusable files/databases, each named with why

    @classmethod
    def empty(cls, problems: list[str] | None = None) -> SourceBatch:
        return cls(
            pl.DataFrame(schema=CALL_RECORDS),
            pl.DataFrame(schema=QUARANTINE),
            pl.DataFrame(schema=FILE_COUNTS),
            list(problems or []),
        )

    def summary(self) -> dict[str, int]:
        counts = self.file_counts
        return {
            "files": counts.height,
            "lines_read": int(counts.get_column("lines_read").sum() or 0),
            "calls": self.records.height,
            "quarantined": self.quarantine.height,
            "problems": len(self.problems),
        }
