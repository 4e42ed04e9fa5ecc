"""Networks trained before or beside a method: the style network, the pose VAE, the 2D-to-3D lifter."""
