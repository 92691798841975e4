"""Ending a run cleanly on SIGINT or SIGTERM, whatever it is doing.

A Python signal handler runs only in the main thread, between bytecodes: it
waits while XLA compiles or runs a long chunk, and when it does run it
raises ``KeyboardInterrupt`` wherever the main thread is -- in the middle of
an orbax save, whose background threads then print tracebacks ("Event loop
is closed") at shutdown and leave ``*.orbax-checkpoint-tmp*`` folders behind.

So the command installs a watcher instead (:func:`install`): the signal is
written to a socket by CPython's C-level handler (``signal.set_wakeup_fd``,
immediately, from whichever thread receives it), a daemon thread reads it,
waits until no :func:`deferred` section is running (saves and output files
use one), and calls the command's ``on_interrupt``, which cleans up, prints
one line and ends the process with ``os._exit`` -- no library thread gets to
print anything after that.

Library code marks its critical sections with :func:`deferred`. Without an
installed watcher (the library called from the user's own program), a
SIGINT arriving in the main thread inside such a section is held back and
delivered, as the usual ``KeyboardInterrupt``, once the section is over: a
Ctrl-C in a notebook never lands in the middle of a save.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from typing import Callable, Iterator

# A save that takes longer than this is abandoned by an interrupt (its
# temporary folder is removed by the command's cleanup).
_MAX_WAIT_SECONDS = 60.0

_critical = threading.RLock()
_state = {"watcher": False, "depth": 0}  # depth: nested deferred sections


@contextlib.contextmanager
def deferred() -> Iterator[None]:
  """A section an interrupt waits for (a save, an atomic write).

  Example::

    with interrupts.deferred():
      write_to_temporary_file_then_rename()
  """
  with _critical:
    # getsignal is None when a non-Python handler is installed: leave it.
    hold_sigint = (not _state["watcher"] and _state["depth"] == 0
                   and threading.current_thread() is threading.main_thread()
                   and signal.getsignal(signal.SIGINT) is not None)
    held = []
    previous = (signal.signal(signal.SIGINT, lambda s, f: held.append(s))
                if hold_sigint else None)
    _state["depth"] += 1
    try:
      yield
    finally:
      _state["depth"] -= 1
      if hold_sigint:
        signal.signal(signal.SIGINT, previous)
        if held:  # delivered now, to whatever handled it before
          signal.raise_signal(signal.SIGINT)


class Watcher:
  """The installed signal watcher; :meth:`uninstall` restores the old state."""

  def __init__(self, on_interrupt: Callable[[int], None],
               signals: tuple[int, ...]):
    self._on_interrupt = on_interrupt
    self._signals = signals
    self._receiver, self._sender = socket.socketpair()
    self._sender.setblocking(False)
    # A no-op Python handler: the real work happens in the watcher thread,
    # so no KeyboardInterrupt is ever raised inside a library call.
    self._previous = {s: signal.signal(s, _ignore) for s in signals}
    self._previous_fd = signal.set_wakeup_fd(self._sender.fileno(),
                                             warn_on_full_buffer=False)
    self._thread = threading.Thread(target=self._watch, daemon=True,
                                    name="lrtransfer-interrupts")
    self._thread.start()
    _state["watcher"] = True

  def _watch(self) -> None:
    while True:
      try:
        received = self._receiver.recv(64)
      except OSError:
        return
      if not received:  # uninstalled
        return
      chosen = [s for s in received if s in self._signals]
      if chosen:
        acquired = _critical.acquire(timeout=_MAX_WAIT_SECONDS)
        try:
          self._on_interrupt(chosen[0])  # normally ends the process
        finally:
          if acquired:
            _critical.release()

  def uninstall(self) -> None:
    _state["watcher"] = False
    signal.set_wakeup_fd(self._previous_fd)
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._sender.close()
    self._receiver.close()


def _ignore(signum, frame) -> None:
  del signum, frame


def install(on_interrupt: Callable[[int], None],
            signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
            ) -> Watcher:
  """Calls ``on_interrupt(signum)`` outside any :func:`deferred` section.

  Must be called from the main thread. ``on_interrupt`` runs in a watcher
  thread and must end the process (``os._exit``): the main thread is not
  stopped and may still be computing.

  Returns:
    The :class:`Watcher`; ``uninstall()`` restores the previous handlers.
  """
  return Watcher(on_interrupt, signals)
