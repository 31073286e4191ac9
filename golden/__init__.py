"""Pure-numpy golden model: follows the written contracts (docs/), never the RTL."""
