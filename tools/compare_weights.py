#!/usr/bin/env python
"""Compare the weights of two detaccel checkpoints tensor by tensor (earlier layouts migrated).

Prints how many tensors are bit-identical and the largest absolute difference of the others;
exits 1 when any differs. For example, the same configuration trained for 20 iterations by two
versions of the code:

    python tools/compare_weights.py before/model_final.pth after/model_final.pth
"""

from __future__ import annotations

import argparse

import torch

from detaccel.engine.checkpoint import load_checkpoint, migrate_state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    args = parser.parse_args()
    first, second = (migrate_state(load_checkpoint(path)["model"]) for path in (args.first, args.second))
    tensors = lambda state: {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}  # noqa: E731
    first, second = tensors(first), tensors(second)
    only = sorted(set(first) ^ set(second))
    differing = {
        key: float((first[key].double() - second[key].double()).abs().max()) if first[key].numel() else 0.0
        for key in sorted(set(first) & set(second))
        if first[key].shape != second[key].shape or not torch.equal(first[key], second[key])
    }
    same = len(set(first) & set(second)) - len(differing)
    print(f"{same} tensors bit-identical, {len(differing)} differ, {len(only)} in one checkpoint only")
    for key, diff in differing.items():
        print(f"  {key}: max |difference| {diff:.3g}")
    for key in only:
        print(f"  only in {'the first' if key in first else 'the second'}: {key}")
    return 1 if differing or only else 0


if __name__ == "__main__":
    raise SystemExit(main())
