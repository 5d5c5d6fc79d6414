"""Apache Arrow, untyped on purpose.

The pyarrow stubs type ``pyarrow.compute`` through overloads that cannot
express nullable masks, dictionary arrays or decimal sums, so every vectorised
line would need a cast or an ignore. The Arrow code of this domain is
covered by its tests instead.
"""

from __future__ import annotations

from typing import Any

import pyarrow as _pa
import pyarrow.compute as _pc
import pyarrow.csv as _pacsv
import pyarrow.parquet as _pq

pa: Any = _pa
pc: Any = _pc
pacsv: Any = _pacsv
pq: Any = _pq
