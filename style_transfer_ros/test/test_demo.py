"""scripts/demo.py end to end on the fixture models: a short run must stylize every style at
the camera's rate, and the demo must fail loudly when a style falls behind."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from style_transfer_ros.catalog import Catalog

pytest.importorskip('skimage')
pytest.importorskip('style_transfer_interfaces.srv')

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(HERE, 'fixtures')


def run_demo(model_dir, output, *options):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, 'scripts', 'demo.py'), '--model-dir', str(model_dir),
         '--seconds-per-style', '0.5', '--output', str(output)] + list(options),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=180)


def test_demo_writes_video_frames_and_summary_for_every_style(tmp_path):
    result = run_demo(FIXTURES, tmp_path)  # the default check: every style >= half the rate
    assert result.returncode == 0, result.stdout

    assert list((tmp_path / 'frames').glob('*.png'))
    assert (tmp_path / 'demo.mp4').stat().st_size > 0
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['node_exit_code'] == 0
    assert summary['slow_styles'] == []
    styles = summary['styles']
    for entry in Catalog([FIXTURES]).entries.values():
        names = ['%s/%s' % (entry.name, s) for s in entry.style_names] or [entry.name]
        for name in names:
            assert styles[name]['frames_out'] > 0, (name, styles)
    assert any('strength 0.5' in label for label in styles)
    assert any(label.startswith('multi_style: ') for label in styles)  # the live blend
    for label, row in styles.items():
        assert row['output_fps'] >= 0.5 * summary['camera_fps'], (label, styles)


def test_demo_fails_loudly_when_a_style_falls_below_the_rate(tmp_path):
    model_dir = tmp_path / 'models'
    model_dir.mkdir()
    for ext in ('.tflite', '.json'):
        shutil.copy(os.path.join(FIXTURES, 'float_dynamic' + ext), str(model_dir))
    # Output can never exceed the camera's rate: asking for 1.5x of it must fail every row.
    result = run_demo(model_dir, tmp_path / 'out', '--min-rate-fraction', '1.5')
    assert result.returncode == 1, result.stdout
    assert 'FAILED: the node fell behind the 20 fps camera' in result.stdout
    assert 'float_dynamic (' in result.stdout
    summary = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert set(summary['slow_styles']) == set(summary['styles']) == {
        'float_dynamic', 'float_dynamic @ strength 0.5'}
