"""AWS CDK app for moodboard: one stack of small constructs (storage, functions, api, frontend, monitoring)."""
