"""`python -m ticketing`: same as `stagedoor serve ticketing`."""

from stagedoor.cli import main

if __name__ == "__main__":
    main(["serve", "ticketing"])
