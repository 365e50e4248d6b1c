import sys

if len(sys.argv) > 1 and sys.argv[1] == "plot":
    from mbpo_pl.plot import main as plot_main

    plot_main(sys.argv[2:])
elif len(sys.argv) > 1 and sys.argv[1] == "report":
    from mbpo_pl.report import main as report_main

    report_main(sys.argv[2:])
else:
    from mbpo_pl.cli import run_cli

    run_cli()
