from tlgan.apps.cli.main import main

main()
