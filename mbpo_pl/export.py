"""``python -m mbpo_pl export RUN_OR_CKPT -o policy.pt2``: a trained policy as a self-contained file.

The file is a ``torch.export`` program of the deterministic policy (``obs [N, O] -> action [N, A]`` in the env's own
action bounds, any batch size N) and runs with PyTorch alone, without mbpo_pl installed:

    import json, torch
    extra = {"mbpo_pl.json": ""}
    policy = torch.export.load("policy.pt2", extra_files=extra).module()
    info = json.loads(extra["mbpo_pl.json"])        # env_id, env_kwargs, obs_dim, act_dim, env_steps, action bounds
    action = policy(torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1))[0]

A wrong observation size fails inside the program with a guard naming the expected size. ``--onnx policy.onnx``
also writes the same policy as ONNX (input ``observation [N, O]``, output ``action [N, A]``; needs
``pip install 'mbpo_pl[onnx]'``), for ONNX Runtime and other runtimes without PyTorch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mbpo_pl.errors import ConfigError, exit_with_error
from mbpo_pl.policy import Policy, load_policy

METADATA = "mbpo_pl.json"


def policy_metadata(policy: Policy) -> dict:
    return {
        "env_id": policy.env_id,
        "env_kwargs": policy.env_kwargs,
        "obs_dim": policy.obs_dim,
        "act_dim": policy.act_dim,
        "env_steps": policy.env_steps,
        "action_low": policy.action_low.tolist(),
        "action_high": policy.action_high.tolist(),
        "checkpoint": str(policy.source),
        "input": "observations [N, obs_dim] float32 -> deterministic actions [N, act_dim] in the env's bounds",
    }


def export_policy(policy: Policy, output: Path) -> Path:
    """Write ``policy`` to ``output`` as a ``torch.export`` program with a dynamic batch size and its metadata."""
    policy = policy.cpu().eval()
    example = torch.zeros(2, policy.obs_dim)
    with torch.no_grad():
        program = torch.export.export(policy, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    if output.is_dir():
        raise ConfigError(f"export: -o {output} is a folder; give a file name, e.g. {output / 'policy.pt2'}.")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        torch.export.save(program, output, extra_files={METADATA: json.dumps(policy_metadata(policy))})
    except OSError as err:
        raise ConfigError(
            f"export: cannot write {output} ({err.strerror or err}). Choose a writable path with -o."
        ) from err
    return output


def export_onnx(policy: Policy, output: Path) -> Path:
    """Write ``policy`` to ``output`` as ONNX with a dynamic batch size (PyTorch's ``torch.export``-based exporter)."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ConfigError(f"export --onnx needs onnx and onnxscript: pip install 'mbpo_pl[onnx]' ({err})") from err
    policy = policy.cpu().eval()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            torch.onnx.export(policy, (torch.zeros(2, policy.obs_dim),), str(output), dynamo=True,
                              input_names=["observation"], output_names=["action"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)  # fmt: skip
    except OSError as err:
        raise ConfigError(f"export: cannot write {output} ({err.strerror or err}). Choose a writable path.") from err
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mbpo_pl export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("source", type=Path, help="a run folder (logs/ENV/version_N) or a checkpoint file")
    parser.add_argument("-o", "--output", type=Path, default=Path("policy.pt2"), help="file to write (policy.pt2)")
    parser.add_argument("--onnx", type=Path, default=None, help="also write the policy as ONNX to this file")
    args = parser.parse_args(argv)
    try:
        policy = load_policy(args.source, option="export")
        path = export_policy(policy, args.output)
        if args.onnx is not None:
            print(export_onnx(policy, args.onnx))
    except ConfigError as err:
        exit_with_error(err)
    print(f"{path}: {policy.env_id} policy ({policy.obs_dim} -> {policy.act_dim}) from {policy.source}"
          + (f", {policy.env_steps:,} env steps" if policy.env_steps is not None else ""))  # fmt: skip
