"""torch vs ONNX on onnxruntime's CUDA provider, over consecutive chunks (outputs and states).

The CPU provider's parity is in ``test_path.py`` (on a trained tiny voice); this is the same
check for the ``gpu`` extra, on a converter of the shipped size with seeded weights and
non-trivial normalisation, so it needs no corpus. It runs where onnxruntime offers
``CUDAExecutionProvider``; the torch side runs on the CPU and, where torch sees a GPU, on it too.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
if "CUDAExecutionProvider" not in ort.get_available_providers():
    pytest.skip("onnxruntime offers no CUDAExecutionProvider here (needs the gpu extra on a CUDA machine)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from rtvc.train.export import export_onnx
    from rtvc.train.model import Converter

    torch.manual_seed(7)
    model = Converter(23, 25, hidden=128, layers=2)
    g = torch.Generator().manual_seed(8)
    model.set_normalisation(torch.randn(23, generator=g), 0.5 + torch.rand(23, generator=g),
                            torch.randn(25, generator=g), 0.5 + torch.rand(25, generator=g))
    path = export_onnx(model, tmp_path_factory.mktemp("cuda") / "conv.onnx")
    return model.eval(), path


@pytest.mark.parametrize("torch_device", ["cpu", "cuda"])
def test_torch_and_onnx_on_cuda_agree_over_consecutive_chunks(exported, torch_device):
    model, path = exported
    if torch_device == "cuda" and not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    model = model.to(torch_device)
    sess = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert sess.get_providers()[0] == "CUDAExecutionProvider"
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 60, 23)).astype(np.float32)
    h_t = model.init_state(1).to(torch_device)
    h_o = np.zeros(tuple(h_t.shape), np.float32)
    for a, b in ((0, 10), (10, 11), (11, 30), (30, 60)):  # T = 10, 1, 19, 30: dynamic time axis
        with torch.no_grad():
            y_t, h_t = model(torch.from_numpy(x[:, a:b]).to(torch_device), h_t)
        y_o, h_o = sess.run(["envelope", "state_out"], {"features": x[:, a:b], "state_in": h_o})
        y_ref, h_ref = y_t.cpu().numpy(), h_t.cpu().numpy()
        print(f"torch on {torch_device} vs ONNX on CUDA, frames {a}..{b}: envelope max abs diff "
              f"{np.abs(y_o - y_ref).max():.2e}, state {np.abs(h_o - h_ref).max():.2e}")
        np.testing.assert_allclose(y_o, y_ref, atol=2e-3, rtol=1e-3)
        np.testing.assert_allclose(h_o, h_ref, atol=2e-3)
