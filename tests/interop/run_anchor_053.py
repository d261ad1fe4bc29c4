"""Serves 0.5.3's anchor blueprint (`anchor_053.py`, unmodified) with Flask's own WSGI server on
127.0.0.1, as its standalone mode does, but on the port given (0: any free one), one request at a time
(0.5.3 reads and rewrites its JSON files without holding a lock across both, so concurrent requests
lose updates; `--threaded` serves each request on a thread, as a deployment behind several workers
would, for throughput measurements), without the debug reloader, and printing `{"ready":true,"url":...}`
once it listens.

Its files go where DARKMATTER_ANCHOR_DIRECTORY and DARKMATTER_RELAY_BUFFER say (set them).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from flask import Flask  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

import anchor_053  # noqa: E402

app = Flask("anchor_053")
app.register_blueprint(anchor_053.anchor_bp)
args = [a for a in sys.argv[1:] if not a.startswith("--")]
port = int(args[0]) if args else 0
server = make_server("127.0.0.1", port, app, threaded="--threaded" in sys.argv)
print(json.dumps({"ready": True, "url": f"http://127.0.0.1:{server.server_port}"}), flush=True)
server.serve_forever()
