"""Sidecar JSON next to each .tflite (`foo.tflite` + `foo.json`) that the node's catalog reads.

The contract is in the project notes; `validate_metadata` enforces it so a bad file fails here,
at conversion time, and not on the robot.
"""
import json
import re

FORMAT_VERSION = 1
QUANTIZATIONS = ('none', 'dynamic', 'float16', 'int8')
ARCHITECTURES = ('fritz', 'fritz_small', 'efficient')
TARGETS = ('current', 'nano')
NAME_PATTERN = re.compile(r'^[a-z0-9_]+$')

# Paintings of the style images in shared/data/styles (see shared/data/SOURCES.md), keyed by the
# style file's stem. Every artist died in or before 1954.
PAINTINGS = {
    'starry_night': ('The Starry Night (1889)', 'Vincent van Gogh', 1890),
    'the_scream': ('The Scream (1893)', 'Edvard Munch', 1944),
    'great_wave_off_kanagawa': ('The Great Wave off Kanagawa (c. 1831)', 'Katsushika Hokusai',
                                1849),
    'composition_vii': ('Composition VII (1913)', 'Wassily Kandinsky', 1944),
    'shipwreck_of_the_minotaur': ('The Shipwreck of the Minotaur (c. 1810)', 'J. M. W. Turner',
                                  1851),
    'udnie': ('Udnie (1913)', 'Francis Picabia', 1953),
    'san_giorgio_maggiore_at_dusk': ('San Giorgio Maggiore at Dusk (1908-1912)', 'Claude Monet',
                                     1926),
    'mondrian_composition': ('Cubist-period composition (c. 1913-14)', 'Piet Mondrian', 1944),
    'woman_with_a_hat': ('Woman with a Hat (1905)', 'Henri Matisse', 1954),
}
# Other reproductions of a painting above (shared/data/styles/variants) map to the painting.
VARIANTS = {
    'starry_night_fritz_640x480': 'starry_night',
    'starry_night_johnson_1024x640': 'starry_night',
    'starry_night_opencv_752x600': 'starry_night',
}


def painting_key(style):
    """Table key for a style name or file stem: exact, a known variant, or the longest key
    that prefixes it (so 'starry_night_256x256_025' -> 'starry_night'); None if unknown."""
    if style in PAINTINGS:
        return style
    if style in VARIANTS:
        return VARIANTS[style]
    prefixes = [key for key in PAINTINGS if style.startswith(key)]
    return max(prefixes, key=len) if prefixes else None


def build_metadata(name, quantization, architecture, alpha, training_size, styles,
                   conditional=False, description=None, training_command=None,
                   target='current', verified_runtimes=None, **extra):
    """Fill a sidecar dict; painting/artist/licence come from PAINTINGS via the style names.

    styles: style names or file stems (one per style; the order of a conditional model's
    style_weights input). extra: further keys (e.g. op_versions) stored as given.
    """
    keys = [painting_key(style) for style in styles]
    known = [PAINTINGS[key] for key in keys if key]
    paintings = ', '.join(painting for painting, _, _ in known)
    artists = ', '.join(dict.fromkeys(artist for _, artist, _ in known))
    if known and len(known) == len(styles):
        last_death = max(death for _, _, death in known)
        licence = f'public domain (artist died {last_death}); model MIT'
    else:
        last_death = None
        licence = 'style image licence unknown; model MIT'
    if description is None:
        subject = f"{artists}'s {paintings.split(' (')[0]}" if len(known) == 1 else paintings
        description = f'{subject or ", ".join(styles)}, {architecture} network'
    metadata = {
        'format_version': FORMAT_VERSION,
        'name': name,
        'description': description,
        'painting': paintings,
        'artist': artists,
        'licence': licence,
        'training_size': [int(training_size[0]), int(training_size[1])],
        'quantization': quantization,
        'architecture': architecture,
        'alpha': float(alpha),
        'target': target,
    }
    if last_death is not None and len(known) == 1:
        metadata['artist_death_year'] = last_death
    if conditional:
        metadata['style_names'] = list(styles)
        metadata['styles'] = [
            {'name': style, 'painting': PAINTINGS[key][0], 'artist': PAINTINGS[key][1],
             'artist_death_year': PAINTINGS[key][2]} if key else {'name': style}
            for style, key in zip(styles, keys)]
    if training_command:
        metadata['training_command'] = training_command
    if verified_runtimes:
        metadata['verified_runtimes'] = list(verified_runtimes)
    metadata.update(extra)
    validate_metadata(metadata)
    return metadata


def validate_metadata(metadata):
    """Raise ValueError listing every way `metadata` breaks the sidecar contract."""
    problems = []
    required = {'format_version': int, 'name': str, 'description': str, 'painting': str,
                'artist': str, 'licence': str, 'training_size': list, 'quantization': str,
                'architecture': str, 'alpha': (int, float)}
    for key, kind in required.items():
        if key not in metadata:
            problems.append(f'missing "{key}"')
        elif not isinstance(metadata[key], kind) or isinstance(metadata[key], bool):
            problems.append(f'"{key}" has type {type(metadata[key]).__name__}')
    if problems:
        raise ValueError('invalid model metadata: ' + '; '.join(problems))
    if metadata['format_version'] != FORMAT_VERSION:
        problems.append(f'format_version {metadata["format_version"]} != {FORMAT_VERSION}')
    if not NAME_PATTERN.match(metadata['name']):
        problems.append(f'name {metadata["name"]!r} is not [a-z0-9_]+')
    size = metadata['training_size']
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        problems.append(f'training_size {size!r} is not [height, width]')
    if metadata['quantization'] not in QUANTIZATIONS:
        problems.append(f'quantization {metadata["quantization"]!r} not in {QUANTIZATIONS}')
    if metadata['architecture'] not in ARCHITECTURES:
        problems.append(f'architecture {metadata["architecture"]!r} not in {ARCHITECTURES}')
    if not 0 < metadata['alpha'] <= 4:
        problems.append(f'alpha {metadata["alpha"]} out of (0, 4]')
    if metadata.get('target', 'current') not in TARGETS:
        problems.append(f'target {metadata["target"]!r} not in {TARGETS}')
    style_names = metadata.get('style_names')
    if style_names is not None and (
            not isinstance(style_names, list) or len(style_names) < 2
            or not all(isinstance(s, str) and NAME_PATTERN.match(s) for s in style_names)):
        problems.append('style_names must be a list of at least two [a-z0-9_]+ names')
    if problems:
        raise ValueError('invalid model metadata: ' + '; '.join(problems))


def write_metadata(path, metadata):
    """Validate, then write pretty JSON (so diffs of checked-in sidecars stay readable)."""
    validate_metadata(metadata)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(metadata, f, indent=2, ensure_ascii=False)
        f.write('\n')


def read_metadata(path):
    """Read and validate a sidecar."""
    with open(path, encoding='utf-8') as f:
        metadata = json.load(f)
    validate_metadata(metadata)
    return metadata
