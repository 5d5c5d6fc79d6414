"""FinOps: FOCUS cost ingestion, the tenant ledger, budgets, cost metrics and reports.

The public API other domains use (see ``service`` for the list with
signatures): ``importer.import_file``, ``ledger.append`` / ``ledger.entries``,
``budgets.budget_status`` / ``budgets.set_budget`` / ``budgets.get_budget``,
``costs.Month`` / ``costs.tenants_month`` / ``costs.tenant_month``,
``metrics.CostCollector``. Routes: ``routes.router``; CLI: ``cli.app``.
"""
