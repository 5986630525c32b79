"""Photos: a user's photo in, the same photo with an edited face out.

The pipeline, one module per stage:

    photofile.py   decode a photo file or upload safely (open_photo), write one back (save_photo, encode_photo)
    detect.py      find the faces (MTCNN), largest first
    align.py       map a face's landmarks onto the generator's own layout; the aligned crop
    invert.py      the latent whose rendering matches the crop
    tune.py        pivotal tuning: a small low-rank update of the generator around that latent
    paste.py       the edited face blended back into the photo
    latentfile.py  the latent file (JSON) and tunefile.py the tuning file beside it (safetensors)
    pipeline.py    the stages end to end, for the front ends (invert_photo, tune_photo, load_photo_latent, paste_into)

It may use ``tlgan.editing``, ``tlgan.sampling``, ``tlgan.models`` and the package helpers.
"""

from .photofile import MAX_BYTES, MAX_PIXELS, PHOTO_FORMATS, Photo, encode_photo, open_photo, save_photo

__all__ = ["MAX_BYTES", "MAX_PIXELS", "PHOTO_FORMATS", "Photo", "encode_photo", "open_photo", "save_photo"]
