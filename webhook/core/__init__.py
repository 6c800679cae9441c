"""The pure policy core: plain data in, decisions out.

Nothing in this package touches HTTP, files, the API server or the CLI (an
import-linter contract in CI keeps it that way), so the webhook, `check` and
`audit` all get exactly the same answers.
"""
