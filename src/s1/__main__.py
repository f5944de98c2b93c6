from s1.cli import main

main()
