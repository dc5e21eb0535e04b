"""No network at import or run: with every socket connection and name lookup refused, the
package imports, loads MobileSAM from the local weights and segments an image (the default
in-process path; Dask workers talk over loopback sockets by design and are not this path)."""

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent('''
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    import numpy as np
    from wsi_sat import api
    from wsi_sat.cli import app  # noqa: F401 (every command module imports)

    seg = api.load_segmenter(api.load_config(None, ["runtime.device=cpu",
                                                    "sat.reference.augment=false",
                                                    "sat.decode.mode=map",
                                                    "sat.pixel.enabled=false"]))
    img = np.full((256, 256, 3), 230, np.uint8)
    img[64:192, 64:192] = (120, 60, 150)
    mask = np.zeros((256, 256), bool)
    mask[64:192, 64:192] = True
    ref = seg.prepare_reference([(img, mask)])
    res = seg.segment([img], ref)[0]
    print("ok", res.mask.mean())
''')


def test_imports_and_segments_with_the_network_refused():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok")
