#!/usr/bin/env python3
"""bench/kvbench/machine.py's transcript header: the first line of every experiment transcript the
docs quote (bench/results/*.txt) names the script, its arguments, the machine and the date, in
the one format the helper prints. No servers run."""
import contextlib
import glob
import io
import os
import re
import sys
import unittest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench")
sys.path.insert(0, BENCH)
from kvbench import machine  # noqa: E402

# script args; CPU (ISA), N cores, M GiB, Linux kernel; [extra; or extra, ]date
HEADER = re.compile(r"^bench/experiments/(?P<script>\w+\.py) (?P<args>[^;]*); "
                    r"(?P<machine>.+ \(.*\), \d+ cores, [\d.]+ GiB, Linux \S+); "
                    r"(?P<extra>.*?)(?P<date>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)$")


class TranscriptHeaderTest(unittest.TestCase):
    def header(self, *args, **kwargs):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            line = machine.transcript_header(*args, **kwargs)
        self.assertEqual(out.getvalue(), line + "\n")
        m = HEADER.match(line)
        self.assertIsNotNone(m, line)
        self.assertEqual(m["machine"], machine.machine_desc(machine.machine()))
        return m

    def test_names_the_script_its_arguments_and_the_extra_text(self):
        m = self.header("/some/where/bench/experiments/next_turn_after_writes.py", (32000, 2, 16),
                        "bench model, 2 threads, ")
        self.assertEqual(m["script"], "next_turn_after_writes.py")
        self.assertEqual(m["args"], "32000 2 16")
        self.assertEqual(m["extra"], "bench model, 2 threads, ")

    def test_without_arguments_or_extra_text(self):
        m = self.header("idle_limit_rr.py")
        self.assertEqual((m["args"], m["extra"]), ("", ""))

    def test_every_experiment_transcript_starts_with_such_a_header(self):
        checked = 0
        for path in sorted(glob.glob(os.path.join(BENCH, "results", "*.txt"))):
            with open(path) as f:
                first = f.readline().rstrip("\n")
            if not first.startswith("bench/experiments/"):
                continue  # transcripts of other tools (e.g. profile_decode.sh) have their own header
            m = HEADER.match(first)
            self.assertIsNotNone(m, f"{os.path.basename(path)}: {first}")
            self.assertTrue(os.path.exists(os.path.join(BENCH, "experiments", m["script"])), first)
            checked += 1
        self.assertGreater(checked, 0)


if __name__ == "__main__":
    unittest.main()
