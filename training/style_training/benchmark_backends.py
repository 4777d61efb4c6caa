"""Training images/s of each Keras backend on this machine: the same train.py run (VGG16
loss) on each backend in turn, back to back, so both see the same load; prints each one's
steady rate (the steps after the first `--warmup`, which compile) and their ratio."""
import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

LOG_LINE = re.compile(r'^step (\d+)/\d+ .* ([\d.]+) images/s$', re.MULTILINE)


def steady_rate(log, batch_size, warmup):
    """images/s between step `warmup` and the last step, from the log's cumulative rates."""
    rates = {int(step): float(rate) for step, rate in LOG_LINE.findall(log)}
    last = max(rates)
    seconds = {step: step * batch_size / rate for step, rate in rates.items()}
    return (last - warmup) * batch_size / (seconds[last] - seconds[warmup])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--content', required=True)
    parser.add_argument('--style', required=True)
    parser.add_argument('--backends', default='tensorflow,jax')
    parser.add_argument('--image-size', type=int, default=256)
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--steps', type=int, default=14)
    parser.add_argument('--warmup', type=int, default=4)
    args = parser.parse_args(argv)
    rates = {}
    for backend in args.backends.split(','):
        with tempfile.TemporaryDirectory() as output:
            result = subprocess.run(
                [sys.executable, '-m', 'style_training.train', '--style', args.style,
                 '--content', args.content, '--output-dir', output, '--image-size',
                 str(args.image_size), '--batch-size', str(args.batch_size), '--steps',
                 str(args.steps), '--log-every', '1'], capture_output=True, text=True,
                env={**os.environ, 'KERAS_BACKEND': backend}, cwd=Path(__file__).parents[1])
        if result.returncode:
            raise SystemExit(result.stdout + result.stderr)
        rates[backend] = steady_rate(result.stdout, args.batch_size, args.warmup)
        print(f'{backend}: {rates[backend]:.2f} images/s ({args.image_size} px, batch '
              f'{args.batch_size}, VGG16 loss, steps {args.warmup}..{args.steps})', flush=True)
    first = next(iter(rates))
    for backend, rate in rates.items():
        print(f'{backend} / {first}: {rate / rates[first]:.2f}')


if __name__ == '__main__':
    main()
