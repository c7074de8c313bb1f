import torch

from shopfloor.core.config import TrainingConfig
from shopfloor.core.training import SupervisedModule
from shopfloor.inspection.augment import AugmentConfig, ImageAugmenter


def _batch():
    torch.manual_seed(0)
    x = torch.zeros(8, 3, 32, 32)
    x[:, :, 2:10, 4:12] = 200.0
    return x


def test_disabled_is_identity():
    x = _batch()
    assert torch.equal(ImageAugmenter(AugmentConfig(enabled=False))(x), x)


def test_each_knob_changes_the_batch_and_keeps_range():
    knobs = [dict(rotation_range=30), dict(width_shift_range=0.3), dict(height_shift_range=0.3),
             dict(shear_range=20), dict(zoom_range=0.3), dict(horizontal_flip=True), dict(vertical_flip=True),
             dict(brightness_range=0.5)]
    off = dict(rotation_range=0, width_shift_range=0, height_shift_range=0, zoom_range=0, horizontal_flip=False,
               vertical_flip=False, brightness_range=0)
    for knob in knobs:
        aug = ImageAugmenter(AugmentConfig(**{**off, **knob}))
        x = _batch()
        torch.manual_seed(1)
        y = aug(x)
        assert y.shape == x.shape, knob
        assert 0 <= y.min() and y.max() <= 255, knob
        assert not torch.equal(x, y), knob


def test_fill_modes():
    x = torch.full((4, 3, 32, 32), 100.0)
    base = dict(rotation_range=0, width_shift_range=0.4, height_shift_range=0, zoom_range=0, horizontal_flip=False,
                vertical_flip=False, brightness_range=0)
    torch.manual_seed(3)
    constant = ImageAugmenter(AugmentConfig(**base, fill_mode="constant", cval=30))(x)
    assert torch.isclose(constant, torch.tensor(30.0), atol=1.0).any()
    torch.manual_seed(3)
    for mode in ("nearest", "reflect"):
        y = ImageAugmenter(AugmentConfig(**base, fill_mode=mode))(x)
        assert torch.allclose(y, x, atol=1e-3), mode  # a uniform image stays uniform when edges are copied


def test_augmentation_only_on_training_batches():
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return x.flatten(1)[:, :2]

    def transform(x):
        return x + 1000

    module = SupervisedModule(Spy(), torch.nn.CrossEntropyLoss(), TrainingConfig(), train_transform=transform)
    module.log = lambda *a, **k: None
    batch = (torch.zeros(2, 1, 2, 2), torch.tensor([0, 1]))
    module.training_step(batch, 0)
    module.validation_step(batch, 0)
    assert seen[0].min() == 1000 and seen[1].max() == 0
