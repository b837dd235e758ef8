"""`python -m waitingroom`: same as `stagedoor serve waitingroom`."""

from stagedoor.cli import main

if __name__ == "__main__":
    main(["serve", "waitingroom"])
