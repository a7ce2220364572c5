"""A module a checkpoint could name: importing it leaves a mark (stands for code run on import)."""

import os
from pathlib import Path

Path(os.environ["PLANTED_MARK"]).write_text("imported")


class Planted:
    pass
