"""Shifts this Python process's wall clock by TEST_CLOCK_SKEW_S seconds (the fault tests put this
directory first on PYTHONPATH of one worker): `time.time()`, `datetime.now()` and friends run that far
ahead (or behind) and keep ticking; the monotonic clock, which only ever compares with itself, stays.

Why not libfaketime, which the web's skew test uses: Debian's 0.9.10 with any FAKETIME offset makes a
threaded CPython hang in its first timed lock wait (`threading.Event().wait(1)` never returns), so
a Celery worker's background thread would never run; gevent's web processes do not wait that way.
"""

import os
import time

_skew = os.environ.get("TEST_CLOCK_SKEW_S")
if _skew:
    import time_machine

    time_machine.travel(time.time() + float(_skew), tick=True).start()
