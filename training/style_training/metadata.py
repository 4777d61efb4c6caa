"""What a sidecar says about the paintings: its content, filled in from the style names.

The format and its validation are the node's (style_transfer_ros.model_contract); the
converter writes through its validator, so a bad file fails here and not on the robot.
"""
from style_transfer_ros.model_contract import FORMAT_VERSION

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
                   target='current'):
    """A sidecar dict (not yet validated); painting/artist/licence come from PAINTINGS via the
    style names. styles: style names or file stems (one per style; the order of a conditional
    model's style_weights input)."""
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
    return metadata
