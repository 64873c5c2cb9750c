import os
import sys

try:
    from mnist_exp.app import cli
except KeyboardInterrupt:  # Ctrl-C while torch and Hydra load (seconds): before anything is read or written
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise
    print("Stopped by Ctrl-C before training started: nothing was written.", file=sys.stderr)
    sys.exit(130)

cli()
