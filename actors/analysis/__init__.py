"""Analysis of recorded saga history: pure, like the core it drives.

- :mod:`~actors.analysis.policy`: a policy to try (step timeouts, retry
  limits and backoff, compensation rules) over the deployed definitions;
- :mod:`~actors.analysis.recording`: what a saga's log says the world did to
  it (answers, outside inputs, timer lags, jitter);
- :mod:`~actors.analysis.answers`: the participants of a backtest, as
  recorded, with seeded draws where the recording is silent;
- :mod:`~actors.analysis.simulate`: one saga replayed through a policy;
- :mod:`~actors.analysis.backtest`: a window replayed through the recorded
  policy and a candidate, compared (:mod:`~actors.analysis.report`).
"""
