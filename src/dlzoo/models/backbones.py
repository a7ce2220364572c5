"""Moved to :mod:`dlzoo.networks.backbones` (networks import no Lightning); kept for old imports."""

from dlzoo.networks.backbones import *  # noqa: F403
from dlzoo.networks.backbones import __all__  # noqa: F401
