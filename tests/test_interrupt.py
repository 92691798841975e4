"""SIGINT / SIGTERM at random moments of `lrtransfer run`.

A chain of real `lrtransfer run --resume` processes, each sent SIGINT or
SIGTERM (to its process group, as Ctrl-C does) at a random moment after it
started working: while the source is compiled or trained, a method compiles,
a step runs or a run checkpoint is saved. Every interrupted process must end
with exit status 130 / 143 and one line, no traceback from any library and
no temporary checkpoint folder; the next process resumes from what the last
one left, and a final uninterrupted `--resume` completes.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from lrtransfer._src import interrupts

WINDOW_SECONDS = 2.5  # the random moment: up to this long after the start
COMMAND = [sys.executable, "-m", "lrtransfer._src.cli", "run", "--methods",
           "adjust,l2sp", "--epochs", "4", "--source-epochs", "1", "--seeds",
           "2", "--shots", "4", "--checkpoint-every", "1", "--resume"]


def _started(stderr_path, proc):
  """Waits for the progress bar: the command is past its imports."""
  deadline = time.monotonic() + 120
  while stderr_path.stat().st_size == 0 and proc.poll() is None:
    assert time.monotonic() < deadline, "the command never started"
    time.sleep(0.01)


def _interrupt_once(out, tmp_path, rng, signum):
  """Runs the command, signals it at a random moment; returns (code, err)."""
  stderr_path = tmp_path / "stderr.txt"
  with open(stderr_path, "w") as stderr:
    proc = subprocess.Popen(COMMAND + ["--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=stderr,
                            start_new_session=True)
    _started(stderr_path, proc)
    time.sleep(rng.uniform(0.0, WINDOW_SECONDS))
    try:
      os.killpg(proc.pid, signum)
    except ProcessLookupError:
      pass  # it finished first
    proc.wait(timeout=120)
  return proc.returncode, stderr_path.read_text()


def _problems(code, err, out, signum):
  """What an interrupted run did wrong (empty: nothing)."""
  problems = []
  if code != 128 + signum:
    problems.append(f"exit status {code}")
  messages = [line for line in err.replace("\r", "\n").splitlines()
              if line.strip() and not line.startswith("fine-tuning")]
  if (len(messages) != 1
      or not messages[0].startswith("lrtransfer: interrupted by")) and not (
          len(messages) == 2 and "nothing to resume" in messages[0]):
    problems.append(f"stderr: {messages}")
  leftovers = [str(p) for p in out.rglob("*orbax-checkpoint-tmp*")]
  if leftovers:
    problems.append(f"temporary folders {leftovers}")
  if (out / "results.json").exists():
    problems.append("results.json of an interrupted run")
  return problems


# Each process imports JAX: the fast tier sends one SIGTERM and one SIGINT;
# the slow tier (-m slow) a chain of 20, which reaches more of the moments
# listed above.
@pytest.mark.parametrize("n_interrupts", [
    2, pytest.param(20, marks=pytest.mark.slow)])
def test_random_interrupts_end_cleanly_and_the_run_resumes(tmp_path,
                                                           n_interrupts):
  rng = random.Random(11)
  out = tmp_path / "out"
  failures, interrupted, attempts = [], 0, 0
  while interrupted < n_interrupts and attempts < 2 * n_interrupts:
    attempts += 1
    signum = (signal.SIGINT, signal.SIGTERM)[attempts % 2]
    code, err = _interrupt_once(out, tmp_path, rng, signum)
    if code == 0:  # finished before the signal: start the chain again
      subprocess.run(["rm", "-rf", str(out)], check=True)
      continue
    interrupted += 1
    failures += [f"attempt {attempts} ({signal.Signals(signum).name}): {p}"
                 for p in _problems(code, err, out, signum)]
  finished = subprocess.run(COMMAND + ["--out", str(out), "--no-progress"],
                            capture_output=True, text=True, timeout=300)
  assert (interrupted, failures, finished.returncode) == (
      n_interrupts, [], 0), finished.stderr
  results = json.loads((out / "results.json").read_text())
  assert set(results["methods"]) == {"adjust", "l2sp"}


def test_an_interrupt_waits_for_a_deferred_section():
  received = []
  watcher = interrupts.install(received.append, signals=(signal.SIGUSR1,))
  try:
    with interrupts.deferred():
      os.kill(os.getpid(), signal.SIGUSR1)
      time.sleep(0.3)  # the watcher has the signal, and must wait
      seen_inside = list(received)
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
      time.sleep(0.01)
  finally:
    watcher.uninstall()
  # ... and the section is free again once the callback returned.
  free = interrupts._critical.acquire(timeout=5)  # pylint: disable=protected-access
  if free:
    interrupts._critical.release()  # pylint: disable=protected-access
  assert (seen_inside, received, free) == ([], [signal.SIGUSR1], True)


def test_without_a_watcher_ctrl_c_waits_for_the_end_of_a_save():
  finished = []
  with pytest.raises(KeyboardInterrupt):
    with interrupts.deferred():
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(0.2)  # the handler has run by now
      finished.append(True)
  assert finished == [True]
