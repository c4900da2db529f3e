from strata.main import main

main()
