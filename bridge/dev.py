"""`npm run dev` (`python -m bridge.dev`): Ponte under supervisord, restarted when code changes.

Runs `ponte run` (supervisord in the foreground, serve + worker + embedded Redis) as a child and
watches `bridge/`, `sidecar/` and `supervisord.conf`. A change sends supervisord SIGHUP: it
stops every program in order (each within its `stopwaitsecs`, sidecars after their session
writes) and starts them again on the new code. Ctrl-C or SIGTERM stops supervisord the same way
and waits for it, so nothing is left running.

Why not `watchfiles 'ponte run'`: on every change and on exit the watchfiles command SIGKILLs
supervisord after a few seconds, which leaves serve, the worker and Redis orphaned.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WATCHED = ("bridge", "sidecar", "supervisord.conf")


def _say(text: str) -> None:
    print(f"ponte dev: {text}", file=sys.stderr, flush=True)


def main() -> int:
    try:
        from watchfiles import watch
    except ImportError:
        _say("watchfiles is missing: it is a development dependency (make setup)")
        return 1
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    argv = [sys.executable, "-m", "bridge.cli", "run"]
    child = subprocess.Popen(argv, cwd=PROJECT_ROOT)
    reported_exit = False
    try:
        for changes in watch(*(PROJECT_ROOT / p for p in WATCHED), stop_event=stop,
                             raise_interrupt=False, yield_on_timeout=True, rust_timeout=1000):
            if child.poll() is not None and not reported_exit:
                # e.g. a missing setting: wait for the fix rather than loop on the failure.
                _say(f"ponte run exited ({child.returncode}); waiting for a change")
                reported_exit = True
            if not changes:
                continue
            names = sorted({Path(path).name for _, path in changes})
            if child.poll() is None:
                _say(f"{', '.join(names[:5])} changed: restarting every program (SIGHUP)")
                child.send_signal(signal.SIGHUP)
            else:
                _say(f"{', '.join(names[:5])} changed: starting ponte run again")
                child = subprocess.Popen(argv, cwd=PROJECT_ROOT)
                reported_exit = False
    finally:
        if child.poll() is None:
            # Ctrl-C reached supervisord too (same process group); SIGTERM covers `kill`.
            child.send_signal(signal.SIGTERM)
        # No timeout: supervisord bounds each program's stop by its stopwaitsecs.
        child.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
