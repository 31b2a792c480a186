"""`python -m instructrec ...` (also what `accelerate launch -m instructrec ...` and `torchrun -m instructrec ...` run)."""

from instructrec.cli.main import main

if __name__ == "__main__":
    main()
