"""The file store: a directory of JSON records, artifacts and logs (`FileStore`).

Its modules, one concept each: `store` (the `FileStore` contract methods), `layout` (where
what is kept, `_meta.json`, versions), `experiments` (manifests, serialized experiments),
`records` (record files and `.done` markers), `claims` (claims held as files), `journal`
(what writers note for loading), `loading` (every record at once) and `atomic` (files
written whole, and what killed writers leave).
"""

from ..atomic import atomic_write
from .layout import STORE_FORMAT, STORE_VERSION
from .store import FileStore

__all__ = ["STORE_FORMAT", "STORE_VERSION", "FileStore", "atomic_write"]
