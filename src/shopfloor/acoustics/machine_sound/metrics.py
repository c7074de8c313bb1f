"""Machine-sound metrics as DCASE Task 2 reports them: AUC and pAUC (p = 0.1, scikit-learn's standardised
partial AUC, as the DCASE baseline code computes it), overall and per domain, and their harmonic mean.

Per domain (DCASE 2023 rule): the normal clips of that domain against every anomalous clip. A domain without
normal clips, or a test set without anomalies, gives ``None``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.stats import hmean
from sklearn.metrics import roc_auc_score

MAX_FPR = 0.1


def detection_metrics(anomalous: np.ndarray, scores: np.ndarray, domains: Sequence[str | None],
                      threshold: float = 0.5) -> dict[str, Any]:
    """AUC, pAUC, per-domain AUC, harmonic mean, and the decisions at ``threshold`` (normalised scores)."""
    anomalous = np.asarray(anomalous, bool)
    scores = np.asarray(scores, float)
    decided = scores >= threshold
    normals = ~anomalous
    out: dict[str, Any] = {
        "auc": float(roc_auc_score(anomalous, scores)),
        "pauc": float(roc_auc_score(anomalous, scores, max_fpr=MAX_FPR)),
        "n_test": int(len(scores)), "n_normal": int(normals.sum()), "n_anomaly": int(anomalous.sum()),
        "false_alarm_rate": float(decided[normals].mean()) if normals.any() else None,
        "detection_rate": float(decided[anomalous].mean()) if anomalous.any() else None,
        "accuracy": float((decided == anomalous).mean()),
    }
    known = sorted({d for d in domains if d})
    per_domain = []
    for domain in known:
        keep = np.array([(d == domain) for d in domains]) & normals | anomalous
        if (normals & keep).any():
            out[f"auc_{domain}"] = float(roc_auc_score(anomalous[keep], scores[keep]))
            per_domain.append(out[f"auc_{domain}"])
        else:
            out[f"auc_{domain}"] = None
    out["hmean"] = float(hmean([max(v, 1e-12) for v in (per_domain or [out["auc"]]) + [out["pauc"]]]))
    return out
