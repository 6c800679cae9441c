"""`python -m webhook` is the same as the `netpol-guard` console script."""

from webhook.cli import main

if __name__ == "__main__":
    main()
