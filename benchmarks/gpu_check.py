"""The GPU check, ``make gpu-check``: everything that needs CUDA, in one run, one table.

Meant for a GPU machine without internet (it fabricates its data), in under 8 minutes:

1. the CUDA tests (``tests/test_cuda.py`` and the CUDA cases of the other test files): fp32
   against the CPU, bf16 autocast, ``torch.compile``, resume, evaluation;
2. the training-throughput benchmark (``benchmarks/training.py``): ``fit`` against a DataLoader
   loop, classifier32 and ResNet-18, with ``fit(compile=True)`` for classifier32;
3. the Jacobian-norm benchmark on CUDA (``benchmarks/jacobian.py``): exact, vmap, Hutchinson
   and the naive loop, and the fastest exact method on this device;
4. one chapter in the ``gpu`` profile (fast scale) on fabricated CIFAR/MNIST/SVHN/TinyImageNet
   files (``tests/fabricate.py``), claim cells skipped.

Each step runs in its own process with a time limit; its whole output goes to ``--logs`` (default
``gpu-check-logs/``) and its last lines to the summary table printed at the end. The exit status
is non-zero if any step failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "book/02_jacobian_norm.md"


def steps(python: str, data: Path) -> list[tuple[str, list[str], dict, int]]:
    """``(name, argv, extra environment, timeout in s)`` of each step."""
    gpu_profile = {"COMPANION_PROFILE": "gpu", "COMPANION_FAST": "1", "COMPANION_VERIFY": "0",
                   "COMPANION_DATA_DIR": str(data), "MPLBACKEND": "Agg"}
    return [
        ("CUDA tests", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                        "tests/test_cuda.py", "tests/test_jacobian.py", "tests/test_metrics.py",
                        "-k", "cuda or CUDA"], {}, 120),
        ("training throughput", [python, "benchmarks/training.py", "--device", "cuda",
                                 "--compile"], {}, 150),
        ("Jacobian benchmark", [python, "benchmarks/jacobian.py", "--device", "cuda"], {}, 100),
        ("fabricate data", [python, "tests/fabricate.py", str(data), "--per-class", "16"], {}, 30),
        (f"{Path(CHAPTER).stem}, gpu profile", [python, "tests/run_chapters.py", CHAPTER,
                                                "--skip-tag", "claim"], gpu_profile, 90),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/gpu_check.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", default="gpu-check-logs", type=Path)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: CUDA is not available on this machine; nothing to check")
        return 0
    args.logs.mkdir(parents=True, exist_ok=True)
    print(f"gpu-check: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"{os.cpu_count()} CPU cores", flush=True)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "PYTHONUNBUFFERED": "1"}
    results = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        for name, argv_, extra, timeout in steps(args.python, Path(scratch) / "data"):
            log = args.logs / (name.split(",")[0].replace(" ", "_").lower() + ".log")
            start = time.perf_counter()
            try:
                done = subprocess.run(argv_, cwd=ROOT, env={**env, **extra}, timeout=timeout,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                status, output = ("ok" if done.returncode == 0 else f"FAILED ({done.returncode})",
                                  done.stdout)
            except subprocess.TimeoutExpired as e:
                status = f"TIMEOUT ({timeout} s)"
                output = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            seconds = time.perf_counter() - start
            log.write_text(output)
            results.append((name, status, seconds, output))
            print(f"  {name}: {status} in {seconds:.0f} s (log: {log})", flush=True)

    print("\n" + "=" * 100)
    print(f"{'step':<34}{'status':<18}{'seconds':>8}")
    for name, status, seconds, _ in results:
        print(f"{name:<34}{status:<18}{seconds:>8.0f}")
    for name, _, _, output in results:
        tail = [line for line in output.strip().splitlines() if line.strip()][-14:]
        print(f"\n--- {name} (last lines) ---")
        print("\n".join(tail))
    return 0 if all(status == "ok" for _, status, _, _ in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
