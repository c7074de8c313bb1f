"""Acoustic monitoring: the shared audio front end (readers, resampling, log-mel inside the exported graph,
augmentation) and the tasks that listen: ``machine-sound`` (anomalies from normal recordings only)."""
