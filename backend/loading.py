"""One model load at a time in the process.

diffsynth's loader patches process-wide torch state while it loads (meta-device init, parameter
construction), so anything else that builds torch modules at the same time breaks: two engine
loads ("Cannot copy out of meta tensor"), or the safety classifier's transformers load
("Parameter.__new__() got an unexpected keyword argument"). Every model load holds this lock,
whichever service it belongs to (an abandoned load of a stopped service included).
"""

from __future__ import annotations

import threading

MODEL_LOADS = threading.Lock()
