"""Defect inspection from product images.

Readers and data tools of the application: ``images`` (the one decode/resize path of every task, class folders),
``layouts`` (MVTec AD and plain good/defective folders, masks), ``inputs`` (training intensity ranges and bad inputs
of a batch, for both tasks), ``augment`` (Keras-style knobs on kornia), ``backbones`` (EfficientNet-Lite, offline
weights), ``synthetic`` (seeded surface images for demos and tests).

Tasks, one sub-package each with its task, pure models, metrics and report:
- ``classification/``: ``defect-classification`` (:class:`DefectClassification`);
- ``anomaly/``: ``anomaly-detection`` trained on good parts only, with localisation (:class:`AnomalyDetection`).

May import ``shopfloor.core``; never another application package.
"""
