"""Deployment: ``export`` (bundles with a sealed manifest), ``bundle`` (reading them) and
``serve`` (a LitServe API over a DataModule's preprocessor and the model's task)."""
