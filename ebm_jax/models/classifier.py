"""A digit classifier whose hidden features judge generated 8×8 digits (a Fréchet distance).

Samples of a generative model are compared with real data in the feature
space of a classifier trained on the real data (the FID recipe of Heusel et
al. 2017, with :func:`ebm_jax.diagnostics.frechet_distance`). Inception
features do not exist for 8×8 digits, so the package trains its own small
classifier: an MLP on the 64 pixels (unit scale, :func:`ebm_jax.data.load_digits`)
whose last hidden layer is the feature map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebm_jax import training
from ebm_jax._validation import check_int
from ebm_jax.types import Array, ArrayLike, ArrayTree, PRNGKey


class DigitClassifier(nn.Module):
    """An MLP classifier of flattened images; its last hidden layer gives the features.

    Attributes:
      hidden_sizes: widths of the hidden layers (swish), at least one.
      num_classes: number of labels (10 for digits).
    """

    hidden_sizes: Sequence[int] = (256, 128)
    num_classes: int = 10

    def __post_init__(self) -> None:
        if not self.hidden_sizes or any(
            isinstance(size, bool) or not isinstance(size, int) or size < 1
            for size in self.hidden_sizes
        ):
            raise ValueError(
                "hidden_sizes must be a non-empty sequence of positive ints, "
                f"got {self.hidden_sizes}"
            )
        check_int(self.num_classes, "num_classes", 2)
        super().__post_init__()

    @nn.compact
    def __call__(self, images: Array, *, return_features: bool = False) -> Array:
        """Logits ``(..., num_classes)``, or the last hidden layer with ``return_features``."""
        hidden = images.reshape(*images.shape[: images.ndim - 1], -1)
        for size in self.hidden_sizes:
            hidden = nn.swish(nn.Dense(size)(hidden))
        if return_features:
            return hidden
        return nn.Dense(self.num_classes)(hidden)


class TrainedClassifier(NamedTuple):
    """A fitted :class:`DigitClassifier`.

    Attributes:
      model: the module.
      params: its parameters.
      test_accuracy: accuracy on the held-out images given to the trainer.
    """

    model: DigitClassifier
    params: ArrayTree
    test_accuracy: float

    def features(self, images: ArrayLike) -> Array:
        """The feature map, ``(num_images, hidden_sizes[-1])``, of ``(num_images, 64)`` images."""
        return self.model.apply(self.params, jnp.asarray(images), return_features=True)  # type: ignore[return-value]

    def predict(self, images: ArrayLike) -> Array:
        """The most probable label of each image."""
        return jnp.argmax(self.model.apply(self.params, jnp.asarray(images)), axis=-1)  # type: ignore[arg-type]


def train_digit_classifier(
    rng_key: PRNGKey,
    train_images: ArrayLike,
    train_labels: ArrayLike,
    test_images: ArrayLike,
    test_labels: ArrayLike,
    *,
    hidden_sizes: Sequence[int] = (256, 128),
    num_steps: int = 3000,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
) -> TrainedClassifier:
    """Fit a :class:`DigitClassifier` by softmax cross-entropy with AdamW and ``fit``.

    Args:
      rng_key: a single key (initialisation and minibatches).
      train_images: ``(n, 64)`` images, e.g. ``load_digits().train`` (unit scale).
      train_labels: ``(n,)`` integer labels.
      test_images: held-out images for the reported accuracy.
      test_labels: their labels.
      hidden_sizes: the classifier's hidden widths.
      num_steps: optimizer steps.
      batch_size: examples per step.
      learning_rate: AdamW step size (cosine-decayed).
      weight_decay: AdamW decoupled weight decay.

    Returns:
      A :class:`TrainedClassifier`.

    Examples:
      >>> import jax
      >>> from ebm_jax import data
      >>> from ebm_jax.models.classifier import train_digit_classifier
      >>> digits = data.load_digits()
      >>> classifier = train_digit_classifier(
      ...     jax.random.key(0), digits.train, digits.train_labels,
      ...     digits.test, digits.test_labels, num_steps=300)
      >>> classifier.test_accuracy > 0.9
      True

    References:
      Heusel et al. (2017), NeurIPS (features of a classifier for the FID);
      Loshchilov & Hutter (2019), *Decoupled weight decay regularization*, ICLR.
    """
    train_images = jnp.asarray(train_images, jnp.float32)
    train_labels = jnp.asarray(train_labels, jnp.int32)
    if train_images.ndim != 2 or train_labels.shape != train_images.shape[:1]:
        raise ValueError(
            "train_images must be (n, num_pixels) and train_labels (n,), got "
            f"{train_images.shape} and {train_labels.shape}"
        )
    model = DigitClassifier(tuple(hidden_sizes), int(np.max(np.asarray(train_labels))) + 1)
    init_key, fit_key = jax.random.split(rng_key)
    params = model.init(init_key, train_images[0])

    def loss_fn(params: ArrayTree, rng_key: PRNGKey, batch: Any) -> Array:
        del rng_key
        images, labels = batch
        logits = model.apply(params, images)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))  # type: ignore[arg-type]

    schedule = optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.05)
    result = training.fit(
        fit_key,
        loss_fn,
        params,
        optax.adamw(schedule, weight_decay=weight_decay),
        (train_images, train_labels),
        num_steps=num_steps,
        batch_size=batch_size,
        chunk_size=min(500, num_steps),
        progress=False,
    )
    classifier = TrainedClassifier(model, result.params, 0.0)
    predictions = np.asarray(classifier.predict(test_images))
    accuracy = float(np.mean(predictions == np.asarray(test_labels)))
    return classifier._replace(test_accuracy=accuracy)


__all__ = ["DigitClassifier", "TrainedClassifier", "train_digit_classifier"]
