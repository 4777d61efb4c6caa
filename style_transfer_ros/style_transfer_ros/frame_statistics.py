"""What the node counts per frame, and the health status it reports from that.

The status follows diagnostic_updater's FrequencyStatus and TimeStampStatus (which have no pip
wheel): rates over the last window with the events behind them, and how old the newest input
is. Plain Python (no rclpy); the node turns a Report into a DiagnosticStatus.
"""
import collections
import math
import threading
import time

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels
MOSTLY_DROPPED = 0.5  # WARN when more than this fraction of the window's frames is dropped


def percentile(samples, q):
    """The nearest-rank q-th percentile: the smallest sample that at least q % of the samples
    do not exceed (NaN for none). The node's diagnostics and the scripts' figures use it."""
    if not samples:
        return float('nan')
    ordered = sorted(samples)
    return ordered[max(0, int(math.ceil(q / 100.0 * len(ordered))) - 1)]


def mean_p95(samples):
    if not samples:
        return float('nan'), float('nan')
    return sum(samples) / len(samples), percentile(samples, 95)


class FrameStatistics(object):
    """Counters and recent timings, written by the subscription and the worker, read by the
    diagnostics timer. `count` and `add_time` are the whole per-frame cost."""

    COUNTERS = ('received', 'dropped', 'oversized', 'bad', 'failed', 'published', 'idle')

    def __init__(self, samples=200):
        self._lock = threading.Lock()
        self.totals = dict((name, 0) for name in self.COUNTERS)
        self._window = dict(self.totals)
        self._times = {'inference_ms': collections.deque(maxlen=samples),
                       'latency_ms': collections.deque(maxlen=samples)}
        self.started = time.monotonic()
        self.last_received = None  # monotonic time of the newest input frame
        self.last_error = ''
        self._window_start = time.monotonic()

    def count(self, name, error=None):
        with self._lock:
            self.totals[name] += 1
            self._window[name] += 1
            if name == 'received':
                self.last_received = time.monotonic()
            if error is not None:
                self.last_error = error

    def add_time(self, name, milliseconds):
        with self._lock:
            self._times[name].append(milliseconds)

    def take_window(self):
        """(seconds, counts, {name: samples}) since the previous call; starts a new window."""
        with self._lock:
            now = time.monotonic()
            seconds = max(now - self._window_start, 1e-6)
            counts = self._window
            times = dict((name, list(samples)) for name, samples in self._times.items())
            self._window = dict((name, 0) for name in self.COUNTERS)
            for samples in self._times.values():
                samples.clear()
            self._window_start = now
        return seconds, counts, times


class Report(object):
    """One window's health: level, message and key/value figures."""

    def __init__(self, level, message, values):
        self.level = level
        self.message = message
        self.values = values

    def summary(self, style):
        """The node's one-line rate report."""
        figures = dict(self.values)
        return ('%s; in %s fps, out %s fps, inference %s ms (p95 %s), latency %s ms, dropped %s, '
                '%s' % (self.message, figures['input_fps'], figures['output_fps'],
                        figures['inference_ms_mean'], figures['inference_ms_p95'],
                        figures['latency_ms_mean'], figures['dropped_frames'], style))


def report(statistics, input_timeout, waiting_for_subscribers, input_topic):
    """Close the current window of statistics and judge it.

    ERROR: frames fail in the model. WARN: no input for input_timeout seconds (counted from
    the start before the first frame), most frames dropped, or frames arrive and none go out.
    OK otherwise, including 'no subscribers (lazy)' and a pause shorter than input_timeout.
    """
    seconds, counts, times = statistics.take_window()
    inference_mean, inference_p95 = mean_p95(times['inference_ms'])
    latency_mean, latency_p95 = mean_p95(times['latency_ms'])
    last = statistics.last_received
    silence = time.monotonic() - (statistics.started if last is None else last)
    values = [
        ('input_fps', '%.2f' % (counts['received'] / seconds)),
        ('output_fps', '%.2f' % (counts['published'] / seconds)),
        ('inference_ms_mean', '%.1f' % inference_mean),
        ('inference_ms_p95', '%.1f' % inference_p95),
        ('latency_ms_mean', '%.1f' % latency_mean),
        ('latency_ms_p95', '%.1f' % latency_p95),
        ('seconds_since_last_frame', 'never' if last is None else '%.1f' % silence),
        ('events_in_window', str(counts['received'])),
        ('duration_of_window_s', '%.2f' % seconds),
    ] + [(name + '_frames', str(statistics.totals[name])) for name in
         ('received', 'dropped', 'oversized', 'bad', 'failed', 'published')]
    if counts['failed'] and not counts['published']:
        return Report(ERROR, 'inference fails: %s' % statistics.last_error, values)
    if last is None:
        return Report(WARN if silence > input_timeout else OK,
                      'no frame received yet on %s' % input_topic, values)
    if silence > input_timeout:
        return Report(WARN, 'no frames on %s for %.0f s' % (input_topic, silence), values)
    if waiting_for_subscribers:
        return Report(OK, 'no subscribers (lazy): not stylizing', values)
    if counts['received'] and counts['dropped'] > MOSTLY_DROPPED * counts['received']:
        return Report(WARN, 'dropping most frames (%d of %d): the model is slower than the '
                      'camera; lower processing_size or the camera rate'
                      % (counts['dropped'], counts['received']), values)
    if counts['received'] and not counts['published']:
        return Report(WARN, 'frames arrive but none are published (%s)'
                      % (statistics.last_error or 'see bad/oversized counts'), values)
    if not counts['received'] and not counts['published']:
        return Report(OK, 'no new frame for %.1f s' % silence, values)
    return Report(OK, 'stylizing at %.1f fps' % (counts['published'] / seconds), values)
