"""Estimated cost of LLM calls from the taxonomy's editable price table.

Self-hosted backends cost nothing per token; an API model missing from the table is *unpriced*
(shown as such), never silently free.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from pipeline.taxonomy import Price

#: backends that run on the user's own hardware: no per-token price
SELF_HOSTED = frozenset({"local", "vllm", "template"})


class PriceTable:
    """First matching glob wins, so specific patterns go before general ones."""

    def __init__(self, prices: list[Price]) -> None:
        self.prices = prices

    def per_million(self, backend: str, model: str) -> tuple[float, float] | None:
        """(input, output) dollars per million tokens, or None when unknown."""
        if backend in SELF_HOSTED:
            return 0.0, 0.0
        for price in self.prices:
            if fnmatchcase(model, price.model):
                return price.input, price.output
        return None

    def cost(self, backend: str, model: str, input_tokens: int, output_tokens: int) -> float | None:
        rates = self.per_million(backend, model)
        if rates is None:
            return None
        return (input_tokens * rates[0] + output_tokens * rates[1]) / 1_000_000


def format_cost(dollars: float, unpriced_calls: int = 0) -> str:
    """`$0.0123`, with `+ N unpriced` when some calls had no price."""
    text = f"${dollars:,.4f}" if dollars < 1 else f"${dollars:,.2f}"
    if unpriced_calls:
        text += f" + {unpriced_calls} unpriced"
    return text
