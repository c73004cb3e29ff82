from retune_tui.cli import main

main()
