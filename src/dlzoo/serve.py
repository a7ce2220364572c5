"""Old home of :mod:`dlzoo.deploy.serve`; kept so that imports of 0.1.0.dev0 work."""

from dlzoo.deploy.serve import PredictionAPI, RequestChecks, build_server, request_inputs
from dlzoo.deploy.server import serve

__all__ = ["PredictionAPI", "RequestChecks", "build_server", "request_inputs", "serve"]
