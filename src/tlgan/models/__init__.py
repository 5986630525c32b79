"""Models: generators (latent -> image), feature extractors (image -> readings), and the readers of
the file formats they come in (TF1 and NVlabs pickles, Keras HDF5, torch and ONNX files, users' own models).

Everything here works on one model at a time and knows nothing of axes, sampling or apps. It may use only the
helpers at the package top (errors, atomic writes, safe files, devices, imaging, assets). Loading never runs
code from a file, except for ``entrypoint:`` specs, which import the user's own module by design.
"""
