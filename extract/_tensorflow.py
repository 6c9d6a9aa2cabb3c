"""Import TensorFlow and Keras once, keeping TensorFlow's C++ start-up banner (the oneDNN notice and absl's
pre-initialisation warning, written straight to file descriptor 2) out of the stage's one-line errors."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_stderr = os.dup(2)
_devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(_devnull, 2)
try:
    import keras  # noqa: E402
    import tensorflow as tf  # noqa: E402
finally:
    os.dup2(_stderr, 2)
    os.close(_stderr)
    os.close(_devnull)

__all__ = ["keras", "tf"]
