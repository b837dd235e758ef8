"""`python -m admission`: same as `stagedoor serve admission`."""

from stagedoor.cli import main

if __name__ == "__main__":
    main(["serve", "admission"])
