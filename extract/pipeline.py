"""``tf.data`` input pipelines: parallel decode, resize, preprocessing, augmentation, batching, prefetching.

Images are decoded to float32 RGB in [0, 255], resized to the backbone's input size, then passed through the
backbone's own ``preprocess_input``. Unreadable files are dropped with ``ignore_errors`` and reported by index.
"""
from __future__ import annotations

import numpy as np

from common.tensorflow_setup import keras, tf  # noqa: F401  (TensorFlow without its start-up banner)

from .settings import Augment, View  # noqa: F401  (declared with the config that sets them)

AUTOTUNE = tf.data.AUTOTUNE


def keep_pixels(images: tf.Tensor) -> tf.Tensor:
    """The identity preprocessing: images stay float32 in [0, 255]."""
    return images


def decode(path: tf.Tensor, view: View) -> tf.Tensor:
    """Read an image file to float32 (size, size, 3) in [0, 255]; raises inside tf.data when unreadable."""
    image = tf.cast(tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False), tf.float32)
    if view.crop < 1:
        image = tf.image.central_crop(image, view.crop)
    # area averaging when shrinking (anti-aliased, and 1.6x faster here than antialias=True), bilinear when growing
    shrink = tf.shape(image)[0] > view.size
    image = tf.cond(shrink, lambda: tf.image.resize(image, (view.size, view.size), method="area"),
                    lambda: tf.image.resize(image, (view.size, view.size), method="bilinear"))
    return tf.clip_by_value(image, 0.0, 255.0)


def augment(image: tf.Tensor, seed: tf.Tensor, size: int, aug: Augment) -> tf.Tensor:
    """``image`` float32 (size, size, 3) in [0, 255]; ``seed`` int64 (2,) unique per (epoch, element)."""
    seeds = tf.random.experimental.stateless_split(seed, 6)
    if aug.flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[0])
    if aug.crop > 0:
        grow = tf.cast(tf.round(size * (1 + aug.crop * tf.random.stateless_uniform([], seeds[1]))), tf.int32)
        image = tf.image.resize(image, (grow, grow))
        image = tf.image.stateless_random_crop(image, (size, size, 3), seeds[2])
    if aug.brightness > 0:
        image = tf.image.stateless_random_brightness(image, aug.brightness * 255.0, seeds[3])
    if aug.contrast > 0:
        image = tf.image.stateless_random_contrast(image, 1 - aug.contrast, 1 + aug.contrast, seeds[4])
    image = tf.clip_by_value(image, 0.0, 255.0)
    if aug.jpeg_rate > 0:
        lo, hi = aug.jpeg_quality
        jpeg = tf.image.stateless_random_jpeg_quality(image / 255.0, lo, hi, seeds[5]) * 255.0
        use = tf.random.stateless_uniform([], seeds[5] + 1) < aug.jpeg_rate
        image = tf.where(use, tf.reshape(jpeg, tf.shape(image)), image)
    return image


def load_images(paths: np.ndarray, view: View, batch_size: int, keep: bool = True
                ) -> tuple[np.ndarray | None, np.ndarray]:
    """Decode and resize every file once: uint8 (n, size, size, 3) (None unless ``keep``) and a readable
    mask (n,)."""
    images = np.zeros((len(paths), view.size, view.size, 3), np.uint8) if keep else None
    ok = np.zeros(len(paths), bool)
    for idx, batch in eval_dataset(paths, view, keep_pixels, batch_size):
        if keep:
            images[idx.numpy()] = np.round(batch.numpy()).astype(np.uint8)
        ok[idx.numpy()] = True
    return images, ok


def train_dataset(source: np.ndarray, labels: np.ndarray, weights: np.ndarray, view: View, preprocess,
                  batch_size: int, seed: int, epoch: int, aug: Augment | None) -> tf.data.Dataset:
    """One epoch of ``(images (B, size, size, 3), labels (B, 1), sample weights (B,))``, shuffled by (seed, epoch).

    ``source``: file paths (n,), decoded every epoch, or images already decoded by ``load_images``,
    uint8 (n, size, size, 3).
    """
    cached = source.dtype == np.uint8
    order = np.random.default_rng([seed, epoch]).permutation(len(source))
    index = np.arange(len(source), dtype=np.int64)[order]
    ds = tf.data.Dataset.from_tensor_slices((index if cached else source[order], labels[order].astype(np.float32),
                                             weights[order].astype(np.float32), index))
    images = tf.constant(source) if cached else None

    def load(item, label, weight, i):
        image = tf.cast(tf.gather(images, item), tf.float32) if cached else decode(item, view)
        if aug is not None:
            image = augment(image, tf.stack([tf.constant(seed * 10_000 + epoch, tf.int64), i]), view.size, aug)
        return preprocess(image), tf.reshape(label, (1,)), weight

    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True).ignore_errors()
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def eval_dataset(paths: np.ndarray, view: View, preprocess, batch_size: int) -> tf.data.Dataset:
    """``(row indices (B,), images (B, size, size, 3))`` in row order; unreadable rows are left out."""
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths), dtype=np.int64), paths))
    ds = ds.map(lambda i, p: (i, preprocess(decode(p, view))), num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.ignore_errors().batch(batch_size).prefetch(AUTOTUNE)


def chunked_dataset(paths: np.ndarray, bounds: list[tuple[int, int, int]], view: View, preprocess,
                    batch_size: int) -> tf.data.Dataset:
    """Batches that never straddle chunks: ``(chunk id, row indices (B,), images)`` for ``bounds`` =
    [(chunk id, first row, end row)], so a chunk's batches are the same in any run, shard or resume."""
    all_paths = tf.constant(paths)
    ids = np.array([b[0] for b in bounds], np.int64)
    starts = np.array([b[1] for b in bounds], np.int64)
    ends = np.array([b[2] for b in bounds], np.int64)

    def one_chunk(k, start, end):
        rows = tf.data.Dataset.range(start, end)
        rows = rows.map(lambda i: (k, i, preprocess(decode(tf.gather(all_paths, i), view))),
                        num_parallel_calls=AUTOTUNE, deterministic=True)
        return rows.ignore_errors().batch(batch_size)

    # the next chunk is decoded while this one finishes; output order stays chunk by chunk
    ds = tf.data.Dataset.from_tensor_slices((ids, starts, ends)).interleave(
        one_chunk, cycle_length=2, block_length=1 << 30, num_parallel_calls=2, deterministic=True)
    return ds.prefetch(AUTOTUNE)
