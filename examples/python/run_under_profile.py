#!/usr/bin/env python3
"""Run one command under a minerguard profile in a fresh cgroup.

    sudo python3 run_under_profile.py [--profile P.yaml] [--events FILE] -- CMD ARGS...

Without --profile, a profile is built in code: miner binaries denied, common
pool ports denied. Events are printed as Falco-shaped JSON lines on stderr
(or written to --events FILE). Exits with the command's status (128+N when
killed by signal N, 126 when the kernel refused the exec itself), like
`enforcer run`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, TextIO

import minerguard


def default_profile() -> minerguard.Profile:
    """Miner binaries and pool ports, built with the builder API."""
    return (
        minerguard.Profile("python-example")
        .add_rule("miner-binary", "deny", exec_names=["xmrig", "cpuminer", "minerd"])
        .add_rule("miner-pool-port", "deny", ports=[3333, 4444, 14444, "5000-5010"])
    )


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="profile file (YAML or JSON)")
    parser.add_argument("--events", help="write events (JSON lines) here instead of stderr")
    parser.add_argument("--timeout", type=float, default=None, help="kill the command after this many seconds")
    parser.add_argument("command", nargs="+", help="the command and its arguments (after --)")
    args = parser.parse_args(argv)

    try:
        profile = minerguard.Profile.from_file(args.profile) if args.profile else default_profile()
        diagnostics = profile.validate()
        if diagnostics:
            for d in diagnostics:
                print(f"invalid profile: {d}", file=sys.stderr)
            return 2
        result = minerguard.run(profile, args.command, timeout=args.timeout)
    except minerguard.Error as e:
        print(f"minerguard: {type(e).__name__}: {e}", file=sys.stderr)
        return 2

    out: TextIO = open(args.events, "w") if args.events else sys.stderr
    try:
        for event in result.events:
            print(json.dumps(event.to_dict()), file=out)
    finally:
        if out is not sys.stderr:
            out.close()
    print(
        f"minerguard: {len(result.events)} events from the {result.backend} backend; "
        f"returncode {result.returncode}" + (" (timed out)" if result.timed_out else ""),
        file=sys.stderr,
    )
    if result.spawn_error:
        print(f"minerguard: {result.spawn_error}", file=sys.stderr)
    if result.signal is not None:
        return 128 + result.signal
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
