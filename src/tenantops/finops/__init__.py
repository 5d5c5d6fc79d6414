"""FinOps: FOCUS cost ingestion, the tenant ledger, budgets, cost metrics and reports."""
