"""Ray Serve: the model deployments, the ingress (wire), the realtime engine, admission and the
application builder (``deployments.app:build_app``). Import contracts: ``[tool.importlinter]`` in
``pyproject.toml``."""
