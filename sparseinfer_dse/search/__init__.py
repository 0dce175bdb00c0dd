"""The search: optuna proposes alpha profiles, the engine and the evaluators score them."""
