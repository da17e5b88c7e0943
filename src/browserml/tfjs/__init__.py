"""The TF.js format alone: reads and writes files, knows nothing of registries or servers.

Hand-written on purpose: the official ``tensorflowjs`` converter pins Keras 2 (``tf_keras``),
``tensorflow-decision-forests``, ``jax`` and ``flax``, and beside TensorFlow 2.21 pip backtracks to
TF 2.15/2.14 to satisfy it. The format itself is small and documented by the tfjs source
(``tfjs-core/src/io/types.ts`` for the weights manifest and quantization, ``tfjs-layers`` for the
topology), so writing it ourselves keeps users on current TensorFlow / Keras 3.
"""
