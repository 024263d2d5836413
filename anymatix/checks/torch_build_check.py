"""The check a variant's `cuda` and `cuda_architectures` make: the installed PyTorch is the build
the variant promises, read from the build itself (no GPU needed). Run by the build in the
installed environment and from the unpacked zip, and by `packages.sh check`; the line below is
replaced with the variant's values."""

VARIANT, CUDA, ARCHITECTURES = "example", "13.0", ["sm_75"]  # the variant's, written by the build

import torch

if CUDA is None:
    assert torch.version.cuda is None, (
        f"torch {torch.__version__} is built for CUDA {torch.version.cuda}; "
        f"the `{VARIANT}` variant has none"
    )
else:
    assert torch.version.cuda == CUDA, (
        f"torch {torch.__version__} is built for CUDA {torch.version.cuda}; "
        f"the `{VARIANT}` variant promises {CUDA}"
    )
    built = torch._C._cuda_getArchFlags().split()
    missing = [arch for arch in ARCHITECTURES if arch not in built]
    assert not missing, (
        f"torch {torch.__version__} has no kernels for {' '.join(missing)} "
        f"(it has {' '.join(built)})"
    )
