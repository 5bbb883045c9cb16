"""The CUDA paths: skipped without a GPU, run by ``make gpu-check`` on one.

Every test compares the GPU against the CPU (or against itself) on the same seeded run, so a
failure names a difference, not a slow machine.
"""

import pytest
import torch

from companion import experiments
from companion.data import TensorSet
from companion.models import Classifier32, SmallCNN
from companion.spec import RunSpec
from companion.train import TrainConfig, fit, load_checkpoint

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
CUDA = torch.device("cuda")


def _images(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return TensorSet(images, torch.arange(n) % 4)


def _train(device, config, seed=1, **kwargs):
    torch.manual_seed(0)
    model = Classifier32(4, dropout=0.0)
    losses = fit(model, _images(), config, seed=seed, device=device, progress=False, **kwargs)
    return model, losses


def test_fp32_cuda_follows_the_cpu_run():
    """Same data order and crops on both devices (one CPU generator plans every pass): in fp32,
    with TF32 off, the first losses agree to rounding."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    config = TrainConfig(iterations=5, batch_size=32, augment="crop_flip", amp=False)
    _, cpu = _train("cpu", config)
    _, gpu = _train(CUDA, config)
    torch.testing.assert_close(torch.tensor(gpu), torch.tensor(cpu), rtol=1e-3, atol=1e-4)


def test_bf16_autocast_trains_and_gives_float32_weights():
    config = TrainConfig(iterations=60, batch_size=64, lr=0.05, augment="crop_flip")
    model, losses = _train(CUDA, config)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-10:]) < sum(losses[:10])
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # fit leaves the model in the standard memory format, in eval mode
    assert not model.training
    assert all(p.is_contiguous() for p in model.parameters())


def test_compiled_step_matches_eager():
    config = TrainConfig(iterations=4, batch_size=32, amp=False)
    _, eager = _train(CUDA, config)
    _, compiled = _train(CUDA, config, compile=True)
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=1e-3, atol=1e-3)


def test_resume_on_cuda_ends_with_the_uninterrupted_weights(tmp_path):
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    config = TrainConfig(iterations=12, batch_size=32, augment="crop_flip", amp=False)
    reference, _ = _train(CUDA, config)

    class Stop(Exception):
        pass

    def stop_at_9(step, model):
        if step == 9:
            raise Stop
        return {}

    with pytest.raises(Stop):
        _train(CUDA, config, checkpoint=tmp_path / "s.pt", checkpoint_every=4,
               callbacks=[stop_at_9], log_every=1)
    assert load_checkpoint(tmp_path / "s.pt")["step"] == 8
    resumed, _ = _train(CUDA, config, checkpoint=tmp_path / "s.pt", checkpoint_every=4,
                        resume=True)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_evaluate_on_cuda_matches_the_cpu():
    spec = RunSpec.parse("movr", dataset="digits", iterations=50)
    run = experiments.train(spec, device="cpu")
    cpu = experiments.evaluate(run, device="cpu")
    gpu = experiments.evaluate(run, device=CUDA)
    for key, value in cpu.items():
        assert gpu[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key


def test_channels_last_batches_and_small_cnn_on_cuda():
    model = SmallCNN(4, in_channels=3)
    losses = fit(model, _images(), TrainConfig(iterations=3, batch_size=16, augment="crop"),
                 device=CUDA, progress=False)
    assert len(losses) == 3 and next(model.parameters()).device.type == "cuda"
