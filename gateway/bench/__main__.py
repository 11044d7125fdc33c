"""`python -m gateway.bench …` — the same as `envelope-gateway bench …`."""
from gateway.bench.loadgen import main

if __name__ == "__main__":
    main()
