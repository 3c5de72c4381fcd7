"""Command line: ``python -m ebm_jax demo [--quick] [--out DIR] [--seed N]``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ebm_jax", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the main job on embedded defaults")
    demo.add_argument("--out", default="out", help="output folder (default: ./out)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quick", action="store_true", help="tiny sizes, a smoke test")
    arguments = parser.parse_args(argv)

    if arguments.command == "demo":
        from ebm_jax import demo as demo_module

        demo_module.main(arguments.out, quick=arguments.quick, seed=arguments.seed)
        print(f"wrote results to {arguments.out}/" + (" (quick mode)" if arguments.quick else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
