"""Draws examples/handdrawn/: five made-up characters, drawn by program to look drawn by hand.

Not data of any kind: a small, reproducible stand-in for a user's own few labelled drawings, for the
README's `--predict` example with the committed Omniglot model (results/omniglot_5way_1shot_noconv).
Each character is a few pen strokes; every drawing traces them again with a hand's unsteadiness
(a shifted, scaled, slightly rotated copy whose strokes wobble along a smooth random walk), in black
on a white 105x105 canvas as Omniglot's drawings, saved as 1-bit PNGs (a few hundred bytes each).

  examples/handdrawn/support/<character>/1.png       one drawing per character (K = 1)
  examples/handdrawn/query/<character>/<2..4>.png    three more, to classify

Run from the repository's root: python scripts/draw_handdrawn.py [--out=examples/handdrawn]
"""

import argparse
import math
import pathlib

import numpy as np
from PIL import Image, ImageDraw

CANVAS = 105  # Omniglot's drawings are 105x105
PEN = 6       # px at 105: about 1.6 px after the 28x28 resize, as a thick Omniglot stroke


def _spiral(turns: float = 2.2, points: int = 40) -> list[tuple[float, float]]:
  return [(0.5 + 0.36 * t / points * math.cos(2 * math.pi * turns * t / points),
           0.5 + 0.36 * t / points * math.sin(2 * math.pi * turns * t / points))
          for t in range(points + 1)]


def _ellipse(cx, cy, rx, ry, points: int = 24) -> list[tuple[float, float]]:
  return [(cx + rx * math.cos(2 * math.pi * t / points), cy + ry * math.sin(2 * math.pi * t / points))
          for t in range(points + 1)]


# Each character: strokes, each a polyline in [0, 1]^2 (x right, y down).
CHARACTERS = {
    'arrow': [[(0.22, 0.8), (0.78, 0.22)], [(0.48, 0.22), (0.78, 0.22), (0.78, 0.52)]],
    'eye': [_ellipse(0.5, 0.5, 0.34, 0.2), _ellipse(0.5, 0.5, 0.07, 0.07, 10)],
    'house': [[(0.28, 0.5), (0.28, 0.84), (0.72, 0.84), (0.72, 0.5)],
              [(0.18, 0.56), (0.5, 0.18), (0.82, 0.56)]],
    'lightning': [[(0.58, 0.12), (0.36, 0.52), (0.62, 0.5), (0.4, 0.9)]],
    'spiral': [_spiral()],
}


def _densify(stroke, step: float = 0.02) -> np.ndarray:
  """The polyline with points every `step` along it [P, 2], so the wobble bends it smoothly."""
  out = [np.asarray(stroke[0], float)]
  for a, b in zip(stroke[:-1], stroke[1:]):
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = max(1, int(np.linalg.norm(b - a) / step))
    out += [a + (b - a) * (i / n) for i in range(1, n + 1)]
  return np.array(out)


def draw(strokes, rng: np.random.Generator) -> Image.Image:
  """One drawing of `strokes`: a random similarity transform and a smooth wobble per stroke."""
  angle = math.radians(rng.uniform(-8, 8))
  rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
  scale, shift = rng.uniform(0.88, 1.05), rng.uniform(-0.05, 0.05, 2)
  im = Image.new('L', (CANVAS, CANVAS), 255)
  pen = ImageDraw.Draw(im)
  for stroke in strokes:
    points = _densify(stroke)
    # A random walk, smoothed: the hand drifts a little, and never jumps.
    walk = np.cumsum(rng.normal(0, 0.006, points.shape), axis=0)
    walk -= np.linspace(0, 1, len(points))[:, None] * walk[-1]  # ends near where it should
    points = (points + walk - 0.5) @ rotation.T * scale + 0.5 + shift
    pen.line([tuple(p) for p in points * CANVAS], fill=0, width=PEN, joint='curve')
  return im.convert('1')  # 1-bit, as Omniglot's PNGs


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default='examples/handdrawn', help='folder to write')
  parser.add_argument('--seed', type=int, default=0, help='seed of the hand\'s unsteadiness')
  args = parser.parse_args()
  out = pathlib.Path(args.out)
  for c, (name, strokes) in enumerate(CHARACTERS.items()):
    rng = np.random.default_rng((args.seed, c))
    for drawing in range(1, 5):
      folder = out / ('support' if drawing == 1 else 'query') / name
      folder.mkdir(parents=True, exist_ok=True)
      draw(strokes, rng).save(folder / f'{drawing}.png', optimize=True)
  print(f'wrote {out}/support and {out}/query: {len(CHARACTERS)} characters, 1 + 3 drawings each')


if __name__ == '__main__':
  main()
