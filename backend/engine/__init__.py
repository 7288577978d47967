"""Generation engines. Importing this package must not import torch or diffsynth."""
