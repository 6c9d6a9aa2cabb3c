"""Feature stage: CNN backbones -> per-frame embeddings and fake scores."""
