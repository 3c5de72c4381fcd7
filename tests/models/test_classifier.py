"""The digit classifier that supplies features for Fréchet distances of generated digits."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from ebm_jax import data, diagnostics
from ebm_jax.models.classifier import DigitClassifier, train_digit_classifier


@pytest.fixture(scope="module")
def classifier_and_digits():
    digits = data.load_digits()
    classifier = train_digit_classifier(
        jax.random.key(0),
        digits.train,
        digits.train_labels,
        digits.test,
        digits.test_labels,
        num_steps=600,
    )
    return classifier, digits


def test_classifier_learns_digits_and_exposes_features(classifier_and_digits):
    classifier, digits = classifier_and_digits
    assert classifier.test_accuracy > 0.93  # chance is 0.1
    features = classifier.features(digits.test)
    assert features.shape == (len(digits.test), 128)
    predictions = np.asarray(classifier.predict(digits.test))
    np.testing.assert_allclose(np.mean(predictions == digits.test_labels), classifier.test_accuracy)


def test_features_separate_real_digits_from_noise(classifier_and_digits):
    """Train vs test digits are close in feature space; uniform noise images are far."""
    classifier, digits = classifier_and_digits
    real = diagnostics.frechet_distance(
        classifier.features(digits.train), classifier.features(digits.test)
    )
    noise = np.random.default_rng(0).uniform(size=digits.test.shape)
    fake = diagnostics.frechet_distance(
        classifier.features(digits.test), classifier.features(noise)
    )
    assert fake > 10.0 * real


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="hidden_sizes"):
        DigitClassifier(hidden_sizes=())
    with pytest.raises(ValueError, match="train_labels"):
        train_digit_classifier(
            jax.random.key(0), np.zeros((10, 64)), np.zeros(9), np.zeros((2, 64)), np.zeros(2)
        )
