"""Superseded by bench/run.py (login throughput is its `login` figure, next to the raw argon2 verify rate).

Kept so that an old `make bench` still works: runs `bench/run.py --only login`.
"""
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    run = Path(__file__).resolve().with_name("run.py")
    os.execv(sys.executable, [sys.executable, str(run), "--only", "login", *sys.argv[1:]])
