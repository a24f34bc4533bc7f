"""What a reader sees: :mod:`.report` (markdown tables and findings) and :mod:`.plots` (PNG),
both pure functions of :mod:`..experiments`' results (the bench's fourth layer)."""
