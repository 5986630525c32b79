"""Reading the assets of the original TL-GAN (2018) and other legacy formats, safely."""
