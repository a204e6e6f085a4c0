"""Re-running the paper's ablation tables (Tables 1-3, 8-10) with one command each: ``i2lmesh reproduce``."""
from .runner import run_row, run_table, table_names
from .tables import TABLES, Row, Table

__all__ = ["TABLES", "Row", "Table", "run_row", "run_table", "table_names"]
