"""Progressive Growing of GANs (Karras et al. 2018): the Ray-free library."""
