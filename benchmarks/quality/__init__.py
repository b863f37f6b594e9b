"""Match-quality harness: ranking metrics, the catalog evaluation, human-rating metrics, the report."""
