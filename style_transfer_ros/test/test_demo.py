"""scripts/demo.py end to end on the fixture models: a short run must stylize every style."""
import json
import os
import subprocess
import sys

import pytest

from style_transfer_ros.catalog import Catalog

pytest.importorskip('skimage')
pytest.importorskip('style_transfer_interfaces.srv')

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(HERE, 'fixtures')


def test_demo_writes_video_frames_and_summary_for_every_style(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, 'scripts', 'demo.py'), '--model-dir', FIXTURES,
         '--seconds-per-style', '0.5', '--output', str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=180)
    assert result.returncode == 0, result.stdout

    assert list((tmp_path / 'frames').glob('*.png'))
    assert (tmp_path / 'demo.mp4').stat().st_size > 0
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['node_exit_code'] == 0
    styles = summary['styles']
    for entry in Catalog([FIXTURES]).entries.values():
        names = ['%s/%s' % (entry.name, s) for s in entry.style_names] or [entry.name]
        for name in names:
            assert styles[name]['frames_out'] > 0, (name, styles)
    assert any('strength 0.5' in label for label in styles)
    assert any(label.startswith('multi_style: ') for label in styles)  # the live blend
    assert all(row['frames_out'] > 0 for row in styles.values()), styles
