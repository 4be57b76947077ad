"""python -m ugicm_codec.training [config.toml] [key=value ...]: headless training entry point."""

import json
import sys

from .config import TrainConfig
from .loop import Trainer


def main(argv: list[str]) -> int:
    path = argv[0] if argv and "=" not in argv[0] else None
    overrides = {}
    for item in argv[1 if path else 0 :]:
        key, _, value = item.partition("=")
        try:  # numbers, booleans, lists as JSON; anything else is a string
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    # One line for what the caller got wrong, as `ugicm train` does; a traceback only for our bugs.
    try:
        cfg = TrainConfig.load(path, overrides)
    except (ValueError, OSError) as e:
        print(f"ugicm: error: {e}", file=sys.stderr)
        return 2
    try:
        trainer = Trainer(cfg, reporter=lambda r: print(json.dumps(r), flush=True))
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"ugicm: error: {e}", file=sys.stderr)
        return 1
    print(trainer.start(), file=sys.stderr, flush=True)
    trainer.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
