#!/usr/bin/env python3
"""Prints the compile flags a build uses and fails if any depends on the
build machine's CPU (-march=native and friends): what CI builds must compile
the same on AVX2 and AVX-512 machines (issue 10, item 14).

Usage: check_flags.py BUILD_DIR [--allow-native]
Reads BUILD_DIR/compile_commands.json; --allow-native (SATLAB_NATIVE=ON
builds) only prints.
"""
import collections
import json
import pathlib
import re
import shlex
import sys

# -march/-mtune/-mcpu=native, or an instruction-set switch (-mavx2, -mfma,
# -msse4.2, -mavx512f, ...) that would make the binary need a CPU feature.
CPU_DEPENDENT = re.compile(
    r"^-m(arch|tune|cpu)=native$|^-m(avx|sse[34]|ssse3|fma|bmi|f16c|popcnt|lzcnt)")
SKIP_WITH_ARG = {"-o", "-c", "-MF", "-MT", "-MQ", "-isystem", "-I", "-include"}


def main():
    build = pathlib.Path(sys.argv[1])
    allow = "--allow-native" in sys.argv[2:]
    commands = json.loads((build / "compile_commands.json").read_text())
    flag_sets = collections.Counter()
    bad = set()
    for entry in commands:
        args = entry.get("arguments") or shlex.split(entry["command"])
        flags, skip = [], False
        for a in args[1:]:
            if skip:
                skip = False
                continue
            if a in SKIP_WITH_ARG:
                skip = True
                continue
            if a.startswith(("-I", "-D", "-isystem", "/", "-o")) or not a.startswith("-"):
                continue
            flags.append(a)
            if CPU_DEPENDENT.search(a):
                bad.add(a)
        # The compiler launcher (ccache) is args[0]; the compiler follows.
        compiler = pathlib.Path(args[1] if "ccache" in args[0] else args[0]).name
        flag_sets[(compiler, " ".join(flags))] += 1
    print(f"compile flags in {build} ({len(commands)} files):")
    for (compiler, flags), n in flag_sets.most_common():
        print(f"  {n:3d} x {compiler} {flags}")
    if bad and not allow:
        print(f"FAIL: CPU-dependent flags in {build}: {' '.join(sorted(bad))}")
        return 1
    print("CPU-dependent flags: " + (" ".join(sorted(bad)) if bad else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
