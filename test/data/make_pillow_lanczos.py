"""Writes pillow_lanczos.json: Pillow's Image.resize(..., Image.LANCZOS) outputs for test/unit/image_io.test.ts.

Run with any Python that has Pillow (e.g. Debian's python3-pil): python3 test/data/make_pillow_lanczos.py
The test regenerates the same inputs from the seeds (pattern() below has a TypeScript twin there),
so only the outputs are stored. One case resizes ../shared/fixtures/golden/pipeline/input_96x96.png to
64x64, the resize diffusers does in the mini-sd_image96_to_64_resize golden run.
"""
import base64, json, os, sys
import PIL
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.environ.get('PIA_FIXTURES', os.path.join(HERE, '..', '..', '..', 'shared', 'fixtures'))


def pattern(w, h, seed):
    """Noise, saturated stripes (the negative lobes must clip) and smooth ramps."""
    s = seed
    px = bytearray()
    for y in range(h):
        for x in range(w):
            for c in range(3):
                s = (s * 1103515245 + 12345) % 2147483648
                if (x // 3 + y // 5 + c) % 4 == 0:
                    v = (s >> 16) & 255
                elif (x + y) % 7 < 3:
                    v = 0 if c == 1 else 255
                else:
                    v = (x * 37 + y * 11 + c * 50) % 256
                px.append(v)
    return bytes(px)


CASES = [  # (w, h, out_w, out_h): shrink, enlarge, one axis only, odd ratios, degenerate sizes
    (17, 13, 5, 7), (5, 7, 17, 13), (100, 40, 31, 40), (40, 100, 40, 33), (64, 48, 64, 24),
    (9, 9, 8, 8), (300, 200, 48, 32), (13, 11, 40, 30), (1, 1, 3, 2), (3, 2, 1, 1), (512, 8, 64, 8),
]

out = {'pillow': PIL.__version__, 'cases': []}
for i, (w, h, ow, oh) in enumerate(CASES):
    im = Image.frombytes('RGB', (w, h), pattern(w, h, i + 1))
    r = im.resize((ow, oh), Image.LANCZOS)
    out['cases'].append({'seed': i + 1, 'width': w, 'height': h, 'outWidth': ow, 'outHeight': oh,
                         'out': base64.b64encode(r.tobytes()).decode()})
im = Image.open(os.path.join(FIXTURES, 'golden', 'pipeline', 'input_96x96.png')).convert('RGB')
out['cases'].append({'fixture': 'golden/pipeline/input_96x96.png', 'width': 96, 'height': 96, 'outWidth': 64,
                     'outHeight': 64, 'out': base64.b64encode(im.resize((64, 64), Image.LANCZOS).tobytes()).decode()})
with open(os.path.join(HERE, 'pillow_lanczos.json'), 'w') as f:
    json.dump(out, f, indent=1)
    f.write('\n')
