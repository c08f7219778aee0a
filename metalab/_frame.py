"""`ResultsFrame`: the DataFrame `Results.to_dataframe()` returns.

Parameter columns are named `param_<name>`; where no other column is called `<name>`, the bare
name reaches the same column (`df["n_samples"]`, `df.groupby("n_samples")`). Imported only when
a DataFrame is built, so `import metalab` stays free of pandas.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

PARAM_PREFIX = "param_"


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
