"""Settings of the remaining-useful-life task: training defaults, the task config, and the options of evaluate and
predict."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shopfloor.core.config import StrictModel, TrainingConfig
from shopfloor.core.custom import UserModelConfig, model_field

from ..histories import HistorySpec
from ..sequence import SEQUENCE_MODELS
from ..windows import DEFAULT_RUL_CAP


class RULTrainingConfig(TrainingConfig):
    """Training defaults that suit RUL windows (thousands of small windows, short epochs)."""

    epochs: int = Field(20, ge=1, description="maximum number of epochs per ensemble member")
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    patience: int = Field(8, ge=1, description="early-stopping patience in epochs on the validation loss")


class RULConfig(UserModelConfig):
    """Settings of the remaining-useful-life task."""

    builtin_models = tuple(SEQUENCE_MODELS)

    data: HistorySpec = HistorySpec()
    window: int = Field(30, ge=2, description="cycles per input window")
    stride: int = Field(1, ge=1, description="step between training windows")
    rul_cap: float = Field(DEFAULT_RUL_CAP, gt=0, description="piecewise-linear target: RUL capped at this value")
    operating_conditions: int | Literal["auto"] = Field(
        "auto", description="operating conditions to cluster the settings into ('auto' finds them; 1 = none)")
    short_units: Literal["error", "pad", "skip"] = Field(
        "pad", description="training units shorter than the window: pad (repeat the first reading), skip or error "
        "(at evaluate/predict time the option of the same name decides, default pad)")
    baseline_cycles: int = Field(
        20, ge=0, description="compare each window with the mean of the unit's first N readings (its own healthy "
        "reference; removes unit-to-unit offsets); needs each unit's history from its start at predict time; 0 = off")
    age_feature: bool = Field(
        True, description="feed the time column (cycles since the unit's history began) to the model as an input; "
        "needs real cycle counts at predict time")
    model: str = model_field("cnn1d", tuple(SEQUENCE_MODELS), "sequence model")
    model_options: dict[str, Any] = Field(default_factory=dict, description="keyword options of the model class")
    input_noise: float = Field(0.2, ge=0, description="std of Gaussian noise added to normalised inputs in training")
    epoch_windows: int = Field(16384, ge=0, description="training windows drawn at random per epoch (0 = all)")
    ensemble: int = Field(3, ge=1, description="ensemble members (different seeds); their spread gives the interval")
    member_validation: Literal["shared", "rotating"] = Field(
        "rotating", description="rotating: member k early-stops on its own block of held-out units, so each unit "
        "trains most members and the interval is calibrated on estimates by a member that never trained on the "
        "unit; shared: all members use the same validation units, where the whole ensemble is calibrated")
    recent_windows: int = Field(
        10, ge=1, description="a unit's estimate averages the lag-corrected estimates of the windows ending at its "
        "last N cycles (1 = the last window alone)")
    interval_level: float = Field(0.9, gt=0, lt=1, description="nominal coverage of the prediction interval")
    interval_width: Literal["spread", "constant"] = Field(
        "constant", description="spread: half-width grows with the members' spread (normalised conformal); constant: "
        "the conformal quantile of the held-out absolute errors, the same for every unit")
    explain_units: int = Field(6, ge=0, description="test units whose trajectories and attributions the report shows")
    training: RULTrainingConfig = RULTrainingConfig()


class PredictionOptions(StrictModel):
    """How evaluate and predict treat incomplete histories (prediction time only: no retraining needed)."""

    short_units: Literal["pad", "skip", "error"] = Field(
        "pad", description="units shorter than the window: pad (repeat the first reading; the interval widens and "
        "the result says so), skip, or error")
    late_start: Literal["estimate", "error"] = Field(
        "estimate", description="units whose history starts mid-life (later than any training unit's): estimate "
        "their healthy reference from the fleet (wider interval, noted), or error")


class EvaluateOptions(PredictionOptions):
    """Options of ``shopfloor evaluate`` for RUL models."""

    trajectories: bool = Field(True, description="with --report, plot per-unit RUL trajectories over all windows")
