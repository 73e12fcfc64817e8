"""Regions of a pseudo-label round: superpixels scored for review (RIPU), region actions as
edits, and label masks exported to / imported from annotation tools."""

from .scoring import (
    INDEX_FILE,
    QUEUE_DTYPE,
    QUEUE_FILE,
    REGIONS_DIR,
    RegionConfig,
    RegionScores,
    RegionWriter,
    RoundRegions,
    round_region_stream,
    score_regions,
    superpixels,
)

__all__ = ["INDEX_FILE", "QUEUE_DTYPE", "QUEUE_FILE", "REGIONS_DIR", "RegionConfig", "RegionScores",
           "RegionWriter", "RoundRegions", "round_region_stream", "score_regions", "superpixels"]
