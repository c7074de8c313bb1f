"""Remaining useful life (RUL) from multi-unit sensor histories.

Data: a NASA C-MAPSS folder (``--subset FD001``) or a long-format CSV/Parquet table (one row per unit
and cycle; see :mod:`shopfloor.maintenance.histories`). Training units run to failure.

Pipeline: operating conditions are clustered from the settings and every sensor is standardised per
condition (constant sensors dropped); sliding windows of ``window`` cycles are the input and the
piecewise-linear RUL capped at ``rul_cap`` is the target; training and validation are split by unit
(each member holds out its own block of units). A small deep ensemble of sequence models (``--model
cnn1d|lstm|gru|transformer``) is trained; the prediction interval is split-conformal on the held-out
units' errors (constant width, or scaled by the members' spread with ``--interval-width spread``). The
exported ONNX graph takes raw readings ``(batch, window, features)`` and returns ``rul``, ``lower``,
``upper`` and ``spread``: normalisation, ensemble averaging and the interval all live inside it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from shopfloor.core.artifact import fingerprint_arrays
from shopfloor.core.errors import DataError
from shopfloor.core.ranges import InputRanges
from shopfloor.core.task import OnnxSignature, TableColumns, Task, batched, read_inputs, to_jsonable
from shopfloor.core.training import SupervisedModule, fit_supervised, seed_everything

from ..checks import extreme_values, list_items
from ..histories import RUL, TIME, UNIT, SensorHistories, load_histories, plain
from ..sequence import build_sequence_model
from ..windows import (
    ConditionNormalizer,
    Windows,
    fit_condition_normalizer,
    make_windows,
    piecewise_rul,
    split_units,
)
from .incomplete import (
    UNCALIBRATED_BASELINE_FACTOR,
    UNSEEN_CONDITION_FACTOR,
    baseline_factor,
    condition_distance,
    fleet_reference,
    missing_readings,
    substitute_reference,
    widen_interval,
)
from .estimates import calibrate_interval, combine_recent, history_starts, last_per_unit
from .metrics import interval_coverage, rul_metrics
from .networks import RULEnsemble, WindowFeatures, WindowRegressor
from .report import write_evaluation_report
from .settings import EvaluateOptions, PredictionOptions, RULConfig, RULTrainingConfig  # noqa: F401 - importable here as before

OUTPUTS = ["rul", "lower", "upper", "spread"]

log = logging.getLogger(__name__)


def _input_name(index: int, item: Any) -> str:
    """How a predict input is named in messages and skipped rows."""
    if isinstance(item, pd.DataFrame):
        return f"<DataFrame {index}>"
    return item.source if isinstance(item, SensorHistories) else str(item)


def _inputs_note(settings: list[str], sensors: list[str], dropped: list[str]) -> str:
    """The training note that lists the model's inputs (so an unintended column is seen at once)."""
    age = TIME in sensors
    sensors = [s for s in sensors if s != TIME]
    return (f"model inputs: {len(settings)} setting(s) [{', '.join(settings)}], {len(sensors)} sensor(s) "
            f"[{', '.join(sensors)}]" + (", and the time column (age)" if age else "")
            + (f"; dropped as constant: [{', '.join(dropped)}]" if dropped else "")
            + ". Leave columns out with --id-columns or choose them with --sensor-columns")


def _loader(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int,
            per_epoch: int = 0) -> DataLoader:
    """Whole-batch indexing of in-memory tensors (much faster than per-item collation); with ``shuffle``,
    each epoch draws ``per_epoch`` windows at random without replacement (0 = all)."""
    dataset = TensorDataset(torch.as_tensor(x), torch.as_tensor(y))
    n = min(len(dataset), per_epoch) if per_epoch else len(dataset)
    sampler = RandomSampler(dataset, num_samples=n, generator=torch.Generator().manual_seed(seed)) if shuffle \
        else SequentialSampler(dataset)
    return DataLoader(dataset, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None)


# ----------------------------------------------------------------------------- the task
class RemainingUsefulLife(Task):
    """Remaining useful life from sensor histories (see module docstring)."""

    name = "rul"
    input_kind = "table"  # one unit's (or several units') recent history, rows in time order
    input_suffixes = (".csv", ".parquet", ".pq", ".txt")
    Config = RULConfig
    EvaluateOptions = EvaluateOptions
    predates = {"member_validation": "shared", "interval_width": "spread"}

    # ----------------------------------------------------------------- model
    @property
    def features(self) -> list[str]:
        """The model's input columns, in order (the time column appears as ``time`` with ``age_feature``)."""
        return list(self.state["features"])

    @property
    def data_columns(self) -> list[str]:
        """The columns an input table must provide besides unit and time."""
        return [c for c in self.features if c != TIME]

    def table_columns(self) -> TableColumns:
        """A history row: the unit and time columns (named as in training) and the settings and sensors."""
        self.require_model()
        return TableColumns(values=tuple(self.data_columns), unit=self.config.data.unit_column,
                            time=self.config.data.time_column)

    def build_model(self) -> nn.Module:
        s = self.state
        normalizer = ConditionNormalizer(len(s["settings"]), len(s["sensors"]), s["n_conditions"])
        features = WindowFeatures(normalizer, self.config.baseline_cycles)
        return RULEnsemble(features, [self._build_member() for _ in range(self.config.ensemble)], self.config.rul_cap,
                           self._spread_weight)

    @property
    def _spread_weight(self) -> float:
        return 1.0 if self.config.interval_width == "spread" else 0.0

    def _build_member(self) -> nn.Module:
        channels = len(self.state["sensors"]) * (2 if self.config.baseline_cycles else 1)
        return build_sequence_model(self.config.model, channels, 1, seq_len=self.config.window,
                                    **self.config.model_options)

    def onnx_signature(self) -> OnnxSignature:
        example = torch.zeros(2, self.config.baseline_cycles + self.config.window, len(self.features))
        return OnnxSignature(example_inputs=(example,), input_names=["window"], output_names=OUTPUTS)

    def _read(self, data: Any, split: Literal["train", "test"]) -> SensorHistories:
        """Read and check ``data``; for a fitted model (``split="test"``) only its columns are required, columns
        it never saw are named in a warning, and the reader's soft problems are warnings (at training they are
        raised by :meth:`fit` through ``note_warning``, so the artifact keeps them)."""
        fitted = split == "test" and "features" in self.state
        histories = load_histories(data, self.config.data, split,
                                   expected_features=self.data_columns if fitted else None)
        for note in histories.notes:
            log.info("%s", note)
        if fitted:
            for message in histories.warnings:
                warnings.warn(message, UserWarning, stacklevel=3)
            known = set(self.state.get("training_columns") or [])
            unknown = [c for c in histories.columns if known and c not in known
                       and c not in (self.config.data.rul_column, UNIT, TIME, RUL)]
            if unknown:
                warnings.warn(f"{histories.source}: column(s) {list_items(unknown)} were not in the training data and "
                              f"are ignored; the model reads {list_items(self.data_columns, 30)}", UserWarning,
                              stacklevel=3)
        return histories

    def _windows(self, histories: SensorHistories, last_n: int | None = None, stride: int = 1,
                 short_units: str | None = None) -> Windows:
        return make_windows(histories, self.features, self.config.window, stride=stride, last_n=last_n,
                            short_units=short_units or self.config.short_units,
                            baseline_rows=self.config.baseline_cycles)

    def late_units(self, histories: SensorHistories, late_start: str = "estimate") -> list[Any]:
        """With ``baseline_cycles``, each unit's first readings are the reference its windows are compared with:
        the units starting later than any training unit did by more than ``baseline_cycles`` steps (mid-life)
        have none. Returns them (``late_start="estimate"``: their reference is estimated from the fleet, see
        :mod:`.incomplete`) or, with ``"error"``, refuses them."""
        if not self.config.baseline_cycles or "latest_start_time" not in self.state:
            return []
        starts = history_starts(histories)
        limit = self.state["latest_start_time"] + self.config.baseline_cycles
        late = starts[starts > limit]
        if len(late) and late_start == "error":
            listed = ", ".join(f"{plain(u)!r} (from time {t:g})" for u, t in late.head(5).items())
            raise DataError(f"{histories.source}: {len(late)} unit(s) start late: {listed}. The model compares recent "
                            f"readings with each unit's first {self.config.baseline_cycles} readings, so give every "
                            f"unit's history from its start (training units started by time "
                            f"{self.state['latest_start_time']:g}), or let the model estimate it (--late-start "
                            "estimate)")
        return list(late.index)

    def prediction_windows(self, histories: SensorHistories, last_n: int | None = None, short_units: str = "pad",
                           late: Sequence[Any] = ()) -> Windows:
        """Windows as evaluate and predict score them: short units handled by ``short_units``, and the ``late``
        units' reference rows replaced by the fleet's (when the model stores one)."""
        windows = self._windows(histories, last_n=last_n, short_units=short_units)
        reference = self.state.get("fleet_reference")
        mask = np.isin(windows.unit, np.asarray(list(late), dtype=windows.unit.dtype)) if len(late) else None
        if mask is not None and mask.any() and reference is not None:
            network = self.require_model()
            windows.x[mask] = substitute_reference(windows.x[mask], self.config.baseline_cycles,
                                                   network.features.normalizer, np.asarray(reference))
        return windows

    def unit_estimates(self, histories: SensorHistories, short_units: str = "pad",
                       late_start: str = "estimate") -> tuple[Windows, dict[str, np.ndarray]]:
        """Each unit's estimate at its last row: the last window (its RUL truth, unit, time) and the combined
        ONNX outputs (``rul``, ``lower``, ``upper``, ``spread``), plus ``rul_single_window`` (last window alone)
        and ``caveats`` (per unit, why its interval was widened; see :mod:`.incomplete`)."""
        late = self.late_units(histories, late_start)
        windows = self.prediction_windows(histories, self.config.recent_windows, short_units, late)
        outputs = self.run_windows(windows.x)
        combined = combine_recent(windows.unit, windows.end_time, outputs, self.config.recent_windows)
        last = last_per_unit(windows.unit)
        final = Windows(windows.x[last], windows.rul[last], windows.unit[last], windows.end_time[last],
                        windows.padded[last])
        result = {k: v[last] for k, v in combined.items()}
        result["rul_single_window"] = outputs["rul"][last]
        self._widen_for_caveats(histories, final, result, late)
        columns = self._range_columns
        if columns:  # each unit's lowest and highest raw reading over the rows its estimate read
            index = [self.features.index(c) for c in columns]
            groups = pd.Series(windows.unit).to_numpy()
            for key, reduce in (("input_low", "min"), ("input_high", "max")):
                per_window = getattr(windows.x[:, :, index], reduce)(axis=1)
                result[key] = pd.DataFrame(per_window).groupby(groups, sort=False).agg(reduce).to_numpy()
        return final, result

    def _widen_for_caveats(self, histories: SensorHistories, final: Windows, result: dict[str, Any],
                           late: Sequence[Any]) -> None:
        """Widen the intervals of units with missing readings, an estimated baseline or an unseen operating
        condition, and list why in ``result["caveats"]`` (see :mod:`.incomplete`)."""
        cfg, state = self.config, self.state
        caveats: list[list[str]] = [[] for _ in final.unit]
        factor = np.ones(len(final))
        missing = missing_readings(histories, final.unit, cfg.window)
        for i in np.flatnonzero(missing > 1):
            factor[i] *= np.sqrt(missing[i])
            caveats[i].append(f"missing readings: the last window holds {1 / missing[i]:.0%} of the consecutive "
                              f"cycles it should (short history or gaps); interval x{np.sqrt(missing[i]):.2f}")
        late_set = set(late)
        if late_set:
            calibrated = state.get("interval", {}).get("estimated_baseline_factor")
            widen = calibrated if calibrated and state.get("fleet_reference") is not None \
                else UNCALIBRATED_BASELINE_FACTOR
            how = ("the fleet's early-life average" if state.get("fleet_reference") is not None
                   else "its first readings given (this model stores no fleet reference; retrain to estimate one)")
            for i in (i for i, u in enumerate(final.unit) if u in late_set):
                factor[i] *= widen
                caveats[i].append(f"history starts mid-life: its healthy reference is {how}; interval x{widen:.2f}")
        unseen = np.zeros(len(final), dtype=bool)
        radius = state.get("condition_radius")
        if radius is not None and state["settings"]:
            rows = final.x[:, cfg.baseline_cycles:, :len(state["settings"])]
            distance = condition_distance(rows.reshape(-1, rows.shape[2]), self.require_model().features.normalizer)
            unseen = (distance.reshape(rows.shape[:2]) > UNSEEN_CONDITION_FACTOR * max(radius, 1e-9)).any(axis=1)
            for i in np.flatnonzero(unseen):
                caveats[i].append("operating settings unlike any training condition: the normalisation may not hold; "
                                  f"interval opened to [0, max(upper, {cfg.rul_cap:g})]")
        widen_interval(result, factor, unseen, cfg.rul_cap)
        result["caveats"] = caveats
        flagged = [(u, c) for u, c in zip(final.unit, caveats) if c]
        if flagged:
            shown = "; ".join(f"unit {plain(u)!r}: {' / '.join(c)}" for u, c in flagged[:5])
            warnings.warn(f"{histories.source}: {len(flagged)} of {len(final)} unit(s) are estimated with less "
                          f"certainty (wider interval): {shown}{' ...' if len(flagged) > 5 else ''}", UserWarning,
                          stacklevel=3)

    @property
    def _range_columns(self) -> list[str]:
        """The columns whose training ranges are stored (none for models saved before ranges were)."""
        stored = self.state.get("input_ranges")
        columns = list(stored["columns"]) if stored else []
        return columns if all(c in self.features for c in columns) else []

    def _flag_units(self, records: list[str], estimates: list[dict[str, np.ndarray]]) -> list[list[str]]:
        """Flag (warn about, or with ``strict`` refuse) the units whose readings lie far outside the training
        ranges; ``estimates`` are :meth:`unit_estimates` outputs, one per input, in the order of ``records``."""
        ranges = InputRanges.from_state(self.state.get("input_ranges"))
        if ranges is None or not self._range_columns:
            return [[] for _ in records]
        if not records:
            return []
        low = np.concatenate([e["input_low"] for e in estimates])
        high = np.concatenate([e["input_high"] for e in estimates])
        return self.flag_out_of_range("input_ranges", records, extreme_values(low, high, ranges))

    def _estimates(self, model: nn.Module, windows: Windows) -> dict[str, np.ndarray]:
        """Combined estimates (:func:`combine_recent`) of a torch ensemble or of one member on training-time
        windows (interval calibration); one member has no spread, so its interval is the point."""
        with torch.no_grad():
            outputs = [model(torch.as_tensor(windows.x[sl])) for sl in batched(len(windows), 2048)]
        if isinstance(outputs[0], torch.Tensor):
            rul = np.maximum(np.concatenate([o.numpy() for o in outputs]), 0.0)  # clipped like the ensemble's
            per_window = {"rul": rul, "lower": rul, "upper": rul, "spread": np.zeros_like(rul)}
        else:
            per_window = {name: np.concatenate([o[i].numpy() for o in outputs]) for i, name in enumerate(OUTPUTS)}
        return combine_recent(windows.unit, windows.end_time, per_window, self.config.recent_windows)

    # ----------------------------------------------------------------- fit
    def fit(self, data: Any, out_dir: str | Path | None = None) -> "RemainingUsefulLife":
        cfg, train_cfg = self.config, self.config.training
        seed_everything(train_cfg.seed)
        histories = self._read(data, "train")
        if not histories.has_rul:
            raise DataError(f"{histories.source} has no RUL information to train on")
        raw_inputs = list(histories.features)
        if cfg.age_feature:
            histories = dataclasses.replace(histories, sensors=[*histories.sensors, TIME])
        normalizer_fit = fit_condition_normalizer(histories, cfg.operating_conditions, seed=train_cfg.seed)
        if normalizer_fit.dropped_sensors:
            log.info("dropped sensors constant within every operating condition: %s", normalizer_fit.dropped_sensors)
        train_units, val_units = split_units(histories.units, train_cfg.val_fraction, train_cfg.seed)  # sizes per member
        self.state = {
            "features": normalizer_fit.features,
            "settings": normalizer_fit.settings,
            "sensors": normalizer_fit.sensors,
            "dropped_sensors": normalizer_fit.dropped_sensors,
            "n_conditions": len(normalizer_fit.condition_counts),
            "condition_counts": normalizer_fit.condition_counts,
            "notes": [*histories.notes, _inputs_note(normalizer_fit.settings, normalizer_fit.sensors,
                                                     normalizer_fit.dropped_sensors)],
            "training_columns": list(histories.columns),
            "n_train_units": len(train_units),
            "latest_start_time": float(history_starts(histories).max()),
            "n_val_units": len(val_units),
            "input": {"name": "window",
                      "shape": ["batch", cfg.baseline_cycles + cfg.window, len(normalizer_fit.features)],
                      "dtype": "float32", "columns": normalizer_fit.features,
                      "values": "raw readings, oldest first; normalisation is inside the graph",
                      "rows": f"the unit's first {cfg.baseline_cycles} readings (its reference), then the last "
                              f"{cfg.window}" if cfg.baseline_cycles else f"the last {cfg.window} readings",
                      "time": "the unit's time column (cycles since its history began)" if cfg.age_feature
                      else "unused"},
        }
        log.info("%s", self.state["notes"][-1])
        normalizer = normalizer_fit.module
        settings = normalizer_fit.settings
        self.state["condition_radius"] = float(condition_distance(
            histories.frame[settings].to_numpy(dtype=np.float64), normalizer).max()) if settings else 0.0
        if cfg.baseline_cycles:
            self.state["fleet_reference"] = fleet_reference(histories, normalizer_fit.features, normalizer,
                                                            cfg.baseline_cycles).tolist()
        ranged = [c for c in normalizer_fit.features if c in raw_inputs]  # raw settings and sensors, not the age
        self.state["input_ranges"] = InputRanges.fit(histories.frame[ranged].to_numpy(dtype=np.float64),
                                                     ranged).to_state()
        for message in histories.warnings:
            self.note_warning(message)
        self.data_fingerprint = fingerprint_arrays(pd.util.hash_pandas_object(histories.frame, index=False).to_numpy())
        log_dir = Path(out_dir) / "training" if out_dir is not None else None
        features = WindowFeatures(normalizer_fit.module, cfg.baseline_cycles)
        rotating = cfg.member_validation == "rotating"
        members, summaries, held_out, n_train_windows = [], [], [], []
        for k in range(cfg.ensemble):
            if k == 0 or rotating:  # windows: training ones with the configured stride, validation ones all
                member_train, member_val = split_units(histories.units, train_cfg.val_fraction, train_cfg.seed,
                                                       block=k if rotating else 0)
                train_w = self._windows(histories.select_units(member_train), stride=cfg.stride)
                val_w = self._windows(histories.select_units(member_val))
                y_train, y_val = train_w.target(cfg.rul_cap), val_w.target(cfg.rul_cap)
            member_cfg = train_cfg.model_copy(update={"seed": train_cfg.seed + k})
            seed_everything(member_cfg.seed)
            regressor = WindowRegressor(features, self._build_member(), cfg.rul_cap, cfg.input_noise)
            module = SupervisedModule(regressor, nn.MSELoss(), member_cfg, task_kind="regression")
            summary = fit_supervised(
                module, _loader(train_w.x, y_train, member_cfg.batch_size, True, member_cfg.seed, cfg.epoch_windows),
                _loader(val_w.x, y_val, 1024, False, 0), member_cfg,
                log_dir / f"member_{k}" if log_dir is not None else None)
            summaries.append(summary)
            members.append(regressor.model)
            n_train_windows.append(len(train_w))
            if rotating:  # this member's estimates of the units it never trained on
                held_out.append((val_w, y_val, self._estimates(regressor.eval(), val_w)))
        network = RULEnsemble(features, members, cfg.rul_cap, self._spread_weight).eval()
        if not rotating:
            held_out = [(val_w, y_val, self._estimates(network, val_w))]
        y_val = np.concatenate([y for _, y, _ in held_out])
        mean = np.concatenate([e["rul"] for _, _, e in held_out])
        if not self._spread_weight:  # constant width: the quantile of the absolute errors
            spread = np.zeros_like(mean)
        elif rotating:  # the ensemble's spread at the same windows, as at prediction time
            spread = np.concatenate([self._estimates(network, w)["spread"] for w, _, _ in held_out])
        else:
            spread = held_out[0][2]["spread"]
        # early-life windows (truth at the cap) are many and easy; calibrating on them would make the interval
        # too narrow for units already degrading, so the windows below the cap are used when there are enough
        degrading = y_val < cfg.rul_cap
        calibration = degrading if degrading.sum() >= 50 else np.ones_like(degrading)
        scale, offset = calibrate_interval(y_val[calibration], mean[calibration], spread[calibration],
                                           cfg.interval_level)
        network.interval_scale.fill_(scale)
        network.interval_offset.fill_(offset)
        estimated_factor = self._calibrate_estimated_baseline(network, held_out, members, rotating, calibration)
        self.state["interval"] = {
            "method": "deep ensemble + split-conformal scaling on held-out units "
                      + ("(each unit estimated by the one member that never trained on it)" if rotating
                         else "(the validation units, estimated by the whole ensemble)"),
            "calibration_windows": "below the RUL cap" if degrading.sum() >= 50 else "all",
            "level": cfg.interval_level, "scale": scale, "offset": offset,
            "estimated_baseline_factor": estimated_factor}
        self.state["n_calibration_units"] = len(set(np.concatenate([w.unit for w, _, _ in held_out]).tolist()))
        self.torch_model = network
        self.metrics = {
            "val_rmse": rul_metrics(y_val, mean)["rmse"],
            "val_interval_coverage": interval_coverage(y_val, np.maximum(mean - scale * (spread + offset), 0),
                                                       mean + scale * (spread + offset)),
            "member_val_rmse": [math.sqrt(s["best_score"]) if s["best_score"] is not None else None
                                for s in summaries],
            "epochs_run": [s["epochs_run"] for s in summaries],
            "n_train_windows": n_train_windows,
            "n_val_windows": int(len(y_val)),
        }
        self.export()
        if out_dir is not None and all(s["is_global_zero"] for s in summaries):
            self.save(out_dir)
        return self

    def _calibrate_estimated_baseline(self, network: RULEnsemble, held_out: list, members: list[nn.Module],
                                      rotating: bool, calibration: np.ndarray) -> float | None:
        """How much wider the interval of a unit with an estimated (fleet) reference must be: the held-out units
        estimated again with their reference rows replaced by the fleet's, by the same member(s) as before."""
        reference = self.state.get("fleet_reference")
        if reference is None:
            return None
        k, cap = self.config.baseline_cycles, self.config.rul_cap
        own, swapped = [], []
        for i, (windows, _, estimates) in enumerate(held_out):
            model = WindowRegressor(network.features, members[i], cap).eval() if rotating else network
            x = substitute_reference(windows.x, k, network.features.normalizer, np.asarray(reference))
            swapped.append(self._estimates(model, dataclasses.replace(windows, x=x))["rul"])
            own.append(estimates["rul"])
        y = np.concatenate([y for _, y, _ in held_out])
        return baseline_factor(y[calibration], np.concatenate(own)[calibration], np.concatenate(swapped)[calibration],
                               self.config.interval_level)

    # ----------------------------------------------------------------- inference (always ONNX Runtime)
    def run_windows(self, windows: np.ndarray, batch_size: int = 1024) -> dict[str, np.ndarray]:
        """RUL, interval and spread for raw windows (n, window, features), through ONNX Runtime."""
        return self.runtime.run_batches({"window": windows[sl]} for sl in batched(len(windows), batch_size))

    def evaluate(self, data: Any, report_dir: str | Path | None = None, **options: Any) -> dict[str, Any]:
        opts = self.EvaluateOptions(**options)
        histories = self._read(data, "test")
        if not histories.has_rul:
            raise DataError(f"{histories.source} has no true RUL: give a C-MAPSS folder with RUL_<subset>.txt or a "
                            "table "
                            f"with a {self.config.data.rul_column!r} column (at least at each unit's last row)")
        last, out = self.unit_estimates(histories, opts.short_units, opts.late_start)
        flagged = self._flag_units([f"{histories.source} unit {plain(u)!r}" for u in last.unit], [out])
        cap = self.config.rul_cap
        capped = piecewise_rul(last.rul, cap)
        metrics = rul_metrics(capped, out["rul"], out["lower"], out["upper"])
        raw = rul_metrics(last.rul, out["rul"], out["lower"], out["upper"])
        single = rul_metrics(capped, out["rul_single_window"])
        result = {
            **metrics,
            "rmse_raw": raw["rmse"],
            "mae_raw": raw["mae"],
            "nasa_score_raw": raw["nasa_score"],
            "interval_coverage_raw": raw["interval_coverage"],
            "rmse_single_window": single["rmse"],
            "nasa_score_single_window": single["nasa_score"],
            "recent_windows": self.config.recent_windows,
            "interval_level": self.config.interval_level,
            "n_units": int(len(last)),
            "n_padded_units": int(last.padded.sum()),
            "n_units_with_caveats": sum(1 for c in out["caveats"] if c),
            "caveats": {str(plain(u)): c for u, c in zip(last.unit, out["caveats"]) if c},
            "n_out_of_range": sum(1 for f in flagged if f) if self._range_columns else None,
            "rul_cap": cap,
            "protocol": "each unit at its last cycle; truth capped at rul_cap (*_raw: as given)",
        }
        if report_dir is not None:
            units = pd.DataFrame({"unit": last.unit, "true_rul": last.rul, "true_rul_capped": capped,
                                  "predicted": out["rul"], "lower": out["lower"], "upper": out["upper"],
                                  "spread": out["spread"]})
            result["report"] = str(write_evaluation_report(self, histories, units, result, report_dir, opts))
        return to_jsonable(result)

    def predict(self, inputs: Sequence[Any], out_dir: str | Path | None = None,
                explain: bool = False, skip_bad: bool = False, **options: Any) -> list[dict[str, Any]]:
        """RUL and interval for the most recent window of every unit in each input (CSV/Parquet/C-MAPSS
        file or DataFrame of recent cycles; one path or frame is one input). With ``explain``, the sensors that
        drove each prediction. An input that cannot be read or used refuses the batch (all problems listed);
        with ``skip_bad`` it is skipped and reported as a row ``{"input", "skipped": True, "error"}``. Units whose
        readings lie far outside the training ranges are flagged (``out_of_range``), refused when ``strict``.
        ``options``: :class:`PredictionOptions` (short units padded and mid-life starts estimated by default, each
        with a wider interval and a ``caveats`` entry)."""
        opts = PredictionOptions(**options)
        results: list[dict[str, Any]] = []
        if isinstance(inputs, (str, Path, pd.DataFrame, SensorHistories)):
            inputs = [inputs]
        items = list(enumerate(inputs))

        def read(pair: tuple[int, Any]) -> tuple[SensorHistories, Windows, dict[str, np.ndarray]]:
            histories = self._read(pair[1], "test")
            return (histories, *self.unit_estimates(histories, opts.short_units, opts.late_start))

        kept, skipped = read_inputs(items, read, skip_bad, name=lambda pair: _input_name(*pair))
        records = [f"{h.source} unit {plain(u)!r}" for _, (h, last, _) in kept for u in last.unit]
        flagged = iter(self._flag_units(records, [out for _, (_, _, out) in kept]))
        mark = bool(self._range_columns)
        rows_of: dict[int, list[dict[str, Any]]] = {}
        for index, (histories, last, out) in kept:
            attributions = self.sensor_attributions(last.x) if explain else None
            rows = rows_of[index] = []
            for i in range(len(last)):
                row = {"input": histories.source, "unit": last.unit[i], "last_time": last.end_time[i],
                       "rul": out["rul"][i], "lower": out["lower"][i], "upper": out["upper"][i],
                       "spread": out["spread"][i], "interval_level": self.config.interval_level,
                       "padded": bool(last.padded[i]), "caveats": out["caveats"][i]}
                columns = next(flagged)
                if mark:
                    self.mark_out_of_range([row], [columns])
                if attributions is not None:
                    from shopfloor.core.explain.attribution import top_features

                    row["top_sensors"] = top_features(attributions[i], self.features, k=5)
                rows.append(to_jsonable(row))
        bad = iter(skipped)
        for index, _ in items:
            results.extend(rows_of[index] if index in rows_of else [next(bad)])
        if out_dir is not None:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            pd.DataFrame([{k: ("; ".join(v) if k == "caveats" else v) for k, v in r.items() if k != "top_sensors"}
                          for r in results]).to_csv(
                out / "rul_predictions.csv", index=False)
        return results

    # ----------------------------------------------------------------- explanations
    def attribution_baselines(self, windows: np.ndarray) -> np.ndarray:
        """Each window with its sensors set to the mean reading of its operating condition (the healthy
        fleet average), settings unchanged: the reference integrated gradients start from."""
        network = self.require_model()
        norm = network.features.normalizer
        with torch.no_grad():
            x = torch.as_tensor(windows, dtype=torch.float32)
            base = x.clone()
            base[..., norm.n_settings:] = norm.sensor_mean[norm.conditions(x)]
        return base.numpy()

    def window_attributions(self, windows: np.ndarray, n_steps: int = 32) -> np.ndarray:
        """Integrated-gradients attribution of the mean RUL to every input value: (n, window, features).
        Computed on the torch model (gradients), which the ONNX graph was exported from."""
        from shopfloor.core.explain.attribution import integrated_gradients

        network = self.require_model().eval()
        return integrated_gradients(network.mean_rul, windows, self.attribution_baselines(windows), n_steps=n_steps)

    def sensor_attributions(self, windows: np.ndarray, n_steps: int = 32) -> np.ndarray:
        """:meth:`window_attributions` summed over the window: (n, features)."""
        from shopfloor.core.explain.attribution import per_feature

        return per_feature(self.window_attributions(windows, n_steps=n_steps))

    # ----------------------------------------------------------------- demo
    @classmethod
    def demo(cls, out_dir: Path) -> dict[str, Any]:
        """Simulate a fleet (3 operating conditions), train a 3-member CNN ensemble, evaluate, predict."""
        from .simulator import write_degradation_dataset

        out = Path(out_dir)
        paths = write_degradation_dataset(out / "data", n_train=40, n_test=20, seed=0)
        task = cls(window=20, ensemble=3, data={"setting_columns": ["setting_1", "setting_2"]},
                   training={"epochs": 15, "patience": 4, "progress": False})
        task.fit(paths["train"], out / "model")
        metrics = task.evaluate(paths["test"], report_dir=out / "report")
        predictions = task.predict([paths["recent"]], explain=True)
        return {
            "task": cls.name,
            "rmse": metrics["rmse"],
            "nasa_score": metrics["nasa_score"],
            "interval_coverage": metrics["interval_coverage"],
            "n_units": metrics["n_units"],
            "operating_conditions": task.state["n_conditions"],
            "dropped_sensors": task.state["dropped_sensors"],
            "first_prediction": predictions[0],
            "sample_inputs": [str(paths["recent"])],
            "model": str(out / "model"),
            "report": metrics["report"],
        }


__all__ = ["RULConfig", "RULEnsemble", "RemainingUsefulLife", "WindowFeatures", "WindowRegressor", "calibrate_interval"]
