from tilesr.cli import main

main()
