"""A name for this worker process, unique across hosts and restarts."""

import os
import socket
import uuid

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
