"""lmforge: pretrain, adapt, evaluate, compress, protect and serve language models.

Python entry points: `lmforge.load(folder).predict(texts)` (or `.explain(texts)`); every CLI command is also a plain
function in `lmforge.commands.<name>.run`.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lmforge.inference import Loaded

__version__ = "0.1.0"
__all__ = ["load", "__version__"]


def load(path: str, precision: str = "auto", batch_size: int = 64, template: str | None = None,
         quantize: str = "", pack: bool = True) -> "Loaded":
    """Load a model folder written by lmforge; see `lmforge.inference.load`."""
    from lmforge.inference import load as _load

    return _load(path, precision=precision, batch_size=batch_size, template=template, quantize=quantize, pack=pack)
