"""``python -m mbpo_pl fit|test|plot|report|results|diagnose|export ...``: training and evaluation (LightningCLI)
and the run tools."""

import sys

TOOLS = {name: f"mbpo_pl.{name}" for name in ("plot", "report", "results", "diagnose", "export")}

if len(sys.argv) > 1 and sys.argv[1] in TOOLS:
    from importlib import import_module

    import_module(TOOLS[sys.argv[1]]).main(sys.argv[2:])
else:
    from mbpo_pl.cli import run_cli

    run_cli()
