"""Command line: `envelope-gateway serve | dev | check-config`."""
def main() -> None:
    raise SystemExit("not yet")
