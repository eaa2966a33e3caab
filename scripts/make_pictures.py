"""Remake the README's pictures under docs/.

    python scripts/make_pictures.py        # needs matplotlib and Debian's chromium

1. Trains configs/digits.yaml into a temporary run folder and runs `convtrain plot` on it:
   docs/curves.png, docs/layers.png, docs/kernels.png, docs/features.png.
2. Writes the worked example's textbook-recipe trace as a page, docs/trace.html, and a
   screenshot of it taken by headless Chromium, docs/trace.png.

Training is seeded and bit-reproducible, so the numbers in the pictures come out the
same on any run (the layout can differ with the matplotlib version).
"""

import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def convtrain(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "convtrain", *args], cwd=ROOT, check=True,
                          **kwargs)


def main():
    os.makedirs(DOCS, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        run = os.path.join(folder, "run")
        convtrain("train", "configs/digits.yaml", "--out", run, "--quiet")
        convtrain("plot", run, "--out", DOCS, "--overwrite")  # the pictures it remakes

    page = os.path.join(DOCS, "trace.html")
    with open(page, "w", encoding="utf-8") as handle:
        convtrain("trace", "configs/seed-example.yaml", "--recipe", "textbook", "--decimals",
                  "3", "--format", "html", stdout=handle)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("docs/trace.png needs Debian's chromium: apt-get install chromium")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1100,3250", f"--screenshot={os.path.join(DOCS, 'trace.png')}",
                    "file://" + page], check=True, capture_output=True)
    for name in sorted(os.listdir(DOCS)):
        print(os.path.join("docs", name))


if __name__ == "__main__":
    main()
