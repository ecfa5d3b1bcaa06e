from ssl_lab.cli import main

main()
