"""Write a tiny random reward model with the embedded model's tokenizer, to try search offline.

Its scores are random, so they say nothing about the answers; it exercises the machinery (step tags,
scores per step, tokens scored), as the tests do.

    python scripts/tiny_prm.py runs/tiny-prm [--kind prm|orm|shepherd]
"""

from __future__ import annotations

import argparse

from s1.core.models import load_tokenizer
from s1.evaluate.rewards import save_random_reward_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path")
    parser.add_argument("--kind", default="prm", choices=["prm", "orm", "shepherd"])
    args = parser.parse_args()
    tokenizer, _ = load_tokenizer("smollm2")
    print(f"wrote a tiny random {args.kind} to {save_random_reward_model(tokenizer, args.path, args.kind)}")


if __name__ == "__main__":
    main()
