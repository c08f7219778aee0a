"""`ResultsFrame`: the DataFrame `Results.to_dataframe()` returns.

Parameter columns are named `param_<name>`; where no other column is called `<name>`, the bare
name reaches the same column (`df["n_samples"]`, `df.groupby("n_samples")`). The class is made
when the first DataFrame is built, so importing this module (and `metalab`) leaves pandas
unimported; `metalab._frame.ResultsFrame` names it all the same (pickles find it there).
"""

from __future__ import annotations

import functools
from typing import Any

PARAM_PREFIX = "param_"


def results_frame(*args: Any, **kwargs: Any) -> Any:
    """Build a `ResultsFrame` as `pandas.DataFrame(*args, **kwargs)` builds a DataFrame."""
    return frame_class()(*args, **kwargs)


@functools.cache
def frame_class() -> type:
    """Return the `ResultsFrame` class, importing pandas the first time."""
    import pandas as pd

    class ResultsFrame(pd.DataFrame):
        """A `pandas.DataFrame` whose `param_<name>` columns also answer to `<name>`."""

        @property
        def _constructor(self):
            return ResultsFrame

        def _alias(self, key: Any) -> Any:
            if isinstance(key, str) and key not in self.columns:
                prefixed = PARAM_PREFIX + key
                if prefixed in self.columns:
                    return prefixed
            return key

        def _aliases(self, key: Any) -> Any:
            if isinstance(key, list):
                return [self._alias(k) for k in key]
            return self._alias(key)

        def __getitem__(self, key: Any) -> Any:
            return super().__getitem__(self._aliases(key))

        def groupby(self, by: Any = None, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            """Group as `DataFrame.groupby`, accepting bare parameter names."""
            return super().groupby(self._aliases(by), *args, **kwargs)

    ResultsFrame.__qualname__ = "ResultsFrame"
    return ResultsFrame


def __getattr__(name: str) -> Any:
    if name == "ResultsFrame":
        return frame_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
