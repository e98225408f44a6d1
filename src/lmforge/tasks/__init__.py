"""Tasks plug into the one training loop through the protocol in `base`; importing registers them."""

from lmforge.tasks import classification, distill, generation, pretrain  # noqa: F401
