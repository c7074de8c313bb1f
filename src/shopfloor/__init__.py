"""shopfloor: deep learning for the factory floor.

Layers, top to bottom (checked by import-linter in ``make test``; see ``docs/architecture.md``):

- ``cli``, ``demo``, ``tasks``: entry points and the public task facade (``shopfloor.tasks.load``);
- application packages, which never import each other: ``inspection`` (defect classification, anomaly
  detection) and ``maintenance`` (remaining useful life, fault diagnosis, failure prediction);
- ``core``: what every application uses (task base and registry, config, errors, artifact, the one ONNX
  inference path, Lightning glue, reports, generic metrics and explanations). It imports no application.
"""

__version__ = "0.1.0"
