"""``python -m mnist_exp`` and the ``mnist-exp`` script: the app's ``cli``, imported here so that a Ctrl-C while
torch and Hydra load (seconds, before anything is read or written) is one line, not a traceback."""

import os
import sys


def main() -> None:
    try:
        from mnist_exp.app import cli
    except KeyboardInterrupt:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print("Stopped by Ctrl-C before training started: nothing was written.", file=sys.stderr)
        sys.exit(130)
    cli()


if __name__ == "__main__":
    main()
