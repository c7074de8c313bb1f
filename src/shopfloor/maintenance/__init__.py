"""Predictive maintenance from sensor histories, vibration and process records.

Readers and data tools of the application: ``histories`` (multi-unit sensor histories, C-MAPSS), ``windows`` (RUL
target, unit-wise split, sliding windows), ``vibration`` (CWRU .mat and signal folders, leak-free time split),
``tabular`` (process records and their encoder), ``sequence`` (LSTM/GRU/1D-CNN/Transformer encoders used by several
tasks).

Tasks, one sub-package each:
- ``rul/``: ``rul``, remaining useful life with intervals (:class:`RemainingUsefulLife`);
- ``fault_diagnosis/``: ``fault-diagnosis`` from raw vibration (:class:`FaultDiagnosis`);
- ``failure_prediction/``: ``failure-prediction`` from process records (:class:`FailurePrediction`).

May import ``shopfloor.core``; never another application package.
"""
