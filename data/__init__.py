"""Dataset stage: DFDC metadata, the faces layout, family-grouped splits and the synthetic default."""
