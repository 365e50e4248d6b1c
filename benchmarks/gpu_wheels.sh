#!/usr/bin/env bash
# Wheels of the dependencies the device machines' GPU image lacks, for its Python 3.12, into .whl/ (git-ignored
# through .git/info/exclude): run once here before benchmarks/gpu_check.sh goes to a GPU with `carry: [".whl"]`.
# The list: every distribution our environment (.venv) installs for mbpo_pl's dependencies, at the versions installed
# here, less those the image holds (its package list, /work/.library/device/KINDS.md, read 2026-11-17; torch and
# lightning stay the image's). About 30 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
"$PY" - <<'PYEOF' > .whl/wanted.txt
import importlib.metadata as md
from packaging.requirements import Requirement

# The GPU image's packages (KINDS.md), which the image's own versions serve.
IMAGE = set("""absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cycler cython einops filelock
fonttools frozenlist fsspec grpcio h11 h5py hf-xet httpcore httpx huggingface-hub idna imageio iniconfig jinja2 joblib
kiwisolver lightning lightning-utilities markdown markdown-it-py markupsafe matplotlib mdurl mpmath msgpack multidict
networkx ninja numpy nvidia-ml-py packaging pandas pillow pip pluggy protobuf psutil pyarrow pygments pyparsing pytest
python-dateutil pytorch-lightning pyyaml regex requests rich safetensors scipy setuptools six sympy tensorboard
tensorboard-data-server tokenizers torch torchmetrics tqdm triton typing-extensions tzdata urllib3 werkzeug wheel
zipp""".split())
ROOTS = {"lightning": (), "torchrl": (), "tensordict": (), "gymnasium": ("mujoco",), "mujoco": (), "omegaconf": (),
         "jsonargparse": ("signatures", "omegaconf"), "tensorboard": (), "rich": (), "matplotlib": (), "pyyaml": ()}
seen = {}


def walk(name, extras=()):
    key = name.lower().replace("_", "-")
    if key in seen or key in IMAGE:
        return
    dist = md.distribution(name)
    seen[key] = dist.version
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            walk(req.name, tuple(req.extras))


for root, extras in ROOTS.items():
    walk(root, extras)
print("\n".join(f"{name}=={version}" for name, version in sorted(seen.items())))
PYEOF
while read -r wanted; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "$wanted" 2>/dev/null \
    || { echo "no Python 3.12 wheel of $wanted" >&2; exit 1; }
done < .whl/wanted.txt
echo "$(ls .whl/*.whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/:"
cat .whl/wanted.txt
