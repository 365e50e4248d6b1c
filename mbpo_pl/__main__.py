from mbpo_pl.cli import main

main()
