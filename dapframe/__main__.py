from dapframe.cli import main

main()
