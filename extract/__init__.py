"""Feature stage: CNN backbones -> per-frame embeddings and fake scores."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # keep TensorFlow's C++ start-up chatter out of the output

