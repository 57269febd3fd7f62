"""DuckDB read models of the saga log: the projections, published for readers."""
