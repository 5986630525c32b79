"""Readers of legacy and foreign file formats, made safe: restricted unpicklers that build arrays themselves
(TF1 ``tfutil.Network`` pickles, NVlabs persistence pickles), Keras HDF5 weight files.

They return plain data (dicts, NumPy arrays, tensors); the model modules build networks from it. Uses only the
package helpers.
"""
