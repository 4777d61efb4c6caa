import pytest

from style_training.metadata import (build_metadata, painting_key, read_metadata,
                                     validate_metadata, write_metadata)


def test_round_trip_fills_painting_from_style_stem(tmp_path):
    metadata = build_metadata('starry_night', 'float16', 'fritz', 0.25, (256, 256),
                              ['starry_night_fritz_640x480'], training_command='style-train ...')
    path = tmp_path / 'starry_night.json'
    write_metadata(path, metadata)
    loaded = read_metadata(path)
    assert loaded == metadata
    assert loaded['painting'] == 'The Starry Night (1889)'
    assert loaded['artist'] == 'Vincent van Gogh'
    assert loaded['artist_death_year'] == 1890
    assert 'public domain' in loaded['licence']
    assert loaded['training_size'] == [256, 256]
    assert 'style_names' not in loaded


def test_painting_key_variants_and_fritz_stems():
    assert painting_key('the_scream') == 'the_scream'
    assert painting_key('starry_night_johnson_1024x640') == 'starry_night'
    assert painting_key('starry_night_256x256_small_a03') == 'starry_night'
    assert painting_key('notre_dame_style') is None


def test_conditional_model_lists_styles_in_order():
    metadata = build_metadata('classics', 'none', 'efficient', 0.25, (256, 256),
                              ['udnie', 'the_scream'], conditional=True)
    assert metadata['style_names'] == ['udnie', 'the_scream']
    assert [s['artist'] for s in metadata['styles']] == ['Francis Picabia', 'Edvard Munch']
    assert metadata['licence'].startswith('public domain (artist died 1953)')


def test_unknown_style_gets_no_public_domain_claim():
    metadata = build_metadata('umbrella', 'none', 'fritz', 0.25, (256, 256), ['umbrella_style'])
    assert metadata['artist'] == ''
    assert 'unknown' in metadata['licence']


@pytest.mark.parametrize('change, message', [
    ({'name': 'Starry Night'}, 'name'),
    ({'quantization': 'int4'}, 'quantization'),
    ({'architecture': 'vgg'}, 'architecture'),
    ({'training_size': [256]}, 'training_size'),
    ({'alpha': 0}, 'alpha'),
    ({'target': 'pi'}, 'target'),
    ({'style_names': ['only_one']}, 'style_names'),
    ({'format_version': 2}, 'format_version'),
])
def test_validation_rejects(change, message):
    metadata = build_metadata('starry_night', 'none', 'fritz', 0.25, (256, 256), ['starry_night'])
    with pytest.raises(ValueError, match=message):
        validate_metadata({**metadata, **change})


def test_validation_reports_missing_fields(tmp_path):
    path = tmp_path / 'broken.json'
    path.write_text('{"format_version": 1, "name": "x"}')
    with pytest.raises(ValueError, match='missing "quantization"'):
        read_metadata(path)
