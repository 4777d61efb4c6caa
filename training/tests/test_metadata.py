from style_training.metadata import build_metadata, painting_key
from style_transfer_ros.model_contract import read_sidecar, sidecar_problems, write_sidecar


def test_round_trip_fills_painting_from_style_stem(tmp_path):
    metadata = build_metadata('starry_night', 'float16', 'fritz', 0.25, (256, 256),
                              ['starry_night_fritz_640x480'], training_command='style-train ...')
    path = tmp_path / 'starry_night.json'
    write_sidecar(path, metadata)
    loaded = read_sidecar(path)
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
    assert sidecar_problems(metadata) == []
    assert metadata['style_names'] == ['udnie', 'the_scream']
    assert [s['artist'] for s in metadata['styles']] == ['Francis Picabia', 'Edvard Munch']
    assert metadata['licence'].startswith('public domain (artist died 1953)')


def test_unknown_style_gets_no_public_domain_claim():
    metadata = build_metadata('umbrella', 'none', 'fritz', 0.25, (256, 256), ['umbrella_style'])
    assert metadata['artist'] == ''
    assert 'unknown' in metadata['licence']
